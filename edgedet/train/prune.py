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

Measured, not assumed: `prune_with_latency` exports the model to ONNX and times it on ONNX
Runtime (`edgedet.benchmarks.latency.measure_network_latency`); `report.latency_verdict` says when
a pruning is not faster. Graph walking, activation statistics and importance live in
`channels.py`, the Markdown report in `report.py`, ONNX export in `export.py`.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedet.errors import InvalidInputError, TrainingError

from .channels import (
    IMPORTANCES,
    ActivationStats,
    compensate_group,
    conv_channels,
    conv_cost_total,
    count_macs_params,
    flatten_tensors,
    forward,
    make_importance,
    output_layers,
    reads_channels,
    relative_mse,
    split_ops,
    track_kept_outputs,
)

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


def metric_value(
    model: nn.Module, example: Any, cfg: PruneConfig, counted: tuple[int, int] | None = None
) -> float:
    """What ``cfg.target`` is a fraction of, for ``model`` now: MACs, parameters, or the
    estimated conv latency in MAC-equivalents (``counted``: `count_macs_params`' result, if
    already at hand)."""
    if cfg.metric == "latency":
        return conv_cost_total(model, example, cfg.element_rate)
    macs, params = counted or count_macs_params(model, example)
    return float(macs if cfg.metric == "macs" else params)


def default_taylor_loss(model: nn.Module, example: Any) -> torch.Tensor:
    """Label-free loss for Taylor importance: mean squared output (sensitivity of the outputs)."""
    outs = flatten_tensors(forward(model, example))
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
                        if reads_channels(dep):
                            stats.drop(dep.target.module, idxs)
                track_kept_outputs(group, names, kept_total)
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


# -- latency -----------------------------------------------------------------------------------------


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
    from edgedet.benchmarks.latency import measure_network_latency as measure_latency

    from .export import export_module
    from .report import latency_verdict

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
