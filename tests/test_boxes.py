"""Box conversions, IoU and the NMS variants, checked against plain loop-based references.

The references below are written to be obviously correct rather than fast: lists, loops and the
textbook definitions. Every NMS variant of `edgedet.boxes` must agree with them exactly (same
indices, same order) on hand-built edge cases and on thousands of random candidates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.boxes import (
    NMS_METHODS,
    box_area,
    box_iou,
    clip_boxes,
    cxcywh_to_xyxy,
    nms,
    soft_nms,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)
from edgedet.errors import InvalidInputError

# -- plain references ------------------------------------------------------------------------

Box = tuple[float, ...]


def ref_area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def ref_iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = ref_area(a) + ref_area(b) - inter
    return inter / union if union > 0 else 0.0


def ref_diou(a: Box, b: Box) -> float:
    """IoU minus (centre distance)² / (diagonal of the smallest enclosing box)²."""
    acx, acy = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bcx, bcy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    diag = cw * cw + ch * ch
    dist = (acx - bcx) ** 2 + (acy - bcy) ** 2
    return ref_iou(a, b) - (dist / diag if diag > 0 else 0.0)


def _as_lists(xyxy: np.ndarray, scores: np.ndarray) -> tuple[list[Box], list[float]]:
    # The implementation works on float32 inputs; compare on exactly those values.
    boxes = [tuple(float(v) for v in row) for row in np.asarray(xyxy, np.float32)]
    return boxes, [float(s) for s in np.asarray(scores, np.float32)]


def ref_overlap_row(box: Box, boxes: np.ndarray, diou: bool = False) -> np.ndarray:
    """The same textbook formulas as `ref_iou` / `ref_diou`, for one box against (N, 4) float64
    boxes at once (the scalar versions are too slow for thousands of candidates; a test below
    checks the two agree)."""
    x1, y1, x2, y2 = box
    iw = np.maximum(0.0, np.minimum(x2, boxes[:, 2]) - np.maximum(x1, boxes[:, 0]))
    ih = np.maximum(0.0, np.minimum(y2, boxes[:, 3]) - np.maximum(y1, boxes[:, 1]))
    inter = iw * ih
    areas = np.maximum(0.0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0.0, boxes[:, 3] - boxes[:, 1])
    union = ref_area(box) + areas - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    if not diou:
        return iou
    cw = np.maximum(x2, boxes[:, 2]) - np.minimum(x1, boxes[:, 0])
    ch = np.maximum(y2, boxes[:, 3]) - np.minimum(y1, boxes[:, 1])
    diag = cw * cw + ch * ch
    dist = ((x1 + x2) / 2 - (boxes[:, 0] + boxes[:, 2]) / 2) ** 2 + (
        (y1 + y2) / 2 - (boxes[:, 1] + boxes[:, 3]) / 2
    ) ** 2
    return iou - np.divide(dist, diag, out=np.zeros_like(dist), where=diag > 0)


def ref_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    thr: float,
    class_ids: np.ndarray | None = None,
    max_det: int = 10**9,
    diou: bool = False,
) -> list[int]:
    """Greedy NMS: visit boxes best score first (ties: lower index first); keep a box unless an
    already kept box of the same class (any class when ``class_ids`` is None) overlaps it by
    more than ``thr``; when kept, mark everything it overlaps by more than ``thr`` suppressed."""
    boxes64 = np.asarray(xyxy, np.float32).astype(np.float64)
    s = [float(v) for v in np.asarray(scores, np.float32)]
    n = len(s)
    cls = np.zeros(n, np.int64) if class_ids is None else np.asarray(class_ids, np.int64)
    order = sorted(range(n), key=lambda i: (-s[i], i))
    suppressed = np.zeros(n, bool)
    keep: list[int] = []
    for i in order:
        if len(keep) >= max_det:
            break
        if suppressed[i]:
            continue
        keep.append(i)
        row = ref_overlap_row(tuple(boxes64[i].tolist()), boxes64, diou)
        suppressed |= (row > thr) & (cls == cls[i])
    return keep


def ref_soft_nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    thr: float,
    sigma: float,
    method: str,
    score_threshold: float,
    class_ids: np.ndarray | None = None,
    max_det: int = 10**9,
) -> tuple[list[int], list[float]]:
    """Soft-NMS (Bodla et al. 2017), one box at a time."""
    boxes, s = _as_lists(xyxy, scores)
    cls = None if class_ids is None else [int(c) for c in class_ids]
    alive = [i for i in range(len(boxes)) if s[i] >= score_threshold]
    keep: list[int] = []
    kept: list[float] = []
    while alive and len(keep) < max_det:
        best = max(alive, key=lambda i: (s[i], -i))
        keep.append(best)
        kept.append(s[best])
        alive.remove(best)
        for j in alive:
            if cls is not None and cls[j] != cls[best]:
                continue
            iou = ref_iou(boxes[best], boxes[j])
            if method == "linear":
                if iou > thr:
                    s[j] *= 1.0 - iou
            else:
                s[j] *= math.exp(-(iou * iou) / sigma)
        alive = [j for j in alive if s[j] >= score_threshold]
    return keep, kept


def random_boxes(
    rng: np.random.Generator,
    n: int,
    size: float = 640.0,
    min_wh: float = 2.0,
    max_wh: float = 120.0,
) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(min_wh, max_wh, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def pair_at_iou(iou: float, eps: float = 0.0) -> np.ndarray:
    """Two 30×10 boxes side by side whose IoU is ``iou`` (moved by ``eps`` pixels: eps > 0
    separates them, so the IoU drops just below; eps < 0 pushes it just above)."""
    dx = 30.0 * (1.0 - iou) / (1.0 + iou) + eps
    return np.array([[0.0, 0.0, 30.0, 10.0], [dx, 0.0, 30.0 + dx, 10.0]], np.float32)


# -- conversions -----------------------------------------------------------------------------

coord = st.floats(-5000, 5000, allow_nan=False, allow_infinity=False)
extent = st.floats(0, 5000, allow_nan=False, allow_infinity=False)
box_rows = st.lists(st.tuples(coord, coord, extent, extent), min_size=0, max_size=20)


def _xyxy_from(rows: list[tuple[float, float, float, float]]) -> np.ndarray:
    arr = np.array(rows, np.float64).reshape(-1, 4)
    arr[:, 2:] += arr[:, :2]
    return arr


@settings(max_examples=60, deadline=None)
@given(box_rows)
def test_conversions_round_trip(rows: list[tuple[float, float, float, float]]) -> None:
    xyxy = _xyxy_from(rows)
    atol = 1e-9 * 1e4
    np.testing.assert_allclose(xywh_to_xyxy(xyxy_to_xywh(xyxy)), xyxy, atol=atol)
    np.testing.assert_allclose(cxcywh_to_xyxy(xyxy_to_cxcywh(xyxy)), xyxy, atol=atol)
    # the three formats describe the same box
    xywh = xyxy_to_xywh(xyxy)
    cxcywh = xyxy_to_cxcywh(xyxy)
    np.testing.assert_allclose(cxcywh[:, 2:], xywh[:, 2:], atol=atol)
    np.testing.assert_allclose(cxcywh[:, :2], xywh[:, :2] + xywh[:, 2:] / 2, atol=atol)
    np.testing.assert_allclose(
        cxcywh_to_xyxy(cxcywh), xywh_to_xyxy(xywh), atol=atol
    )  # cxcywh -> xyxy -> xywh chain
    assert xywh.shape == cxcywh.shape == xyxy.shape


def test_conversions_by_hand_and_no_mutation() -> None:
    xyxy = np.array([[10.0, 20.0, 40.0, 60.0]], np.float32)
    before = xyxy.copy()
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), [[10, 20, 30, 40]])
    np.testing.assert_array_equal(xyxy_to_cxcywh(xyxy), [[25, 40, 30, 40]])
    np.testing.assert_array_equal(cxcywh_to_xyxy(np.array([[25, 40, 30, 40]])), xyxy)
    np.testing.assert_array_equal(xywh_to_xyxy(np.array([[10, 20, 30, 40]])), xyxy)
    np.testing.assert_array_equal(xyxy, before)  # inputs are never modified
    assert xyxy_to_xywh(xyxy).dtype == np.float32
    assert xywh_to_xyxy(xyxy).dtype == np.float32


def test_box_area_degenerate_and_inverted() -> None:
    boxes = np.array([[0, 0, 10, 5], [3, 3, 3, 9], [5, 5, 1, 1]], np.float32)
    np.testing.assert_array_equal(box_area(boxes), [50.0, 0.0, 0.0])


# -- IoU -------------------------------------------------------------------------------------


def test_box_iou_matches_reference_on_random_boxes() -> None:
    rng = np.random.default_rng(0)
    a = random_boxes(rng, 40, size=100, min_wh=0.0, max_wh=60)
    b = random_boxes(rng, 30, size=100, min_wh=0.0, max_wh=60)
    got = box_iou(a, b)
    assert got.shape == (40, 30) and got.dtype == np.float32
    ref = np.array([[ref_iou(tuple(x), tuple(y)) for y in b.tolist()] for x in a.tolist()])
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1
    np.testing.assert_allclose(box_iou(b, a), got.T, atol=1e-7)  # symmetric


def test_box_iou_by_hand_and_degenerate() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array(
        [
            [0, 0, 10, 10],  # same: 1
            [5, 0, 15, 10],  # half overlap: 50 / 150
            [10, 0, 20, 10],  # touching edge: 0
            [20, 20, 30, 30],  # disjoint: 0
            [2, 2, 2, 8],  # zero width inside: 0
            [10, 10, 0, 0],  # inverted: 0
            [2, 2, 8, 8],  # contained: 36 / 100
        ],
        np.float32,
    )
    np.testing.assert_allclose(box_iou(a, b)[0], [1, 1 / 3, 0, 0, 0, 0, 0.36], atol=1e-6)
    point = np.array([[3, 3, 3, 3]], np.float32)
    assert box_iou(point, point)[0, 0] == 0.0  # zero union: 0, not NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 7)
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)


def test_reference_row_matches_scalar_reference() -> None:
    rng = np.random.default_rng(9)
    boxes = random_boxes(rng, 60, size=100, min_wh=0.0, max_wh=60).astype(np.float64)
    boxes[5] = boxes[7]  # identical pair
    boxes[8, 2:] = boxes[8, :2]  # a point
    for i in range(len(boxes)):
        a = tuple(boxes[i].tolist())
        np.testing.assert_allclose(
            ref_overlap_row(a, boxes),
            [ref_iou(a, tuple(b)) for b in boxes.tolist()],
            atol=1e-12,
        )
        np.testing.assert_allclose(
            ref_overlap_row(a, boxes, diou=True),
            [ref_diou(a, tuple(b)) for b in boxes.tolist()],
            atol=1e-12,
        )


# -- NMS: thresholds -------------------------------------------------------------------------


@pytest.mark.parametrize("thr", [0.1, 0.3, 0.45, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("class_aware", [False, True])
def test_nms_just_above_and_below_threshold(thr: float, class_aware: bool) -> None:
    scores = np.array([0.9, 0.8], np.float32)
    cls = np.zeros(2, np.int32) if class_aware else None
    above = pair_at_iou(thr, eps=-1e-3)
    below = pair_at_iou(thr, eps=+1e-3)
    assert ref_iou(*_as_lists(above, scores)[0]) > thr
    assert ref_iou(*_as_lists(below, scores)[0]) <= thr
    assert nms(above, scores, thr, cls).tolist() == [0]  # IoU > thr: suppressed
    assert nms(below, scores, thr, cls).tolist() == [0, 1]  # IoU <= thr: kept


@pytest.mark.parametrize("backend", ["opencv", "numpy"])
def test_nms_iou_exactly_at_threshold_is_kept(backend: str) -> None:
    # [0,0,30,10] and [10,0,40,10]: intersection 200, union 400, IoU exactly 0.5.
    boxes = np.array([[0, 0, 30, 10], [10, 0, 40, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert box_iou(boxes[:1], boxes[1:])[0, 0] == 0.5
    assert nms(boxes, scores, 0.5, backend=backend).tolist() == [0, 1]  # type: ignore[arg-type]
    # OpenCV compares in float32, so "just below 0.5" is the float32 neighbour there.
    below = (
        np.nextafter(np.float32(0.5), np.float32(0))
        if backend == "opencv"
        else np.nextafter(0.5, 0)
    )
    assert nms(boxes, scores, float(below), backend=backend).tolist() == [0]  # type: ignore[arg-type]


def test_nms_backends_agree_on_random_candidates() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 400))
        xy = rng.uniform(0, 600, (n, 2))
        wh = rng.uniform(1, 200, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        scores = rng.uniform(0, 1, n).astype(np.float32)
        cls = rng.integers(0, 5, n)
        thr = float(rng.uniform(0.2, 0.8))
        for c in (None, cls):
            a = nms(boxes, scores, thr, c, backend="opencv")
            b = nms(boxes, scores, thr, c, backend="numpy")
            assert a.tolist() == b.tolist()


def test_nms_rejects_unknown_backend_and_nan_scores() -> None:
    boxes = np.array([[0, 0, 1, 1]], np.float32)
    with pytest.raises(InvalidInputError, match="backend"):
        nms(boxes, np.array([0.5], np.float32), 0.5, backend="torch")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="NaN"):
        nms(boxes, np.array([np.nan], np.float32), 0.5)


def test_nms_torchvision_style_many_boxes_one_over_threshold() -> None:
    # Like torchvision's test: N boxes, the last one made to overlap the best one just past
    # the threshold; only that one is suppressed.
    rng = np.random.default_rng(1)
    thr = 0.5
    boxes = np.array([[100.0 * i, 0, 100.0 * i + 30, 10] for i in range(20)], np.float32)
    scores = rng.uniform(0.1, 0.8, 20).astype(np.float32)
    scores[0] = 0.95
    boxes[-1] = pair_at_iou(thr, eps=-1e-3)[1]
    kept = nms(boxes, scores, thr)
    assert 19 not in kept.tolist() and len(kept) == 19
    boxes[-1] = pair_at_iou(thr, eps=+1e-3)[1]
    assert len(nms(boxes, scores, thr)) == 20


# -- NMS: small cases ------------------------------------------------------------------------


def test_nms_empty_and_single() -> None:
    empty = nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5, np.zeros(0, np.int32)).shape == (0,)
    one = nms(np.array([[1, 2, 3, 4]], np.float32), np.array([0.3], np.float32), 0.5)
    assert one.tolist() == [0]
    assert nms(np.array([[1, 2, 3, 4]]), np.array([0.3]), 0.5, max_det=0).tolist() == []
    idx, sc = soft_nms(np.zeros((0, 4)), np.zeros(0))
    assert idx.shape == (0,) and sc.shape == (0,) and sc.dtype == np.float32
    idx, sc = soft_nms(np.array([[1, 2, 3, 4]]), np.array([0.3]))
    assert idx.tolist() == [0] and sc.tolist() == pytest.approx([0.3])


def test_nms_ties_keep_lower_index() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert nms(boxes[::-1].copy(), scores, 0.5).tolist() == [0, 1]
    idx, _ = soft_nms(boxes, scores, method="linear", iou_threshold=0.5)
    assert idx[0] == 0


def test_nms_sorts_best_first() -> None:
    boxes = np.array([[0, 0, 10, 10], [100, 0, 110, 10], [200, 0, 210, 10]], np.float32)
    scores = np.array([0.2, 0.9, 0.5], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 0]


def test_class_aware_never_suppresses_across_classes() -> None:
    box = [10.0, 10.0, 50.0, 50.0]
    boxes = np.array([box] * 6, np.float32)
    scores = np.linspace(0.9, 0.4, 6).astype(np.float32)
    cls = np.array([0, 1, 2, 0, 1, 2], np.int32)
    assert nms(boxes, scores, 0.5, cls).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.5).tolist() == [0]  # agnostic: one survivor
    assert nms(boxes, scores, 0.5, cls, diou=True).tolist() == [0, 1, 2]
    idx, _ = soft_nms(boxes, scores, class_ids=cls, method="linear", iou_threshold=0.5)
    # identical boxes: linear decay 1 - IoU = 0 kills same-class duplicates, never others
    assert idx.tolist() == [0, 1, 2]


def test_class_aware_with_negative_and_large_coordinates() -> None:
    # The class offset trick must separate classes whatever the coordinate range.
    boxes = np.array(
        [[-5000, -5000, -4000, -4000], [-5000, -5000, -4000, -4000], [4000, 4000, 5000, 5000]],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    cls = np.array([3, 7, 3], np.int32)
    assert nms(boxes, scores, 0.3, cls).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.3).tolist() == [0, 2]


def test_nms_max_det_cap() -> None:
    rng = np.random.default_rng(2)
    boxes = np.array([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(50)], np.float32)
    scores = rng.uniform(0, 1, 50).astype(np.float32)
    full = nms(boxes, scores, 0.5)
    assert len(full) == 50
    capped = nms(boxes, scores, 0.5, max_det=7)
    assert capped.tolist() == full[:7].tolist()
    idx, sc = soft_nms(boxes, scores, max_det=7, score_threshold=0.0)
    assert idx.tolist() == full[:7].tolist()
    np.testing.assert_allclose(sc, scores[full[:7]])


def test_nms_rejects_mismatched_lengths() -> None:
    boxes = np.zeros((3, 4), np.float32)
    with pytest.raises(InvalidInputError, match=r"scores must have shape \(3,\)"):
        nms(boxes, np.zeros(2, np.float32), 0.5)
    with pytest.raises(InvalidInputError, match=r"class_ids must have shape \(3,\)"):
        nms(boxes, np.zeros(3, np.float32), 0.5, np.zeros(4, np.int32))
    with pytest.raises(InvalidInputError, match=r"scores must have shape \(3,\)"):
        soft_nms(boxes, np.zeros(5, np.float32))
    with pytest.raises(InvalidInputError, match=r"class_ids must have shape \(3,\)"):
        soft_nms(boxes, np.zeros(3, np.float32), class_ids=np.zeros(1, np.int32))
    with pytest.raises(InvalidInputError, match=r"xyxy must have shape \(N, 4\)"):
        nms(np.zeros((3, 5), np.float32), np.zeros(3, np.float32), 0.5)


def test_soft_nms_rejects_unknown_method() -> None:
    with pytest.raises(InvalidInputError, match="method must be 'linear' or 'gaussian'"):
        soft_nms(np.zeros((1, 4)), np.ones(1), method="hard")  # type: ignore[arg-type]


@pytest.mark.parametrize("sigma", [0.0, -1.0, float("nan")])
def test_soft_nms_rejects_bad_sigma(sigma: float) -> None:
    # sigma 0 would divide 0 by 0 and give NaN scores
    with pytest.raises(InvalidInputError, match="sigma must be > 0 for the gaussian method"):
        soft_nms(np.zeros((2, 4)), np.ones(2), sigma=sigma)
    soft_nms(np.zeros((2, 4)), np.ones(2), sigma=sigma, method="linear")  # unused there


def test_nms_methods_listed() -> None:
    assert set(NMS_METHODS) == {
        "class_aware",
        "agnostic",
        "soft_linear",
        "soft_gaussian",
        "diou",
        "none",
    }


# -- NMS: random candidates against the reference --------------------------------------------


def _random_problem(seed: int, n: int, num_classes: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    boxes = random_boxes(rng, n, size=640, min_wh=4, max_wh=160)
    # a few exact duplicates and quantised scores so ties really happen
    boxes[n // 2 : n // 2 + 10] = boxes[:10]
    scores = np.round(rng.uniform(0, 1, n), 3).astype(np.float32)
    cls = rng.integers(0, num_classes, n).astype(np.int32)
    return boxes, scores, cls


@pytest.mark.parametrize(
    ("seed", "n", "num_classes", "thr"),
    [(0, 3000, 1, 0.5), (1, 3000, 80, 0.45), (2, 500, 3, 0.7), (3, 200, 5, 0.1)],
)
def test_nms_equals_reference_on_random_candidates(
    seed: int, n: int, num_classes: int, thr: float
) -> None:
    boxes, scores, cls = _random_problem(seed, n, num_classes)
    got_agnostic = nms(boxes, scores, thr, max_det=10**6)
    assert got_agnostic.tolist() == ref_nms(boxes, scores, thr)
    got_aware = nms(boxes, scores, thr, cls, max_det=10**6)
    assert got_aware.tolist() == ref_nms(boxes, scores, thr, cls)
    got_capped = nms(boxes, scores, thr, cls, max_det=300)
    assert got_capped.tolist() == ref_nms(boxes, scores, thr, cls, max_det=300)


@pytest.mark.parametrize(("seed", "n", "num_classes"), [(4, 1500, 1), (5, 1500, 20)])
def test_diou_nms_equals_reference(seed: int, n: int, num_classes: int) -> None:
    boxes, scores, cls = _random_problem(seed, n, num_classes)
    assert nms(boxes, scores, 0.5, max_det=10**6, diou=True).tolist() == ref_nms(
        boxes, scores, 0.5, diou=True
    )
    assert nms(boxes, scores, 0.5, cls, max_det=10**6, diou=True).tolist() == ref_nms(
        boxes, scores, 0.5, cls, diou=True
    )


def test_diou_keeps_overlapping_boxes_with_distant_centres() -> None:
    # Same IoU as a concentric pair, but centres far apart: DIoU keeps it, IoU does not.
    boxes = np.array([[0, 0, 100, 10], [40, 0, 140, 10]], np.float32)  # IoU 60/140 = 0.43
    scores = np.array([0.9, 0.8], np.float32)
    assert nms(boxes, scores, 0.4).tolist() == [0]
    assert ref_diou(*_as_lists(boxes, scores)[0]) < 0.4
    assert nms(boxes, scores, 0.4, diou=True).tolist() == [0, 1]


@pytest.mark.parametrize("method", ["linear", "gaussian"])
@pytest.mark.parametrize(("seed", "n", "num_classes"), [(6, 400, 1), (7, 400, 10)])
def test_soft_nms_equals_reference(method: str, seed: int, n: int, num_classes: int) -> None:
    boxes, scores, cls = _random_problem(seed, n, num_classes)
    kwargs = {"iou_threshold": 0.3, "sigma": 0.5, "score_threshold": 0.05}
    for class_ids in (None, cls):
        idx, sc = soft_nms(
            boxes,
            scores,
            method=method,  # type: ignore[arg-type]
            class_ids=class_ids,
            max_det=10**6,
            **kwargs,
        )
        ref_idx, ref_sc = ref_soft_nms(boxes, scores, 0.3, 0.5, method, 0.05, class_ids=class_ids)
        assert idx.tolist() == ref_idx
        np.testing.assert_allclose(sc, ref_sc, rtol=1e-6)
        assert sc.dtype == np.float32
        assert np.all(np.diff(sc) <= 1e-7)  # best first


def test_soft_nms_by_hand() -> None:
    # IoU exactly 0.5 between the two boxes.
    boxes = np.array([[0, 0, 30, 10], [10, 0, 40, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    idx, sc = soft_nms(boxes, scores, method="linear", iou_threshold=0.3)
    assert idx.tolist() == [0, 1]
    np.testing.assert_allclose(sc, [0.9, 0.8 * 0.5], rtol=1e-6)
    idx, sc = soft_nms(boxes, scores, method="linear", iou_threshold=0.5)  # not > thr: no decay
    np.testing.assert_allclose(sc, [0.9, 0.8], rtol=1e-6)
    idx, sc = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    np.testing.assert_allclose(sc, [0.9, 0.8 * math.exp(-0.25 / 0.5)], rtol=1e-6)
    # decayed below the score threshold: dropped
    idx, sc = soft_nms(boxes, scores, method="linear", iou_threshold=0.3, score_threshold=0.5)
    assert idx.tolist() == [0]
    # a box that starts below the threshold is never returned
    idx, _ = soft_nms(boxes, np.array([0.9, 0.0001], np.float32), score_threshold=0.001)
    assert idx.tolist() == [0]


def test_soft_nms_decay_can_reorder() -> None:
    # Box 1 overlaps the best heavily and decays below box 2, which overlaps nothing.
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [100, 0, 110, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.5], np.float32)
    idx, sc = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    assert idx.tolist() == [0, 2, 1]
    assert sc[2] < 0.5


# -- NMS: property test on an integer grid (exact ties and IoUs exactly at the threshold) ----

grid_box = st.tuples(
    st.integers(0, 12), st.integers(0, 12), st.integers(0, 8), st.integers(0, 8)
).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))
candidate = st.tuples(grid_box, st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.integers(0, 2))


@settings(max_examples=150, deadline=None)
@given(
    cands=st.lists(candidate, min_size=0, max_size=25),
    thr=st.sampled_from([0.0, 0.25, 1 / 3, 0.5, 0.6, 1.0]),
    max_det=st.integers(1, 30),
)
def test_nms_property_integer_grid(
    cands: list[tuple[tuple[int, int, int, int], float, int]], thr: float, max_det: int
) -> None:
    boxes = np.array([c[0] for c in cands], np.float32).reshape(-1, 4)
    scores = np.array([c[1] for c in cands], np.float32)
    cls = np.array([c[2] for c in cands], np.int32)
    for class_ids in (None, cls):
        for diou in (False, True):
            got = nms(boxes, scores, thr, class_ids, max_det=max_det, diou=diou).tolist()
            assert got == ref_nms(boxes, scores, thr, class_ids, max_det=max_det, diou=diou)
            assert len(got) == len(set(got)) <= max_det
        for method in ("linear", "gaussian"):
            idx, sc = soft_nms(
                boxes,
                scores,
                iou_threshold=thr,
                method=method,  # type: ignore[arg-type]
                class_ids=class_ids,
                max_det=max_det,
                score_threshold=0.05,
            )
            ref_idx, ref_sc = ref_soft_nms(
                boxes, scores, thr, 0.5, method, 0.05, class_ids=class_ids, max_det=max_det
            )
            assert idx.tolist() == ref_idx
            np.testing.assert_allclose(sc, ref_sc, rtol=1e-6)


# -- clip ------------------------------------------------------------------------------------


def test_clip_boxes_in_place() -> None:
    boxes = np.array([[-5, -3, 50, 70], [10, 10, 20, 20], [-10, -10, -1, -1]], np.float32)
    out = clip_boxes(boxes, height=40, width=30)
    assert out is boxes
    np.testing.assert_array_equal(boxes, [[0, 0, 30, 40], [10, 10, 20, 20], [0, 0, 0, 0]])


def test_box_iou_dtype_and_box_ioa() -> None:
    """The one IoU serves NMS-side float32 callers and the float64 mAP matching; IoA is the
    intersection over the first box's area (COCO's crowd overlap)."""
    from edgedet.boxes import box_ioa

    a = np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 9.0]])
    b = np.array([[5.0, 0.0, 15.0, 10.0]])
    assert box_iou(a, b).dtype == np.float32
    iou = box_iou(a, b, dtype=np.float64)
    assert iou.dtype == np.float64 and iou[0, 0] == 50.0 / 150.0 and iou[1, 0] == 0.0
    ioa = box_ioa(a, b, dtype=np.float64)
    assert ioa[0, 0] == 0.5 and ioa[1, 0] == 0.0  # a degenerate detection has no area
    assert box_ioa(b, a)[0, 0] == pytest.approx(0.5) and box_ioa(a[:0], b).shape == (0, 1)
