"""COCO metrics through faster-coco-eval and pycocotools, and P/R at the deploy threshold."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgedet.data import Annotation, DetectionDataset, Sample, load_dataset, map_classes
from edgedet.detections import Detections
from edgedet.errors import InvalidInputError, RuntimeUnavailableError
from edgedet.eval.metrics import BACKENDS, coco_detections, evaluate, match_at_threshold
from edgedet.meta import COCO80

# -- a tiny dataset whose numbers can be worked out by hand ------------------------------------


def _sample(image_id: int, boxes: list[list[float]], classes: list[int], ignore=None) -> Sample:
    ign = ignore if ignore is not None else [False] * len(boxes)
    return Sample(
        image_id,
        Path(f"{image_id}.jpg"),
        200,
        100,
        Annotation(np.array(boxes, np.float32).reshape(-1, 4), np.array(classes), np.array(ign)),
    )


@pytest.fixture
def tiny() -> DetectionDataset:
    return DetectionDataset(
        "tiny",
        Path("."),
        "coco",
        ["person", "car"],
        [
            _sample(1, [[10, 10, 50, 90], [60, 10, 100, 90]], [0, 0]),  # two people (large)
            _sample(2, [[100, 20, 180, 80]], [0]),  # one person
            _sample(3, [[20, 20, 120, 80], [0, 0, 200, 100]], [1, 1], [False, True]),
        ],
    )


def _det(boxes, scores, classes) -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4), np.array(scores), np.array(classes)
    )


def _perfect(ds: DetectionDataset, score: float = 0.9) -> dict[int, Detections]:
    out = {}
    for s in ds:
        keep = ~s.gt.ignore
        out[s.image_id] = Detections(
            s.gt.xyxy[keep], np.full(int(keep.sum()), score, np.float32), s.gt.class_ids[keep]
        )
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_predictions_score_one(tiny: DetectionDataset, backend: str) -> None:
    r = evaluate(tiny, _perfect(tiny), ["person", "car"], backend=backend)
    assert r.map50_95 == pytest.approx(1.0) and r.map50 == pytest.approx(1.0)
    assert r.map75 == pytest.approx(1.0) and r.map_medium == pytest.approx(1.0)
    assert math.isnan(r.map_small) and math.isnan(r.map_large)  # none there: undefined, not 0
    assert r.per_class_ap == {"person": pytest.approx(1.0), "car": pytest.approx(1.0)}
    assert r.precision == 1.0 and r.recall == 1.0 and r.f1 == 1.0
    # AR@1: at most one detection per image: person 2 of 3, car 1 of 1 -> (2/3 + 1) / 2
    assert r.ar1 == pytest.approx((2 / 3 + 1) / 2)
    assert r.ar10 == pytest.approx(1.0) and r.ar100 == pytest.approx(1.0)
    assert r.images == 3 and r.backend == backend and r.ground_truth_boxes == 4
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert (
        d["map_small"] is None
        and d["map_large"] is None
        and d["per_class_ap"]["car"] == pytest.approx(1.0)
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_miss_and_known_false_positive(tiny: DetectionDataset, backend: str) -> None:
    preds = _perfect(tiny)
    # miss one of the three people: recall reaches 2/3; COCO's 101-point precision is 1 for the
    # recall points 0, .01, ..., .66 (67 points) and 0 above -> AP = 67/101 at every IoU
    preds[1] = preds[1][[0]]
    # a car detection that outscores the true car; it would be a false positive (AP 0.5) but
    # lies inside the image-wide crowd region of image 3, so it is ignored
    preds[3] = Detections.concatenate([_det([[150, 0, 190, 30]], [0.95], [1]), preds[3]])
    r = evaluate(tiny, preds, ["person", "car"], backend=backend)
    assert r.per_class_ap["person"] == pytest.approx(67 / 101)
    assert r.per_class_ap["car"] == pytest.approx(1.0)
    assert r.map50_95 == pytest.approx((67 / 101 + 1) / 2)
    assert r.precision == 1.0 and r.recall == pytest.approx(3 / 4)
    assert r.safety_recall == {"person": pytest.approx(2 / 3), "car": 1.0}


def test_false_positive_outside_ignore_region(tiny: DetectionDataset) -> None:
    ds = DetectionDataset("t", Path("."), "coco", ["person", "car"], [tiny.by_id(1), tiny.by_id(2)])
    preds = _perfect(ds)
    preds[2] = Detections.concatenate([_det([[0, 0, 30, 30]], [0.95], [0]), preds[2]])
    r = evaluate(ds, preds, ["person", "car"])
    # person: ranking FP(0.95) TP TP TP(0.9, ties) -> precision 3/4 at recall 1; interpolated
    # precision is 3/4 everywhere -> AP = 0.75
    assert r.per_class_ap["person"] == pytest.approx(0.75)
    assert r.precision == pytest.approx(3 / 4) and r.recall == 1.0
    assert r.f1 == pytest.approx(2 * 0.75 / 1.75)
    assert "car" not in r.safety_recall or r.safety_recall["car"] is None


def test_deploy_threshold_changes_pr_not_map(tiny: DetectionDataset) -> None:
    preds = _perfect(tiny, score=0.1)  # every detection under the 0.25 deploy threshold
    r = evaluate(tiny, preds, ["person", "car"])
    assert r.map50_95 == pytest.approx(1.0)
    assert r.recall == 0.0 and math.isnan(r.precision)
    assert r.safety_recall["person"] == 0.0
    r2 = evaluate(tiny, preds, ["person", "car"], deploy_threshold=0.05)
    assert r2.recall == 1.0 and r2.deploy_threshold == 0.05
    assert evaluate(tiny, preds, ["person", "car"], eval_score_threshold=0.5).map50_95 == 0.0


def test_image_ids_and_missing_predictions(tiny: DetectionDataset) -> None:
    preds = _perfect(tiny)
    only = evaluate(tiny, {1: preds[1]}, ["person", "car"])
    assert only.images == 1 and list(only.per_class_ap) == ["person", "car"]
    assert only.per_class_ap["car"] is None  # no car in image 1: undefined
    with_empty = evaluate(tiny, {1: preds[1]}, ["person", "car"], image_ids=[1, 2])
    assert with_empty.recall == pytest.approx(2 / 3) and with_empty.images == 2
    nothing = evaluate(tiny, {}, ["person", "car"], image_ids=[1, 2, 3])
    assert nothing.map50_95 == 0.0 and nothing.predictions == 0


def test_unmapped_model_classes_are_dropped_and_listed(tiny: DetectionDataset) -> None:
    preds = _perfect(tiny)
    preds[2] = Detections.concatenate([preds[2], _det([[0, 0, 30, 30]], [0.99], [2])])
    r = evaluate(tiny, preds, ["person", "car", "unicorn"])
    assert r.unmapped_model_classes == ("unicorn",) and r.dropped_predictions == 1
    assert r.map50_95 == pytest.approx(1.0) and r.precision == 1.0
    r2 = evaluate(tiny, {1: preds[1]}, ["person"])
    assert r2.unmapped_dataset_classes == ("car",) and list(r2.per_class_ap) == ["person"]


def test_coco_detections() -> None:
    cm = map_classes(["a", "b", "c"], ["c", "a"])
    res = coco_detections(
        {5: _det([[1, 2, 11, 22], [0, 0, 1, 1], [3, 3, 4, 4]], [0.5, 0.4, 0.01], [0, 1, 2])},
        cm,
        category_ids=[7, 3],
        score_threshold=0.1,
    )
    assert res == [{"image_id": 5, "category_id": 3, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.5}]


def test_match_at_threshold_edges() -> None:
    gt = np.array([[0, 0, 10, 10]], np.float32)
    just_above = np.array([[0, 0, 10, 20]], np.float32)  # IoU 0.5 exactly -> a match
    assert match_at_threshold(just_above, np.array([1.0]), gt, np.zeros((0, 4))) == (1, 0, 0)
    just_below = np.array([[0, 0, 10, 20.5]], np.float32)
    assert match_at_threshold(just_below, np.array([1.0]), gt, np.zeros((0, 4))) == (0, 1, 1)
    # two detections on one box: the higher score matches, the other is a false positive
    two = np.array([[0, 0, 10, 10], [0, 0, 10, 11]], np.float32)
    assert match_at_threshold(two, np.array([0.2, 0.9]), gt, np.zeros((0, 4))) == (1, 1, 0)
    assert match_at_threshold(np.zeros((0, 4)), np.zeros(0), gt, np.zeros((0, 4))) == (0, 0, 1)


def test_errors(tiny: DetectionDataset, monkeypatch: pytest.MonkeyPatch) -> None:
    preds = _perfect(tiny)
    with pytest.raises(
        InvalidInputError, match=r"1 image id\(s\) are not in dataset 'tiny': \[42\]"
    ):
        evaluate(tiny, {42: preds[1]}, ["person", "car"])
    with pytest.raises(
        InvalidInputError, match=r"class id 1 \(or negative\) but model_class_names has 1"
    ):
        evaluate(tiny, preds, ["person"])
    with pytest.raises(InvalidInputError, match="no model class matches a dataset class"):
        evaluate(tiny, preds, ["dog", "cat"])
    with pytest.raises(InvalidInputError, match="backend must be one of"):
        evaluate(tiny, preds, ["person", "car"], backend="detectron")
    with pytest.raises(InvalidInputError, match=r"predictions\[1\] must be a Detections"):
        evaluate(tiny, {1: [1, 2]}, ["person", "car"])  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="nothing to evaluate"):
        evaluate(tiny, {}, ["person", "car"])
    for mod in [m for m in sys.modules if m.startswith("faster_coco_eval")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    with pytest.raises(RuntimeUnavailableError, match=r"the 'bench' extra\): pip install .+\[bench\]"):
        evaluate(tiny, preds, ["person", "car"])
    for mod in ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(RuntimeUnavailableError, match="needs the pycocotools package"):
        evaluate(tiny, preds, ["person", "car"], backend="pycocotools")


# -- real datasets ----------------------------------------------------------------------------


def _jittered(ds: DetectionDataset, seed: int = 0) -> dict[int, Detections]:
    """GT boxes moved by ~8 % of their size, random scores, plus random false positives."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in ds:
        keep = ~s.gt.ignore
        xy = s.gt.xyxy[keep].astype(np.float64)
        wh = np.concatenate([xy[:, 2:] - xy[:, :2]] * 2, axis=1)
        xy = xy + rng.normal(0, 0.08, xy.shape) * wh
        n_fp = int(rng.integers(0, 15))
        x0 = rng.uniform(0, s.width * 0.8, n_fp)
        y0 = rng.uniform(0, s.height * 0.8, n_fp)
        wh_fp = rng.uniform(4, 160, (n_fp, 2))
        fp = np.stack([x0, y0, x0 + wh_fp[:, 0], y0 + wh_fp[:, 1]], axis=1)
        boxes = np.concatenate([xy, fp])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        out[s.image_id] = Detections(
            boxes,
            np.concatenate([rng.uniform(0.05, 1, len(xy)), rng.uniform(0.001, 0.7, n_fp)]),
            np.concatenate([s.gt.class_ids[keep], rng.integers(0, 80, n_fp)]),
        )
    return out


