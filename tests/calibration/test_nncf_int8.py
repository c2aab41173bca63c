"""NNCF for OpenVINO on a tiny model: INT8 IR written atomically with its sidecar meta."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from edgedet.calibration.nncf_int8 import onnx_to_ov_names, quantize_openvino
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec

import edgedet
from edgedet.errors import CalibrationError
from edgedet.meta import read_meta

pytest.importorskip("nncf")
ov = pytest.importorskip("openvino")


@pytest.mark.parametrize("method", ["minmax", "percentile", "mse"])
def test_openvino_ir(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path, method: str
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=6)
    out = tmp_path / "ir" / "tiny_int8.xml"
    res = quantize_openvino(
        tiny_model,
        src,
        CalibrationSpec(method=method, keep_stem_float=False),
        out,
        tiny_detector.meta,
    )
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "tiny_int8.bin",
        "tiny_int8.edgedet.json",
        "tiny_int8.xml",
    ]
    meta = read_meta(out)
    assert meta is not None and meta.precision == "int8" and meta.calibration is not None
    assert meta.calibration["tool"] == "nncf+openvino" and meta.calibration["images"]["count"] == 6
    assert res.exclusion.summary()["decode tail"] == 4  # Sigmoid, Reshape, Transpose, Slice
    det = edgedet.load(out)
    assert det.runtime_name == "openvino"
    det(np.full((32, 32, 3), 90, np.uint8))
    det.close()
    xml = out.read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml


def test_tail_names_map_to_openvino(tiny_model: Path) -> None:
    import onnx
    from edgedet.calibration.tail import ensure_node_names, find_decode_tail

    model = onnx.load(str(tiny_model))
    ensure_node_names(model)
    tail = find_decode_tail(model)
    names = onnx_to_ov_names(ov.Core().read_model(str(tiny_model)), model, tail.nodes)
    assert len(names) == 4  # Sigmoid, Reshape, Transpose, Slice


def test_ir_suffix(tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=2)
    with pytest.raises(CalibrationError, match=r"must be an \.xml file"):
        quantize_openvino(
            tiny_model, src, CalibrationSpec(), tmp_path / "m.onnx", tiny_detector.meta
        )


def test_conv_with_bias_maps_to_the_convolution(tiny_model: Path) -> None:
    import onnx
    from edgedet.calibration.tail import ensure_node_names

    model = onnx.load(str(tiny_model))
    ensure_node_names(model)
    conv = next(n.name for n in model.graph.node if n.op_type == "Conv")
    ov_model = ov.Core().read_model(str(tiny_model))
    names = onnx_to_ov_names(ov_model, model, [conv])
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    assert "Convolution" in {types[n] for n in names}


def test_nncf_onnx_backend_writes_qdq(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    from edgedet.calibration.nncf_int8 import quantize_onnx_nncf

    from edgedet.meta import is_quantized_onnx

    src = CalibrationSource(tiny_detector, images=image_dir, num=4)
    out = tmp_path / "nncf_qdq.onnx"
    spec = CalibrationSpec(method="minmax", keep_stem_float=False)
    quantize_onnx_nncf(tiny_model, src, spec, out, tiny_detector.meta)
    assert is_quantized_onnx(out)
    meta = read_meta(out)
    assert (
        meta is not None
        and meta.calibration is not None
        and meta.calibration["tool"] == "nncf+onnx"
    )
    det = edgedet.load(out)
    det(np.full((32, 32, 3), 90, np.uint8))
    det.close()


def test_accuracy_control_uses_edgedet_map(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    from edgedet.calibration.nncf_int8 import (
        make_validation_fn,
        quantize_openvino_with_accuracy_control,
    )

    from edgedet.data import load_dataset
    from tests.calibration.test_command import _yolo_dataset

    val = load_dataset(_yolo_dataset(tmp_path / "val", image_dir))
    validate = make_validation_fn(tiny_detector.meta, val)
    score, _ = validate(ov.Core().read_model(str(tiny_model)), list(val.samples))
    assert 0.0 <= score <= 1.0
    src = CalibrationSource(tiny_detector, images=image_dir, num=4)
    out = tmp_path / "ac.xml"
    spec = CalibrationSpec(method="minmax", keep_stem_float=False)
    res = quantize_openvino_with_accuracy_control(
        tiny_model, src, spec, out, tiny_detector.meta, val, max_drop_points=1.0
    )
    assert out.is_file() and res.record["max_drop_points"] == 1.0


def _linear_layernorm(path: Path) -> Path:
    """x (N, 8, 16) -> LayerNormalization "ln" -> Reshape (N*8, 16) -> Gemm "head" (bias) ->
    y: the shape of an Ultralytics RT-DETR export's Linear layers after ONNX simplification."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.ones(16, np.float32), "g"),
        numpy_helper.from_array(np.zeros(16, np.float32), "b"),
        numpy_helper.from_array(np.array([-1, 16], np.int64), "shape"),
        numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(4, np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["n"], name="ln", axis=-1),
        helper.make_node("Reshape", ["n", "shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w", "bias"], ["y"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 4])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_gemm_maps_to_its_matmul(tmp_path: Path) -> None:
    """OpenVINO reads an ONNX Gemm as MatMul -> Multiply -> Add; ignoring only the Add (which
    carries the ONNX output name) left a DETR head quantized in the IR."""
    import onnx

    path = _linear_layernorm(tmp_path / "linear.onnx")
    ov_model = ov.Core().read_model(str(path))
    names = onnx_to_ov_names(ov_model, onnx.load(str(path)), ["head"])
    types = {op.get_friendly_name(): op.get_type_name() for op in ov_model.get_ops()}
    assert "MatMul" in {types[n] for n in names}


def test_conv_inputs_scope_leaves_layernorm_float(tmp_path: Path) -> None:
    """scope="conv_inputs": NNCF quantizes the Gemm's input, not the LayerNorm's (MVN)."""
    import nncf
    import onnx
    from edgedet.calibration.nncf_int8 import _ignored_scope
    from edgedet.calibration.spec import Exclusion

    path = _linear_layernorm(tmp_path / "linear.onnx")
    ov_model = ov.Core().read_model(str(path))
    rng = np.random.default_rng(1)
    data = nncf.Dataset([rng.normal(size=(1, 8, 16)).astype(np.float32) for _ in range(4)])
    scope = _ignored_scope(nncf, ov_model, onnx.load(str(path)), Exclusion((), {}, None), CalibrationSpec())
    q = nncf.quantize(ov_model, data, subset_size=4, ignored_scope=scope)
    fed = set()
    for op in q.get_ops():
        if op.get_type_name() == "FakeQuantize":
            fed |= {t.get_node().get_type_name() for t in op.output(0).get_target_inputs()}
    assert "MVN" not in fed
    assert fed & {"MatMul", "Reshape"}  # the Gemm's input is quantized (before or after Reshape)


def test_mean_minmax_maps_to_nncf_mean_minmax() -> None:
    from edgedet.calibration.nncf_int8 import advanced_parameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    params = advanced_parameters(CalibrationSpec(method="mean_minmax"))
    assert params.activations_range_estimator_params == RangeEstimatorParametersSet.MEAN_MINMAX
