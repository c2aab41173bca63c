"""`Detections`: validation messages, indexing, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from edgedet.detections import Detections
from edgedet.errors import InvalidInputError


def make(n: int = 4) -> Detections:
    xyxy = np.array([[10 * i, 5 * i, 10 * i + 4, 5 * i + 2] for i in range(n)], np.float64)
    scores = np.linspace(0.9, 0.6, n)
    class_ids = np.arange(n) % 3
    return Detections(xyxy, scores, class_ids)


def test_dtypes_are_normalised() -> None:
    d = make()
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (4, 4)
    assert d.scores.dtype == np.float32 and d.scores.shape == (4,)
    assert d.class_ids.dtype == np.int32 and d.class_ids.tolist() == [0, 1, 2, 0]
    assert len(d) == 4
    assert repr(d) == "Detections(n=4)"
    # whole floats are accepted as class ids
    assert Detections([[0, 0, 1, 1]], [0.5], [2.0]).class_ids.tolist() == [2]  # type: ignore[arg-type]


def test_empty() -> None:
    e = Detections.empty()
    assert len(e) == 0
    assert e.xyxy.shape == (0, 4) and e.scores.shape == (0,) and e.class_ids.shape == (0,)
    assert e.xyxy.dtype == np.float32 and e.class_ids.dtype == np.int32
    assert e.xywh.shape == (0, 4) and e.area.shape == (0,)
    assert list(e) == []
    # plain empty lists are fine too
    assert len(Detections([], [], [])) == 0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("xyxy", "scores", "class_ids", "match"),
    [
        (
            np.zeros((3, 5)),
            np.zeros(3),
            np.zeros(3),
            r"xyxy must have shape \(N, 4\), got \(3, 5\)",
        ),
        (np.zeros(4), np.zeros(1), np.zeros(1), r"xyxy must have shape \(N, 4\), got \(4,\)"),
        (np.zeros((2, 4, 1)), np.zeros(2), np.zeros(2), r"xyxy must have shape \(N, 4\)"),
        (
            np.zeros((0, 3)),
            np.zeros(0),
            np.zeros(0),
            r"xyxy must have shape \(N, 4\), got \(0, 3\)",
        ),
        (
            np.zeros((3, 4)),
            np.zeros(2),
            np.zeros(3),
            r"scores must have shape \(3,\) .* got \(2,\)",
        ),
        (np.zeros((3, 4)), np.zeros((3, 1)), np.zeros(3), r"scores must have shape \(3,\)"),
        (np.zeros((3, 4)), np.zeros(3), np.zeros(4), r"class_ids must have shape \(3,\) .* \(4,\)"),
        (np.zeros((1, 4)), np.zeros(1), np.array([1.5]), r"class_ids must be whole numbers"),
        (np.zeros((1, 4)), np.zeros(1), np.array([np.nan]), r"class_ids must be whole numbers"),
        (np.zeros((1, 4)), np.zeros(1), np.array(["car"]), r"class_ids must be integers"),
    ],
)
def test_validation_messages(
    xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        Detections(xyxy, scores, class_ids)


def test_index_by_int() -> None:
    d = make()
    one = d[1]
    assert isinstance(one, Detections) and len(one) == 1
    np.testing.assert_array_equal(one.xyxy, d.xyxy[1:2])
    assert one.class_ids.tolist() == [1]
    assert d[-1].class_ids.tolist() == [0] and d[-1].scores[0] == pytest.approx(0.6)
    assert d[np.int64(2)].class_ids.tolist() == [2]


@pytest.mark.parametrize("index", [4, -5, 100])
def test_index_out_of_range(index: int) -> None:
    with pytest.raises(IndexError, match=rf"detection index {index} out of range for 4 detections"):
        make()[index]


def test_index_by_slice_mask_and_array() -> None:
    d = make()
    s = d[1:3]
    assert len(s) == 2 and s.class_ids.tolist() == [1, 2]
    m = d[d.scores > 0.75]
    assert len(m) == 2 and m.scores.tolist() == pytest.approx([0.9, 0.8])
    a = d[np.array([3, 0])]
    assert a.class_ids.tolist() == [0, 0]
    np.testing.assert_array_equal(a.xyxy, d.xyxy[[3, 0]])
    assert len(d[[2]]) == 1
    assert len(d[np.zeros(4, bool)]) == 0
    assert len(d[::-1]) == 4 and d[::-1].scores[0] == pytest.approx(0.6)


def test_iteration_gives_single_detections() -> None:
    d = make(3)
    parts = list(d)
    assert [len(p) for p in parts] == [1, 1, 1]
    assert [int(p.class_ids[0]) for p in parts] == [0, 1, 2]


def test_concatenate() -> None:
    d = make()
    both = Detections.concatenate([d[:2], d[2:]])
    np.testing.assert_array_equal(both.xyxy, d.xyxy)
    np.testing.assert_array_equal(both.scores, d.scores)
    np.testing.assert_array_equal(both.class_ids, d.class_ids)
    assert len(Detections.concatenate([])) == 0
    assert len(Detections.concatenate([Detections.empty(), d])) == 4


def test_xywh_and_area() -> None:
    d = Detections(
        np.array([[10, 20, 40, 60], [5, 5, 5, 9]]), np.array([0.5, 0.4]), np.array([0, 1])
    )
    np.testing.assert_array_equal(d.xywh, [[10, 20, 30, 40], [5, 5, 0, 4]])
    assert d.xywh.dtype == np.float32
    np.testing.assert_array_equal(d.area, [1200, 0])
    np.testing.assert_array_equal(d.xyxy, [[10, 20, 40, 60], [5, 5, 5, 9]])  # untouched


def test_filter_classes() -> None:
    d = make(6)  # classes 0 1 2 0 1 2
    assert d.filter_classes([0]).class_ids.tolist() == [0, 0]
    assert d.filter_classes(np.array([1, 2])).class_ids.tolist() == [1, 2, 1, 2]
    assert len(d.filter_classes([7])) == 0
    assert len(d.filter_classes([])) == 0


def test_frozen() -> None:
    d = make()
    with pytest.raises(AttributeError):
        d.scores = np.zeros(4)  # type: ignore[misc]
