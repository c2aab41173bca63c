"""CalibrationSpec validation and exclusion resolution."""

from __future__ import annotations

import onnx
import pytest
from edgedet.calibration.spec import CalibrationSpec, quantizable_layers, resolve_exclusions

from edgedet.errors import InvalidInputError


def test_defaults() -> None:
    spec = CalibrationSpec()
    assert (
        spec.method == "mse"
        and spec.per_channel
        and spec.scope == "conv_inputs"
        and spec.keep_decode_tail_float
    )
    assert spec.num_images == 300
    assert CalibrationSpec(method="MSE").method == "mse"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"method": "kl"},
            r"calibration method must be one of minmax, entropy, percentile, mse, mean_minmax, got 'kl'",
        ),
        ({"percentile": 50}, r"percentile must be in \(90, 100\], got 50"),
        ({"percentile": "high"}, r"percentile must be a number, got 'high'"),
        ({"num_images": 0}, r"num_images must be a positive int, got 0"),
        ({"num_images": True}, r"num_images must be a positive int"),
        ({"head_convs": "maybe"}, r"head_convs must be one of"),
        (
            {"scope": "everything"},
            r"scope must be one of \('conv_inputs', 'all'\), got 'everything'",
        ),
        (
            {"exclude_names": "Conv_1"},
            r"exclude_names must be a sequence of strings, got the string 'Conv_1'",
        ),
        (
            {"exclude_patterns": ("([",)},
            r"exclude pattern '\(\[' is not a valid regular expression",
        ),
        ({"max_map_drop": -1}, r"max_map_drop must be a non-negative number of mAP points"),
        ({"max_class_drop": 2.0}, r"max_class_drop needs the safety classes it guards"),
    ],
)
def test_invalid_specs(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        CalibrationSpec(**kwargs)


def test_replace_and_round_trip() -> None:
    spec = CalibrationSpec(method="percentile", exclude_types=("Resize",))
    assert spec.replace(num_images=100).num_images == 100
    with pytest.raises(InvalidInputError, match=r"unknown calibration setting\(s\) \['nums'\]"):
        spec.replace(nums=3)
    assert CalibrationSpec.from_dict(spec.to_dict()) == spec


def test_resolve_exclusions_on_tiny_model(tiny_model) -> None:
    model = onnx.load(str(tiny_model))
    stem = resolve_exclusions(model, CalibrationSpec(), "yolov5")
    assert stem.summary() == {"decode tail": 4, "stem": 1}  # Sigmoid, Reshape, Transpose, Slice
    ex = resolve_exclusions(model, CalibrationSpec(exclude_types=("Conv",)), "yolov5")
    reasons = ex.reasons
    assert {reasons[n.name] for n in model.graph.node if n.op_type == "Conv"} == {"type"}
    assert "decode tail" in ex.summary()
    # every node has a name now, and the tail (sigmoid, reshape, transpose, slice) is float
    assert all(n.name for n in model.graph.node)
    tail_ops = {n.op_type for n in model.graph.node if reasons.get(n.name) == "decode tail"}
    assert tail_ops == {"Sigmoid", "Reshape", "Transpose", "Slice"}
    spec = CalibrationSpec(keep_stem_float=False)
    assert quantizable_layers(model, resolve_exclusions(model, spec, "yolov5"))


def test_unknown_excluded_name(tiny_model) -> None:
    model = onnx.load(str(tiny_model))
    with pytest.raises(
        InvalidInputError, match=r"excluded node\(s\) \['nope'\] are not in the model"
    ):
        resolve_exclusions(model, CalibrationSpec(exclude_names=("nope",)))


def test_pattern_exclusion(tiny_model) -> None:
    model = onnx.load(str(tiny_model))
    ex = resolve_exclusions(
        model, CalibrationSpec(exclude_patterns=("^Conv",), keep_decode_tail_float=False)
    )
    assert ex.summary() == {"pattern": 1}
