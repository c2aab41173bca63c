"""The calibration report's interval of the INT8 model's mAP loss (`drop_interval`), and the
warning when a budget is finer than the validation images resolve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgedet.calibration.evaluate import Score, drop_interval

from edgedet.data import Annotation, DetectionDataset, Sample
from edgedet.detections import Detections
from edgedet.eval.bootstrap import bootstrap_map
from edgedet.eval.metrics import evaluate

pytest.importorskip("pycocotools")

NAMES = ("person", "car")


def _case() -> tuple[DetectionDataset, dict[int, Detections], dict[int, Detections]]:
    rng = np.random.default_rng(0)
    samples, good, worse = [], {}, {}
    for i in range(30):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 300, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 120, (n, 2))], 1).astype(np.float32)
        cls = rng.integers(0, 2, n)
        samples.append(
            Sample(i + 1, Path(f"{i}.jpg"), 448, 448, Annotation(boxes, cls, np.zeros(n, bool)))
        )
        scores = rng.uniform(0.2, 1.0, n).astype(np.float32)
        good[i + 1] = Detections(
            boxes + rng.normal(0, 2, boxes.shape).astype(np.float32), scores, cls
        )
        worse[i + 1] = Detections(
            boxes + rng.normal(0, 6, boxes.shape).astype(np.float32), scores, cls
        )
    return DetectionDataset("t", Path("."), "coco", list(NAMES), samples), good, worse


def _score(ds: DetectionDataset, dets: dict[int, Detections]) -> Score:
    r = evaluate(ds, dets, NAMES)
    return Score(r.map50_95, r.map50, r.per_class_ap, detections=dets, class_names=NAMES)


def test_drop_interval_is_the_paired_bootstrap_in_points() -> None:
    ds, good, worse = _case()
    before, after = _score(ds, good), _score(ds, worse)
    drop = drop_interval(before, after, ds, resamples=300)
    assert drop is not None
    direct = bootstrap_map(ds, {"f": good, "q": worse}, NAMES, reference="f", resamples=300)
    d = direct.differences["q"]
    assert drop["drop_points"] == pytest.approx(100 * (before.map50_95 - after.map50_95), abs=1e-3)
    assert drop["low"] == pytest.approx(-100 * d.high, abs=1e-3)
    assert drop["high"] == pytest.approx(-100 * d.low, abs=1e-3)
    assert 0 < drop["low"] <= drop["drop_points"] <= drop["high"]  # clearly worse
    assert drop["half_width"] == pytest.approx((drop["high"] - drop["low"]) / 2, abs=2e-3)
    assert drop["images"] == 30 and drop["resamples"] == 300
    # no detections kept, or other class names: no interval
    assert drop_interval(Score(0.3, 0.5, {}), after, ds) is None
    other = Score(0.3, 0.5, {}, detections=good, class_names=("a", "b"))
    assert drop_interval(other, after, ds) is None
