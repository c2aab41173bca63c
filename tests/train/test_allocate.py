"""Sensitivity-guided pruning ratios: the simulated cut equals the real one (1x1 readers, mean
compensation), the allocation spends the MAC budget on the layer that does not matter, and the
pruner follows it to the target."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgedet.errors import InvalidInputError
from edgedet.train.allocate import allocate, saved_cost, saved_macs, scan
from edgedet.train.channels import (
    ActivationStats,
    activation_importance,
    compensate_group,
    conv_cost_total,
    conv_costs,
    conv_macs,
    count_macs_params,
    relative_mse,
)
from edgedet.train.prune import PruneConfig, prune

X = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))


class TwoBranch(nn.Module):
    """``a``'s channels feed the output directly; ``b``'s 16 channels are 12 near-constant ones
    (removable: their means carry them) and 4 that vary. Cutting ``b`` is cheap, cutting ``a``
    is not; ``b`` also holds most of the MACs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 16, 3, padding=1)
        self.mix = nn.Conv2d(16, 8, 1)
        self.out = nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            self.b.weight[4:] *= 1e-3  # near-constant channels: bias only
            self.b.bias[4:] = torch.linspace(-2, 2, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.mix(torch.relu(self.b(x))))
        return self.out(torch.cat([self.a(x), y], 1))  # every channel of `a` matters


def test_simulated_cut_equals_the_real_pruning() -> None:
    import torch_pruning as tp

    model = TwoBranch().eval()
    example = X[:1]
    ref = model(X).detach()
    rows = scan(model, example, X, relative_mse, ignored=[model.out], ratios=(0.25,))
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"a", "b", "mix"}  # the protected output conv is not a root

    # the same cut for real: `mix` reads `b` through 1x1 convs only, so it is exact
    real = copy.deepcopy(model)
    stats = ActivationStats()
    stats.refresh(real, X)
    graph = tp.DependencyGraph().build_dependency(real, example_inputs=example)
    group = graph.get_pruning_group(real.mix, tp.prune_conv_out_channels, idxs=list(range(8)))
    order = torch.argsort(activation_importance(stats)(group)).tolist()
    cut = graph.get_pruning_group(real.mix, tp.prune_conv_out_channels, idxs=order[:2])
    compensate_group(cut, stats)
    cut.prune()
    assert real.mix.out_channels == 6
    assert by_name["mix"]["cost"][0.25] == pytest.approx(relative_mse(ref)(real(X)), abs=1e-6)
    macs = conv_macs(model, example)
    assert by_name["mix"]["macs"] == macs[model.mix] + macs[model.out]
    assert sorted(by_name["mix"]["convs"]) == [
        ("mix", "out", 1.0, macs[model.mix]),
        ("out", "in", 0.5, macs[model.out]),  # `out` reads a concat: half its inputs are `mix`'s
    ]


def test_saved_macs_counts_a_conv_cut_on_both_sides_once() -> None:
    rows = [
        {"convs": [("c1", "out", 1.0, 100), ("c2", "in", 1.0, 400)]},
        {"convs": [("c2", "out", 1.0, 400), ("c3", "in", 0.5, 200)]},
    ]
    assert saved_macs(rows, [0.5, 0.0]) == pytest.approx(50 + 200)
    # c2 keeps (1 - 0.5) x (1 - 0.5) of its MACs, not 1 - 0.5 - 0.5; c3 loses half of 0.5
    assert saved_macs(rows, [0.5, 0.5]) == pytest.approx(50 + 300 + 50)


def test_allocation_spends_the_budget_where_it_is_cheap() -> None:
    model = TwoBranch().eval()
    rows = scan(model, X[:1], X, relative_mse, ignored=[model.out])
    by_name = {r["name"]: r for r in rows}
    assert by_name["b"]["cost"][0.5] < 1e-3 < by_name["a"]["cost"][0.5]
    total = sum(conv_macs(model, X[:1]).values())
    chosen = {n: r for m, r in allocate(rows, total, 0.7).items() for n in [_name(model, m)]}
    assert chosen.get("b", 0) >= 0.5 and "a" not in chosen
    # monotone costs: a noisy deeper cut never looks cheaper than a shallower one
    fake = [{"module": model.a, "macs": 100, "convs": [("a", "out", 1.0, 100)],
             "cost": {0.25: 0.5, 0.5: 0.1}}]  # fmt: skip
    assert allocate(fake, 100, 0.8) == {model.a: 0.25}
    assert allocate(fake, 100, 0.6) == {model.a: 0.5}


