"""Bootstrap intervals of mAP: the weighted accumulation must equal COCOeval on the datasets the
weights describe (unresampled, and resamples materialised image by image)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgedet.boxes import box_iou
from edgedet.data import Annotation, DetectionDataset, Sample
from edgedet.detections import Detections
from edgedet.errors import InvalidInputError
from edgedet.eval.bootstrap import (
    _first_level_at_least,
    _per_image_matching,
    _weighted_map,
    bootstrap_map,
    resample_weights,
)
from edgedet.eval.metrics import coco_inputs, evaluate

pytest.importorskip("pycocotools")

NAMES = ["person", "car", "bus"]


def _random_case(
    seed: int, n_images: int = 24, *, tied_scores: bool = False, clutter: int = 0
) -> tuple[DetectionDataset, dict[int, Detections]]:
    """Images with 0-6 boxes of three classes (some ignore regions, all sizes) and predictions
    that find most of them, jittered, plus false positives. ``tied_scores`` rounds scores to
    tenths (as a quantized model's often tie); ``clutter`` adds that many low-score boxes of
    class 0 per image (past COCO's 100 detections per image)."""
    rng = np.random.default_rng(seed)
    samples, preds = [], {}
    for i in range(n_images):
        n = int(rng.integers(0, 7))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(6, 200, (n, 2))
        boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        cls = rng.integers(0, len(NAMES), n)
        ignore = rng.random(n) < 0.1
        image_id = 100 + 3 * i
        samples.append(Sample(image_id, Path(f"{i}.jpg"), 700, 700, Annotation(boxes, cls, ignore)))
        found = rng.random(n) < 0.8
        jitter = rng.normal(0, 0.08, (n, 4)) * np.concatenate([wh, wh], 1)
        det_boxes = (boxes + jitter)[found]
        det_cls = np.where(rng.random(n) < 0.9, cls, (cls + 1) % len(NAMES))[found]
        m = int(rng.integers(0, 5))
        fxy = rng.uniform(0, 500, (m, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(6, 150, (m, 2))], 1)
        xyxy = np.concatenate([det_boxes, fp]).astype(np.float32)
        classes = np.concatenate([det_cls, rng.integers(0, len(NAMES), m)]).astype(np.int32)
        scores = rng.uniform(0.001, 1.0, len(xyxy)).astype(np.float32)
        if tied_scores:
            scores = np.round(scores, 1).clip(0.1, 1.0).astype(np.float32)
        if clutter:
            cxy = rng.uniform(0, 600, (clutter, 2))
            extra = np.concatenate([cxy, cxy + rng.uniform(4, 40, (clutter, 2))], 1)
            xyxy = np.concatenate([xyxy, extra]).astype(np.float32)
            classes = np.concatenate([classes, np.zeros(clutter, np.int32)])
            scores = np.concatenate([scores, rng.uniform(0.001, 0.05, clutter)]).astype(np.float32)
        preds[image_id] = Detections(xyxy, scores, classes)
    return DetectionDataset("random", Path("."), "coco", NAMES, samples), preds


def _materialise(
    ds: DetectionDataset, preds: dict[int, Detections], counts: np.ndarray
) -> tuple[DetectionDataset, dict[int, Detections]]:
    """The dataset a weights row describes: image i repeated counts[i] times under new ids,
    copies next to each other in the original order (COCOeval's order for ties)."""
    samples, out = [], {}
    for sample, c in zip(ds.samples, counts.tolist()):
        for _ in range(c):
            new_id = len(samples) + 1
            samples.append(dataclasses.replace(sample, image_id=new_id))
            out[new_id] = preds[sample.image_id]
    return DetectionDataset("resampled", Path("."), "coco", NAMES, samples), out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unresampled_weights_give_the_evaluators_map(seed: int) -> None:
    ds, preds = _random_case(seed)
    cats, rec, n = _per_image_matching(coco_inputs(ds, preds, NAMES))
    ours = _weighted_map(cats, rec, np.ones((1, n), np.int64))[0]
    for backend in ("pycocotools", "faster-coco-eval"):
        ref = evaluate(ds, preds, NAMES, backend=backend).map50_95
        assert 0.05 < ref < 0.95  # a case with something to resample
        assert ours == pytest.approx(ref, abs=1e-12 if backend == "pycocotools" else 1e-6)


@pytest.mark.parametrize(("seed", "clutter"), [(0, 0), (1, 0), (3, 130)])
def test_each_resample_equals_cocoeval_on_the_materialised_dataset(seed: int, clutter: int) -> None:
    ds, preds = _random_case(seed, clutter=clutter)
    cats, rec, n = _per_image_matching(coco_inputs(ds, preds, NAMES))
    weights = resample_weights(n, 6, seed=seed)
    ours = _weighted_map(cats, rec, weights)
    for row, value in zip(weights, ours):
        assert row.sum() == n and (row > 1).any()  # real resamples: some image drawn twice
        big_ds, big_preds = _materialise(ds, preds, row)
        ref = evaluate(big_ds, big_preds, NAMES, backend="pycocotools").map50_95
        assert value == pytest.approx(ref, abs=1e-12)
    assert np.ptp(ours) > 0.01  # the resamples do differ


def test_tied_scores_differ_only_by_cocoevals_tie_order() -> None:
    """Detections of equal score on one image and class: COCOeval ranks them in input order,
    so a resample's mAP depends on how an image's copies are laid out (one after the other in
    the materialised dataset; interleaved, tie by tie, in the weighted accumulation). Both are
    valid COCO orders. Scores rounded to tenths are an extreme case (up to 1.4 points here); the
    unresampled set is still exact, and real models' fp32 / int8 scores do not tie (next test)."""
    ds, preds = _random_case(2, tied_scores=True)
    cats, rec, n = _per_image_matching(coco_inputs(ds, preds, NAMES))
    exact = evaluate(ds, preds, NAMES, backend="pycocotools").map50_95
    assert _weighted_map(cats, rec, np.ones((1, n), np.int64))[0] == pytest.approx(exact, abs=1e-12)
    weights = resample_weights(n, 6, seed=2)
    for row, value in zip(weights, _weighted_map(cats, rec, weights)):
        big_ds, big_preds = _materialise(ds, preds, row)
        ref = evaluate(big_ds, big_preds, NAMES, backend="pycocotools").map50_95
        assert abs(value - ref) < 0.02


@pytest.mark.testdata
def test_real_detector_resamples_equal_cocoeval(datasets_dir: Path, models_dir: Path) -> None:
    """YOLOX-nano's detections on 20 COCO images (no tied scores in real models' output):
    every resample equals pycocotools on the materialised dataset."""
    pytest.importorskip("onnxruntime")
    from edgedet import load
    from edgedet.data import load_dataset
    from edgedet.meta import COCO80

    ds = load_dataset(datasets_dir / "coco_tiny_val2017").subset(20, seed=0)
    det = load(
        models_dir / "yolox_nano_416.onnx", family="yolox", names="coco",
        runtime="onnxruntime", score_threshold=0.001,
    )  # fmt: skip
    preds = {s.image_id: det(ds.read_image(s)) for s in ds.samples}
    inputs = coco_inputs(ds, preds, COCO80)
    cats, rec, n = _per_image_matching(inputs)
    weights = resample_weights(n, 3, seed=5)
    order = sorted(ds.samples, key=lambda s: s.image_id)  # COCOeval's image order
    for row, value in zip(weights, _weighted_map(cats, rec, weights)):
        samples, out = [], {}
        for sample, c in zip(order, row.tolist()):
            for _ in range(c):
                samples.append(dataclasses.replace(sample, image_id=len(samples) + 1))
                out[len(samples)] = preds[sample.image_id]
        big = DetectionDataset(
            "r", ds.root, ds.format, ds.class_names, samples, category_ids=ds.category_ids
        )
        ref = evaluate(big, out, COCO80, backend="pycocotools").map50_95
        assert value == pytest.approx(ref, abs=1e-12)


def test_category_absent_from_a_resample_is_left_out_as_cocoeval_does() -> None:
    ds, preds = _random_case(3, n_images=6)
    cats, rec, n = _per_image_matching(coco_inputs(ds, preds, NAMES))
    # Only the first image, six times: classes it has no ground truth of are left out.
    row = np.zeros((1, n), np.int64)
    first_with_gt = next(i for i, s in enumerate(ds.samples) if (~s.gt.ignore).any())
    row[0, first_with_gt] = n
    big_ds, big_preds = _materialise(ds, preds, row[0])
    ref = evaluate(big_ds, big_preds, NAMES, backend="pycocotools").map50_95
    assert _weighted_map(cats, rec, row)[0] == pytest.approx(ref, abs=1e-12)


def test_identical_models_have_a_zero_difference() -> None:
    ds, preds = _random_case(0)
    r = bootstrap_map(ds, {"a": preds, "b": dict(preds)}, NAMES, resamples=200)
    d = r.differences["b"]
    assert d.estimate == d.low == d.high == 0.0
    assert r.ratios["b"].low == pytest.approx(1.0) and r.ratios["b"].high == pytest.approx(1.0)
    assert r.p_higher["b"] == 0.5
    a = r.intervals["a"]
    assert a.low < a.estimate < a.high and a.high - a.low > 0.02  # 24 images: a wide interval


def test_paired_difference_is_narrower_than_the_models_own_intervals() -> None:
    ds, preds = _random_case(1, n_images=40)
    # b: the same detections with false positives' scores lowered by 10%: a little better on
    # many images, never worse
    better = {}
    for i, d in preds.items():
        s = ds.by_id(i)
        gt_ok = ~s.gt.ignore
        iou = box_iou(d.xyxy, s.gt.xyxy[gt_ok], dtype=np.float64) if gt_ok.any() and len(d) else np.zeros((len(d), 0))
        hit = iou.max(axis=1) > 0.5 if iou.size else np.zeros(len(d), bool)
        better[i] = Detections(d.xyxy, np.where(hit, d.scores, d.scores * 0.9), d.class_ids)
    r = bootstrap_map(ds, {"a": preds, "b": better}, NAMES, resamples=300, seed=4)
    diff, a, b = r.differences["b"], r.intervals["a"], r.intervals["b"]
    assert diff.estimate == pytest.approx(b.estimate - a.estimate)
    assert diff.low > 0 and r.p_higher["b"] > 0.95
    assert diff.high - diff.low < 0.5 * (a.high - a.low)
    assert r.ratios["b"].low > 1.0


def test_same_seed_same_intervals_and_json() -> None:
    ds, preds = _random_case(2)
    one = bootstrap_map(ds, {"a": preds}, NAMES, resamples=100, seed=7)
    two = bootstrap_map(ds, {"a": preds}, NAMES, resamples=100, seed=7)
    other = bootstrap_map(ds, {"a": preds}, NAMES, resamples=100, seed=8)
    assert one == two and one.intervals != other.intervals
    d = one.to_dict()
    assert d["map50_95"]["a"]["low"] == one.intervals["a"].low and d["resamples"] == 100


def test_bad_arguments_are_refused() -> None:
    ds, preds = _random_case(0, n_images=4)
    with pytest.raises(InvalidInputError, match="at least one model"):
        bootstrap_map(ds, {}, NAMES)
    with pytest.raises(InvalidInputError, match="reference"):
        bootstrap_map(ds, {"a": preds}, NAMES, reference="b")
    with pytest.raises(InvalidInputError, match="resamples"):
        bootstrap_map(ds, {"a": preds}, NAMES, resamples=0)
    with pytest.raises(InvalidInputError, match="confidence"):
        bootstrap_map(ds, {"a": preds}, NAMES, confidence=1.0)
    with pytest.raises(InvalidInputError, match="not in dataset"):
        bootstrap_map(ds, {"a": {999: Detections.empty()}}, NAMES)


def test_recall_levels_match_cocoevals_float_comparison() -> None:
    """The smallest j with j / n >= threshold, for every n up to 3000 and COCO's thresholds,
    equals searchsorted over the recalls j / n as COCOeval computes them."""
    thresholds = np.linspace(0.0, 1.00, 101)
    n = np.arange(1, 3001)
    levels = _first_level_at_least(thresholds, n)
    for k in n:
        recalls = np.arange(k + 1) / k
        assert (levels[k - 1] == np.searchsorted(recalls, thresholds, side="left")).all(), k


def test_no_detections_at_all_and_a_class_never_detected() -> None:
    ds, preds = _random_case(4)
    empty = {i: Detections.empty() for i in preds}
    assert bootstrap_map(ds, {"none": empty}, NAMES, resamples=20).intervals["none"].high == 0.0
    # class 2 ("bus") has ground truth but no detection: it counts as AP 0, as COCOeval does
    no_bus = {i: d[d.class_ids != 2] for i, d in preds.items()}
    cats, rec, n = _per_image_matching(coco_inputs(ds, no_bus, NAMES))
    assert cats[2].tps.shape[1] == 0 and cats[2].positives.sum() > 0
    weights = resample_weights(n, 4, seed=1)
    for row, value in zip(weights, _weighted_map(cats, rec, weights)):
        big_ds, big_preds = _materialise(ds, no_bus, row)
        ref = evaluate(big_ds, big_preds, NAMES, backend="pycocotools").map50_95
        assert value == pytest.approx(ref, abs=1e-12)