@pytest.fixture(scope="module")
def coco_tiny(datasets_dir: Path) -> DetectionDataset:
    return load_dataset(datasets_dir / "coco_tiny_val2017")


@pytest.mark.testdata
def test_backends_agree_on_coco_tiny(coco_tiny: DetectionDataset) -> None:
    preds = _jittered(coco_tiny)
    timings = {}
    reports = {}
    for backend in BACKENDS:
        t0 = time.perf_counter()
        reports[backend] = evaluate(coco_tiny, preds, COCO80, backend=backend)
        timings[backend] = time.perf_counter() - t0
    a, b = reports["faster-coco-eval"].to_dict(), reports["pycocotools"].to_dict()
    for key in ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large", "ar1",
                "ar10", "ar100", "precision", "recall", "f1"):  # fmt: skip
        assert a[key] == pytest.approx(b[key], abs=1e-6), key
    assert a["per_class_ap"].keys() == b["per_class_ap"].keys()
    assert len(a["per_class_ap"]) == 80
    for name, ap in a["per_class_ap"].items():
        assert ap == pytest.approx(b["per_class_ap"][name], abs=1e-6), name
        assert a["per_class_ap50"][name] == pytest.approx(b["per_class_ap50"][name], abs=1e-6)
    assert 0.3 < a["map50_95"] < 0.8 and a["map50"] > a["map75"]
    # the mean of per-class AP (classes with ground truth) is mAP
    aps = [v for v in a["per_class_ap"].values() if v is not None]
    assert np.mean(aps) == pytest.approx(a["map50_95"], abs=1e-9)
    assert timings["faster-coco-eval"] < 2.0, timings


