"""INT8 keeps a DETR's decoder in float: on every output layout of the tiny trained DETR
(`tests/detr_models.py`), the query selection (score head, TopK, gathers), the box and class
heads and the score sigmoid get no quantized input, on ONNX Runtime's QDQ file and on the
OpenVINO IR NNCF writes, while the encoder convs are quantized."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from edgedet.calibration.detr_tail import find_detr_decoder
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec
from edgedet.calibration.tail import ensure_node_names

import edgedet
from edgedet.data.synthetic import make_scenes
from tests import detr_models as dm

pytest.importorskip("torch")

#: the decoder layers of the tiny DETR (torch export names them /model/<module>/...)
DECODER = re.compile(r"/(enc_score|enc_box|box_head|class_head)\b")
#: ops of the decoder that must read float inputs
GUARDED = {"MatMul", "Gemm", "TopK", "GatherElements", "Gather", "Sigmoid"}


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("detr_calib")
    for i, sc in enumerate(make_scenes(8, 7, (dm.IMGSZ, dm.IMGSZ))):
        cv2.imwrite(str(folder / f"{i}.png"), sc.image)
    return folder


def _decoder_nodes(model: onnx.ModelProto) -> list[Any]:
    return [n for n in model.graph.node if DECODER.search(n.name) and n.op_type in GUARDED]


@pytest.mark.parametrize("layout", list(dm.LAYOUTS))
def test_rule_finds_the_decoder(detr_files: dict[str, Path], layout: str) -> None:
    model = onnx.load(str(detr_files[layout]))
    ensure_node_names(model)
    found = find_detr_decoder(model)
    assert found is not None and found.topk, layout
    by = {n.name: n for n in model.graph.node}
    heads = {by[n].op_type for n in found.heads}
    assert heads <= {"MatMul", "Gemm"}
    # all three layers of the box MLP, both of the reference-box MLP, the two score heads
    for module, layers in (("box_head", 3), ("enc_box", 2), ("enc_score", 1), ("class_head", 1)):
        assert sum(f"/{module}/" in n for n in found.heads) == layers, (module, found.heads)
    assert any(by[n].op_type == "GatherElements" for n in found.selection)
    # the encoder (convs) and the query projection stay quantizable
    assert not any("/encoder/" in n or "/query_proj/" in n for n in found.heads)


def test_yolo_graph_is_not_a_detr(tmp_path: Path) -> None:
    from tests.tiny_models import make_tiny_yolov5

    model = onnx.load(str(make_tiny_yolov5(tmp_path / "y.onnx")))
    ensure_node_names(model)
    assert find_detr_decoder(model) is None


def _quantized_inputs_onnx(model: onnx.ModelProto, node: Any) -> list[str]:
    producer = {o: n for n in model.graph.node for o in n.output}
    return [t for t in node.input if t in producer and producer[t].op_type == "DequantizeLinear"]


@pytest.mark.parametrize("layout", list(dm.LAYOUTS))
def test_ort_qdq_keeps_decoder_float(
    detr_files: dict[str, Path], scenes_dir: Path, tmp_path: Path, layout: str
) -> None:
    from edgedet.calibration.ort_int8 import quantize_onnx

    with edgedet.load(detr_files[layout], runtime="onnxruntime") as det:
        src = CalibrationSource(det, images=scenes_dir, num=8)
        out = tmp_path / f"{layout}_int8.onnx"
        res = quantize_onnx(detr_files[layout], src, CalibrationSpec(num_images=8), out, det.meta)
    summary = res.exclusion.summary()
    assert summary.get("detr head", 0) + summary.get("head conv", 0) >= 5, summary
    model = onnx.load(str(out))
    guarded = _decoder_nodes(model)
    assert len(guarded) >= 7, [n.name for n in guarded]  # names survive quantization
    for node in guarded:
        assert not _quantized_inputs_onnx(model, node), (layout, node.name)
    for node in model.graph.node:
        if node.op_type == "TopK":
            assert not _quantized_inputs_onnx(model, node), (layout, node.name)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert sum(bool(_quantized_inputs_onnx(model, n)) for n in convs) >= len(convs) - 1
    with edgedet.load(out, runtime="onnxruntime") as det:  # runs, and detects
        det(cv2.imread(str(next(scenes_dir.iterdir()))))


def _fq_fed(op: Any) -> bool:
    """An OpenVINO op with an input coming (through converts/reshapes) from a FakeQuantize."""
    for inp in op.inputs():
        src = inp.get_source_output().get_node()
        for _ in range(4):
            kind = src.get_type_name()
            if kind in ("FakeQuantize", "FakeConvert"):
                return True
            if kind not in ("Convert", "Reshape", "Transpose", "Multiply", "Subtract"):
                break
            if kind in ("Multiply", "Subtract") and not any(
                i.get_source_output().get_node().get_type_name() in ("Convert", "Constant")
                for i in src.inputs()
            ):
                break
            src = src.input_value(0).get_node()
    return False


@pytest.mark.parametrize("layout", list(dm.LAYOUTS))
def test_nncf_openvino_keeps_decoder_float(
    detr_files: dict[str, Path], scenes_dir: Path, tmp_path: Path, layout: str
) -> None:
    pytest.importorskip("nncf")
    ov = pytest.importorskip("openvino")
    from edgedet.calibration.nncf_int8 import quantize_openvino

    with edgedet.load(detr_files[layout], runtime="onnxruntime") as det:
        src = CalibrationSource(det, images=scenes_dir, num=8)
        out = tmp_path / f"{layout}_int8.xml"
        quantize_openvino(detr_files[layout], src, CalibrationSpec(num_images=8), out, det.meta)
    ir = ov.Core().read_model(str(out))
    ops = list(ir.get_ops())
    decoder = [
        op for op in ops
        if DECODER.search(op.get_friendly_name()) and op.get_type_name() in ("MatMul", "Sigmoid")
    ]  # fmt: skip
    assert len(decoder) >= 7, [op.get_friendly_name() for op in decoder]
    for op in decoder:
        assert not _fq_fed(op), (layout, op.get_friendly_name())
    for op in ops:
        if op.get_type_name() in ("TopK", "GatherElements"):
            assert not _fq_fed(op), (layout, op.get_friendly_name())
    convs = [op for op in ops if op.get_type_name() == "Convolution"]
    assert convs and sum(_fq_fed(op) for op in convs) >= len(convs) - 1
    with edgedet.load(out) as det:
        assert det.runtime_name == "openvino"
        det(np.full((dm.IMGSZ, dm.IMGSZ, 3), 90, np.uint8))
