"""Channel-level helpers shared by pruning (`prune.py`), sensitivity allocation
(`allocate.py`) and least-squares reconstruction (`reconstruct.py`): walking a torch model's
forward graph, counting MACs and per-convolution costs, per-channel activation statistics of
dense convolutions' inputs, the activation importance, and mean compensation.

Tensors are ``(N, C, H, W)`` float batches; channel statistics are per input channel of a
dense (``groups == 1``) ``nn.Conv2d``. torch-pruning is imported inside the functions that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from edgedet.errors import InvalidInputError

IMPORTANCES: tuple[str, ...] = ("activation", "l1", "l2", "bnscale", "taylor")


# -- graph walking ------------------------------------------------------------------------------


def flatten_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) tuple / list / dict model output, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten_tensors(o)]
    return []


def forward(model: nn.Module, example: Any) -> Any:
    return model(*example) if isinstance(example, (tuple, list)) else model(example)


def _walk_grad_fns(outputs: Iterable[torch.Tensor]) -> Iterable[Any]:
    seen: set[int] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        yield fn
        stack.extend(nf for nf, _ in fn.next_functions if nf is not None)


def output_layers(model: nn.Module, example: Any) -> list[nn.Module]:
    """The convolutions / linear layers whose outputs reach the model outputs without passing
    through another such layer: the head's prediction layers. Pruning keeps them whole."""
    producers: dict[int, nn.Module] = {}
    hooks = []

    def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            producers[id(out.grad_fn)] = mod

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            outs = flatten_tensors(forward(model, example))
    finally:
        for h in hooks:
            h.remove()
    found: list[nn.Module] = []
    seen: set[int] = set()
    stack = [t.grad_fn for t in outs if t.grad_fn is not None]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        mod = producers.get(id(fn))
        if mod is not None:
            if all(mod is not f for f in found):
                found.append(mod)
            continue
        stack.extend(nf for nf, _ in fn.next_functions if nf is not None)
    return found


def split_ops(model: nn.Module, example: Any) -> list[str]:
    """Autograd node names of split / chunk / unbind ops in the forward pass (patterns the
    dependency graph follows poorly; `EdgeDet` has none by design)."""
    with torch.enable_grad():
        outs = flatten_tensors(forward(model, example))
    names = [type(fn).__name__ for fn in _walk_grad_fns(outs)]
    return sorted(n for n in names if any(k in n for k in ("Split", "Chunk", "Unbind")))


def count_macs_params(model: nn.Module, example: Any) -> tuple[int, int]:
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution, by module name."""
    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def reads_channels(dep: Any) -> bool:
    """True when ``dep`` prunes the input channels of a dense (groups=1) convolution."""
    import torch_pruning as tp

    mod = dep.target.module
    return (
        dep.handler == tp.prune_conv_in_channels and isinstance(mod, nn.Conv2d) and mod.groups == 1
    )


class ActivationStats:
    """Per-channel mean and variance of the input of every dense convolution, over a
    calibration batch ``(N, C, H, W)``. Kept in step with the model while a pruning step removes
    input channels (`drop`), because one step can prune a convolution's inputs in several groups
    (a concat of two branches)."""

    def __init__(self) -> None:
        self.mean: dict[nn.Module, torch.Tensor] = {}
        self.var: dict[nn.Module, torch.Tensor] = {}

    @torch.no_grad()
    def refresh(self, model: nn.Module, batch: Any) -> Any:
        """Statistics of ``model`` on ``batch``; returns the model's outputs of that pass."""
        self.mean.clear()
        self.var.clear()

        def hook(mod: nn.Module, inp: Any) -> None:
            t = inp[0].float()
            self.mean[mod] = t.mean((0, 2, 3))
            self.var[mod] = t.var((0, 2, 3), unbiased=False)

        hooks = [
            m.register_forward_pre_hook(hook)
            for m in model.modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1
        ]
        try:
            return forward(model, batch)
        finally:
            for h in hooks:
                h.remove()

    def drop(self, mod: nn.Module, idxs: Sequence[int]) -> None:
        if mod not in self.mean:
            return
        gone = {int(i) for i in idxs}
        keep = [i for i in range(self.mean[mod].numel()) if i not in gone]
        self.mean[mod] = self.mean[mod][keep]
        self.var[mod] = self.var[mod][keep]


