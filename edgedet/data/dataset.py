"""The in-memory dataset: `Annotation`, `Sample`, `DetectionDataset`.

Every reader (COCO JSON, Ultralytics YOLO, Pascal VOC, KITTI) produces the same thing: a list of
samples whose ground truth is in ORIGINAL image pixels, plus the class names and a list of located
messages about what was skipped. Images are decoded lazily by `DetectionDataset.read_image`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError, InvalidInputError
from .images import decode_image

#: Class id used for an ignore region that applies to every class (KITTI ``DontCare``).
ANY_CLASS = -1


@dataclass(frozen=True, eq=False)
class Annotation:
    """Ground truth of one image, in original image pixels.

    Attributes:
        xyxy: float32 (N, 4) box corners (x1, y1, x2, y2), x1 <= x2, y1 <= y2.
        class_ids: int32 (N,) index into ``DetectionDataset.class_names``. ``-1`` (`ANY_CLASS`)
            is allowed only on ignore regions and means "ignore for every class" (KITTI
            ``DontCare``).
        ignore: bool (N,) True for regions where detections count neither as true nor as false
            positives (COCO ``iscrowd``, VOC ``difficult``, KITTI ``DontCare``). Evaluation turns
            them into COCO crowd regions.
        area: optional float32 (N,) object areas in pixels² as the source gives them (COCO's
            segmentation areas, which decide the small / medium / large buckets of the official
            evaluation). None means the box areas (every other format).
    """

    xyxy: np.ndarray
    class_ids: np.ndarray
    ignore: np.ndarray
    area: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise InvalidInputError(
                f"Annotation.xyxy must have shape (N, 4), got {tuple(xyxy.shape)}"
            )
        n = xyxy.shape[0]
        class_ids = np.asarray(self.class_ids).astype(np.int32, copy=False).reshape(-1)
        ignore = np.asarray(self.ignore).astype(bool, copy=False).reshape(-1)
        if class_ids.shape != (n,):
            raise InvalidInputError(
                f"Annotation.class_ids must have shape ({n},), got {tuple(class_ids.shape)}"
            )
        if ignore.shape != (n,):
            raise InvalidInputError(
                f"Annotation.ignore must have shape ({n},), got {tuple(ignore.shape)}"
            )
        if np.any((class_ids < 0) & ~ignore):
            raise InvalidInputError(
                "Annotation.class_ids may be -1 (any class) only on ignore regions"
            )
        if self.area is not None:
            area = np.asarray(self.area, dtype=np.float32).reshape(-1)
            if area.shape != (n,):
                raise InvalidInputError(
                    f"Annotation.area must have shape ({n},), got {tuple(area.shape)}"
                )
            object.__setattr__(self, "area", area)
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "ignore", ignore)

    @classmethod
    def empty(cls) -> Annotation:
        """No objects."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), np.zeros(0, bool))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    @property
    def areas(self) -> np.ndarray:
        """float32 (N,): ``area`` when the source gave one, else the box areas."""
        if self.area is not None:
            return self.area
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def num_objects(self) -> int:
        """Boxes that count (not ignore regions)."""
        return int((~self.ignore).sum())

    def __repr__(self) -> str:
        return f"Annotation(n={len(self)}, ignore={int(self.ignore.sum())})"


@dataclass(frozen=True)
class Sample:
    """One image of a dataset: its id, file, size and ground truth."""

    image_id: int
    path: Path
    width: int
    height: int
    gt: Annotation = field(default_factory=Annotation.empty)


