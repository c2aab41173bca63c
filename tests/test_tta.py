"""Test-time augmentation, ensembles and weighted box fusion, on the real sample model through
ONNX Runtime and OpenVINO."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import edgedet
from edgedet.assets import sample_model_path
from edgedet.batching import batched_model_path
from edgedet.detections import Detections
from edgedet.errors import InvalidInputError, RuntimeUnavailableError
from edgedet.fusion import fuse
from edgedet.tta import Ensemble, TTADetector, parse_tta
from edgedet.views import View

pytest.importorskip("ensemble_boxes", reason="the ensemble extra (ensemble-boxes) is not installed")


@pytest.fixture(scope="module")
def batched_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return batched_model_path(sample_model_path(), folder=tmp_path_factory.mktemp("batch"))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    from edgedet.data.synthetic import make_scenes

    return make_scenes(1, seed=1_000_003, imgsz=(192, 256))[0].image


def test_views_map_boxes_back_to_the_original_image() -> None:
    hw = (100, 200)
    box = np.array([[10, 20, 50, 60]], np.float32)
    flipped = View((0, 0, 200, 100), hw, flip=True)
    np.testing.assert_allclose(flipped.to_original(box), [[150, 20, 190, 60]])
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 10:50] = 255
    view = flipped.make(img)
    ys, xs = np.nonzero(view[:, :, 0])
    back = flipped.to_original(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32))
    np.testing.assert_allclose(back, box)
    padded = View((0, 0, 200, 100), hw, canvas_hw=(125, 250))
    assert padded.make(img).shape == (125, 250, 3)
    # a box reaching into the grey canvas is clipped to the image
    np.testing.assert_allclose(padded.to_original(np.array([[180, 90, 240, 120]], np.float32)), [[180, 90, 200, 100]])


def test_fusion_of_identical_sources_is_the_source_and_a_lone_box_loses_score() -> None:
    d = Detections(
        np.array([[10, 10, 50, 50], [100, 20, 150, 80]], np.float32),
        np.array([0.9, 0.6], np.float32),
        np.array([0, 2], np.int32),
    )
    same = fuse([d, d], (120, 200))
    np.testing.assert_allclose(same.xyxy, d.xyxy, atol=1e-3)
    np.testing.assert_allclose(same.scores, d.scores, atol=1e-6)
    lone = fuse([d, Detections.empty()], (120, 200))
    np.testing.assert_allclose(lone.scores, d.scores / 2, atol=1e-6)  # found by 1 of 2 sources
    assert len(fuse([Detections.empty()] * 2, (120, 200))) == 0
    with pytest.raises(InvalidInputError, match="1 weights for 2 sources"):
        fuse([d, d], (120, 200), weights=[1.0])


def test_missing_ensemble_boxes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ensemble_boxes", None)
    with pytest.raises(RuntimeUnavailableError, match=r"ensemble-boxes package \(the 'ensemble' extra\): pip install"):
        TTADetector(edgedet.load(sample_model_path()), flip=True)


def test_tta_runs_its_views_in_one_call_and_fuses_them(batched_path: Path, image: np.ndarray) -> None:
    det = edgedet.load(batched_path)
    plain = det(image)
    tta = TTADetector(det, flip=True, scales=(1.0, 0.83))
    assert [v.name for v in tta.views(image.shape[:2])] == ["scale 1", "scale 1 flip", "scale 0.83", "scale 0.83 flip"]
    calls: list[int] = []
    real_infer = det.infer
    det.infer = lambda feeds: calls.append(next(iter(feeds.values())).shape[0]) or real_infer(feeds)
    out = tta(image)
    assert calls == [4]
    assert len(out) > 0 and len(plain) > 0
    # each plain detection has a fused counterpart
    from edgedet.boxes import box_iou

    assert (box_iou(plain.xyxy, out.xyxy).max(axis=1) > 0.7).mean() >= 0.75
    with_nms = TTADetector(det, flip=True, merge="nms")(image)
    assert len(with_nms) > 0


def test_an_ensemble_of_one_model_on_two_runtimes_is_that_model(image: np.ndarray) -> None:
    pytest.importorskip("openvino")
    a = edgedet.load(sample_model_path(), runtime="onnxruntime")
    b = edgedet.load(sample_model_path(), runtime="openvino")
    single = a(image)
    ens = Ensemble([a, b])
    ens.score_threshold = 0.3  # set on every member
    assert a.score_threshold == b.score_threshold == 0.3
    out = ens(image)
    single = a(image)
    assert len(out) == len(single) > 0
    order = np.argsort(-single.scores)
    np.testing.assert_allclose(out.xyxy, single.xyxy[order], atol=0.05)
    np.testing.assert_allclose(out.scores, single.scores[order], atol=1e-3)
    assert ens.describe()["ensemble"]["members"][1]["runtime"] == "openvino"
    # fixed batch-1 members: several images go one per call
    assert len(ens.predict_batch([image, image[:, ::-1].copy()], batch_size=2)) == 2
    with pytest.raises(InvalidInputError, match="fixed batches"):
        ens.preprocess([image, image])
    ens.close()


def test_bad_tta_and_ensemble_settings(batched_path: Path) -> None:
    det = edgedet.load(batched_path)
    with pytest.raises(InvalidInputError, match=r"TTA scales must be in \(0, 1\]"):
        TTADetector(det, scales=(1.0, 1.5))
    with pytest.raises(InvalidInputError, match="adds no view"):
        TTADetector(det, flip=False)
    with pytest.raises(InvalidInputError, match="unknown token 'flop'"):
        parse_tta("flop")
    assert parse_tta("flip,ms,nms") == {"flip": True, "scales": (1.0, 0.83, 0.67), "merge": "nms"}
    with pytest.raises(InvalidInputError, match="two or more detectors"):
        Ensemble([det])
    other = edgedet.load(batched_path, names=["a", "b", "c", "d", "e", "f"])
    with pytest.raises(InvalidInputError, match="members must predict the same classes"):
        Ensemble([det, other])
