"""Test-time augmentation (flip and multi-scale views of each image) and ensembles of several
detectors, both merged by weighted box fusion (`edgedet.fusion`, the ``ensemble`` extra) or NMS.

    >>> from edgedet.tta import TTADetector, Ensemble
    >>> tta = TTADetector(edgedet.load("yolov8n.onnx"), flip=True, scales=(1.0, 0.83, 0.67))
    >>> ens = Ensemble([edgedet.load("yolov8n.onnx"), edgedet.load("yolox.onnx", family="yolox",
    ...                 names="coco")])
    >>> tta(frame), ens(frame)      # Detections in frame pixels

TTA views (`TTADetector.views`): for each scale ``s`` in ``scales`` (each in (0, 1]) the image
(s = 1), or the image placed top-left on a grey canvas ``1/s`` times its size, which the
letterbox then shrinks, so objects reach the network at ``s`` times their usual size (the
multi-scale TTA of Ultralytics' ``augment=True``: 1, 0.83, 0.67, with a left-right flip); with
``flip``, each also mirrored left-right. A fixed-size model cannot be shown the image larger than
its input: tiling (`edgedet.tiles`) does that. The views run as one batched call when the model
takes a batch (see `edgedet.views`).

Ensembles: every member runs the image through its own pipeline (any runtime, any family; their
class names must be the same list), and the members' detections are fused. Settings set on the
ensemble (``score_threshold``...) are set on every member; ``meta`` (so the evaluation protocol)
and ``input_hw`` are the first member's.

Merges: ``"wbf"`` (default): weighted box fusion, per class, IoU ``fusion_iou`` (0.55, the WBF
paper's), scores averaged over sources and scaled by the share of sources that found the box
(``conf_type="avg"``); ``"nms"``: all boxes together through the (first) detector's NMS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .boxes import nms
from .detections import Detections
from .errors import InvalidInputError
from .views import MultiViewDetector, View, WrappedDetector

#: Merges the TTA and ensemble wrappers offer.
MERGES = ("wbf", "nms")
#: Ultralytics' multi-scale TTA scales (``augment=True``), used by ``--tta ms``.
ULTRALYTICS_SCALES = (1.0, 0.83, 0.67)


def _check_merge(merge: str) -> None:
    if merge not in MERGES:
        raise InvalidInputError(f"merge must be one of {MERGES}, got {merge!r}")
    if merge == "wbf":
        from .fusion import require_ensemble_boxes

        require_ensemble_boxes()


def _merge(
    sources: list[Detections],
    image_hw: tuple[int, int],
    detector: Any,
    merge: str,
    fusion_iou: float,
    conf_type: str,
    weights: Sequence[float] | None = None,
) -> Detections:
    """Fuse per-source detections of one image (original pixels)."""
    if merge == "wbf":
        from .fusion import fuse

        return fuse(
            sources,
            image_hw,
            iou_threshold=fusion_iou,
            weights=weights,
            conf_type=conf_type,
            max_detections=detector.max_detections,
        )
    parts = [s for s in sources if len(s)]
    if not parts:
        return Detections.empty()
    xyxy = np.concatenate([s.xyxy for s in parts])
    scores = np.concatenate([s.scores for s in parts])
    cls = np.concatenate([s.class_ids for s in parts])
    aware = getattr(detector, "nms", "class_aware") != "agnostic"
    keep = nms(xyxy, scores, detector.iou_threshold, cls if aware else None, max_det=detector.max_detections)
    return Detections(xyxy[keep], scores[keep], cls[keep])


def parse_tta(text: str) -> dict[str, Any]:
    """``--tta`` text -> `TTADetector` keyword arguments.

    Comma-separated tokens: ``flip`` (left-right flip), ``ms`` (Ultralytics' scales 1, 0.83,
    0.67), numbers in (0, 1] (scales), ``nms`` / ``wbf`` (the merge). E.g. ``flip``,
    ``flip,ms``, ``flip,1,0.8,nms``. Raises `InvalidInputError` naming the tokens it takes."""
    out: dict[str, Any] = {"flip": False, "scales": [], "merge": "wbf"}
    for raw in str(text).split(","):
        tok = raw.strip().lower()
        if not tok:
            continue
        if tok == "flip":
            out["flip"] = True
        elif tok == "ms":
            out["scales"].extend(ULTRALYTICS_SCALES)
        elif tok in MERGES:
            out["merge"] = tok
        else:
            try:
                out["scales"].append(float(tok))
            except ValueError:
                raise InvalidInputError(
                    f"--tta {text!r}: unknown token {raw.strip()!r}; use flip, ms, scales in "
                    "(0, 1] and nms or wbf, comma-separated (e.g. flip,ms)"
                ) from None
    out["scales"] = tuple(dict.fromkeys(out["scales"] or [1.0]))
    if not out["flip"] and len(out["scales"]) == 1:
        raise InvalidInputError(
            f"--tta {text!r} adds no view to the plain image: add flip and/or scales (e.g. flip,ms)"
        )
    return out


class TTADetector(MultiViewDetector):
    """A `Detector` run on flipped / rescaled views of each image, fused (module docstring).

    Args:
        detector: an `edgedet.Detector` (or a wrapper with its surface).
        flip: add a left-right mirrored copy of every scale's view.
        scales: scales in (0, 1]; 1 is the image as it is.
        merge: ``"wbf"`` (needs the ``ensemble`` extra) or ``"nms"``.
        fusion_iou / conf_type: WBF's cluster IoU and score rule (`edgedet.fusion.fuse`).
        batch / why_sequential: as `edgedet.views.MultiViewDetector`.
    """

    kind = "tta"

    def __init__(
        self,
        detector: Any,
        *,
        flip: bool = True,
        scales: Sequence[float] = (1.0,),
        merge: str = "wbf",
        fusion_iou: float = 0.55,
        conf_type: str = "avg",
        batch: bool | None = None,
        why_sequential: str | None = None,
    ):
        _check_merge(merge)
        scales = tuple(float(s) for s in scales)
        if not scales or any(not 0.0 < s <= 1.0 or math.isnan(s) for s in scales):
            raise InvalidInputError(
                f"TTA scales must be in (0, 1] (a fixed-size model cannot be shown the image "
                f"larger: use tiles for that), got {scales}"
            )
        if not flip and len(set(scales)) == 1 and scales[0] == 1.0:
            raise InvalidInputError("TTA with flip=False and scales=(1.0,) adds no view")
        self.flip = bool(flip)
        self.scales = tuple(dict.fromkeys(scales))
        self.merge_method = merge
        self.fusion_iou = float(fusion_iou)
        self.conf_type = conf_type
        super().__init__(detector, batch=batch, why_sequential=why_sequential)

    def views(self, image_hw: tuple[int, int]) -> list[View]:
        h, w = int(image_hw[0]), int(image_hw[1])
        out = []
        for s in self.scales:
            canvas = None if s == 1.0 else (math.ceil(h / s), math.ceil(w / s))
            for flip in (False, True) if self.flip else (False,):
                name = f"scale {s:g}" + (" flip" if flip else "")
                out.append(View((0, 0, w, h), (h, w), flip=flip, canvas_hw=canvas, name=name))
        return out

    def merge(
        self, per_view: list[Detections], views: list[View], image_hw: tuple[int, int]
    ) -> Detections:
        return _merge(
            per_view, image_hw, self.detector, self.merge_method, self.fusion_iou, self.conf_type
        )

    def settings(self) -> dict[str, Any]:
        return {
            "flip": self.flip,
            "scales": list(self.scales),
            "views": len(self.scales) * (2 if self.flip else 1),
            "merge": self.merge_method,
            "fusion_iou": self.fusion_iou if self.merge_method == "wbf" else None,
            "conf_type": self.conf_type if self.merge_method == "wbf" else None,
            "batched": self.batched,
        }


@dataclass
class _EnsembleMeta:
    metas: list[Any]
    image_hw: list[tuple[int, int]]


class Ensemble(WrappedDetector):
    """Several detectors on the same images, their detections fused (module docstring).

    Args:
        members: two or more `edgedet.Detector` (any runtimes and families) or wrappers, with
            the same class names in the same order.
        weights: one weight per member for WBF (default equal).
        merge / fusion_iou / conf_type: as `TTADetector`.
    """

    kind = "ensemble"

    def __init__(
        self,
        members: Sequence[Any],
        *,
        weights: Sequence[float] | None = None,
        merge: str = "wbf",
        fusion_iou: float = 0.55,
        conf_type: str = "avg",
    ):
        if len(members) < 2:
            raise InvalidInputError(f"an ensemble needs two or more detectors, got {len(members)}")
        _check_merge(merge)
        names = [tuple(n.lower() for n in m.class_names) for m in members]
        for i, n in enumerate(names[1:], 1):
            if n != names[0]:
                raise InvalidInputError(
                    f"ensemble member {i} has class names {list(members[i].class_names)[:6]}... "
                    f"({len(n)}), member 0 has {list(members[0].class_names)[:6]}... "
                    f"({len(names[0])}); members must predict the same classes in the same order "
                    "(pass names=... to load)"
                )
        if weights is not None and (
            len(weights) != len(members) or any(not float(w) > 0 for w in weights)
        ):
            raise InvalidInputError(
                f"weights must be {len(members)} positive numbers (one per member), got "
                f"{list(weights)}"
            )
        super().__init__(members)
        self.weights = None if weights is None else [float(w) for w in weights]
        self.merge_method = merge
        self.fusion_iou = float(fusion_iou)
        self.conf_type = conf_type

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[list[Any], _EnsembleMeta]:
        """Each member's own preprocess of the images (its feeds, its metas)."""
        from .preprocess import as_bgr_image

        if isinstance(images, np.ndarray) and images.ndim == 4:
            images = list(images)
        if len(images) == 0:
            raise InvalidInputError("no images to preprocess")
        bgr = [as_bgr_image(im) for im in images]
        fixed = [getattr(m, "fixed_batch", None) for m in self.members]
        if any(isinstance(f, int) and f != len(bgr) for f in fixed):
            raise InvalidInputError(
                f"ensemble members take fixed batches {fixed}; preprocess {len(bgr)} image(s) "
                "per call only where every member takes that many (predict_batch does so)"
            )
        done = [m.preprocess(bgr) for m in self.members]
        hws = [(int(b.shape[0]), int(b.shape[1])) for b in bgr]
        return [f for f, _ in done], _EnsembleMeta([m for _, m in done], hws)

    def predict_batch(
        self, images: Sequence[np.ndarray], batch_size: int | None = None
    ) -> list[Detections]:
        """As `WrappedDetector.predict_batch`; one image per call when a member has a fixed batch."""
        fixed = any(isinstance(getattr(m, "fixed_batch", None), int) for m in self.members)
        return super().predict_batch(images, 1 if fixed else batch_size)

    def infer(self, feeds: list[Any]) -> list[Any]:
        """Each member's runtime call(s), one member after the other."""
        return [m.infer(f) for m, f in zip(self.members, feeds)]

    def postprocess(self, outputs: list[Any], metas: _EnsembleMeta) -> list[Detections]:
        per_member = [m.postprocess(o, mt) for m, o, mt in zip(self.members, outputs, metas.metas)]
        return [
            _merge(
                [dets[i] for dets in per_member],
                hw,
                self.detector,
                self.merge_method,
                self.fusion_iou,
                self.conf_type,
                self.weights,
            )
            for i, hw in enumerate(metas.image_hw)
        ]

    def settings(self) -> dict[str, Any]:
        return {
            "members": [
                {"runtime": m.runtime_name, "family": m.meta.family, "input": list(m.input_hw)}
                for m in self.members
            ],
            "weights": self.weights,
            "merge": self.merge_method,
            "fusion_iou": self.fusion_iou if self.merge_method == "wbf" else None,
            "conf_type": self.conf_type if self.merge_method == "wbf" else None,
        }
