"""Structured (channel) pruning of detectors with torch-pruning's dependency graph.

What it does, for any torch detector (an `EdgeDet`, a model converted from ONNX with
`edgedet.train.onnx_import`, or another ``nn.Module`` whose convolutions are ``nn.Conv2d``):

- importance: ``l1`` / ``l2`` filter magnitude, ``bnscale`` (|gamma| of the following batch norm)
  or ``taylor`` (|weight x gradient|, one backward on a batch per pruning step);
- global (one ranking across layers) or per-layer (same ratio everywhere) pruning;
- a target in MACs or parameters, as the fraction *kept* (``target=0.7`` removes 30% of MACs);
- channel counts optionally rounded to ``round_to`` (vector units like multiples of 8; off by
  default because on small models it makes coarse jumps: per-layer pruning of EdgeDet-n at
  round_to=8 goes from 100% to 63% of MACs in its first step, as 16-channel layers halve);
- the head's output layers (class scores, boxes, objectness) protected: found by walking the
  autograd graph back from the outputs to the first convolution on every path;
- least-squares reconstruction after each pruning step (default on; `reconstruct.py`): every
  dense convolution refitted, in forward order, to the unpruned model's outputs on real images;
- ``stages`` prune -> recover steps: the target is reached in equal MAC steps, and a ``recover``
  callback (distillation or fine-tuning) runs after each.

Measured, not assumed: `measure_latency` exports the model to ONNX and times it on ONNX Runtime
(p50 of N runs, 2 threads by default); `prune_report` says when a pruning is not faster.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedet.errors import InvalidInputError, TrainingError

IMPORTANCES: tuple[str, ...] = ("activation", "l1", "l2", "bnscale", "taylor")
METRICS: tuple[str, ...] = ("macs", "params", "latency")


@dataclass
class PruneConfig:
    """How to prune. ``target`` is the fraction of ``metric`` kept (0 < target < 1):
    ``"macs"``, ``"params"``, or ``"latency"``, the estimated latency of the convolutions in
    MAC-equivalents (MACs + ``macs_per_element`` x elements read and written; fit the rate on
    the target with `latency_model.fit_latency_model`)."""

    target: float = 0.5
    metric: str = "macs"
    importance: str = "activation"
    global_pruning: bool = False
    compensate: bool = True
    round_to: int | None = None
    stages: int = 1
    max_layer_ratio: float = 0.75
    steps_per_stage: int = 60
    ignored: list[str] = field(default_factory=list)
    # per-layer ratios from a measured sensitivity scan (`allocate.py`) instead of one ratio
    # for every layer; needs calibration images
    sensitivity: bool = False
    sensitivity_images: int = 16  # of the calibration batch: one forward pass per candidate cut
    # after each pruning step, refit every dense convolution by least squares to the unpruned
    # model's outputs on the calibration images (`reconstruct.py`); needs calibration images
    reconstruct: bool = True
    # metric "latency": what an element moved costs, in MACs (0: the fit found MACs enough)
    macs_per_element: float | None = None

    def validate(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise InvalidInputError(
                f"pruning target must be the fraction of {self.metric} kept, in (0, 1); "
                f"got {self.target} (e.g. 0.7 removes 30%)"
            )
        if self.metric not in METRICS:
            raise InvalidInputError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.importance not in IMPORTANCES:
            raise InvalidInputError(
                f"importance must be one of {IMPORTANCES}, got {self.importance!r}"
            )
        if self.stages < 1:
            raise InvalidInputError(f"stages must be >= 1, got {self.stages}")
        if self.round_to is not None and self.round_to < 1:
            raise InvalidInputError(f"round_to must be >= 1 or None, got {self.round_to}")
        if self.sensitivity and (self.global_pruning or self.metric == "params"):
            raise InvalidInputError(
                "sensitivity-guided ratios allocate a MAC or latency budget: use them with a "
                "MACs or latency target and without global ranking"
            )
        if self.metric == "latency" and (
            self.macs_per_element is None or self.macs_per_element < 0
        ):
            raise InvalidInputError(
                "a latency target needs macs_per_element >= 0 (fit it on the target runtime with "
                "edgedet.train.latency_model.fit_latency_model)"
            )
        if not 0.0 < self.max_layer_ratio < 1.0:
            raise InvalidInputError(
                f"max_layer_ratio must be in (0, 1), got {self.max_layer_ratio}"
            )

    @property
    def element_rate(self) -> float:
        """MACs charged per element moved: ``macs_per_element`` for a latency target, else 0
        (a MACs budget)."""
        return (self.macs_per_element or 0.0) if self.metric == "latency" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- model inspection ------------------------------------------------------------------------------


def flatten_tensors(out: Any) -> list[torch.Tensor]:
    """Every tensor in a (nested) tuple / list / dict model output, in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in flatten_tensors(o)]
    return []


