"""Tracking accuracy against ground truth with identities: MOTA, IDF1, id switches (motmetrics).

The one module that imports ``motmetrics`` (lazily; the ``bench`` extra). motmetrics does the
bookkeeping (CLEAR MOT and identity metrics, the per-frame matching with its switch rules);
edgedet only builds each frame's distance matrix, ``1 - IoU`` with pairs below ``iou`` IoU
forbidden, because ``motmetrics.distances.iou_matrix`` (1.4.0) calls ``np.asfarray``, which
NumPy 2 removed. HOTA is not reported: TrackEval and ``trackers.eval`` require the
``opencv-python`` wheel, which conflicts with the headless OpenCV edgedet installs.

Ignored ground truth (MOTChallenge ``conf`` 0: here objects less than half visible) follows
MOTChallenge's preprocessing: hypotheses matched (IoU >= ``iou``, one-to-one, Hungarian) to an
ignored object are removed before scoring, and the ignored objects themselves are not scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .boxes import box_iou
from .data.mot import MotBoxes
from .errors import InvalidInputError, missing_extra

#: Reported metrics: motmetrics name -> edgedet's key.
METRICS: dict[str, str] = {
    "mota": "mota",
    "idf1": "idf1",
    "num_switches": "id_switches",
    "num_fragmentations": "fragmentations",
    "motp": "motp_1_minus_iou",
    "precision": "precision",
    "recall": "recall",
    "num_false_positives": "false_positives",
    "num_misses": "misses",
    "mostly_tracked": "mostly_tracked",
    "mostly_lost": "mostly_lost",
    "num_unique_objects": "gt_objects",
    "num_frames": "frames",
}


def _motmetrics() -> Any:
    try:
        import motmetrics
    except ImportError as err:
        raise missing_extra("motmetrics", "bench", "tracking evaluation") from err
    return motmetrics


def _drop_matched_to_ignored(gt: MotBoxes, hyp: MotBoxes, iou: float) -> tuple[MotBoxes, MotBoxes]:
    """Scored ground truth, and the hypotheses not matched one-to-one to ignored ground truth."""
    ignored = gt.scores <= 0
    if not ignored.any() or len(hyp) == 0:
        return gt.select(~ignored), hyp
    from scipy.optimize import linear_sum_assignment

    ov = box_iou(gt.xyxy, hyp.xyxy)
    rows, cols = linear_sum_assignment(-np.where(ov >= iou, ov, 0.0))
    drop = np.zeros(len(hyp), bool)
    for r, c in zip(rows, cols):
        if ov[r, c] >= iou and ignored[r]:
            drop[c] = True
    return gt.select(~ignored), hyp.select(~drop)


def accumulate(
    gt: Mapping[int, MotBoxes], hyp: Mapping[int, MotBoxes], frames: int, iou: float = 0.5
) -> Any:
    """A ``motmetrics.MOTAccumulator`` filled frame by frame (frames 1..``frames``)."""
    if not 0.0 < iou <= 1.0:
        raise InvalidInputError(f"iou must be in (0, 1], got {iou}")
    mm = _motmetrics()
    acc = mm.MOTAccumulator(auto_id=False)
    empty = MotBoxes.empty()
    for frame in range(1, int(frames) + 1):
        g, h = _drop_matched_to_ignored(gt.get(frame, empty), hyp.get(frame, empty), iou)
        ov = box_iou(g.xyxy, h.xyxy) if len(g) and len(h) else np.zeros((len(g), len(h)))
        dist = np.where(ov >= iou, 1.0 - ov, np.nan)
        acc.update(g.ids.tolist(), h.ids.tolist(), dist, frameid=frame)
    return acc


def evaluate(
    sequences: Sequence[tuple[str, Mapping[int, MotBoxes], Mapping[int, MotBoxes], int]],
    iou: float = 0.5,
) -> dict[str, dict[str, float]]:
    """Metrics per sequence and ``"overall"`` for ``(name, gt, hyp, frames)`` tuples.

    Each result maps the `METRICS` keys to numbers: ``mota``, ``idf1``, ``precision`` and
    ``recall`` are fractions (MOTA may be negative), ``motp_1_minus_iou`` is the mean
    ``1 - IoU`` of matches, the rest are counts.
    """
    if not sequences:
        raise InvalidInputError("no sequences to evaluate")
    mm = _motmetrics()
    accs = [accumulate(gt, hyp, frames, iou) for _, gt, hyp, frames in sequences]
    names = [name for name, *_ in sequences]
    mh = mm.metrics.create()
    table = mh.compute_many(
        accs, metrics=list(METRICS), names=names, generate_overall=len(accs) > 1
    )
    out: dict[str, dict[str, float]] = {}
    for name, row in table.iterrows():
        key = "overall" if name == "OVERALL" else str(name)
        out[key] = {
            METRICS[m]: (float(row[m]) if "num" not in m and "mostly" not in m else int(row[m]))
            for m in METRICS
        }
    if len(accs) == 1:
        out["overall"] = dict(out[names[0]])
    return out
