"""Weighted box fusion of several sets of detections of one image (test-time augmentation views,
ensemble members, tiles), through the ``ensemble-boxes`` package (ZFTurbo's reference
implementation of WBF, Solovyev et al. 2021), imported here and nowhere else.

Where NMS keeps the best box of a cluster and drops the others, WBF averages the cluster's
coordinates weighted by score, and (``conf_type="avg"``) scales the score by how many of the
sources found the object: a box only one of four views saw keeps a quarter of its score.

Install: the ``ensemble`` extra (``pip install "edgedet[ensemble]"``, or from a checkout
``pip install -e ".[ensemble]"``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .detections import Detections
from .errors import InvalidInputError, missing_extra

#: ``conf_type`` values of ensemble-boxes' WBF that edgedet passes on.
CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")


def require_ensemble_boxes() -> Any:
    """The ``ensemble_boxes`` module, or `RuntimeUnavailableError` with the install command."""
    try:
        import ensemble_boxes
    except ImportError as err:
        raise missing_extra("ensemble-boxes", "ensemble", "weighted box fusion") from err
    return ensemble_boxes


def fuse(
    sources: Sequence[Detections],
    image_hw: tuple[int, int],
    *,
    iou_threshold: float = 0.55,
    weights: Sequence[float] | None = None,
    conf_type: str = "avg",
    skip_box_threshold: float = 0.0,
    max_detections: int = 300,
) -> Detections:
    """Fuse per-source detections of one image (original pixels) by WBF, class by class.

    Args:
        sources: one `Detections` per source (view, model), boxes in pixels of the image.
        image_hw: (h, w) of the image (ensemble-boxes works in coordinates normalised to 0-1).
        iou_threshold: boxes of one class overlapping a cluster's fused box by more join it.
        weights: one weight per source (default equal).
        conf_type: how the fused score is made (`CONF_TYPES`; "avg": mean score times the share
            of sources that found the box, "max": the highest score).
        skip_box_threshold: boxes scoring below it are ignored.
        max_detections: most boxes returned (highest scores).

    Returns `Detections` (float32 xyxy in image pixels, float32 scores, int32 class ids), sorted
    by score.
    """
    if conf_type not in CONF_TYPES:
        raise InvalidInputError(f"conf_type must be one of {CONF_TYPES}, got {conf_type!r}")
    if weights is not None and len(weights) != len(sources):
        raise InvalidInputError(
            f"{len(weights)} weights for {len(sources)} sources; give one weight per source"
        )
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise InvalidInputError(f"fusion iou_threshold must be in (0, 1], got {iou_threshold}")
    if not any(len(s) for s in sources):
        return Detections.empty()
    eb = require_ensemble_boxes()
    h, w = float(image_hw[0]), float(image_hw[1])
    scale = np.array([w, h, w, h], np.float32)
    boxes, scores, labels = [], [], []
    for s in sources:
        b = np.clip(s.xyxy / scale, 0.0, 1.0)
        ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # ensemble-boxes warns on empty boxes
        boxes.append(b[ok].astype(np.float64))
        scores.append(s.scores[ok].astype(np.float64))
        labels.append(s.class_ids[ok].astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its per-box notes on clipped coordinates
        fb, fs, fl = eb.weighted_boxes_fusion(
            boxes,
            scores,
            labels,
            weights=list(weights) if weights is not None else None,
            iou_thr=float(iou_threshold),
            skip_box_thr=float(skip_box_threshold),
            conf_type=conf_type,
        )
    if len(fb) == 0:
        return Detections.empty()
    order = np.argsort(-np.asarray(fs), kind="stable")[:max_detections]
    return Detections(
        (np.asarray(fb)[order] * scale).astype(np.float32),
        np.asarray(fs)[order].astype(np.float32),
        np.asarray(fl)[order].astype(np.int32),
    )
