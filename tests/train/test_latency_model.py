"""The latency model the pruner budgets with: conv shapes read from the ONNX graph, and a fit to
ONNX Runtime's real per-node profile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from edgedet.errors import InvalidInputError
from edgedet.train.latency_model import _conv_shapes, fit_latency_model

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


def test_fit_on_a_real_detector_profile() -> None:
    import onnx

    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(SAMPLE)).graph.node)
    fit = fit_latency_model(SAMPLE, runs=30, warmup=5)
    assert fit.convolutions == n_conv > 50  # every conv of the graph profiled and matched
    assert fit.per_mmac > 0 and fit.total_conv_ms > 0
    assert 0 < fit.r2 <= 1 and fit.r2 >= fit.r2_macs_only - 1e-9  # one more regressor
    assert fit.macs_per_element == pytest.approx(max(0.0, fit.per_melement) / fit.per_mmac)
    assert set(fit.to_dict()) >= {"per_mmac", "per_melement", "r2", "macs_per_element"}


def test_too_few_convolutions_to_fit(tmp_path: Path) -> None:
    path = _export(nn.Conv2d(3, 4, 1), tmp_path / "one.onnx", (1, 3, 8, 8))
    with pytest.raises(InvalidInputError, match="too few to fit"):
        fit_latency_model(path, runs=2, warmup=0)
