"""`edgedet.protocol` (one evaluation protocol per family) and `edgedet.scoring.score` (one
scoring path)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

import edgedet
from edgedet.decoders import Family, get_family, register_family
from edgedet.errors import InvalidInputError
from edgedet.meta import ModelMeta
from edgedet.protocol import (
    EvalProtocol,
    add_protocol_arguments,
    family_protocol,
    protocol_overrides,
    resolve_protocol,
)
from edgedet.scoring import applied, score

SAMPLE = Path(edgedet.__file__).parent / "assets" / "sample_roads.onnx"


@pytest.fixture(scope="module")
def sample_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgedet.data.synthetic import sample_validation_set

    return sample_validation_set(tmp_path_factory.mktemp("val"), n=6)


@pytest.mark.parametrize(
    ("family", "iou", "conf", "multi", "cap", "nms"),
    [
        ("yolov8", 0.7, 0.001, True, 300, "class_aware"),
        ("yolo11", 0.7, 0.001, True, 300, "class_aware"),
        ("yolov5", 0.6, 0.001, True, 300, "class_aware"),
        ("yolox", 0.65, 0.001, False, None, "class_aware"),
        ("nanodet", 0.6, 0.05, True, 100, "class_aware"),
        ("end2end", 0.7, 0.001, False, 300, "none"),
        ("detr", 0.7, 0.0, True, 300, "none"),
        ("edgedet", 0.7, 0.001, True, 300, "class_aware"),
    ],
)
def test_family_defaults_reproduce_published_validators(family, iou, conf, multi, cap, nms):
    p = family_protocol(family)
    assert (p.iou_threshold, p.score_threshold, p.multi_label, p.max_detections, p.nms) == (
        iou, conf, multi, cap, nms,
    )  # fmt: skip
    assert p.source  # every default says where it comes from


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("iou_threshold", 1.5, "--eval-iou"),
        ("iou_threshold", 0.0, "--eval-iou"),
        ("score_threshold", -0.1, "--eval-conf"),
        ("max_detections", 0, "--max-det"),
        ("nms", "soft_linear", "--eval-nms"),
        ("deploy_score_threshold", 2.0, "--conf"),
    ],
)
def test_out_of_range_values_name_the_flag(field, value, flag):
    with pytest.raises(InvalidInputError, match=flag):
        EvalProtocol(**{field: value})
    with pytest.raises(InvalidInputError, match=flag):
        family_protocol("yolox").replace(**{field: value})


def test_family_without_protocol_names_the_flags():
    base = get_family("yolov8")
    register_family(Family("noproto_test", base.make_decoder, dict(base.preset)), replace=True)
    with pytest.raises(InvalidInputError, match=r"--eval-conf and --eval-iou"):
        resolve_protocol(family="noproto_test")
    # Both thresholds given: enough to score.
    p = resolve_protocol(family="noproto_test", overrides={"score_threshold": 0.01,
                                                           "iou_threshold": 0.5})  # fmt: skip
    assert (p.score_threshold, p.iou_threshold) == (0.01, 0.5)


def test_meta_protocol_wins_over_family_and_flags_win_over_both():
    meta = ModelMeta(family="yolox")
    assert resolve_protocol(meta) == family_protocol("yolox")
    own = EvalProtocol(iou_threshold=0.5, source="mine")
    meta = meta.replace(eval_protocol=own.to_dict())
    round_trip = ModelMeta.from_json(meta.to_json())
    assert resolve_protocol(round_trip) == own
    p = resolve_protocol(round_trip, overrides={"iou_threshold": 0.55, "multi_label": None})
    assert p.iou_threshold == 0.55 and p.source == "mine"
    # Metas without the field keep their JSON as before (older edgedet can read them).
    assert "eval_protocol" not in ModelMeta(family="yolox").to_json()
    with pytest.raises(Exception, match="eval-iou"):
        ModelMeta(family="yolox", eval_protocol={"iou_threshold": 3})


def test_shared_cli_flags():
    parser = argparse.ArgumentParser()
    add_protocol_arguments(parser)
    args = parser.parse_args(["--eval-iou", "0.5", "--no-multi-label", "--max-det", "100"])
    assert protocol_overrides(args) == {
        "score_threshold": None, "iou_threshold": 0.5, "max_detections": 100,
        "multi_label": False,
    }  # fmt: skip
    assert protocol_overrides(parser.parse_args([]))["multi_label"] is None


@pytest.mark.skipif(not SAMPLE.is_file(), reason="the sample model is not built")
def test_score_applies_the_protocol_and_restores_the_detector(sample_val: Path):
    det = edgedet.load(SAMPLE, runtime="onnxruntime")
    settings = (det.score_threshold, det.iou_threshold, det.max_detections, det.multi_label)
    try:
        result = score(det, sample_val)
        assert result.protocol == family_protocol("edgedet")
        assert (det.score_threshold, det.iou_threshold, det.max_detections,
                det.multi_label) == settings  # fmt: skip
        assert 0 < result.map50_95 <= 1 and result.images == 6
        assert result.to_dict()["protocol"]["iou_threshold"] == 0.7
        # The protocol really reaches the detections: multi-label at 0.001 gives at least as
        # many boxes as one label per box, and a 5-box cap caps.
        single = score(det, sample_val, result.protocol.replace(multi_label=False))
        n_multi = sum(len(d) for d in result.detections.values())
        n_single = sum(len(d) for d in single.detections.values())
        assert n_multi > n_single
        capped = score(det, sample_val, result.protocol.replace(max_detections=5))
        assert max(len(d) for d in capped.detections.values()) == 5
        with applied(det, EvalProtocol(score_threshold=0.5, iou_threshold=0.3)):
            assert (det.score_threshold, det.iou_threshold) == (0.5, 0.3)
        assert det.score_threshold == settings[0]
        # Batched and one-by-one prediction score the same detections.
        batched = score(det, sample_val, batch=4)
        assert batched.map50_95 == pytest.approx(result.map50_95, abs=1e-6)
    finally:
        det.close()


@pytest.mark.skipif(not SAMPLE.is_file(), reason="the sample model is not built")
def test_dataset_without_the_models_classes_names_the_flag(sample_val: Path):
    det = edgedet.load(SAMPLE, runtime="onnxruntime", names=[f"thing{i}" for i in range(6)])
    try:
        with pytest.raises(InvalidInputError, match=r"--data .*none of its classes"):
            score(det, sample_val, data_flag="--data")
    finally:
        det.close()


@pytest.mark.torch
def test_torch_detector_matches_the_onnx_export(tmp_path: Path, sample_val: Path):
    pytest.importorskip("torch")
    import torch

    from edgedet.scoring import torch_detector
    from edgedet.train.export import export_onnx
    from edgedet.train.models.net import ExportModel, build_model

    torch.manual_seed(0)
    model = build_model(6, "n", class_names=("car", "truck", "pedestrian", "cyclist",
                                              "traffic_cone", "sign")).eval()  # fmt: skip
    onnx_path = tmp_path / "m.onnx"
    export_onnx(model, onnx_path, 192, tuple(model.cfg.class_names))
    meta = edgedet.meta.read_meta(onnx_path)
    proto = EvalProtocol(score_threshold=0.0001)
    tdet = torch_detector(ExportModel(model, (192, 192)), meta)
    odet = edgedet.load(onnx_path, runtime="onnxruntime")
    try:
        assert tdet.fixed_batch is None
        a = score(tdet, sample_val, proto, batch=3)
        b = score(odet, sample_val, proto)
        for i, d in a.detections.items():
            assert len(d) == len(b.detections[i])
            # An untrained model ties many scores, so compare as sets, not in order.
            np.testing.assert_allclose(
                np.sort(d.scores), np.sort(b.detections[i].scores), atol=1e-4
            )
        assert a.map50_95 == pytest.approx(b.map50_95, abs=1e-3)
    finally:
        odet.close()


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLE.is_file(), reason="the sample model is not built")
def test_every_command_gives_the_same_number(sample_val: Path):
    """bench, calibrate, export's check and prune/distill/qat's evaluation score the same model
    on the same images through one function: the same mAP to the last bit (same runtime, same
    protocol), and the protocol is in each record."""
    from edgedet.benchmarks.runner import BenchConfig, run_config
    from edgedet.calibration.evaluate import score_model

    from edgedet.train.compress import evaluate_pair
    from edgedet.train.export import evaluate_onnx

    with edgedet.load(SAMPLE, runtime="onnxruntime") as det:
        direct = score(det, sample_val).map50_95
    record = run_config(
        BenchConfig(
            model=str(SAMPLE), data=str(sample_val), runtime="onnxruntime", warmup=0,
            min_iterations=1, min_seconds=0, max_seconds=1, latency_images=1,
            throughput_requests=0,
        )
    )  # fmt: skip
    assert record["status"] == "ok", record["reason"]
    calib = score_model(SAMPLE, sample_val, threads=None)
    export = evaluate_onnx(SAMPLE, sample_val)
    pair = pytest.importorskip("torch") and evaluate_pair(SAMPLE, SAMPLE, str(sample_val), None)
    assert direct > 0.1
    assert record["accuracy"]["map50_95"] == direct
    assert calib.map50_95 == direct
    assert export["map50_95"] == direct
    assert pair["eval_after"]["map50_95"] == direct
    expected = family_protocol("edgedet").to_dict()
    assert record["protocol"] == calib.protocol == export["protocol"] == pair["protocol"] == expected
    assert record["method"]["accuracy_thresholds"]["iou"] == 0.7
    # A flag reaches the number: another IoU gives another protocol in the record.
    other = score_model(SAMPLE, sample_val, threads=None, overrides={"iou_threshold": 0.3})
    assert other.protocol["iou_threshold"] == 0.3 and other.map50_95 != direct


def test_detector_defaults_to_the_family_deployment_thresholds(tmp_path: Path):
    from tests.tiny_models import make_tiny_yolov5, tiny_meta

    model = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    with edgedet.load(model, runtime="onnxruntime") as det:
        assert (det.score_threshold, det.iou_threshold) == (0.25, 0.45)  # yolov5 detect.py
    with edgedet.load(model, runtime="onnxruntime", iou_threshold=0.3) as det:
        assert det.iou_threshold == 0.3
    if SAMPLE.is_file():
        with edgedet.load(SAMPLE, runtime="onnxruntime") as det:
            assert (det.score_threshold, det.iou_threshold) == (0.25, 0.7)


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["bench", "--eval-iou", "1.5"], "--eval-iou"),
        (["calibrate", "m.onnx", "--eval-conf", "-0.1", "--out", "q.onnx"], "--eval-conf"),
        (["prune", "m.onnx", "--images", "i", "--out", "o.onnx", "--max-det", "0"], "--max-det"),
        (["export", "c.pt", "--out", "o.onnx", "--eval-iou", "0"], "--eval-iou"),
        (["train", "--data", "d", "--eval-iou", "x"], "--eval-iou"),
    ],
)
def test_out_of_range_flags_fail_while_parsing(argv, flag, capsys):
    from edgedet.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err


def test_import_records_a_protocol_in_the_meta(tmp_path: Path):
    from edgedet.cli import main
    from edgedet.meta import read_meta
    from tests.tiny_models import make_tiny_yolov5

    src = make_tiny_yolov5(tmp_path / "bare.onnx")
    out = tmp_path / "with_protocol.onnx"
    assert main(["import", str(src), "--family", "yolov5", "--names", "a,b",
                 "--eval-iou", "0.5", "--out", str(out)]) == 0  # fmt: skip
    meta = read_meta(out)
    assert meta is not None and resolve_protocol(meta).iou_threshold == 0.5
    assert resolve_protocol(meta).multi_label is True  # the rest from the yolov5 family
    plain = tmp_path / "plain.onnx"
    assert main(["import", str(src), "--family", "yolov5", "--names", "a,b",
                 "--out", str(plain)]) == 0  # fmt: skip
    assert read_meta(plain).eval_protocol is None  # nothing recorded: the family's applies
