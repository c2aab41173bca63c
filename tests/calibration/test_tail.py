"""The decode-tail rule on the real YOLOX-nano, NanoDet-m and YOLOv8n graphs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from edgedet.calibration.tail import ensure_node_names, find_decode_tail

pytestmark = pytest.mark.testdata


def _load(models_dir: Path, name: str) -> onnx.ModelProto:
    path = models_dir / name
    if not path.is_file():
        pytest.skip(f"{path} not in the test data")
    model = onnx.load(str(path))
    ensure_node_names(model)
    return model


def _ops(model: onnx.ModelProto, names: tuple[str, ...]) -> Counter:
    by = {n.name: n.op_type for n in model.graph.node}
    return Counter(by[n] for n in names)


def _weights(model: onnx.ModelProto, names: tuple[str, ...]) -> list[str]:
    by = {n.name: n for n in model.graph.node}
    return [by[n].input[1] for n in names]


def test_yolox_tail(models_dir: Path) -> None:
    model = _load(models_dir, "yolox_nano_416.onnx")
    tail = find_decode_tail(model)
    ops = _ops(model, tail.nodes)
    # per level: sigmoid(obj), sigmoid(cls), concat(box, obj, cls); then reshape×3, concat, transpose
    assert ops == Counter({"Sigmoid": 6, "Concat": 4, "Reshape": 3, "Transpose": 1})
    heads = _weights(model, tail.head_convs)
    assert len(heads) == 9
    for kind in ("reg_preds", "obj_preds", "cls_preds"):
        assert sum(kind in w for w in heads) == 3, heads
    # the SiLU sigmoids of the backbone are not in the tail
    assert len(tail.nodes) == 14


def test_nanodet_tail(models_dir: Path) -> None:
    model = _load(models_dir, "nanodet_m_320.onnx")
    tail = find_decode_tail(model)
    assert _ops(model, tail.nodes) == Counter(
        {"Split": 3, "Sigmoid": 3, "Reshape": 6, "Transpose": 6}
    )
    assert sorted(_weights(model, tail.head_convs)) == [
        f"head.gfl_cls.{i}.weight" for i in range(3)
    ]


def test_yolov8_tail(models_dir: Path) -> None:
    model = _load(models_dir, "yolov8n_dequant_fp32_640.onnx")
    tail = find_decode_tail(model)
    ops = _ops(model, tail.nodes)
    # DFL (reshape/transpose/softmax/conv), box decode (slice/sub/add/div/mul), sigmoid, concats
    assert ops["Softmax"] == 1 and ops["Conv"] == 1 and ops["Sigmoid"] == 1
    assert ops["Sub"] == 2 and ops["Add"] == 2 and ops["Div"] == 1 and ops["Mul"] == 1
    assert ops["Concat"] == 4 and ops["Slice"] == 2
    dfl = [n for n in tail.nodes if _ops(model, (n,))["Conv"]]
    assert "dfl" in dfl[0]
    heads = _weights(model, tail.head_convs)
    assert len(heads) == 6 and all(".cv2." in w or ".cv3." in w for w in heads)
    # nothing from the backbone/neck (no SiLU Mul, no Resize)
    assert "Resize" not in ops and ops["Mul"] == 1


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("yolox_nano_416.onnx", "Conv_41"),  # behind the Focus slices and concat
        ("nanodet_m_320.onnx", "Conv_0"),
        ("yolov8n_dequant_fp32_640.onnx", "/model.0/conv/Conv"),
    ],
)
def test_input_convs(models_dir: Path, name: str, stem: str) -> None:
    from edgedet.calibration.tail import find_input_convs

    assert find_input_convs(_load(models_dir, name)) == (stem,)