def _name(model: nn.Module, mod: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is mod)


def test_sensitivity_pruning_reaches_the_target_and_keeps_the_outputs() -> None:
    model = TwoBranch().eval()
    ref = model(X).detach()
    uniform = copy.deepcopy(model)
    cfg = PruneConfig(target=0.75, sensitivity=True)
    report = prune(model, X[:1], cfg, calibration=X)
    prune(uniform, X[:1], PruneConfig(target=0.75), calibration=X)
    assert report["reached_target"] and "sensitivity" in report
    assert report["macs_after"] == count_macs_params(model, X[:1])[0]
    assert model.a.out_channels == 8  # the sensitive layer untouched
    assert relative_mse(ref)(model(X)) < relative_mse(ref)(uniform(X))
    with pytest.raises(InvalidInputError, match="MAC or latency budget"):
        PruneConfig(sensitivity=True, metric="params").validate()


def test_conv_costs_count_macs_and_the_elements_moved() -> None:
    model = TwoBranch().eval()
    costs = conv_costs(model, X[:2])  # per image, whatever the batch
    assert costs[model.b] == (16 * 16 * 16 * 3 * 9, 3 * 16 * 16, 16 * 16 * 16)
    assert costs[model.out] == (4 * 256 * 16, 16 * 256, 4 * 256)
    assert {m: c[0] for m, c in costs.items()} == conv_macs(model, X[:1])
    total = sum(m for m, _, _ in costs.values())
    moved = sum(i + o for _, i, o in costs.values())
    assert conv_cost_total(model, X[:1], 0.0) == total
    assert conv_cost_total(model, X[:1], 2.5) == total + 2.5 * moved


def test_saved_cost_counts_elements_by_side_and_depthwise_on_both() -> None:
    rows = [
        {
            "convs": [("c1", "out", 1.0, 100), ("dw", "out", 1.0, 10), ("c2", "in", 1.0, 400)],
            "elements": {"c1": (30, 50, False), "dw": (50, 50, True), "c2": (50, 20, False)},
        }
    ]
    # MACs: half of each; elements: c1's outputs, dw's inputs and outputs, c2's inputs
    assert saved_macs(rows, [0.5]) == pytest.approx(50 + 5 + 200)
    assert saved_cost(rows, [0.5], 2.0) == pytest.approx(255 + 2.0 * 0.5 * (50 + 100 + 50))


def test_a_latency_budget_moves_the_cut_to_the_layer_that_moves_data() -> None:
    """Two groups save the same MACs; one also moves 10x the data (a high-resolution layer).
    By MACs alone the cheaper-distortion group is cut; by estimated latency, the data-heavy one
    pays for itself despite its larger distortion per MAC."""
    light = nn.Conv2d(1, 1, 1)
    heavy = nn.Conv2d(1, 1, 1)
    rows = [
        {"module": light, "macs": 1000, "convs": [("light", "out", 1.0, 1000)],
         "elements": {"light": (10, 10, False)}, "cost": {0.5: 0.01}},
        {"module": heavy, "macs": 1000, "convs": [("heavy", "out", 1.0, 1000)],
         "elements": {"heavy": (100, 100, False)}, "cost": {0.5: 0.012}},
    ]  # fmt: skip
    assert allocate(rows, 2000, 0.75) == {light: 0.5}
    # at 50 MACs per element: cutting half of light's outputs saves 500 + 50 x 5 = 750,
    # heavy's 500 + 50 x 50 = 3000 (an output cut shrinks the conv's outputs, not its inputs)
    total = 2000 + 50.0 * (20 + 200)
    assert allocate(rows, total, 1 - 2500 / total, 0.75, 50.0) == {heavy: 0.5}


def test_latency_target_prunes_to_the_estimated_latency() -> None:
    model = TwoBranch().eval()
    cfg = PruneConfig(target=0.7, metric="latency", macs_per_element=8.0, sensitivity=True)
    before = conv_cost_total(model, X[:1], 8.0)
    report = prune(model, X[:1], cfg, calibration=X)
    assert report["reached_target"] and report["latency_estimate_kept"] <= 0.7 * 1.001
    assert conv_cost_total(model, X[:1], 8.0) == pytest.approx(0.7 * before, rel=0.15)
    assert report["macs_per_element"] == 8.0 and report["stages"][0]["metric"] == "latency"
    with pytest.raises(InvalidInputError, match="macs_per_element >= 0"):
        PruneConfig(metric="latency").validate()
