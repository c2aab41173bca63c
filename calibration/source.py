"""Calibration images, preprocessed exactly as the model is deployed.

`CalibrationSource` picks N images (default 300) reproducibly from an image folder or an
`edgedet.data.DetectionDataset`, preprocesses them with the model's own deployment
`Preprocessor` (through ``Detector.preprocess``), reports and skips unreadable images, and
serves them as:

- an ONNX Runtime ``CalibrationDataReader`` (``get_next()`` / ``rewind()``; registered as a
  virtual subclass when onnxruntime is importable);
- an ``nncf.Dataset`` (`CalibrationSource.nncf_dataset`);
- plain feeds dicts (iterate it) for the TensorRT calibrator and the sensitivity analysis.

Images are decoded and preprocessed on the fly (a few hundred 640×640 float tensors would take
gigabytes); each file is read once to hash it, and unreadable ones are dropped up front.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgedet.errors import CalibrationError, InvalidInputError

from .spec import MIN_TRUSTED_IMAGES

log = logging.getLogger("edgedet.calibration")


class Preprocesses(Protocol):
    """What a source needs from a model: `edgedet.Detector.model_feeds` (the float input of the
    model file, whatever pre-processing the detector's runtime runs in its own graph)."""

    def model_feeds(self, images: Sequence[np.ndarray]) -> tuple[dict[str, np.ndarray], Any]: ...


@dataclass(frozen=True)
class ImageEntry:
    """One calibration image: its file, size in bytes and sha256."""

    path: Path
    size: int
    sha256: str


@dataclass
class SourceReport:
    """What a source selected: ``requested`` / ``available`` / ``used`` counts, skipped files
    with reasons, warnings, and ``images_sha256`` (sha256 of the sorted per-image hashes)."""

    requested: int
    available: int
    used: int
    images_sha256: str
    origin: str
    seed: int | None
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    holdout: int = 0  # images of the pool set aside (not calibrated on)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "available": self.available,
            "count": self.used,
            "images_sha256": self.images_sha256,
            "origin": self.origin,
            "seed": self.seed,
            "skipped": list(self.skipped),
            "warnings": list(self.warnings),
            "holdout": self.holdout,
        }


#: The held-out draw uses ``seed + HOLDOUT_SEED_OFFSET`` so it is not the calibration draw.
HOLDOUT_SEED_OFFSET = 7919