@pytest.mark.testdata
def test_coco_tiny_perfect_and_category_ids(coco_tiny: DetectionDataset) -> None:
    r = evaluate(coco_tiny, _perfect(coco_tiny), COCO80)
    assert r.map50_95 == pytest.approx(1.0) and r.recall == 1.0 and r.precision == 1.0
    assert r.ground_truth_boxes == 804 and r.images == 80
    assert set(r.safety_recall) == {
        "person", "bicycle", "motorcycle", "car", "bus", "truck", "traffic light", "stop sign",
    }  # fmt: skip
    cm = map_classes(COCO80, coco_tiny.class_names)
    res = coco_detections(_perfect(coco_tiny), cm, category_ids=coco_tiny.category_ids)
    assert {d["category_id"] for d in res} <= set(coco_tiny.category_ids or ())
    assert max(d["category_id"] for d in res) == 90  # toothbrush keeps its COCO id


@pytest.mark.testdata
def test_kitti_with_coco_model_names(datasets_dir: Path) -> None:
    ds = load_dataset(datasets_dir / "kitti_tiny")
    cm = map_classes(COCO80, ds.class_names)
    to_model = cm.dataset_to_model
    preds = {}
    for s in ds:
        keep = ~s.gt.ignore & np.isin(s.gt.class_ids, list(to_model))
        boxes = [s.gt.xyxy[keep]]
        classes = [np.array([to_model[c] for c in s.gt.class_ids[keep]], np.int64)]
        # a "car" detection on every DontCare region: ignored, not a false positive
        dc = s.gt.ignore
        boxes.append(s.gt.xyxy[dc])
        classes.append(np.full(int(dc.sum()), COCO80.index("car")))
        b = np.concatenate(boxes)
        preds[s.image_id] = Detections(b, np.full(len(b), 0.8), np.concatenate(classes))
    n_dontcare_dets = sum(int(s.gt.ignore.sum()) for s in ds)
    assert n_dontcare_dets == 188
    r = evaluate(ds, preds, COCO80)
    assert r.map50_95 == pytest.approx(1.0)
    assert r.precision == 1.0 and r.recall == 1.0
    assert set(r.per_class_ap) == {"Car", "Truck", "Pedestrian", "Cyclist", "Tram"}
    assert r.class_map["person"] == "Pedestrian" and r.class_map["bicycle"] == "Cyclist"
    assert set(r.unmapped_dataset_classes) == {"Van", "Person_sitting", "Misc"}
    assert r.safety_recall["person"] == 1.0 and r.safety_recall["truck"] == 1.0
    assert "bus" not in r.safety_recall  # no KITTI class stands for bus
    # the same with caller aliases: person -> Person_sitting instead
    r2 = evaluate(ds, preds, COCO80, aliases={"person": "Person_sitting"})
    assert (
        r2.class_map["person"] == "Person_sitting" and "Pedestrian" in r2.unmapped_dataset_classes
    )
    assert r2.precision < 1.0  # person detections on pedestrians are now false positives


