"""ONNX -> torch converter: parity with ONNX Runtime on real detectors, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgedet.errors import IncompatibleModelError, ModelLoadError
from edgedet.train.onnx_import import OnnxModule, convert_onnx


def _ort(path: Path, x: np.ndarray) -> list[np.ndarray]:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})  # type: ignore[no-any-return]


def _torch(m: OnnxModule, x: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        y = m(torch.from_numpy(x))
    return [t.numpy() for t in (y if isinstance(y, tuple) else (y,))]


def test_yolox_nano_parity(models_dir: Path) -> None:
    path = models_dir / "yolox_nano_416.onnx"
    m = convert_onnx(path)
    x = (np.random.default_rng(0).random((1, 3, 416, 416)) * 255).astype(np.float32)
    ref, got = _ort(path, x), _torch(m, x)
    assert ref[0].shape == got[0].shape == (1, 3549, 85)
    assert float(np.abs(ref[0] - got[0]).max()) < 1e-3
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 113
    # per level: reg, obj, cls prediction convs are the graph's output convs
    outs = m.output_convs()
    assert sorted(c.out_channels for c in outs) == [1, 1, 1, 4, 4, 4, 80, 80, 80]
    # exported for batch 1, its constant-shape Reshapes follow a batch of 2
    x2 = np.concatenate([x, x[:, :, ::-1].copy()])
    with torch.no_grad():
        both = m(torch.from_numpy(x2)).numpy()
    assert both.shape == (2, 3549, 85)
    assert float(np.abs(both[:1] - got[0]).max()) < 1e-4


def test_shipped_sample_parity() -> None:
    """edgedet's own export (ReduceSum in its box integral) converts back for pruning/QAT."""
    from edgedet.assets import SAMPLE_MODEL

    path = SAMPLE_MODEL
    m = convert_onnx(path)
    x = np.random.default_rng(2).random((1, 3, 192, 192)).astype(np.float32)
    ref, got = _ort(path, x), _torch(m, x)
    assert len(ref) == len(got) and [a.shape for a in ref] == [b.shape for b in got]
    for a, b in zip(ref, got):
        assert float(np.abs(a - b).max()) < 1e-3


def test_reduce_sum_axes_input_and_attribute(tmp_path: Path) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    for opset, keep in ((13, 1), (11, 0)):
        inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        if opset >= 13:
            axes = numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes")
            node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=keep)
            g = helper.make_graph([node], "g", [inp], [out], [axes])
        else:
            node = helper.make_node("ReduceSum", ["x"], ["y"], axes=[1, 2], keepdims=keep)
            g = helper.make_graph([node], "g", [inp], [out])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
        path = tmp_path / f"r{opset}.onnx"
        onnx.save(model, path)
        ref, got = _ort(path, x), _torch(convert_onnx(path), x)
        assert ref[0].shape == got[0].shape == ((2, 1, 1) if keep else (2,))
        assert np.allclose(ref[0], got[0], atol=1e-5)


def test_nanodet_m_parity(models_dir: Path) -> None:
    path = models_dir / "nanodet_m_320.onnx"
    m = convert_onnx(path)
    x = np.random.default_rng(1).standard_normal((1, 3, 320, 320)).astype(np.float32)
    ref, got = _ort(path, x), _torch(m, x)
    assert len(ref) == len(got) == 6
    for a, b in zip(ref, got):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) < 1e-3
    # its channel shuffle splits tensors: pruning refuses it with the reason
    from edgedet.errors import TrainingError
    from edgedet.train.prune import check_prunable

    with pytest.raises(TrainingError, match="splits tensors"):
        check_prunable(m, torch.from_numpy(x))


def _tiny_graph(op_extra: str | None = None) -> onnx.ModelProto:
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w"
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Sigmoid", ["c"], ["s"]),
        helper.make_node("Mul", ["c", "s"], ["y"]),
    ]
    if op_extra:
        nodes.append(helper.make_node(op_extra, ["y"], ["z"]))
    out = "z" if op_extra else "y"
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        [w],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_tiny_graph_parity(tmp_path: Path) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(_tiny_graph(), str(path))
    x = np.random.default_rng(2).standard_normal((1, 3, 8, 8)).astype(np.float32)
    m = convert_onnx(path)
    assert np.abs(_ort(path, x)[0] - _torch(m, x)[0]).max() < 1e-5
    assert [c.out_channels for c in m.output_convs()] == [4]


def test_unknown_ops_are_listed() -> None:
    with pytest.raises(IncompatibleModelError, match=r"unsupported ONNX op\(s\) \['Softsign'\]"):
        convert_onnx(_tiny_graph("Softsign"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        convert_onnx(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="not a readable ONNX file"):
        convert_onnx(bad)