def activation_importance(stats: ActivationStats) -> Any:
    import torch_pruning as tp

    class ActivationImportance(tp.importance.Importance):  # type: ignore[misc]
        """Score of a channel = sum over the dense convolutions that read it of
        Var(channel) * ||weights reading it||²: the expected squared change of their outputs
        when the channel is replaced by its mean (which `compensate` then adds back)."""

        @torch.no_grad()
        def __call__(self, group: Any) -> torch.Tensor | None:
            parts: list[tuple[torch.Tensor, list[int]]] = []
            for i, (dep, idxs) in enumerate(group):
                mod = dep.target.module
                if reads_channels(dep) and mod in stats.var:
                    w = mod.weight.data[:, idxs]
                    score = stats.var[mod][idxs] * (w.float() ** 2).sum((0, 2, 3))
                    parts.append((score, list(group[i].root_idxs)))
            if not parts:
                return None  # nothing dense reads these channels: leave them
            size = max(max(r) for _, r in parts) + 1
            out = torch.zeros(size)
            for score, roots in parts:
                out.scatter_add_(0, torch.tensor(roots), score)
            return out

    return ActivationImportance()


@torch.no_grad()
def compensate_group(group: Any, stats: ActivationStats) -> None:
    """Before ``group`` is pruned: fold each removed input channel's mean activation into the
    bias of the dense convolutions reading it (exact for 1×1 convolutions; for k×k ones it
    ignores the zero padding at the border)."""
    for dep, idxs in group:
        mod = dep.target.module
        if not reads_channels(dep) or mod not in stats.mean:
            continue
        shift = mod.weight.data[:, idxs].float().sum((2, 3)) @ stats.mean[mod][idxs]
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(mod.out_channels, dtype=mod.weight.dtype))
        mod.bias.data += shift.to(mod.bias.dtype)
        stats.drop(mod, idxs)


def track_kept_outputs(
    group: Any, names: dict[nn.Module, str], kept: dict[str, list[int]]
) -> None:
    """Before ``group`` is pruned: drop its removed output channels from ``kept[name]``: for
    each position of a convolution's current outputs, the output channel of the model the map
    started from (the unpruned one) it holds."""
    import torch_pruning as tp

    gone: dict[nn.Conv2d, set[int]] = {}
    for dep, idxs in group:
        mod = dep.target.module
        if dep.handler == tp.prune_conv_out_channels and isinstance(mod, nn.Conv2d):
            gone.setdefault(mod, set()).update(int(i) for i in idxs)
    for conv, idx in gone.items():
        name = names[conv]
        cur = kept.get(name, list(range(conv.out_channels)))
        kept[name] = [c for i, c in enumerate(cur) if i not in idx]


def make_importance(name: str, stats: ActivationStats | None = None) -> Any:
    import torch_pruning as tp

    if name == "activation":
        if stats is None:
            raise InvalidInputError("activation importance needs calibration statistics")
        return activation_importance(stats)
    if name == "l1":
        return tp.importance.MagnitudeImportance(p=1)
    if name == "l2":
        return tp.importance.MagnitudeImportance(p=2)
    if name == "bnscale":
        return tp.importance.BNScaleImportance()
    if name == "taylor":
        return tp.importance.TaylorImportance()
    raise InvalidInputError(f"importance must be one of {IMPORTANCES}, got {name!r}")


def relative_mse(reference: Any) -> Callable[[Any], float]:
    """Output distortion against ``reference`` outputs: per tensor, mean squared difference over
    the reference's mean square, summed over tensors (0 = identical, ~1 = lost)."""
    refs = [t.detach().float() for t in flatten_tensors(reference)]

    def score(outputs: Any) -> float:
        outs = flatten_tensors(outputs)
        return float(
            sum(
                ((o.float() - r) ** 2).mean() / (r**2).mean().clamp_min(1e-12)
                for o, r in zip(outs, refs)
            )
        )

    return score



# -- convolution costs ------------------------------------------------------------------------------


def conv_macs(model: nn.Module, example: Any) -> dict[nn.Module, int]:
    """Multiply-accumulates of every convolution for one forward pass of ``example``."""
    return {m: c[0] for m, c in conv_costs(model, example).items()}


def conv_costs(model: nn.Module, example: Any) -> dict[nn.Module, tuple[int, int, int]]:
    """``(MACs, input elements, output elements)`` of every convolution for one forward pass of
    ``example``, per image. Elements are what a memory-bound convolution (and the activation
    run on its output) spends its time moving; see `latency_model.py`."""
    costs: dict[nn.Module, tuple[int, int, int]] = {}

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        w: torch.Tensor = mod.weight  # type: ignore[assignment]
        per_out = int(out.numel() // out.shape[0])
        costs[mod] = (
            per_out * int(w.shape[1] * w.shape[2] * w.shape[3]),
            int(inp[0].numel() // inp[0].shape[0]),
            per_out,
        )

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    model.eval()  # a counting pass must not move batch-norm statistics
    try:
        with torch.no_grad():
            forward(model, example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return costs


def conv_cost_total(model: nn.Module, example: Any, macs_per_element: float) -> float:
    """The whole model's estimated cost in MAC-equivalents: MACs plus ``macs_per_element``
    times the elements every convolution reads and writes (0: MACs alone)."""
    return float(
        sum(m + macs_per_element * (i + o) for m, i, o in conv_costs(model, example).values())
    )
