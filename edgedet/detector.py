"""`Detector` = preprocess + runtime + decoder + NMS, and `load()` that builds one from a file.

image (H×W×3 uint8 BGR) ─ Preprocessor ─► feeds ─ runtime.infer ─► outputs
    ─ decoder ─► candidates (input pixels) ─ NMS ─► map back + clip ─► Detections
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .boxes import NMS_METHODS, nms, soft_nms
from .decoders import get_family, meta_from_family
from .decoders.base import Candidates, Decoder
from .decoders.detr import size_feed, size_input_name
from .detections import Detections
from .errors import (
    EdgedetError,
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)
from .hints import arg as _arg
from .meta import ModelMeta, read_meta, resolve_class_names
from .preprocess import LetterboxMeta, PixelTransform, Preprocessor
from .validate import brief
from .video import StreamResult as StreamResult  # its home is edgedet.video

log = logging.getLogger("edgedet")


class Detector:
    """Runs one detector model on BGR uint8 images; returns `Detections` in original pixels.

    Settings (attributes you may change between calls): ``score_threshold`` and
    ``iou_threshold`` (default: the family's deployment thresholds, `edgedet.protocol`, e.g.
    0.25 / 0.7 for Ultralytics, 0.25 / 0.45 for YOLOX), ``max_detections`` (300), ``classes`` (ids or names to keep; None
    keeps all), ``nms`` (one of ``class_aware``, ``agnostic``, ``soft_linear``,
    ``soft_gaussian``, ``diou``, ``none``), ``multi_label`` (a box may count for several
    classes; use it for mAP, not deployment).
    """

    def __init__(
        self,
        runtime: Any,
        meta: ModelMeta,
        *,
        score_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int = 300,
        classes: Sequence[int | str] | None = None,
        nms: str = "class_aware",
        multi_label: bool = False,
        max_candidates: int = 30000,
    ):
        self.runtime = runtime
        self.meta = meta
        # set when the runtime converts letterboxed uint8 BGR pixels inside its graph
        self.pixel_transform: PixelTransform | None = getattr(runtime, "pixel_transform", None)
        self.input_spec = self._input_spec()
        self.input_hw = self._input_hw()
        if meta.input_size is None:
            self.meta = meta = meta.replace(input_size=self.input_hw)
        self.preprocessor = Preprocessor(meta, self.input_hw)
        # the DETR exports' image-size input, fed beside the image (None: the model has none)
        size_input = size_input_name(meta, runtime.inputs)
        self._size_spec = next(
            (s for s in runtime.inputs if s.name == size_input and s.name != self.input_spec.name),
            None,
        )
        if self.pixel_transform is not None and self.pixel_transform != self.preprocessor.transform:
            raise IncompatibleModelError(
                f"the runtime converts pixels as {self.pixel_transform} but the model's meta "
                f"says {self.preprocessor.transform}; load the runtime with the meta's "
                "pixel_transform (edgedet.load does) or without one"
            )
        family = get_family(meta.family)
        self.decoder: Decoder = family.make_decoder(meta, runtime.outputs, self.input_hw)
        if not meta.class_names:
            self.meta = meta = meta.replace(
                class_names=tuple(f"class_{i}" for i in range(self.decoder.num_classes))
            )
        elif len(meta.class_names) != self.decoder.num_classes:
            raise IncompatibleModelError(
                f"the model predicts {self.decoder.num_classes} classes but has "
                f"{len(meta.class_names)} class names; pass {_arg('names')} with "
                f"{self.decoder.num_classes} names"
            )
        if score_threshold is None or iou_threshold is None:
            from .protocol import deploy_thresholds

            score_default, iou_default = deploy_thresholds(meta)
            score_threshold = score_default if score_threshold is None else score_threshold
            iou_threshold = iou_default if iou_threshold is None else iou_threshold
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.classes = classes
        self.nms = nms
        self.multi_label = multi_label
        self.max_candidates = max_candidates
        self._validate_settings()
        batch = self.input_spec.shape[0] if self.input_spec.shape else None
        self.fixed_batch: int | None = batch if isinstance(batch, int) else None

    # -- construction helpers ---------------------------------------------------------------

    def _input_spec(self) -> Any:
        specs = self.runtime.inputs
        if self.meta.input_name is not None:
            for s in specs:
                if s.name == self.meta.input_name:
                    return s
            raise IncompatibleModelError(
                f"model meta names input '{self.meta.input_name}', but the model's inputs are "
                f"{[s.name for s in specs]}"
            )
        size_input = size_input_name(self.meta, specs)  # DETR exports' orig_target_sizes
        if size_input is not None and len(specs) == 2:
            return next(s for s in specs if s.name != size_input)
        if len(specs) != 1:
            raise IncompatibleModelError(
                f"model has {len(specs)} inputs {[s.name for s in specs]}; edgedet feeds one image "
                "tensor: set input_name=..."
            )
        return specs[0]

    def _input_hw(self) -> tuple[int, int]:
        shape = self.input_spec.shape
        if len(shape) != 4:
            raise IncompatibleModelError(
                f"model input '{self.input_spec.name}' has shape {list(shape)}; expected an image "
                "tensor [N, 3, H, W] or [N, H, W, 3]"
            )
        nchw = self.meta.layout == "NCHW" and self.pixel_transform is None
        hw = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        if self.meta.input_size is not None:
            if all(isinstance(d, int) for d in hw) and tuple(hw) != tuple(self.meta.input_size):
                raise IncompatibleModelError(
                    f"model input is {hw[1]}x{hw[0]} (w×h) but its meta says "
                    f"{self.meta.input_size[1]}x{self.meta.input_size[0]}; fix input_size"
                )
            return self.meta.input_size
        if not all(isinstance(d, int) for d in hw):
            raise IncompatibleModelError(
                f"model input '{self.input_spec.name}' has a dynamic size {list(shape)}; "
                f"pass {_arg('input_size', '(h, w)', 'H W')}"
            )
        return (int(hw[0]), int(hw[1]))

    def _validate_settings(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InvalidInputError(
                f"score_threshold must be in [0, 1], got {self.score_threshold}"
            )
        if not 0.0 <= self.iou_threshold <= 1.0:
            raise InvalidInputError(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.max_detections < 1:
            raise InvalidInputError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.nms not in NMS_METHODS:
            raise InvalidInputError(f"nms must be one of {NMS_METHODS}, got '{self.nms}'")

    # -- settings, validated when set -------------------------------------------------------
    # Each setting is a property: ``det.nms = "classaware"`` (a typo) or
    # ``det.score_threshold = 5`` raises InvalidInputError naming the attribute at once,
    # instead of silently changing results at the next call.

    @property
    def score_threshold(self) -> float:
        """Minimum score kept, in [0, 1]."""
        return self._score_threshold

    @score_threshold.setter
    def score_threshold(self, value: float) -> None:
        self._score_threshold = _unit_interval("score_threshold", value)

    @property
    def iou_threshold(self) -> float:
        """NMS overlap above which the lower-scored box is dropped, in [0, 1]."""
        return self._iou_threshold

    @iou_threshold.setter
    def iou_threshold(self, value: float) -> None:
        self._iou_threshold = _unit_interval("iou_threshold", value)

    @property
    def max_detections(self) -> int:
        """Most boxes returned per image (>= 1)."""
        return self._max_detections

    @max_detections.setter
    def max_detections(self, value: int) -> None:
        self._max_detections = _count_setting("max_detections", value)

    @property
    def max_candidates(self) -> int:
        """Most candidates the decoder passes to NMS per image (>= 1)."""
        return self._max_candidates

    @max_candidates.setter
    def max_candidates(self, value: int) -> None:
        self._max_candidates = _count_setting("max_candidates", value)

    @property
    def nms(self) -> str:
        """One of `edgedet.boxes.NMS_METHODS`."""
        return self._nms

    @nms.setter
    def nms(self, value: str) -> None:
        if not isinstance(value, str) or value not in NMS_METHODS:
            raise InvalidInputError(f"nms must be one of {NMS_METHODS}, got {brief(value)}")
        self._nms = value

    @property
    def multi_label(self) -> bool:
        """Whether a box may count for several classes (for mAP, not deployment)."""
        return self._multi_label

    @multi_label.setter
    def multi_label(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise InvalidInputError(f"multi_label must be True or False, got {brief(value)}")
        self._multi_label = bool(value)

    @property
    def classes(self) -> tuple[int | str, ...] | None:
        """Class ids or names to keep (None keeps all); checked against the model's names."""
        return self._classes

    @classes.setter
    def classes(self, value: Sequence[int | str] | None) -> None:
        if value is None:
            self._classes: tuple[int | str, ...] | None = None
            return
        if isinstance(value, (str, int, np.integer)):
            value = [value]  # type: ignore[list-item]
        if not isinstance(value, (Sequence, np.ndarray)):
            raise InvalidInputError(
                f"classes must be None or a list of class ids or names, got {brief(value)}"
            )
        items = tuple(value)
        for c in items:
            if isinstance(c, bool) or not isinstance(c, (str, int, np.integer)):
                raise InvalidInputError(
                    f"classes must hold class ids (int) or names (str), got {brief(c)}"
                )
        previous = getattr(self, "_classes", None)
        self._classes = items
        try:
            self._class_filter()  # unknown names / ids out of range raise now
        except InvalidInputError:
            self._classes = previous
            raise

    # -- properties --------------------------------------------------------------------------

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    @property
    def runtime_name(self) -> str:
        return str(self.runtime.name)

    def _class_filter(self) -> np.ndarray | None:
        if self.classes is None:
            return None
        ids = []
        lower = [n.lower() for n in self.class_names]
        for c in self.classes:
            if isinstance(c, str):
                if c.lower() not in lower:
                    raise InvalidInputError(
                        f"unknown class '{c}'; this model has {list(self.class_names)}"
                    )
                ids.append(lower.index(c.lower()))
            else:
                if not 0 <= int(c) < len(self.class_names):
                    raise InvalidInputError(
                        f"class id {c} out of range 0..{len(self.class_names) - 1}"
                    )
                ids.append(int(c))
        return np.asarray(ids, np.int32)

    # -- the three stages --------------------------------------------------------------------

    def preprocess(
        self, images: Sequence[np.ndarray]
    ) -> tuple[dict[str, np.ndarray], list[LetterboxMeta]]:
        """Images -> feeds for the runtime, and how each image was letterboxed.

        The image feed is the model's float input, or, where the runtime converts pixels in its
        graph (``pixel_transform`` set), the letterboxed uint8 (N, H, W, 3) BGR batch. For the
        model file's own float input (calibration, another runtime), use `model_feeds`.
        """
        if self.pixel_transform is not None:
            batch, lbs = self.preprocessor.pixels(images)
            return self._with_size_input({self.input_spec.name: batch}, lbs), lbs
        return self.model_feeds(images)

    def model_feeds(
        self, images: Sequence[np.ndarray]
    ) -> tuple[dict[str, np.ndarray], list[LetterboxMeta]]:
        """Images -> the float feeds the model file itself takes (whatever the runtime embeds),
        and how each image was letterboxed."""
        batch, lbs = self.preprocessor(images)
        dtype = self.input_spec.dtype if self.pixel_transform is None else np.float32
        if dtype != np.float32:
            batch = batch.astype(dtype)
        return self._with_size_input({self.input_spec.name: batch}, lbs), lbs

    def _with_size_input(
        self, feeds: dict[str, np.ndarray], lbs: Sequence[LetterboxMeta]
    ) -> dict[str, np.ndarray]:
        """``feeds`` plus the DETR exports' image-size input where the model has one."""
        if self._size_spec is not None:
            spec = self._size_spec
            feeds[spec.name] = size_feed(spec.dtype, len(lbs), self.input_hw)
        return feeds

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runtime.infer(feeds)  # type: ignore[no-any-return]

    def postprocess(
        self, outputs: Mapping[str, np.ndarray], lbs: Sequence[LetterboxMeta]
    ) -> list[Detections]:
        """Decode, filter, NMS, map back to original pixels."""
        for name, arr in outputs.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                # Non-finite values would become garbage boxes; refuse loudly instead.
                bad = int((~np.isfinite(arr)).sum())
                raise IncompatibleModelError(
                    f"model output '{name}' contains {bad} NaN/inf values; the model or its "
                    "precision (e.g. fp16 overflow) is broken for this input"
                )
        cands = self.decoder(
            outputs,
            score_threshold=self.score_threshold,
            multi_label=self.multi_label,
            max_candidates=self.max_candidates,
        )
        keep_classes = self._class_filter()
        return [self._finish(c, lb, keep_classes) for c, lb in zip(cands, lbs)]

    def _finish(
        self, c: Candidates, lb: LetterboxMeta, keep_classes: np.ndarray | None
    ) -> Detections:
        xyxy, scores, cls = c.xyxy, c.scores, c.class_ids
        if keep_classes is not None:
            m = np.isin(cls, keep_classes)
            xyxy, scores, cls = xyxy[m], scores[m], cls[m]
        if len(scores) == 0:
            return Detections.empty()
        method = "none" if c.nms_done else self.nms
        if method in ("class_aware", "agnostic", "diou"):
            keep = nms(
                xyxy,
                scores,
                self.iou_threshold,
                None if method == "agnostic" else cls,
                max_det=self.max_detections,
                diou=method == "diou",
            )
            xyxy, scores, cls = xyxy[keep], scores[keep], cls[keep]
        elif method in ("soft_linear", "soft_gaussian"):
            keep, new_scores = soft_nms(
                xyxy,
                scores,
                iou_threshold=self.iou_threshold,
                class_ids=cls,
                method="linear" if method == "soft_linear" else "gaussian",
                score_threshold=self.score_threshold,
                max_det=self.max_detections,
            )
            xyxy, scores, cls = xyxy[keep], new_scores, cls[keep]
        else:
            order = np.argsort(-scores, kind="stable")[: self.max_detections]
            xyxy, scores, cls = xyxy[order], scores[order], cls[order]
        return Detections(lb.to_original(xyxy), scores, cls)

    # -- public calls -------------------------------------------------------------------------

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one H×W×3 uint8 BGR image."""
        feeds, lbs = self.preprocess([image])
        return self.postprocess(self.infer(feeds), lbs)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> list[Detections]:
        """Detect in several images; runs them in batches the model accepts."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        step = self.fixed_batch or batch_size or 8
        limit = getattr(self.runtime, "max_batch", None)  # a dynamic batch's profile max (TRT)
        if not self.fixed_batch and isinstance(limit, int) and limit > 0:
            step = min(step, limit)
        out: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = list(images[start : start + step])
            real = len(chunk)
            if self.fixed_batch and real < self.fixed_batch:  # pad a static batch, drop extras
                chunk += [chunk[-1]] * (self.fixed_batch - real)
            feeds, lbs = self.preprocess(chunk)
            out.extend(self.postprocess(self.infer(feeds), lbs)[:real])
        return out

    def stream(
        self,
        source: int | str | Path,
        *,
        drop: str | None = None,
        queue_size: int = 4,
        pipelined: bool = False,
        stall_timeout: float | None = 10.0,
    ) -> Iterator[StreamResult]:
        """Detect on every frame of a video file, frame folder, camera index or stream URL.

        Files and folders are read frame by frame and nothing is dropped. Live sources (camera
        index, ``rtsp://`` / ``http://`` URLs) are read by a background thread into a queue of
        ``queue_size`` frames; when detection falls behind, ``drop="oldest"`` (the default for
        live sources) discards the oldest queued frame and reports it in ``dropped`` and in a
        warning, ``drop="never"`` blocks the reader instead (the camera driver may then drop).
        ``pipelined=True`` overlaps capture, preprocess, inference and postprocess in threads
        (same results, in order). A live source that stops (or sends nothing for
        ``stall_timeout`` s) raises `SourceLostError` after the frames already read. Each
        `StreamResult` has the capture ``timestamp`` and the capture-to-result ``latency``.
        See `edgedet.video`.
        """
        from .video import stream

        return stream(
            self, source, drop=drop, queue_size=queue_size, pipelined=pipelined,
            stall_timeout=stall_timeout,
        )  # fmt: skip

    def track(
        self,
        source: int | str | Path,
        *,
        tracker: Any = None,
        drop: str | None = None,
        queue_size: int = 4,
        pipelined: bool = False,
        stall_timeout: float | None = 10.0,
        **tracker_options: Any,
    ) -> Iterator[StreamResult]:
        """`stream` with ByteTrack (the ``track`` extra): each result's ``detections`` are the
        tracked boxes and ``tracks`` their ids (``tracks.ids``, int64, aligned with the boxes),
        ages, and the lost / ended ids. ``tracker``: an `edgedet.tracking.Tracker` to keep ids
        across calls; ``tracker_options``: `Tracker`'s arguments. See `edgedet.video.track`.
        """
        from .video import track

        return track(
            self, source, tracker=tracker, drop=drop, queue_size=queue_size,
            pipelined=pipelined, stall_timeout=stall_timeout, **tracker_options,
        )  # fmt: skip

    def warmup(self, iterations: int = 3) -> None:
        """Run a few blank frames so lazy allocations and kernel selection happen now."""
        h, w = self.input_hw
        blank = np.full((h, w, 3), 114, np.uint8)
        for _ in range(iterations):
            self(blank)

    def describe(self) -> dict[str, Any]:
        """Runtime, version, device and precision actually used, plus the model's family."""
        info: dict[str, Any] = {"runtime": self.runtime_name}
        if hasattr(self.runtime, "describe"):
            info.update(self.runtime.describe())
        info.setdefault("precision", getattr(self.runtime, "precision", self.meta.precision))
        info.setdefault("preprocessing", "numpy/OpenCV")
        info.update(
            {
                "family": self.meta.family,
                "input_size": list(self.input_hw),
                "classes": len(self.class_names),
            }
        )
        return info

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Detector(family={self.meta.family!r}, runtime={self.runtime_name!r}, "
            f"input={self.input_hw[1]}x{self.input_hw[0]}, classes={len(self.class_names)})"
        )