def _forward(model: nn.Module, example: Any) -> Any:
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
            outs = flatten_tensors(_forward(model, example))
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
        outs = flatten_tensors(_forward(model, example))
    names = [type(fn).__name__ for fn in _walk_grad_fns(outs)]
    return sorted(n for n in names if any(k in n for k in ("Split", "Chunk", "Unbind")))


def count_macs_params(model: nn.Module, example: Any) -> tuple[int, int]:
    import torch_pruning as tp

    with torch.no_grad():
        macs, params = tp.utils.count_ops_and_params(model, example)
    return int(macs), int(params)


def metric_value(
    model: nn.Module, example: Any, cfg: PruneConfig, counted: tuple[int, int] | None = None
) -> float:
    """What ``cfg.target`` is a fraction of, for ``model`` now: MACs, parameters, or the
    estimated conv latency in MAC-equivalents (``counted``: `count_macs_params`' result, if
    already at hand)."""
    if cfg.metric == "latency":
        from .allocate import conv_cost_total

        return conv_cost_total(model, example, cfg.element_rate)
    macs, params = counted or count_macs_params(model, example)
    return float(macs if cfg.metric == "macs" else params)


def conv_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every convolution, by module name."""
    return {n: int(m.out_channels) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _reads_channels(dep: Any) -> bool:
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
            return _forward(model, batch)
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


def _activation_importance(stats: ActivationStats) -> Any:
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
                if _reads_channels(dep) and mod in stats.var:
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
        if not _reads_channels(dep) or mod not in stats.mean:
            continue
        shift = mod.weight.data[:, idxs].float().sum((2, 3)) @ stats.mean[mod][idxs]
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(mod.out_channels, dtype=mod.weight.dtype))
        mod.bias.data += shift.to(mod.bias.dtype)
        stats.drop(mod, idxs)


def _track_kept_outputs(
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
        return _activation_importance(stats)
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


def default_taylor_loss(model: nn.Module, example: Any) -> torch.Tensor:
    """Label-free loss for Taylor importance: mean squared output (sensitivity of the outputs)."""
    outs = flatten_tensors(_forward(model, example))
    return sum((o.float() ** 2).mean() for o in outs)  # type: ignore[return-value]


# -- pruning ----------------------------------------------------------------------------------------


def prune(
    model: nn.Module,
    example: Any,
    cfg: PruneConfig,
    *,
    recover: Callable[[nn.Module, int], None] | None = None,
    loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
    start_stage: int = 0,
    base: tuple[int, int] | None = None,
    on_stage: Callable[[nn.Module, int, dict[str, Any]], None] | None = None,
    log: Callable[[str], None] | None = None,
    calibration: Any = None,
    distortion: Callable[[Any], Callable[[Any], float]] | None = None,
    reconstruction: Any = None,
    reference_model: nn.Module | None = None,
    kept_channels: dict[str, list[int]] | None = None,
    reference_value: float | None = None,
) -> dict[str, Any]:
    """Prune ``model`` in place to ``cfg.target`` of its MACs (or parameters, or estimated
    latency).

    ``calibration`` is a batch of real, preprocessed images (N, 3, H, W) for the activation
    importance and mean compensation (default ``example``, which is only a shape: pass images).

    ``recover(model, stage)`` runs after each stage (fine-tuning / distillation). ``loss_fn``
    gives the loss whose gradient Taylor importance uses (default `default_taylor_loss` on
    ``example``). ``start_stage`` / ``base`` resume a staged run from a saved model (``base`` is
    the unpruned ``(macs, params)``). ``on_stage(model, stage, info)`` runs after each stage's
    recovery (checkpointing). With ``cfg.sensitivity``, ``distortion(reference_outputs)`` returns
    the function that scores outputs against those reference ones (default: MSE relative to the
    reference's mean square, summed over output tensors). With ``cfg.reconstruct``,
    ``reconstruction`` is the image batch for the least-squares refit (default
    ``calibration``; it is fed in chunks, so it can be larger; with neither, the refit is
    skipped, since ``example`` is only a shape). The refit targets ``reference_model`` (default:
    a copy of ``model`` as this call gets it); a resumed run passes the unpruned model and the
    ``kept_channels`` map its last ``on_stage`` info carried, so it ends as an uninterrupted
    run would; with a latency target it also passes ``reference_value``, the unpruned model's
    estimated latency its last ``on_stage`` info carried (else it is recomputed from
    ``reference_model``). Returns the report (MACs, parameters, channels before/after, and the
    sensitivity scan when there was one).
    """
    import torch_pruning as tp

    cfg.validate()
    say = log or (lambda s: None)
    was_training = model.training
    model.eval()
    channels_before = conv_channels(model)
    macs0, params0 = base or count_macs_params(model, example)
    if cfg.metric != "latency":
        ref0 = float(macs0 if cfg.metric == "macs" else params0)
    elif reference_value is not None:
        ref0 = float(reference_value)
    elif start_stage == 0:
        ref0 = metric_value(model, example, cfg)
    elif reference_model is not None:  # resumed: the unpruned model is the reference
        ref0 = metric_value(reference_model, example, cfg)
    else:
        raise InvalidInputError("resuming a latency-targeted prune needs the unpruned model")
    named = dict(model.named_modules())
    unknown = [n for n in cfg.ignored if n not in named]
    if unknown:
        raise InvalidInputError(
            f"ignored layer name(s) {unknown} are not modules of the model "
            f"(e.g. {list(named)[1:6]})"
        )
    stages: list[dict[str, Any]] = []
    scans: list[list[dict[str, Any]]] = []
    refits: list[dict[str, Any]] = []
    # Reconstruction targets the unpruned model through every stage: `kept_total` maps each
    # pruned conv's output channels back to that model's.
    fit_images = reconstruction if reconstruction is not None else calibration
    teacher: nn.Module | None = None
    if cfg.reconstruct and fit_images is None:
        say("reconstruction skipped: it needs real images (calibration), not a shape example")
    elif cfg.reconstruct:
        teacher = reference_model if reference_model is not None else copy.deepcopy(model)
    kept_total: dict[str, list[int]] = {k: list(v) for k, v in (kept_channels or {}).items()}
    names = {m: n for n, m in model.named_modules()}
    for stage in range(start_stage, cfg.stages):
        goal = ref0 * (1.0 - (1.0 - cfg.target) * (stage + 1) / cfg.stages)
        fixed = getattr(model, "fixed_channel_convs", None)  # converted ONNX graphs
        ignored = output_layers(model, example) + [named_m for n, named_m in
                                                   model.named_modules() if n in cfg.ignored]  # fmt: skip
        ignored += fixed() if callable(fixed) else []
        stats = ActivationStats()
        cur = count_macs_params(model, example)
        ratio, ratio_dict = cfg.max_layer_ratio, None
        if cfg.sensitivity:
            from .allocate import allocate, scan

            batch = example if calibration is None else calibration[: cfg.sensitivity_images]
            rows = scan(model, example, batch, distortion or relative_mse, ignored=ignored, log=say)
            now = metric_value(model, example, cfg, cur)
            chosen = allocate(rows, now, goal / now, cfg.max_layer_ratio, cfg.element_rate)
            scans.append([{k: v for k, v in r.items() if k != "module"} for r in rows])
            # The allocation counts MACs from conv shapes; channel rounding and uncounted ops
            # make the real count differ a little, so the ratios get 15% headroom and the
            # loop below stops at the measured target.
            ratio = 0.0
            ratio_dict = {m: min(1.15 * r, cfg.max_layer_ratio) for m, r in chosen.items()}
            say(f"sensitivity: cutting {len(chosen)} of {len(rows)} groups")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=make_importance(cfg.importance, stats),
            global_pruning=cfg.global_pruning,
            pruning_ratio=ratio,
            pruning_ratio_dict=ratio_dict,
            max_pruning_ratio=cfg.max_layer_ratio,
            iterative_steps=cfg.steps_per_stage,
            ignored_layers=ignored,
            round_to=cfg.round_to,
        )
        steps = 0
        value = metric_value(model, example, cfg, cur)
        while value > goal and steps < cfg.steps_per_stage:
            if cfg.importance == "taylor":
                model.zero_grad()
                with torch.enable_grad():
                    loss = loss_fn(model) if loss_fn else default_taylor_loss(model, example)
                    loss.backward()
            if cfg.importance == "activation" or cfg.compensate:
                stats.refresh(model, example if calibration is None else calibration)
            for group in pruner.step(interactive=True):
                if cfg.compensate:
                    compensate_group(group, stats)
                else:
                    for dep, idxs in group:
                        if _reads_channels(dep):
                            stats.drop(dep.target.module, idxs)
                _track_kept_outputs(group, names, kept_total)
                group.prune()
            steps += 1
            cur = count_macs_params(model, example)
            value = metric_value(model, example, cfg, cur)
        model.zero_grad(set_to_none=True)
        if teacher is not None:
            from .reconstruct import reconstruct

            fits = reconstruct(model, teacher, fit_images, kept_total, log=say)
            refits.append({"stage": stage + 1, "layers": fits})
        reached = value <= goal
        info = {
            "stage": stage + 1,
            "steps": steps,
            "macs": cur[0],
            "params": cur[1],
            "metric": cfg.metric,
            "value": value,
            "goal": goal,
            "reached": reached,
        }
        say(
            f"stage {stage + 1}/{cfg.stages}: MACs {cur[0] / 1e6:.1f}M "
            f"({cur[0] / macs0:.1%} of {macs0 / 1e6:.1f}M), params {cur[1] / 1e6:.2f}M"
            + (f", estimated latency {value / ref0:.1%}" if cfg.metric == "latency" else "")
            + ("" if reached else f" - target not reached after {steps} steps")
        )
        if recover is not None:
            recover(model, stage)
            model.eval()
        stages.append(info)
        if on_stage is not None:  # what a resume needs besides the model
            on_stage(
                model,
                stage,
                {**info, "kept_channels": copy.deepcopy(kept_total), "reference_value": ref0},
            )
    macs1, params1 = count_macs_params(model, example)
    value1 = metric_value(model, example, cfg, (macs1, params1))  # in eval mode: BN untouched
    after = conv_channels(model)
    model.train(was_training)
    return {
        "config": cfg.to_dict(),
        "macs_before": macs0,
        "macs_after": macs1,
        "macs_kept": macs1 / macs0,
        "params_before": params0,
        "params_after": params1,
        "params_kept": params1 / params0,
        "channels": {n: [channels_before.get(n, c), c] for n, c in after.items()},
        "stages": stages,
        **({"sensitivity": scans} if scans else {}),
        **({"reconstruction": refits} if refits else {}),
        "reached_target": value1 <= ref0 * cfg.target * 1.001,
        **(
            {
                "latency_estimate_kept": value1 / ref0,
                "macs_per_element": cfg.macs_per_element,
            }
            if cfg.metric == "latency"
            else {}
        ),
    }


# -- export and latency -----------------------------------------------------------------------------


def export_module(
    model: nn.Module,
    example: Any,
    out: str | Path,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = 17,
    meta: Any = None,
) -> Path:
    """``torch.onnx.export`` (TorchScript exporter) to ``out`` atomically, with ``meta`` (a
    `ModelMeta`) written into the file when given."""
    from edgedet.meta import atomic_write_bytes, write_onnx_meta

    example_t = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    in_names = list(input_names or getattr(model, "input_names", None) or ["images"])
    out_names = list(output_names or getattr(model, "output_names", None) or ["output"])
    model.eval()
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, example_t, str(raw), input_names=in_names, output_names=out_names,
                opset_version=opset, dynamo=False,
            )  # fmt: skip
        if meta is not None:
            write_onnx_meta(raw, out, meta)
        else:
            atomic_write_bytes(out, raw.read_bytes())
    return out


def measure_latency(
    onnx_path: str | Path, *, iters: int = 50, warmup: int = 5, threads: int = 2
) -> dict[str, float]:
    """Inference latency of an ONNX model on ONNX Runtime CPU (random input), in ms."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = np.random.default_rng(0).random(shape).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "mean_ms": statistics.fmean(times),
        "iters": float(iters),
        "threads": float(threads),
    }


