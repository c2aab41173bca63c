"""Tiny ONNX models built in the test run (nothing downloaded, nothing committed as binary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgedet.meta import ModelMeta, write_onnx_meta


def conv_weights(cin: int, cout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.normal(0, 0.5, (cout, cin, 1, 1)).astype(np.float32),
        rng.normal(0, 0.1, (cout,)).astype(np.float32),
    )


def make_tiny_yolov5(
    path: Path,
    *,
    size: int = 32,
    nc: int = 2,
    batch: int | str = 1,
    meta: ModelMeta | None = None,
    seed: int = 0,
    anchors: int = 3,
    hidden: int = 0,
) -> Path:
    """A 1×1 conv -> sigmoid model shaped like a YOLOv5 head: [B, N, 5 + nc], N = ``anchors`` ×
    the grid cells of strides 8/16/32 (N pixels from the middle of the conv output).
    ``anchors=1`` gives the shape of a YOLOX raw-grid export. ``hidden`` > 0 puts a 1×1 conv of
    that many channels and a Relu before the head conv, so a calibration that keeps the
    image-reading conv float still has a conv to quantize.

    Boxes decode to (cx, cy, w, h) in [0, 1] pixels (tiny boxes): enough to exercise the whole
    pipeline, not to detect anything.
    """
    c = 5 + nc
    rows = anchors * sum((-(-size // s)) ** 2 for s in (8, 16, 32))
    assert rows <= size * size, "make_tiny_yolov5 needs size >= 4"
    mid = (size * size - rows) // 2  # rows from the middle of the image, not the letterbox pad
    w, b = conv_weights(hidden or 3, c, seed)
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, size, size])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, rows, c])
    head_in = "images"
    stem: list[onnx.NodeProto] = []
    stem_inits: list[onnx.TensorProto] = []
    if hidden:
        w0, b0 = conv_weights(3, hidden, seed + 1)
        stem = [helper.make_node("Conv", ["images", "W0", "B0"], ["stem"]),
                helper.make_node("Relu", ["stem"], ["stem_act"])]  # fmt: skip
        stem_inits = [numpy_helper.from_array(w0, "W0"), numpy_helper.from_array(b0, "B0")]
        head_in = "stem_act"
    nodes = [
        *stem,
        helper.make_node("Conv", [head_in, "W", "B"], ["conv"]),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Reshape", ["sig", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["all_rows"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["all_rows", "starts", "ends", "axes"], ["output"]),
    ]
    inits = [
        *stem_inits,
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(b, "B"),
        numpy_helper.from_array(np.array([0, c, size * size], np.int64), "shape"),
        numpy_helper.from_array(np.array([mid], np.int64), "starts"),
        numpy_helper.from_array(np.array([mid + rows], np.int64), "ends"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]
    graph = helper.make_graph(nodes, "tiny_yolov5", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    if meta is not None:
        write_onnx_meta(path, path, meta)
    return path


def tiny_meta(nc: int = 2) -> ModelMeta:
    return ModelMeta(
        family="yolov5",
        class_names=tuple(f"thing{i}" for i in range(nc)),
        color="BGR",
        scale=1 / 255,
        letterbox="center",
    )