class DetectionDataset:
    """A labelled detection dataset read from disk.

    Attributes:
        name: a short name (the folder name unless given).
        root: the folder it was read from.
        format: ``"coco"``, ``"yolo"``, ``"voc"`` or ``"kitti"``.
        class_names: class names; ``Annotation.class_ids`` index into them.
        samples: the images, in a stable order (file order for folders, JSON order for COCO).
        problems: located messages about what was skipped or assumed while reading, e.g.
            ``"labels/x.txt line 3: class id 91 not in 0..79"``.
        category_ids: for COCO datasets, the original category id of each class (so written
            JSON and results keep the official ids); None for other formats.
    """

    def __init__(
        self,
        name: str,
        root: Path | str,
        format: str,
        class_names: Sequence[str],
        samples: Sequence[Sample],
        problems: Sequence[str] = (),
        *,
        category_ids: Sequence[int] | None = None,
    ) -> None:
        self.name = name
        self.root = Path(root)
        self.format = format
        self.class_names: tuple[str, ...] = tuple(str(n) for n in class_names)
        self.samples: list[Sample] = list(samples)
        self.problems: list[str] = list(problems)
        if category_ids is not None and len(category_ids) != len(self.class_names):
            raise InvalidInputError(
                f"category_ids has {len(category_ids)} entries for {len(self.class_names)} classes"
            )
        self.category_ids: tuple[int, ...] | None = (
            tuple(int(c) for c in category_ids) if category_ids is not None else None
        )
        self._by_id: dict[int, Sample] = {}
        for s in self.samples:
            if s.image_id in self._by_id:
                raise InvalidInputError(f"duplicate image_id {s.image_id} in dataset {name!r}")
            self._by_id[s.image_id] = s

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __repr__(self) -> str:
        return (
            f"DetectionDataset(name={self.name!r}, format={self.format!r}, images={len(self)}, "
            f"classes={len(self.class_names)}, problems={len(self.problems)})"
        )

    @property
    def image_ids(self) -> list[int]:
        return [s.image_id for s in self.samples]

    def by_id(self, image_id: int) -> Sample:
        """The sample with this image id; `KeyError` naming the id when there is none."""
        try:
            return self._by_id[int(image_id)]
        except KeyError:
            raise KeyError(f"image_id {image_id} is not in dataset {self.name!r}") from None

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, (int, np.integer)) and int(image_id) in self._by_id

    def num_objects(self) -> int:
        """Boxes that count (ignore regions excluded) over all samples."""
        return sum(s.gt.num_objects for s in self.samples)

    def class_counts(self) -> dict[str, int]:
        """Boxes per class name (ignore regions excluded), in class order, zeros included."""
        counts = np.zeros(len(self.class_names), np.int64)
        for s in self.samples:
            ids = s.gt.class_ids[~s.gt.ignore]
            counts += np.bincount(ids, minlength=len(self.class_names))[: len(counts)]
        return {n: int(c) for n, c in zip(self.class_names, counts)}

    def read_image(self, sample: Sample | int) -> np.ndarray:
        """Decode a sample's image: BGR uint8 (H, W, 3), grayscale expanded to 3 channels.

        EXIF orientation is NOT applied (annotations refer to the stored pixel grid, as in
        COCO). A missing, truncated or undecodable file, or one whose size differs from the
        annotated size, raises `DatasetError` naming the file.
        """
        if not isinstance(sample, Sample):
            sample = self.samples[int(sample)]
        image = decode_image(sample.path)
        h, w = image.shape[:2]
        if (w, h) != (sample.width, sample.height):
            raise DatasetError(
                f"{sample.path}: image is {w}x{h} but the annotations are for "
                f"{sample.width}x{sample.height}; fix the annotation's width/height or the image"
            )
        return image

    def subset(self, n: int, seed: int | None = 0) -> DetectionDataset:
        """``n`` samples, reproducibly.

        ``seed=None`` takes the first ``n``; an int draws ``n`` at random with that seed
        (``numpy.random.default_rng(seed)``) and keeps them in dataset order. ``n >= len`` gives
        every sample. Problems are carried over.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise InvalidInputError(f"subset size must be a positive int, got {n!r}")
        if n >= len(self.samples):
            picked = list(self.samples)
        elif seed is None:
            picked = self.samples[: int(n)]
        else:
            rng = np.random.default_rng(seed)
            idx = np.sort(rng.choice(len(self.samples), size=int(n), replace=False))
            picked = [self.samples[i] for i in idx]
        return DetectionDataset(
            self.name,
            self.root,
            self.format,
            self.class_names,
            picked,
            self.problems,
            category_ids=self.category_ids,
        )