def latency_verdict(before_ms: float, after_ms: float, min_speedup: float = 1.05) -> dict[str, Any]:
    speedup = before_ms / after_ms if after_ms > 0 else float("nan")
    faster = speedup >= min_speedup
    note = (
        f"{speedup:.2f}x faster on ONNX Runtime CPU"
        if faster
        else f"NOT faster on ONNX Runtime CPU ({speedup:.2f}x): fewer MACs did not buy speed here"
    )
    return {"speedup": speedup, "faster": faster, "note": note}


def prune_with_latency(
    model: nn.Module,
    example: Any,
    cfg: PruneConfig,
    *,
    iters: int = 30,
    threads: int = 2,
    **kw: Any,
) -> dict[str, Any]:
    """`prune`, with ONNX Runtime latency before and after added to the report."""
    with tempfile.TemporaryDirectory() as tmp:
        before = measure_latency(
            export_module(model, example, Path(tmp) / "a.onnx"), iters=iters, threads=threads
        )
        report = prune(model, example, cfg, **kw)
        after = measure_latency(
            export_module(model, example, Path(tmp) / "b.onnx"), iters=iters, threads=threads
        )
    report["latency_before"] = before
    report["latency_after"] = after
    report.update(latency_verdict(before["p50_ms"], after["p50_ms"]))
    return report


