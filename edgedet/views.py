"""Detectors that look at each image several times and merge what they saw: the shared base of
tiled inference (`edgedet.tiles.TiledDetector`) and test-time augmentation
(`edgedet.tta.TTADetector`).

A *view* of an original image is a crop (a window of it), optionally flipped left-right, then
optionally placed top-left on a larger grey canvas (which shrinks its content in the network
input: the multi-scale views of TTA). Every view goes through the wrapped `Detector`'s own
preprocess, runtime and postprocess; the views' boxes are mapped back to original pixels and
merged by the subclass.

Batching: the views of an image (of every image in ``predict_batch``) go to the runtime as ONE
call when the model takes a batch of that size (a dynamic batch axis; a TensorRT engine up to its
profile's ``max_batch``, in several calls beyond it); a model with a fixed batch of 1 runs them one
by one, and says so once, in a warning, when the wrapper is made. `edgedet.batching` gives a
batch-1 ONNX model a dynamic batch axis.

The wrapper has the `Detector` call surface that `edgedet.scoring.score`, ``edgedet predict`` and
the benchmarks use: ``__call__``, ``predict_batch``, ``preprocess`` / ``infer`` /
``postprocess`` (what the latency harness times; the "feeds" and "outputs" are then lists, one per
runtime call), ``stream``, the settings (``score_threshold``... set on the wrapped detector),
``meta`` / ``class_names`` / ``input_hw``, ``describe`` and ``close``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .detections import Detections
from .errors import InvalidInputError
from .preprocess import as_bgr_image

log = logging.getLogger("edgedet")

#: Detector settings a wrapper forwards to the detector(s) it wraps.
SETTINGS = (
    "score_threshold",
    "iou_threshold",
    "max_detections",
    "nms",
    "multi_label",
    "classes",
    "max_candidates",
)


@dataclass(frozen=True)
class View:
    """One view of an original image of size ``image_hw`` (h, w).

    ``window`` (x0, y0, x1, y1): the crop, in original pixels (integers, x1/y1 exclusive).
    ``flip``: the crop was mirrored left-right. ``canvas_hw``: the crop was placed top-left on a
    grey canvas of this size (>= the crop; None: no canvas). ``name``: for logs and records.
    """

    window: tuple[int, int, int, int]
    image_hw: tuple[int, int]
    flip: bool = False
    canvas_hw: tuple[int, int] | None = None
    name: str = "full"

    @property
    def crop_hw(self) -> tuple[int, int]:
        x0, y0, x1, y1 = self.window
        return (y1 - y0, x1 - x0)

    def make(self, image: np.ndarray, pad_value: int = 114) -> np.ndarray:
        """The view's H'×W'×3 uint8 image from the original BGR ``image``."""
        x0, y0, x1, y1 = self.window
        out = image[y0:y1, x0:x1]
        if self.flip:
            out = cv2.flip(out, 1)
        if self.canvas_hw is not None and self.canvas_hw != self.crop_hw:
            canvas = np.full((*self.canvas_hw, 3), pad_value, np.uint8)
            h, w = out.shape[:2]
            canvas[:h, :w] = out
            out = canvas
        return np.ascontiguousarray(out)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """float32 (N, 4) xyxy in view pixels -> original pixels, clipped to the crop."""
        x0, y0, _, _ = self.window
        h, w = self.crop_hw
        out = np.asarray(xyxy, np.float32).copy()
        np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        if self.flip:
            out[:, [0, 2]] = w - out[:, [2, 0]]
        out[:, 0::2] += x0
        out[:, 1::2] += y0
        return out

    def interior_edges(self) -> tuple[bool, bool, bool, bool]:
        """Which window edges (left, top, right, bottom) lie inside the image (cut objects)."""
        x0, y0, x1, y1 = self.window
        h, w = self.image_hw
        return (x0 > 0, y0 > 0, x1 < w, y1 < h)


@dataclass
class ViewBatch:
    """What `MultiViewDetector.preprocess` returns as "feeds": one feed dict per runtime call."""

    feeds: list[dict[str, np.ndarray]]