def _unit_interval(name: str, value: Any) -> float:
    """A Detector setting in [0, 1] (InvalidInputError naming it otherwise)."""
    if isinstance(value, (bool, str)) or not isinstance(value, (int, float, np.number)):
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {brief(value)}")
    out = float(value)
    if not 0.0 <= out <= 1.0:  # also refuses NaN
        raise InvalidInputError(f"{name} must be in [0, 1], got {out}")
    return out


def _count_setting(name: str, value: Any) -> int:
    """A Detector setting that is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {brief(value)}")
    return int(value)


# -- load() ------------------------------------------------------------------------------------


def resolve_meta(
    path: Path | None, family: str | None, meta: ModelMeta | None, overrides: Mapping[str, Any]
) -> ModelMeta:
    """The meta to use: explicit ``meta``, else the file's own (edgedet's or a known foreign
    format), else the ``family`` preset; then ``overrides`` on top. ``names`` means class_names."""
    changes = dict(overrides)
    if "names" in changes:
        changes["class_names"] = changes.pop("names")
    if "class_names" in changes:  # the user's own argument: it may name a names file
        changes["class_names"] = resolve_class_names(changes["class_names"], allow_file=True)
    if meta is None:
        carried = read_meta(path) if path is not None else None
        _check_query_family(path, carried, family)
        if carried is not None and (family is None or carried.family == family):
            meta = carried
        elif family is not None:
            meta = meta_from_family(family)
        else:
            where = f"'{path}'" if path is not None else "this model"
            from .decoders import family_names
            from .hints import arg, import_command

            raise IncompatibleModelError(
                f"{where} carries no edgedet metadata, so edgedet cannot know how to decode it; "
                f"pass {arg('family')} (one of {', '.join(family_names())}) or write the meta "
                f"once with `{import_command(path)}`"
            )
    return meta.replace(**changes) if changes else meta


#: Families whose outputs are finished detections or object queries, not a dense anchor grid,
#: and the built-in families that read a dense grid.
_QUERY_FAMILIES = ("end2end", "detr")
_GRID_FAMILIES = ("yolov8", "yolo11", "yolov5", "yolox", "nanodet", "edgedet")


def _check_query_family(path: Path | None, carried: ModelMeta | None, family: str | None) -> None:
    """Refuse decoding a file whose own metadata says end-to-end / DETR with a dense-grid family
    (``--family yolov8`` on an RT-DETR or YOLO26 one-to-one export): its K rows would be read as
    grid cells and NMS'd into garbage."""
    if carried is None or family is None or carried.family == family:
        return
    if carried.family in _QUERY_FAMILIES and family in _GRID_FAMILIES:
        kind = (
            "a DETR-style (object query)"
            if carried.family == "detr"
            else "an end-to-end (one-to-one, NMS-free)"
        )
        raise IncompatibleModelError(
            f"'{path}' is {kind} model: its metadata ({carried.source}) says family "
            f"'{carried.family}', and family '{family}' would read its rows as a dense grid; "
            f"use family '{carried.family}' (or leave the family out)"
        )


