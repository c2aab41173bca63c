"""One-layer fake quantization and the detection-error proxy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from edgedet.calibration.sensitivity import (
    LayerSensitivity,
    SensitivityReport,
    detection_error,
    fake_quantize_layer,
)
from edgedet.calibration.spec import CalibrationSpec

from edgedet.detections import Detections


def test_fake_quantize_one_layer(tiny_model: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_model))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.name = conv.name or "conv0"
    ranges = {"images": (0.0, 1.0), conv.output[0]: (-3.0, 3.0)}
    inputs_only = fake_quantize_layer(model, conv.name, ranges, CalibrationSpec())
    ops = [n.op_type for n in inputs_only.graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("DequantizeLinear") == 1
    fq = fake_quantize_layer(model, conv.name, ranges, CalibrationSpec(scope="all"))
    onnx.checker.check_model(fq)
    ops = [n.op_type for n in fq.graph.node]
    assert ops.count("QuantizeLinear") == 2 and ops.count("DequantizeLinear") == 2
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    ref = ort.InferenceSession(tiny_model.read_bytes()).run(None, {"images": x})[0]
    got = ort.InferenceSession(fq.SerializeToString()).run(None, {"images": x})[0]
    assert 0 < np.abs(ref - got).mean() < 0.02


def test_detection_error() -> None:
    a = Detections(
        np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32), np.array([1], np.int32)
    )
    b = Detections(
        np.array([[0, 0, 10, 11]], np.float32), np.array([0.8], np.float32), np.array([1], np.int32)
    )
    assert detection_error([a], [a]) == 0.0
    assert 0.1 < detection_error([a], [b]) < 0.25
    assert abs(detection_error([a], [Detections.empty()]) - 1.9) < 1e-6


def test_report_markdown_and_plot(tmp_path: Path) -> None:
    rep = SensitivityReport(
        "proxy",
        [
            LayerSensitivity("Conv_1", "Conv", proxy=0.2),
            LayerSensitivity("Conv_2", "Conv", proxy=0.1),
        ],
        images=4,
    )
    assert rep.ranking() == ["Conv_1", "Conv_2"]
    assert "| 1 | `Conv_1` | Conv | 0.2000 |" in rep.to_markdown()
    assert rep.plot(tmp_path / "s.png").stat().st_size > 1000