def report_markdown(report: dict[str, Any], title: str = "Pruning report") -> str:
    """A short human-readable summary of a `prune` report."""
    lines = [
        f"# {title}",
        "",
        "| | before | after | kept |",
        "|---|---|---|---|",
        f"| MACs | {report['macs_before'] / 1e6:.1f}M | {report['macs_after'] / 1e6:.1f}M "
        f"| {report['macs_kept']:.1%} |",
        f"| params | {report['params_before'] / 1e6:.3f}M | {report['params_after'] / 1e6:.3f}M "
        f"| {report['params_kept']:.1%} |",
    ]
    if "latency_before" in report:
        b, a = report["latency_before"]["p50_ms"], report["latency_after"]["p50_ms"]
        lines.append(f"| p50 latency (ORT CPU) | {b:.2f} ms | {a:.2f} ms | {a / b:.1%} |")
        lines += ["", report.get("note", "")]
    fit = report.get("latency_model")
    if "latency_estimate_kept" in report:
        lines.append(
            f"- estimated convolution latency kept: {report['latency_estimate_kept']:.1%}"
            + (
                f" (ONNX Runtime profile fit: {fit['per_mmac']:.4f} ms/MMAC + "
                f"{fit['per_melement']:.4f} ms per million elements moved, R^2 {fit['r2']:.2f};"
                f" MACs alone R^2 {fit['r2_macs_only']:.2f})"
                if fit
                else ""
            )
        )
    for k in ("map_before", "map_after"):
        if k in report:
            lines.append(f"- {k}: {report[k]:.4f}")
    before, after = report.get("eval_before"), report.get("eval_after")
    if before and after:
        lines += [
            "",
            "| | before | after | kept |",
            "|---|---|---|---|",
            f"| mAP50-95 | {before['map50_95']:.4f} | {after['map50_95']:.4f} "
            f"| {after['map50_95'] / max(before['map50_95'], 1e-12):.1%} |",
            f"| mAP50 | {before['map50']:.4f} | {after['map50']:.4f} "
            f"| {after['map50'] / max(before['map50'], 1e-12):.1%} |",
        ]
    kept = map_kept_line(report)
    if kept:
        lines += ["", kept]
    for rec in report.get("reconstruction", []):
        rows = rec["layers"]
        fitted = [r for r in rows if r["fitted"]]
        if rows:
            b = sum(r["before"] for r in rows) / len(rows)
            a = sum(r["after"] for r in rows) / len(rows)
            lines.append(
                f"- stage {rec['stage']} least-squares reconstruction: {len(fitted)} of "
                f"{len(rows)} convolutions refitted, mean relative output error {b:.4f} -> {a:.4f}"
            )
    lines += ["", "## Channels per convolution (before -> after)", ""]
    for name, (b0, a0) in report["channels"].items():
        if b0 != a0:
            lines.append(f"- `{name}`: {b0} -> {a0}")
    return "\n".join(lines) + "\n"


