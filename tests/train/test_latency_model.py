"""The latency model the pruner budgets with: conv shapes read from the ONNX graph, and a fit to
ONNX Runtime's real per-node profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgedet.errors import InvalidInputError
from edgedet.train.latency_model import (
    LatencyModel,
    _conv_shapes,
    _static_input,
    attribute_times,
    fit_latency_model,
)

pytest.importorskip("onnxruntime")
SAMPLE = Path(__file__).resolve().parents[2] / "edgedet" / "assets" / "sample_roads.onnx"


def _export(model: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    torch.onnx.export(model.eval(), torch.zeros(shape), str(path), dynamo=False)
    return path


def test_conv_shapes_from_the_graph(tmp_path: Path) -> None:
    import onnx

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1, groups=8)
    )
    shapes = _conv_shapes(onnx.load(str(_export(net, tmp_path / "m.onnx", (1, 3, 32, 32)))))
    assert sorted(shapes.values()) == sorted(
        [
            (8 * 32 * 32 * 3 * 9, 3 * 32 * 32 + 8 * 32 * 32),  # dense 3x3
            (8 * 16 * 16 * 1 * 9, 8 * 32 * 32 + 8 * 16 * 16),  # depthwise, stride 2
        ]
    )


def test_activation_time_goes_to_the_conv_it_reads() -> None:
    nodes = [
        ("c1", "Conv", ["x", "w1"], ["a"]),
        ("silu1", "QuickGelu", ["a"], ["b"]),
        ("c2", "FusedConv", ["b", "w2"], ["d"]),
        ("sig", "Sigmoid", ["d"], ["e"]),
        ("mul", "Mul", ["d", "e"], ["f"]),  # x * sigmoid(x), unfused
        ("cat", "Concat", ["b", "f"], ["g"]),  # not an activation: its own time
        ("relu", "Relu", ["g"], ["h"]),  # reads the concat, not a conv
    ]
    ms = {"c1": 1.0, "silu1": 0.5, "c2": 2.0, "sig": 0.25, "mul": 0.125, "cat": 9.0, "relu": 9.0}
    assert attribute_times(nodes, ms, {"c1", "c2"}) == {"c1": 1.5, "c2": 2.375}


def test_symbolic_input_dimensions_are_fixed_for_shape_inference(tmp_path: Path) -> None:
    import onnx

    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1))
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(
        net.eval(), torch.zeros(1, 3, 16, 16), str(path), dynamo=False,
        dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}}, input_names=["input"],
    )  # fmt: skip
    model = onnx.load(str(path))
    assert _static_input(model, (1, 3, 32, 48)) == (1, 3, 32, 48)
    shapes = _conv_shapes(model)
    assert sorted(shapes.values())[0] == (4 * 32 * 48 * 4, 4 * 32 * 48 * 2)  # the 1x1 conv


def test_fit_counts_each_conv_with_its_relu(tmp_path: Path) -> None:
    """A Conv -> ReLU chain (the fused-activation naming a SiLU model does not exercise): every
    conv matched, the ReLU time with it, and a fit that says more work takes longer."""
    layers: list[nn.Module] = []
    for c_in, c_out in [(3, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 64)]:
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
    fit = fit_latency_model(_export(nn.Sequential(*layers), tmp_path / "r.onnx", (1, 3, 64, 64)))
    assert fit.convolutions == 6 and fit.per_mmac > 0 and fit.per_melement >= 0
    assert isinstance(fit, LatencyModel) and fit.total_conv_ms > 0


def test_fit_on_a_real_detector_profile() -> None:
    import onnx

    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(SAMPLE)).graph.node)
    fit = fit_latency_model(SAMPLE, runs=30, warmup=5)
    assert fit.convolutions == n_conv > 50  # every conv of the graph profiled and matched
    assert fit.per_mmac > 0 and fit.total_conv_ms > 0
    assert 0 < fit.r2 <= 1 and fit.per_melement >= 0  # a negative rate is refitted away
    assert set(fit.to_dict()) >= {"per_mmac", "per_melement", "r2", "macs_per_element"}


def test_too_few_convolutions_to_fit(tmp_path: Path) -> None:
    path = _export(nn.Conv2d(3, 4, 1), tmp_path / "one.onnx", (1, 3, 8, 8))
    with pytest.raises(InvalidInputError, match="too few to fit"):
        fit_latency_model(path, runs=2, warmup=0)