@pytest.mark.testdata
@pytest.mark.parametrize("backend", BACKENDS)
def test_same_as_official_evaluation_of_the_file(
    coco_tiny: DetectionDataset, datasets_dir: Path, tmp_path: Path, backend: str
) -> None:
    """evaluate() == the backend run directly on the original annotation file."""
    import contextlib
    import io

    preds = _jittered(coco_tiny, seed=5)
    report = evaluate(coco_tiny, preds, COCO80, backend=backend)
    results = coco_detections(
        preds, map_classes(COCO80, coco_tiny.class_names), category_ids=coco_tiny.category_ids
    )
    gt_file = datasets_dir / "coco_tiny_val2017" / "annotations" / "instances_val2017.json"
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval
        else:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        gt = COCO(str(gt_file))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    mine = [report.map50_95, report.map50, report.map75, report.map_small, report.map_medium,
            report.map_large, report.ar1, report.ar10, report.ar100]  # fmt: skip
    np.testing.assert_allclose(mine, np.asarray(ev.stats[:9]), atol=1e-9)


@pytest.mark.testdata
def test_kitti_unmapped_ground_truth_as_ignore(datasets_dir: Path) -> None:
    ds = load_dataset(datasets_dir / "kitti_tiny")
    van = ds.class_names.index("Van")
    car = COCO80.index("car")
    # a perfect "car" detector that also calls every van a car
    preds = {}
    for s in ds:
        sel = np.isin(s.gt.class_ids, [0, van]) & ~s.gt.ignore  # Car, Van
        n = int(sel.sum())
        preds[s.image_id] = Detections(s.gt.xyxy[sel], np.full(n, 0.9), np.full(n, car))
    n_van = sum(int((s.gt.class_ids == van).sum()) for s in ds)
    n_car = sum(int((s.gt.class_ids == 0).sum()) for s in ds)
    dropped = evaluate(ds, preds, COCO80)
    assert dropped.precision == pytest.approx(n_car / (n_car + n_van))
    assert (dropped.per_class_ap["Car"] or 0.0) < 1.0
    ignored = evaluate(ds, preds, COCO80, unmapped_ground_truth="ignore")
    assert ignored.precision == 1.0 and ignored.per_class_ap["Car"] == pytest.approx(1.0)
    assert ignored.safety_recall["car"] == 1.0 and ignored.safety_recall["person"] == 0.0
    with pytest.raises(InvalidInputError, match="unmapped_ground_truth must be 'drop' or 'ignore'"):
        evaluate(ds, preds, COCO80, unmapped_ground_truth="keep")