def map_kept_line(report: dict[str, Any]) -> str:
    """One markdown line: the share of float mAP50-95 kept with its 95% paired bootstrap
    interval (``report["map_kept"]``, see `compress_command.evaluate_pair`), or why it is
    missing, then the evaluation protocol both were scored with; empty without a validation
    run."""
    kept = report.get("map_kept")
    if not kept:
        return ""
    proto = ""
    if report.get("protocol"):
        from edgedet.protocol import EvalProtocol

        proto = f"\n- mAP protocol: {EvalProtocol.from_dict(report['protocol']).describe()}"
    if kept.get("reason"):
        return f"- share of float mAP50-95 kept: no interval ({kept['reason']}){proto}"
    if kept.get("estimate") is None or kept.get("low") is None:
        return f"- share of float mAP50-95 kept: undefined (float mAP is 0){proto}"
    return (
        f"- share of float mAP50-95 kept: {kept['estimate']:.1%} "
        f"[{kept['low']:.1%}, {kept['high']:.1%}], 95% paired bootstrap over "
        f"{kept['images']} validation images (an interval this wide is what they resolve)"
        f"{proto}"
    )


def check_prunable(model: nn.Module, example: Any) -> None:
    """Refuse models whose forward pass splits tensors (chunk / split), which the dependency
    graph follows poorly; `EdgeDet` is built without them."""
    found = split_ops(model, example)
    if found:
        raise TrainingError(
            f"the model splits tensors in its forward pass ({sorted(set(found))}); channel "
            "pruning cannot follow them reliably. Rewrite the split as separate convolutions "
            "(as EdgeDet's CSP block does) and prune again"
        )
