"""Least-squares reconstruction after pruning (`edgedet.train.reconstruct`): the fit recovers
known weights exactly (dense k x k, strided, grouped), follows the output channels a pruning
kept, and brings a pruned net with redundant channels back to its reference outputs."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from edgedet.train.channels import count_macs_params
from edgedet.train.prune import PruneConfig, prune
from edgedet.train.reconstruct import reconstruct


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.b = nn.Conv2d(8, 8, 1)
        self.c = nn.Conv2d(8, 4, 3, padding=(1, 1), dilation=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = torch.relu(self.dw(x))
        return self.c(torch.relu(self.b(x)))


def _net(seed: int = 0) -> _Net:
    torch.manual_seed(seed)
    net = _Net().eval()
    for m in net.modules():  # He init, zero bias: every ReLU channel stays alive on X
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("chunk", [8, 3])  # one pass; three passes adding to the same fits
def test_fit_recovers_perturbed_weights_exactly_dense_and_grouped(chunk: int) -> None:
    ref = _net()
    student = copy.deepcopy(ref)
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.add_(0.1 * torch.randn_like(m.weight))
                m.bias.add_(0.1)
    rows = reconstruct(
        student, ref, X, {}, ridge=1e-12, positions=64, dense_only=False, chunk=chunk
    )
    assert [r["layer"] for r in rows] == ["a", "dw", "b", "c"]  # forward order
    assert all(r["fitted"] and r["after"] < 1e-9 < r["before"] for r in rows)
    # ``a`` reads the image, so its weights are identifiable (the others read ReLUs, where a
    # channel dead on these images leaves its weights free)
    assert torch.allclose(student.a.weight, ref.a.weight, atol=1e-5)
    assert torch.allclose(student.a.bias, ref.a.bias, atol=1e-5)
    assert torch.allclose(student(X), ref(X), atol=1e-5)


def test_dense_only_leaves_grouped_convs() -> None:
    ref = _net()
    student = copy.deepcopy(ref)
    with torch.no_grad():
        student.dw.weight.mul_(1.5)
    rows = reconstruct(student, ref, X, {})
    assert "dw" not in {r["layer"] for r in rows}
    assert torch.equal(student.dw.weight, 1.5 * ref.dw.weight)


def test_pruned_redundant_channels_are_reconstructed() -> None:
    """``b``'s channels 4..7 are twice channels 0..3, so cutting either half loses nothing a
    linear refit of ``c`` cannot restore; mean compensation alone cannot."""
    net = _net()
    with torch.no_grad():
        net.b.weight[4:] = 2 * net.b.weight[:4]
        net.b.bias[4:] = 2 * net.b.bias[:4]
    with torch.no_grad():
        want = net(X)
    errors = {}
    for rec in (False, True):
        m = copy.deepcopy(net)
        cfg = PruneConfig(target=0.8, importance="l1", reconstruct=rec, ignored=["a", "dw"])
        report = prune(m, X[:1], cfg, calibration=X)
        assert report["channels"]["b"][1] < 8  # only b's outputs can be cut
        errors[rec] = float((m(X) - want).abs().max().detach())
        if rec:
            layers = {r["layer"]: r for r in report["reconstruction"][0]["layers"]}
            assert layers["c"]["before"] > 100 * layers["c"]["after"]
            assert layers["b"]["after"] < 1e-9  # its inputs are untouched: kept rows match
    assert errors[True] < 0.1 * errors[False]


def test_kept_output_channels_follow_the_pruning() -> None:
    """The reference rows a pruned conv is fitted to are the rows it kept: with ``a`` pruned
    and nothing upstream changed, ``a``'s fit is exact."""
    net = _net()
    m = copy.deepcopy(net)
    report = prune(
        m, X[:1], PruneConfig(target=0.7, importance="l2", reconstruct=True, ignored=["b"]),
        calibration=X,
    )  # fmt: skip
    assert report["channels"]["a"][1] < 8
    layers = {r["layer"]: r for r in report["reconstruction"][0]["layers"]}
    assert layers["a"]["before"] < 1e-12  # kept rows of the reference = the pruned conv
    kept = [
        i
        for i in range(8)
        if any(
            torch.allclose(m.a.weight[j], net.a.weight[i], atol=1e-5)
            for j in range(m.a.out_channels)
        )
    ]
    assert len(kept) == m.a.out_channels


def test_stages_reconstruct_towards_the_unpruned_model() -> None:
    """Over two stages the refit targets the model the call started with: ``a``'s kept rows map
    back to the original rows through both cuts (a wrong map would show as a large error)."""
    net = _net()
    m = copy.deepcopy(net)
    cfg = PruneConfig(target=0.6, importance="l2", stages=2, reconstruct=True, ignored=["b"])
    report = prune(m, X[:1], cfg, calibration=X)
    assert [s["stage"] for s in report["reconstruction"]] == [1, 2]
    first, second = ({r["layer"]: r for r in s["layers"]} for s in report["reconstruction"])
    assert m.a.out_channels < 7  # cut in both stages
    assert first["a"]["before"] < 1e-12 and second["a"]["before"] < 1e-12
    with torch.no_grad():
        want = net(X)
        err = float((m(X) - want).pow(2).mean() / want.pow(2).mean())
    # c is the output layer and every position is sampled (16 x 16 maps): its fit error is the
    # model's error against the *original* outputs, which it only is if the original is the target
    assert 1e-6 < err < 1.0
    assert abs(second["c"]["after"] - err) < 1e-3 * err


def test_staged_prune_interrupted_and_resumed_equals_uninterrupted() -> None:
    """A run stopped after stage 1 and resumed from its checkpoint (model + the channel map
    `on_stage` hands over, the unpruned model as the target) ends with the same weights."""
    net = _net()
    cfg = PruneConfig(target=0.6, importance="l2", stages=2, ignored=["b"])
    full = copy.deepcopy(net)
    prune(full, X[:1], cfg, calibration=X)

    class Interrupted(Exception):
        pass

    saved: dict[str, Any] = {}

    def stop_after_first(m: nn.Module, stage: int, info: dict[str, Any]) -> None:
        saved.update(model=copy.deepcopy(m), info=copy.deepcopy(info))
        raise Interrupted

    with pytest.raises(Interrupted):
        prune(copy.deepcopy(net), X[:1], cfg, calibration=X, on_stage=stop_after_first)
    assert saved["info"]["kept_channels"]["a"]  # the map a resume needs
    resumed = saved["model"]
    prune(
        resumed, X[:1], cfg, calibration=X, start_stage=1, base=count_macs_params(net, X[:1]),
        reference_model=copy.deepcopy(net), kept_channels=saved["info"]["kept_channels"],
    )  # fmt: skip
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
