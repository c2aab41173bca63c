"""Box conversions, IoU and NMS variants, in numpy.

Boxes are float arrays of shape (N, 4). ``xyxy`` is (x1, y1, x2, y2) with x1 <= x2 and
y1 <= y2; ``xywh`` is (x1, y1, w, h) (COCO); ``cxcywh`` is (cx, cy, w, h) (YOLO). Areas use
continuous coordinates (w * h, no "+1"), as torchvision and COCO do.

Greedy NMS with plain IoU runs in OpenCV (``cv2.dnn.NMSBoxes``, C++, about twice as fast as
the best numpy we wrote, which matters because post-processing must stay a small fraction of
inference). Class-aware batching is done here by coordinate offsets, the same for every path.
DIoU-NMS and Soft-NMS, which OpenCV does not have, are numpy: each step is one vectorised overlap
of the kept box against all remaining candidates (or one overlap matrix up to
``MATRIX_NMS_MAX`` candidates). `nms(..., backend="numpy")` runs the numpy path for plain IoU
too; the tests hold both to the same loop-based reference.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np

from .errors import InvalidInputError

NmsMethod = Literal["class_aware", "agnostic", "soft_linear", "soft_gaussian", "diou", "none"]
NMS_METHODS: tuple[str, ...] = (
    "class_aware",
    "agnostic",
    "soft_linear",
    "soft_gaussian",
    "diou",
    "none",
)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, w, h) -> (x1, y1, x2, y2). Shape (N, 4) kept; dtype kept."""
    out = np.array(boxes, copy=True)
    out[..., 2:] += out[..., :2]
    return out


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (x1, y1, w, h)."""
    out = np.array(boxes, copy=True)
    out[..., 2:] -= out[..., :2]
    return out


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    boxes = np.asarray(boxes)
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    boxes = np.asarray(boxes)
    wh = boxes[..., 2:4] - boxes[..., :2]
    return np.concatenate([boxes[..., :2] + wh / 2, wh], axis=-1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) xyxy boxes; degenerate boxes have area 0."""
    wh = np.clip(boxes[..., 2:4] - boxes[..., :2], 0, None)
    return wh[..., 0] * wh[..., 1]


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    return wh[..., 0] * wh[..., 1]  # type: ignore[no-any-return]


