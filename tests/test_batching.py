"""A dynamic batch axis for batch-1 ONNX models (edgedet.batching), checked with real ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedet.assets import sample_model_path
from edgedet.batching import batched_model_path, dynamic_batch_onnx, input_batch
from edgedet.errors import IncompatibleModelError, InvalidInputError


def _save(tmp_path: Path, name: str, nodes: list, out_shape: list, inits: list | None = None) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        initializer=inits or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_sample_model_gets_a_batch_axis_that_keeps_images_apart(tmp_path: Path) -> None:
    src = sample_model_path()
    assert input_batch(src) == 1
    data = dynamic_batch_onnx(src)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape[0] == "batch"
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (3, 3, 192, 192)).astype(np.float32)
    (both,) = sess.run(None, {"images": x})
    orig = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    for i in range(3):
        (one,) = orig.run(None, {"images": x[i : i + 1]})
        np.testing.assert_allclose(both[i : i + 1], one, atol=1e-4)
    # the copy keeps the model's edgedet meta
    from edgedet.meta import read_meta

    path = batched_model_path(src, folder=tmp_path)
    assert read_meta(path) == read_meta(src)
    stamp = path.stat().st_mtime_ns
    assert batched_model_path(src, folder=tmp_path) == path and path.stat().st_mtime_ns == stamp
    assert input_batch(path) is None and batched_model_path(path, folder=tmp_path) == path


def test_a_graph_that_folds_the_batch_away_is_refused(tmp_path: Path) -> None:
    shape = numpy_helper.from_array(np.array([3, -1], np.int64), "shape")
    path = _save(tmp_path, "fold.onnx", [helper.make_node("Reshape", ["images", "shape"], ["output"])], [3, 16], [shape])
    with pytest.raises(IncompatibleModelError, match=r"no leading batch axis of 1 .* cannot be batched"):
        dynamic_batch_onnx(path)


def test_a_batch_hard_coded_where_edgedet_does_not_rewrite_fails_the_parity_check(tmp_path: Path) -> None:
    # the Reshape target [1, -1] is computed (Concat), so the rewrite cannot reach it: batch 2
    # becomes one row of 96 values, not two rows of 48
    one = numpy_helper.from_array(np.array([1], np.int64), "one")
    rest = numpy_helper.from_array(np.array([-1], np.int64), "rest")
    nodes = [
        helper.make_node("Concat", ["one", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["images", "shape"], ["output"]),
    ]
    path = _save(tmp_path, "hard.onnx", nodes, [1, 48], [one, rest])
    with pytest.raises(IncompatibleModelError, match=r"hard-codes the batch|mixes the images"):
        dynamic_batch_onnx(path)


def test_only_onnx_files(tmp_path: Path) -> None:
    other = tmp_path / "model.engine"
    other.write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="only an ONNX model can be given a batch axis"):
        batched_model_path(other)