@dataclass
class ViewMeta:
    """What `MultiViewDetector.preprocess` returns as "metas": per runtime call, the
    letterbox metas of its rows (``real`` of them are views; the rest pad a fixed batch); per
    image, its size and views."""

    call_metas: list[list[Any]]
    call_real: list[int]
    images: list[tuple[tuple[int, int], list[View]]]


class WrappedDetector:
    """What the wrappers share: the `Detector` call surface over ``preprocess`` / ``infer`` /
    ``postprocess`` (given by subclasses), and settings forwarded to every wrapped detector
    (``members``; ``detector`` is the first, whose meta, class names and input size the wrapper
    reports)."""

    #: Shown in ``describe()`` and ``repr``.
    kind = "wrapper"
    fixed_batch: None = None  # a wrapper takes any number of images per call

    def __init__(self, members: Sequence[Any]):
        if not members:
            raise InvalidInputError("a wrapper needs at least one detector")
        self.members = list(members)
        self.detector = self.members[0]

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[Any, Any]:
        raise NotImplementedError

    def infer(self, feeds: Any) -> Any:
        raise NotImplementedError

    def postprocess(self, outputs: Any, metas: Any) -> list[Detections]:
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> Detections:
        """Detections in one H×W×3 uint8 BGR image, in its pixels."""
        feeds, metas = self.preprocess([image])
        return self.postprocess(self.infer(feeds), metas)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> list[Detections]:
        """Detections in several images, ``batch_size`` images (default 1) per `preprocess`."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        step = max(1, int(batch_size or 1))
        out: list[Detections] = []
        for start in range(0, len(images), step):
            feeds, metas = self.preprocess(list(images[start : start + step]))
            out.extend(self.postprocess(self.infer(feeds), metas))
        return out

    # -- settings and properties, from the wrapped detector(s) ---------------------------------

    def __getattr__(self, name: str) -> Any:
        if name in SETTINGS and "detector" in self.__dict__:
            return getattr(self.__dict__["detector"], name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SETTINGS:
            for m in self.members:  # each member validates; a bad value fails on the first
                setattr(m, name, value)
        else:
            object.__setattr__(self, name, value)

    def _validate_settings(self) -> None:
        for m in self.members:
            check = getattr(m, "_validate_settings", None)
            if check is not None:
                check()

    @property
    def meta(self) -> Any:
        return self.detector.meta

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.detector.class_names)

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.detector.input_hw)  # type: ignore[return-value]

    @property
    def runtime(self) -> Any:
        """The first wrapped detector's runtime (the wrapper does not use its async API)."""
        return self.detector.runtime

    @property
    def runtime_name(self) -> str:
        return str(self.detector.runtime_name)

    def settings(self) -> dict[str, Any]:
        """The wrapper's own settings, for ``describe()`` and benchmark records."""
        return {}

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = dict(self.detector.describe())
        info[self.kind] = self.settings()
        return info

    def stream(
        self,
        source: Any,
        *,
        drop: str | None = None,
        queue_size: int = 4,
        stall_timeout: float | None = 10.0,
    ) -> Iterator[Any]:
        """As `edgedet.Detector.stream` (sequential only), every frame through this wrapper."""
        from .video import stream

        return stream(self, source, drop=drop, queue_size=queue_size,  # type: ignore[arg-type]
                      stall_timeout=stall_timeout)

    def warmup(self, iterations: int = 3) -> None:
        h, w = self.input_hw
        blank = np.full((h, w, 3), 114, np.uint8)
        for _ in range(iterations):
            self(blank)

    def close(self) -> None:
        for m in self.members:
            m.close()

    def __enter__(self) -> WrappedDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{k}={v!r}" for k, v in self.settings().items() if isinstance(v, (str, bool, float))
        )
        return f"{type(self).__name__}({', '.join(map(repr, self.members))}, {inner})"


