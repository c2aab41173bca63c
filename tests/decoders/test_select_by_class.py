"""`select_scores_by_class` (class-first scores, YOLOv8's layout) selects what `select_scores`
selects on the transposed matrix."""

from __future__ import annotations

import numpy as np
import pytest

from edgedet.decoders.base import select_scores, select_scores_by_class


def _as_set(rows: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> set[tuple[int, int, float]]:
    return {(int(r), int(c), float(s)) for r, c, s in zip(rows, cls, conf)}


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("max_candidates", [30000, 7])
def test_same_selection_as_rows_first(multi_label: bool, max_candidates: int) -> None:
    rng = np.random.default_rng(1)
    scores = (rng.random((80, 500), dtype=np.float32) ** 6).astype(np.float32)
    scores[:, 10] = 0.9  # ties across classes: the first class wins in both
    got = select_scores_by_class(scores, 0.25, multi_label, max_candidates)
    want = select_scores(scores.T, 0.25, multi_label, max_candidates)
    assert _as_set(*got) == _as_set(*want) and len(got[0]) > 0
    assert got[1].dtype == np.int32 and got[2].dtype == np.float32
    assert len(got[0]) <= max_candidates


def test_nothing_above_threshold() -> None:
    rows, cls, conf = select_scores_by_class(np.zeros((3, 10), np.float32), 0.5, False, 100)
    assert rows.shape == cls.shape == conf.shape == (0,)
