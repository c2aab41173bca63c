"""Least-squares reconstruction of a pruned model's convolutions from the unpruned one.

After a pruning step every dense convolution (``groups == 1``) of the pruned model is refitted,
in forward order, so that on calibration images it reproduces what the same convolution of the
unpruned model (the *reference*) computed on its kept output channels:

    W, b = argmin  sum_samples ||W x + b - y||²  +  lam ||W - W0||²

with ``x`` the pruned model's own input patch at that layer (so errors made upstream are
corrected downstream, not only the channels this layer lost), ``y`` the reference layer's
pre-activation output, and ``W0`` the current weights (mean-compensated by the pruning) as the
ridge prior. It is the layer-wise linear reconstruction of He et al. 2017 ("Channel Pruning for
Accelerating Very Deep Neural Networks") and ThiNet, which need only a few dozen images because
every spatial position is a sample; distillation on 128 images cannot recover what a cut loses,
a linear fit per layer recovers much of it in one pass. Neither torch-pruning nor NNCF has it,
hence this module.

Everything is one forward pass of the reference (outputs sampled at fixed positions) and one of
the pruned model whose pre-hooks fit each convolution just before it runs. Depthwise and other
grouped convolutions are left alone (their input channels are their output channels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .channels import forward


def _patches(conv: nn.Conv2d, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Input patches of ``conv`` at output positions ``pos`` (flat indices into Ho*Wo), as
    ``(groups, N * P, C_in / groups * kh * kw)`` float64; ``x`` is the conv input
    ``(N, C_in, H, W)``."""
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0):
        cols = x.flatten(2)[:, :, pos]
    else:
        cols = torch.cat(
            [
                F.unfold(
                    x[i : i + 1],
                    conv.kernel_size,
                    dilation=conv.dilation,
                    padding=conv.padding,  # type: ignore[arg-type]
                    stride=conv.stride,
                )[:, :, pos]
                for i in range(x.shape[0])
            ]
        )
    # unfold orders rows channel-major, so each group's channels are one contiguous block
    n, d, p = cols.shape
    g = conv.groups
    return cols.reshape(n, g, d // g, p).permute(1, 0, 3, 2).reshape(g, n * p, d // g).double()


def fittable(conv: nn.Module) -> bool:
    """2-D convolutions (dense or grouped) with zero padding given as numbers (what `F.unfold`
    reproduces)."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def _theta(conv: nn.Conv2d) -> torch.Tensor:
    """``conv``'s weights and bias as the unknowns of its fit: (g, D + 1, C_out / g) float64."""
    g = conv.groups
    w = conv.weight.detach().double().reshape(g, conv.out_channels // g, -1)
    b = (
        conv.bias.detach().double()
        if conv.bias is not None
        else torch.zeros(conv.out_channels, dtype=torch.float64)
    ).reshape(g, -1, 1)
    return torch.cat([w, b], 2).transpose(1, 2)


class _Normal:
    """Accumulated normal equations of one convolution's least-squares fit, per group:
    ``gram = Xaᵀ Xa`` (g, D+1, D+1), ``cross = Xaᵀ Y`` (g, D+1, C/g), ``yy = sum Y²``; ``Xa`` is
    the input patches with a ones column (the bias), ``Y`` the reference outputs. Enough to
    solve and to score any weights: ``|Xa t - Y|² = tr(tᵀ gram t) - 2 tr(tᵀ cross) + yy``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        self.theta0 = _theta(conv)
        g, d = self.theta0.shape[:2]
        self.gram = torch.zeros(g, d, d, dtype=torch.float64)
        self.cross = torch.zeros_like(self.theta0)
        self.yy = 0.0

    def add(self, xa: torch.Tensor, y: torch.Tensor) -> None:
        self.gram += xa.transpose(1, 2) @ xa
        self.cross += xa.transpose(1, 2) @ y
        self.yy += float((y**2).sum())

    def error(self, theta: torch.Tensor) -> float:
        """Squared error of ``theta`` relative to the outputs' energy (0 = exact, 1 = zero)."""
        quad = (theta * (self.gram @ theta)).sum() - 2 * (theta * self.cross).sum()
        return max(float(quad) + self.yy, 0.0) / max(self.yy, 1e-30)

    def solve(self, ridge: float) -> torch.Tensor:
        """Ridge solution pulled towards ``theta0``; the bias row is not regularised."""
        diag = self.gram.diagonal(dim1=1, dim2=2)[:, :-1].mean(1).clamp_min(1e-12)
        reg = (ridge * diag)[:, None].expand(*self.gram.shape[:2]).clone()
        reg[:, -1] = 0.0
        rhs = self.cross + reg[..., None] * self.theta0
        return torch.linalg.solve(self.gram + torch.diag_embed(reg), rhs)


def _set_weights(conv: nn.Conv2d, theta: torch.Tensor) -> None:
    conv.weight.data.copy_(
        theta[:, :-1].transpose(1, 2).reshape(conv.weight.shape).to(conv.weight.dtype)
    )
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype))
    conv.bias.data.copy_(theta[:, -1].reshape(-1).to(conv.bias.dtype))