def box_iou(a: np.ndarray, b: np.ndarray, *, dtype: Any = np.float32) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (N, 4) and b (M, 4) -> (N, M) in [0, 1], computed and
    returned in ``dtype`` (float32 by default; the mAP matching uses float64). Degenerate boxes
    have area 0; a pair with no union has IoU 0."""
    a = np.asarray(a, dtype)
    b = np.asarray(b, dtype)
    inter = _intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(dtype)


def box_ioa(det: np.ndarray, region: np.ndarray, *, dtype: Any = np.float32) -> np.ndarray:
    """Intersection over the area of each box of ``det`` (N, 4) with each ``region`` (M, 4),
    xyxy -> (N, M) in [0, 1] (COCO's overlap of a detection with a crowd region); 0 where the
    detection has no area."""
    det = np.asarray(det, dtype)
    region = np.asarray(region, dtype)
    area = box_area(det)[:, None]
    return np.where(area > 0, _intersection(det, region) / np.maximum(area, 1e-12), 0.0).astype(
        dtype
    )


def _iou_one(box: np.ndarray, others: np.ndarray, areas: np.ndarray, area: float) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def _overlap_matrix(boxes: np.ndarray, areas: np.ndarray, diou: bool) -> np.ndarray:
    """(N, N) IoU (or DIoU) of float64 boxes with themselves: the element-wise arithmetic of
    `_iou_one` / `_diou_one`, broadcast, so both paths give bit-identical values."""
    a, b = boxes[:, None, :], boxes[None, :, :]
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 2], b[..., 2])
    y2 = np.minimum(a[..., 3], b[..., 3])
    inter = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    union = areas[:, None] + areas[None, :] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    if not diou:
        return iou
    cx, cy = (a[..., 0] + a[..., 2]) / 2, (a[..., 1] + a[..., 3]) / 2
    ocx, ocy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    ex1 = np.minimum(a[..., 0], b[..., 0])
    ey1 = np.minimum(a[..., 1], b[..., 1])
    ex2 = np.maximum(a[..., 2], b[..., 2])
    ey2 = np.maximum(a[..., 3], b[..., 3])
    diag = (ex2 - ex1) ** 2 + (ey2 - ey1) ** 2
    dist = (cx - ocx) ** 2 + (cy - ocy) ** 2
    return iou - np.where(diag > 0, dist / np.maximum(diag, 1e-12), 0.0)


#: Up to this many candidates, NMS computes the whole overlap matrix at once (8 MB at 1024):
#: one vectorised pass instead of one numpy call per kept box, which dominates at deployment
#: thresholds (tens to hundreds of candidates).
MATRIX_NMS_MAX = 1024


def _diou_one(box: np.ndarray, others: np.ndarray, areas: np.ndarray, area: float) -> np.ndarray:
    """IoU minus the squared centre distance over the squared diagonal of the enclosing box."""
    iou = _iou_one(box, others, areas, area)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ocx, ocy = (others[:, 0] + others[:, 2]) / 2, (others[:, 1] + others[:, 3]) / 2
    ex1 = np.minimum(box[0], others[:, 0])
    ey1 = np.minimum(box[1], others[:, 1])
    ex2 = np.maximum(box[2], others[:, 2])
    ey2 = np.maximum(box[3], others[:, 3])
    diag = (ex2 - ex1) ** 2 + (ey2 - ey1) ** 2
    dist = (cx - ocx) ** 2 + (cy - ocy) ** 2
    return iou - np.where(diag > 0, dist / np.maximum(diag, 1e-12), 0.0)


def _offset_by_class(xyxy: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Shift boxes of different classes apart so one agnostic NMS never compares them."""
    if xyxy.shape[0] == 0:
        return xyxy
    span = float(np.max(np.abs(xyxy))) * 2 + 1.0
    return xyxy + (class_ids.astype(np.float64) * span)[:, None].astype(xyxy.dtype)


def _checked(
    xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray | None, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate NMS inputs: xyxy (N, 4), scores (N,), class_ids (N,) or None."""
    xyxy = np.asarray(xyxy)
    if xyxy.size == 0 and xyxy.ndim <= 2:
        xyxy = xyxy.reshape(0, 4)
    if xyxy.ndim != 2 or xyxy.shape[1] != 4:
        raise InvalidInputError(f"{what}: xyxy must have shape (N, 4), got {xyxy.shape}")
    n = xyxy.shape[0]
    scores = np.asarray(scores)
    if scores.shape != (n,):
        raise InvalidInputError(
            f"{what}: scores must have shape ({n},) to match xyxy {xyxy.shape}, got {scores.shape}"
        )
    if class_ids is not None:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != (n,):
            raise InvalidInputError(
                f"{what}: class_ids must have shape ({n},) to match xyxy {xyxy.shape}, "
                f"got {class_ids.shape}"
            )
    return xyxy, scores, class_ids


def _greedy(
    xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int, diou: bool
) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    boxes = xyxy[order].astype(np.float64)
    areas = box_area(boxes)
    keep: list[int] = []
    n = boxes.shape[0]
    if n <= MATRIX_NMS_MAX:
        over = _overlap_matrix(boxes, areas, diou) > iou_threshold
        suppressed = np.zeros(n, bool)
        for i in range(n):
            if suppressed[i]:
                continue
            keep.append(int(order[i]))
            if len(keep) >= max_det:
                break
            suppressed |= over[i]
        return np.asarray(keep, dtype=np.int64)
    alive = np.arange(n)
    overlap = _diou_one if diou else _iou_one
    while alive.size and len(keep) < max_det:
        i = alive[0]
        keep.append(int(order[i]))
        rest = alive[1:]
        if rest.size == 0:
            break
        ious = overlap(boxes[i], boxes[rest], areas[rest], float(areas[i]))
        alive = rest[ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _opencv_greedy(
    xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_det: int
) -> np.ndarray | None:
    """Greedy IoU NMS by ``cv2.dnn.NMSBoxes`` on float64 (x, y, w, h) boxes, or None when
    OpenCV's definition would differ from ours (a zero-area box: OpenCV calls two empty boxes
    identical, IoU 1; we call it 0).

    Same rule as `_greedy`: candidates by score, stable, a box dropped when its IoU with a kept
    one is > threshold. OpenCV rounds each IoU to float32 before comparing, so a pair within
    ~1e-7 of the threshold can fall the other way; nothing else differs.
    """
    xywh = xyxy.astype(np.float64)
    xywh[:, 2:] = xywh[:, 2:] - xywh[:, :2]
    if not (xywh[:, 2:] > 0).all():
        return None
    # OpenCV wants scores >= 0 and keeps those strictly above its threshold; its top_k caps the
    # *candidates*, not the kept boxes. So feed it ranks (n for the best, stable on ties, exact
    # in float32 up to 2**24) with threshold 0 and no top_k, and cut to max_det after.
    n = scores.shape[0]
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(n, np.float32)
    ranks[order] = np.arange(n, 0, -1, dtype=np.float32)
    # The stubs say Sequence; the binding takes (N, 4) float64 and (N,) float32 arrays as they are.
    keep = cv2.dnn.NMSBoxes(xywh, ranks, 0.0, float(iou_threshold))  # type: ignore[arg-type]
    return np.asarray(keep, dtype=np.int64).reshape(-1)[:max_det]


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    *,
    max_det: int = 300,
    diou: bool = False,
    backend: Literal["opencv", "numpy"] = "opencv",
) -> np.ndarray:
    """Greedy NMS. Returns indices of kept boxes, best score first.

    A box is suppressed when its IoU (or DIoU with ``diou=True``) with a higher-scoring kept box
    is *greater than* ``iou_threshold``. With ``class_ids``, only boxes of the same class
    suppress each other (class-aware, batched by coordinate offsets); without, all do.
    Ties in score keep the earlier index. Plain IoU runs in OpenCV unless ``backend="numpy"``;
    DIoU always runs in numpy.
    """
    if backend not in ("opencv", "numpy"):
        raise InvalidInputError(f"nms: backend must be 'opencv' or 'numpy', got {backend!r}")
    xyxy, scores, class_ids = _checked(xyxy, scores, class_ids, "nms")
    xyxy = xyxy.astype(np.float32)
    scores = scores.astype(np.float32)
    if xyxy.shape[0] == 0 or max_det <= 0:
        return np.zeros(0, np.int64)
    if not np.isfinite(scores).all():
        raise InvalidInputError("nms: scores contain NaN or inf")
    if class_ids is not None:
        xyxy = _offset_by_class(xyxy.astype(np.float64), class_ids)
    if backend == "opencv" and not diou and xyxy.shape[0] < 2**24:
        kept = _opencv_greedy(xyxy, scores, iou_threshold, max_det)
        if kept is not None:
            return kept
    return _greedy(xyxy, scores, iou_threshold, max_det, diou)


def soft_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    *,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    method: Literal["linear", "gaussian"] = "gaussian",
    score_threshold: float = 0.001,
    class_ids: np.ndarray | None = None,
    max_det: int = 300,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft-NMS (Bodla et al. 2017): decay overlapping scores instead of removing boxes.

    ``linear``: s *= 1 - IoU where IoU > iou_threshold. ``gaussian``: s *= exp(-IoU² / sigma).
    Boxes whose decayed score falls below ``score_threshold`` are dropped.
    Returns ``(indices, new_scores)`` of kept boxes, best first.
    """
    if method not in ("linear", "gaussian"):
        raise InvalidInputError(f"soft_nms: method must be 'linear' or 'gaussian', got {method!r}")
    if method == "gaussian" and not sigma > 0:
        raise InvalidInputError(f"soft_nms: sigma must be > 0 for the gaussian method, got {sigma}")
    xyxy, scores, class_ids = _checked(xyxy, scores, class_ids, "soft_nms")
    xyxy = xyxy.astype(np.float32)
    work = scores.astype(np.float64, copy=True)
    n = xyxy.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    boxes = xyxy.astype(np.float64)
    if class_ids is not None:
        boxes = _offset_by_class(boxes, class_ids)
    areas = box_area(boxes)
    alive = np.nonzero(work >= score_threshold)[0]
    keep: list[int] = []
    kept_scores: list[float] = []
    while alive.size and len(keep) < max_det:
        best = alive[np.argmax(work[alive])]
        keep.append(int(best))
        kept_scores.append(float(work[best]))
        alive = alive[alive != best]
        if alive.size == 0:
            break
        ious = _iou_one(boxes[best], boxes[alive], areas[alive], float(areas[best]))
        if method == "linear":
            decay = np.where(ious > iou_threshold, 1.0 - ious, 1.0)
        else:
            decay = np.exp(-(ious * ious) / sigma)
        work[alive] *= decay
        alive = alive[work[alive] >= score_threshold]
    return np.asarray(keep, np.int64), np.asarray(kept_scores, np.float32)


def clip_boxes(xyxy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip xyxy boxes in place to the image [0, width] × [0, height]; returns them."""
    np.clip(xyxy[:, 0::2], 0, width, out=xyxy[:, 0::2])
    np.clip(xyxy[:, 1::2], 0, height, out=xyxy[:, 1::2])
    return xyxy
