"""Sensitivity-guided pruning ratios: the simulated cut equals the real one (1x1 readers, mean
compensation), the allocation spends the MAC budget on the layer that does not matter, and the
pruner follows it to the target."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from edgedet.errors import InvalidInputError
from edgedet.train.allocate import allocate, conv_macs, saved_macs, scan
from edgedet.train.prune import (
    ActivationStats,
    PruneConfig,
    _activation_importance,
    compensate_group,
    count_macs_params,
    prune,
    relative_mse,
)

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
    order = torch.argsort(_activation_importance(stats)(group)).tolist()
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
    with pytest.raises(InvalidInputError, match="MAC budget"):
        PruneConfig(sensitivity=True, metric="params").validate()