@torch.no_grad()
def reconstruct(
    model: nn.Module,
    reference: nn.Module,
    images: torch.Tensor,
    kept_out: dict[str, list[int]],
    *,
    positions: int = 256,
    ridge: float = 1e-2,
    chunk: int = 16,
    seed: int = 0,
    dense_only: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Refit ``model``'s dense convolutions in place to ``reference``'s outputs on ``images``.

    ``images``: preprocessed calibration batch ``(N, 3, H, W)`` float32, as the model takes it.
    ``reference``: the model before this pruning step, with the same module names.
    ``kept_out[name]``: the reference output channels each pruned convolution kept, in order
    (a name missing means all were kept). ``positions``: output positions sampled per image
    (fixed per layer, all when the map is smaller). ``ridge``: ``lam`` relative to the mean
    diagonal of the inputs' Gram matrix. ``chunk``: images per forward pass (memory): each
    chunk adds to every layer's normal equations and refits it before the pass goes on, so
    one chunk (``chunk >= N``) is the exact sequential fit, and with several the early chunks'
    inputs were computed with upstream weights fitted on fewer images. Returns per
    convolution its relative error (squared error / energy of the reference outputs) on all
    samples, with the weights it had before and with those it ends with.
    """
    say = log or (lambda s: None)
    model.eval()
    reference.eval()
    ref_mods = dict(reference.named_modules())
    targets = {
        n: m
        for n, m in model.named_modules()
        if fittable(m)
        and isinstance(ref_mods.get(n), nn.Conv2d)
        and ref_mods[n].kernel_size == m.kernel_size
        and ref_mods[n].stride == m.stride
        and (dense_only is False or m.groups == 1)
    }
    gen = torch.Generator().manual_seed(seed)
    pos: dict[str, torch.Tensor] = {}  # sampled output positions per layer, fixed over chunks
    wanted: dict[str, torch.Tensor] = {}  # this chunk's sampled reference outputs (S, C_kept)
    normal: dict[str, _Normal] = {}
    skipped: set[str] = set()
    applied: set[str] = set()

    def ref_hook(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            if name in wanted:  # a module called twice: its first call is the one refitted
                return
            if name not in pos:
                hw = out.shape[2] * out.shape[3]
                pos[name] = torch.randperm(hw, generator=gen)[: min(positions, hw)]
            y = out.flatten(2)[:, :, pos[name]]
            keep = kept_out.get(name)
            if keep is not None:
                y = y[:, keep]
            wanted[name] = y.permute(0, 2, 1).reshape(-1, y.shape[1])

        return hook

    def fit_hook(name: str) -> Callable[..., None]:
        def hook(conv: nn.Module, inp: Any) -> None:
            if name in skipped or name not in wanted:
                return
            assert isinstance(conv, nn.Conv2d)
            y = wanted.pop(name).double()  # popped: a second call in this pass is left alone
            if y.shape[1] != conv.out_channels:
                say(f"reconstruct: {name} has {conv.out_channels} outputs, reference kept "
                    f"{y.shape[1]}: skipped")  # fmt: skip
                skipped.add(name)
                return
            g = conv.groups
            x = _patches(conv, inp[0].float(), pos[name])  # (g, S, D)
            xa = torch.cat([x, torch.ones(*x.shape[:2], 1, dtype=x.dtype)], 2)
            eq = normal.setdefault(name, _Normal(conv))
            eq.add(xa, y.reshape(y.shape[0], g, -1).permute(1, 0, 2))
            try:
                theta = eq.solve(ridge)
            except RuntimeError:  # singular even with the ridge (e.g. an all-zero input)
                theta = eq.theta0
            if eq.error(theta) < eq.error(eq.theta0):
                _set_weights(conv, theta)
                applied.add(name)
            elif name in applied:  # never leave a layer worse than the pruning did
                _set_weights(conv, eq.theta0)
                applied.discard(name)

        return hook

    for xb in images.split(max(1, chunk)):
        hooks = [ref_mods[n].register_forward_hook(ref_hook(n)) for n in targets]
        try:
            forward(reference, xb)
        finally:
            for h in hooks:
                h.remove()
        hooks = [m.register_forward_pre_hook(fit_hook(n)) for n, m in targets.items()]
        try:
            forward(model, xb)
        finally:
            for h in hooks:
                h.remove()
        wanted.clear()

    rows: list[dict[str, Any]] = []
    for name, eq in normal.items():
        conv = targets[name]
        fitted = name in applied
        before = eq.error(eq.theta0)
        after = eq.error(_theta(conv)) if fitted else before
        rows.append({"layer": name, "groups": conv.groups, "before": before,
                     "after": after, "fitted": fitted})  # fmt: skip
    if rows:
        worst = max(rows, key=lambda r: r["before"])
        say(
            f"reconstruct: {sum(r['fitted'] for r in rows)} of {len(rows)} convolutions refitted; "
            f"largest error {worst['layer']} {worst['before']:.3f} -> {worst['after']:.3f}"
        )
    return rows