class MultiViewDetector(WrappedDetector):
    """Base of the view wrappers (see the module docstring). Subclasses give `views` and
    `merge`."""

    kind = "views"

    def __init__(
        self, detector: Any, *, batch: bool | None = None, why_sequential: str | None = None
    ):
        super().__init__([detector])
        fixed = getattr(detector, "fixed_batch", None)
        self._fixed = fixed if isinstance(fixed, int) else None
        limit = getattr(getattr(detector, "runtime", None), "max_batch", None)
        self._limit = limit if isinstance(limit, int) and limit > 0 else None
        if batch is None:
            batch = self._fixed is None or self._fixed > 1
        self.batched = bool(batch)
        if self.batched and self._fixed == 1:
            raise InvalidInputError(
                "batch=True, but the model has a fixed batch of 1; give it a dynamic batch axis "
                "(edgedet.batching.batched_model_path) or leave batch=None"
            )
        self._warned = False
        self.why_sequential = why_sequential

    # -- what subclasses provide ---------------------------------------------------------------

    def views(self, image_hw: tuple[int, int]) -> list[View]:
        """The views of an image of size ``image_hw`` (h, w)."""
        raise NotImplementedError

    def merge(
        self, per_view: list[Detections], views: list[View], image_hw: tuple[int, int]
    ) -> Detections:
        """One image's views' detections (already in original pixels) -> its detections."""
        raise NotImplementedError

    def _warn_sequential(self, n_views: int) -> None:
        """Say once per wrapper that the views run one by one, and why."""
        if self.batched or self._warned or n_views < 2:
            return
        self._warned = True
        why = self.why_sequential or (
            f"the model has a fixed batch of {self._fixed}; give an ONNX model a dynamic batch "
            "axis with edgedet.batching.batched_model_path (the CLI's --tiles / --tta do it)"
        )
        log.warning(
            "%s: the %d views of each image run one by one (%d runtime calls per image, not one "
            "batched call): %s",
            self.kind,
            n_views,
            n_views,
            why,
        )

    # -- the Detector surface -------------------------------------------------------------------

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[ViewBatch, ViewMeta]:
        """Images -> one feed dict per runtime call holding their views, and how to map back."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if len(images) == 0:
            raise InvalidInputError("no images to preprocess")
        pad = int(getattr(getattr(self.detector, "meta", None), "pad_value", 114) or 114)
        crops: list[np.ndarray] = []
        per_image: list[tuple[tuple[int, int], list[View]]] = []
        for image in images:
            bgr = as_bgr_image(image)
            hw = (int(bgr.shape[0]), int(bgr.shape[1]))
            views = self.views(hw)
            per_image.append((hw, views))
            crops.extend(v.make(bgr, pad) for v in views)
        self._warn_sequential(len(per_image[0][1]))
        if not self.batched:
            step = 1
        elif self._fixed is not None:
            step = self._fixed
        else:
            step = min(len(crops), self._limit) if self._limit else len(crops)
        feeds: list[dict[str, np.ndarray]] = []
        metas: list[list[Any]] = []
        real: list[int] = []
        for start in range(0, len(crops), step):
            chunk = crops[start : start + step]
            n = len(chunk)
            if self._fixed is not None and n < self._fixed:
                chunk = chunk + [chunk[-1]] * (self._fixed - n)
            f, lbs = self.detector.preprocess(chunk)
            feeds.append(f)
            metas.append(lbs)
            real.append(n)
        return ViewBatch(feeds), ViewMeta(metas, real, per_image)

    def infer(self, feeds: ViewBatch) -> list[dict[str, np.ndarray]]:
        """One runtime call per feed dict (one in all when batched)."""
        return [self.detector.infer(f) for f in feeds.feeds]

    def postprocess(self, outputs: Sequence[Mapping[str, np.ndarray]], metas: ViewMeta) -> list[Detections]:
        """Decode each call, map every view's boxes to original pixels, merge per image."""
        flat: list[Detections] = []
        for out, lbs, n in zip(outputs, metas.call_metas, metas.call_real):
            flat.extend(self.detector.postprocess(out, lbs)[:n])
        result: list[Detections] = []
        k = 0
        for hw, views in metas.images:
            mine = flat[k : k + len(views)]
            k += len(views)
            mapped = [
                Detections(v.to_original(d.xyxy), d.scores, d.class_ids) if len(d) else d
                for v, d in zip(views, mine)
            ]
            result.append(self.merge(mapped, views, hw))
        return result

    def settings(self) -> dict[str, Any]:
        return {"batched": self.batched}