def auto_holdout(pool: int) -> int:
    """Images set aside by ``holdout="auto"``: a fifth of a pool of ``pool`` images, at least 8
    and at most 64, and never more than half the pool (0 for pools under 4 images)."""
    if pool < 4:
        return 0
    return min(max(8, round(pool * 0.2)), 64, pool // 2)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"calibration images: {root} is not a folder")
    from edgedet.data.images import find_images

    return find_images(root)


def choose(paths: Sequence[Path], n: int, seed: int | None) -> list[Path]:
    """``n`` of ``paths`` reproducibly: the first ``n`` (``seed=None``) or a random draw with
    ``numpy.random.default_rng(seed)`` kept in the original order."""
    if n >= len(paths):
        return list(paths)
    if seed is None:
        return list(paths[:n])
    idx = np.sort(np.random.default_rng(seed).choice(len(paths), size=n, replace=False))
    return [paths[i] for i in idx]


def decode(data: bytes) -> np.ndarray | None:
    """BGR uint8 image from encoded bytes, or None when OpenCV cannot decode them."""
    import cv2

    if not data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return None
    return np.ascontiguousarray(image)


def hash_image_list(entries: Sequence[ImageEntry]) -> str:
    """sha256 over the sorted per-file sha256 values: same images, same hash, any order."""
    h = hashlib.sha256()
    for digest in sorted(e.sha256 for e in entries):
        h.update(digest.encode())
    return h.hexdigest()


class CalibrationSource:
    """Preprocessed calibration batches for one model.

    Args:
        model: anything with ``preprocess(images) -> (feeds, metas)``, normally the
            `edgedet.Detector` of the float model (so deployment preprocessing is used).
        images: a folder of images, or a list of image files.
        dataset: an `edgedet.data.DetectionDataset` (or a path `edgedet.data.load_dataset`
            reads) instead of ``images``.
        num: how many images to use (fewer if fewer are readable); below 100 a warning is
            logged and recorded.
        seed: the draw's seed (None: the first ``num`` in order).
        batch_size: images per batch (keep 1 for fixed-batch-1 models).
        progress: optional callback ``progress(done, total)`` called per batch served.
        holdout: images of the pool set aside, never calibrated on (`holdout_paths`), for
            checking the INT8 model on images it did not see: a count, or ``"auto"``
            (`auto_holdout`: a fifth of the pool, 8..64 images). Drawn before the calibration
            images with the seed, so the same pool and seed give the same split.
    """

    def __init__(
        self,
        model: Preprocesses,
        *,
        images: str | Path | Sequence[str | Path] | None = None,
        dataset: Any = None,
        num: int = 300,
        seed: int | None = 0,
        batch_size: int = 1,
        progress: Any = None,
        holdout: int | str = 0,
    ) -> None:
        if (images is None) == (dataset is None):
            raise InvalidInputError(
                "calibration source: pass exactly one of images=FOLDER (or a list of files) "
                "and dataset=DATASET"
            )
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise InvalidInputError(f"num must be a positive int, got {num!r}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = int(batch_size)
        self.progress = progress
        if dataset is not None:
            if isinstance(dataset, (str, Path)):
                from edgedet.data import load_dataset

                dataset = load_dataset(dataset)
            candidates = [Path(s.path) for s in dataset.samples]
            origin = f"dataset {getattr(dataset, 'name', '?')} ({getattr(dataset, 'root', '')})"
        elif isinstance(images, (str, Path)):
            candidates = list_images(images)
            origin = f"folder {images}"
        else:
            assert images is not None
            candidates = [Path(p) for p in images]
            origin = f"{len(candidates)} listed files"
        if not candidates:
            raise CalibrationError(f"calibration source {origin}: no images found")
        n_hold = auto_holdout(len(candidates)) if holdout == "auto" else holdout
        if isinstance(n_hold, bool) or not isinstance(n_hold, int) or n_hold < 0:
            raise InvalidInputError(f"holdout must be 'auto' or an int >= 0, got {holdout!r}")
        if n_hold and n_hold >= len(candidates):
            raise InvalidInputError(
                f"holdout {n_hold}: the pool {origin} has only {len(candidates)} images, none "
                "would be left to calibrate on; pass a smaller --holdout or more images"
            )
        #: images set aside for the held-out check, in pool order (never calibrated on)
        self.holdout_paths: list[Path] = choose(
            candidates, n_hold, (seed or 0) + HOLDOUT_SEED_OFFSET
        ) if n_hold else []  # fmt: skip
        if self.holdout_paths:
            held = set(self.holdout_paths)
            candidates = [p for p in candidates if p not in held]
        picked = choose(candidates, num, seed)
        entries: list[ImageEntry] = []
        skipped: list[str] = []
        # Read every picked file once: hash it and check that it decodes.
        for path in picked:
            _add_entry(path, entries, skipped)
        # Top up from the images not drawn so a few bad files do not shrink the set.
        if skipped and len(candidates) > len(picked):
            chosen = set(picked)
            rest = [p for p in choose(candidates, len(candidates), seed) if p not in chosen]
            for path in rest:
                if len(entries) >= num:
                    break
                _add_entry(path, entries, skipped)
        for msg in skipped:
            log.warning("calibration: skipped %s", msg)
        if not entries:
            raise CalibrationError(
                f"calibration source {origin}: none of {len(picked)} images could be read "
                f"({skipped[0]} ...)"
            )
        warnings: list[str] = []
        if len(entries) < num:
            warnings.append(
                f"asked for {num} calibration images, {len(entries)} readable ones available"
            )
        if len(entries) < MIN_TRUSTED_IMAGES:
            warnings.append(
                f"only {len(entries)} calibration images: fewer than {MIN_TRUSTED_IMAGES} give "
                "unstable activation ranges; use a few hundred images from the deployment scene"
            )
        for msg in warnings:
            log.warning("calibration: %s", msg)
        self.entries: list[ImageEntry] = entries
        self.report = SourceReport(
            requested=num,
            available=len(candidates),
            used=len(entries),
            images_sha256=hash_image_list(entries),
            origin=origin,
            seed=seed,
            skipped=skipped,
            warnings=warnings,
            holdout=len(self.holdout_paths),
        )
        self._iter: Iterator[dict[str, np.ndarray]] | None = None

    # -- serving --------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of batches."""
        return (len(self.entries) + self.batch_size - 1) // self.batch_size

    @property
    def num_images(self) -> int:
        return len(self.entries)

    def load_image(self, entry: ImageEntry) -> np.ndarray:
        image = decode(entry.path.read_bytes()) if entry.path.is_file() else None
        if image is None:
            raise CalibrationError(
                f"calibration image {entry.path} became unreadable during calibration"
            )
        return image

    def preprocess_entries(self, entries: Sequence[ImageEntry]) -> dict[str, np.ndarray]:
        feeds, _ = self.model.model_feeds([self.load_image(e) for e in entries])
        return {k: np.ascontiguousarray(v) for k, v in feeds.items()}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        total = len(self)
        for i in range(total):
            chunk = self.entries[i * self.batch_size : (i + 1) * self.batch_size]
            feeds = self.preprocess_entries(chunk)
            if self.progress is not None:
                self.progress(i + 1, total)
            yield feeds

    # ONNX Runtime CalibrationDataReader interface
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = iter(self)
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = None

    def set_range(self, start_index: int, end_index: int) -> None:  # ORT reader API
        self.entries = self.entries[start_index:end_index]
        self._iter = None

    # NNCF
    def nncf_dataset(self, *, as_dict: bool = False) -> Any:
        """An ``nncf.Dataset`` over the images; its transform preprocesses one batch.

        ``as_dict=False`` yields the single input array (what OpenVINO models take), or the dict
        when the model has several inputs; ``as_dict=True`` yields ``{input name: array}``
        (what NNCF's ONNX backend takes).
        """
        import nncf

        batches = [
            self.entries[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))
        ]

        def transform(chunk: Sequence[ImageEntry]) -> Any:
            feeds = self.preprocess_entries(chunk)
            if as_dict or len(feeds) != 1:
                # several inputs (a DETR's image + orig_target_sizes): OpenVINO models take
                # {input name: array} too
                return feeds
            return next(iter(feeds.values()))

        return nncf.Dataset(batches, transform)

    def record(self) -> dict[str, Any]:
        """The part of the calibration record that describes the images."""
        return self.report.to_dict()


def _add_entry(path: Path, entries: list[ImageEntry], skipped: list[str]) -> None:
    """Read ``path`` once: append its entry (size, sha256) if it decodes, else a reason to
    ``skipped``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        skipped.append(f"{path}: unreadable ({err.strerror or err})")
        return
    if decode(data) is None:
        skipped.append(f"{path}: not a decodable image ({len(data)} bytes)")
        return
    entries.append(ImageEntry(path, len(data), hashlib.sha256(data).hexdigest()))