def _check_runtime_options(name: str, cls: type, opts: Mapping[str, Any]) -> None:
    """Refuse options a runtime does not take, listing those it does (before constructing it)."""
    import inspect

    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"runtime '{name}' does not accept option(s) {unknown}; it accepts {accepted}"
        )


def load(
    model: str | Path | Any,
    runtime: str | Sequence[str] = "auto",
    device: str | None = None,
    *,
    family: str | None = None,
    meta: ModelMeta | None = None,
    runtime_options: Mapping[str, Any] | None = None,
    score_threshold: float | None = None,
    iou_threshold: float | None = None,
    max_detections: int = 300,
    classes: Sequence[int | str] | None = None,
    nms: str = "class_aware",
    multi_label: bool = False,
    **meta_overrides: Any,
) -> Detector:
    """Load a detector.

    Args:
        model: ``.onnx`` / ``.xml`` / ``.engine`` / ``.plan`` path (or an ``nn.Module`` with
            ``runtime="torch"``), or a deploy profile written by ``edgedet optimize`` (its
            ``.deploy.json`` or its folder). A model with a profile beside it runs as the
            profile says unless runtime / device / runtime_options are given; a profile
            measured on another device is refused (`edgedet.deploy`).
        runtime: ``"auto"`` (by file suffix: .engine/.plan -> tensorrt, .xml -> openvino,
            .onnx -> onnxruntime), a runtime name, or a tuple of names tried in order
            (opt-in fallback; the choice is logged and shown by ``Detector.runtime_name``).
        device: runtime device (``cpu``, ``cuda:0``, ``CPU``, ``GPU``, ``dla:0``...).
        family: decoder family for models without edgedet meta (``yolox``, ``nanodet``...).
        runtime_options: passed to the runtime (``threads``, ``precision``, ``cache_dir``...).
        score_threshold / iou_threshold: None: the family's deployment thresholds
            (`edgedet.protocol`; ``edgedet info MODEL`` shows them).
        meta_overrides: `ModelMeta` fields to override (``names="coco"``, ``input_size``...).
    """
    path = Path(model) if isinstance(model, (str, Path)) else None
    if path is not None and not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path is not None:  # a deploy profile (`edgedet optimize`) chooses runtime and settings
        from .deploy import resolve_profile

        chosen = resolve_profile(path, runtime, device, runtime_options)
        model = path = chosen.model
        runtime, device, runtime_options = chosen.runtime, chosen.device, chosen.runtime_options
    resolved = resolve_meta(path, family, meta, meta_overrides)
    from edgedet.runtimes.registry import resolve_auto, runtime_capabilities, runtime_class

    if isinstance(runtime, str):
        names = [resolve_auto(path) if runtime == "auto" and path is not None else runtime]
        if runtime == "auto" and path is None:
            names = ["torch"]
    else:
        names = list(runtime)
        if not names:
            raise InvalidInputError("runtime fallback list is empty")
    errors: list[str] = []
    for i, name in enumerate(names):
        try:
            cls = runtime_class(name)
            opts = dict(runtime_options or {})
            declared = runtime_capabilities(name)
            if (
                declared.precision_from_meta
                and "precision" not in opts
                and resolved.precision in ("fp16", "bf16")
                and resolved.precision in declared.precision_option
            ):
                opts["precision"] = resolved.precision
            if declared.pixel_input and "pixel_transform" not in opts:
                opts["pixel_transform"] = PixelTransform.from_meta(resolved)
            if declared.builds_engine and "input_size" not in opts and resolved.input_size:
                opts["input_size"] = tuple(resolved.input_size)  # fixes a dynamic H/W build
            _check_runtime_options(name, cls, opts)
            rt = cls(model, device=device, **opts)
        except RuntimeUnavailableError as err:
            if i == len(names) - 1:
                if errors:
                    raise RuntimeUnavailableError("; ".join([*errors, str(err)])) from err
                raise
            errors.append(str(err))
            continue
        if errors:
            log.warning("runtime fallback: using '%s' (%s)", name, "; ".join(errors))
        else:
            log.info("using runtime '%s' for %s", name, path or type(model).__name__)
        try:
            return Detector(
                rt,
                resolved,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_detections=max_detections,
                classes=classes,
                nms=nms,
                multi_label=multi_label,
            )
        except EdgedetError:
            rt.close()
            raise
    raise RuntimeUnavailableError("no runtime could load the model")  # pragma: no cover
