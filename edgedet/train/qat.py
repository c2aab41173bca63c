"""Quantization-aware training through NNCF's torch backend, exported to QDQ ONNX.

The flow (`run_qat`):

1. fold batch norms into their convolutions (`fuse_conv_bn`), as the deployed INT8 graph has them;
2. ``nncf.quantize(model, calibration_dataset)``: NNCF inserts FakeQuantize hooks (8-bit, weights
   per channel, activations per tensor) initialised from calibration statistics on the
   deployment-preprocessed images, and returns the same module class, still trainable. What is
   quantized follows `calibration`'s recipe (`plan_quantization`):

   - asymmetric (uint8) activations, NNCF's ``MIXED`` preset. NNCF's torch default is
     symmetric *signed* int8 activations; OpenVINO runs those by shifting them to uint8 around
     128, and on x86 without VNNI (AVX2: ``vpmaddubsw`` adds two u8*s8 products into a
     saturating int16) pairs of mid-range activations and full-range weights saturate. On
     YOLOX-nano that gave 0.0001 mAP on OpenVINO for a file ONNX Runtime scores at 95% of float;
   - only the inputs of compute ops (``scope="conv_inputs"``): the inputs of element-wise ops,
     concatenations, pooling, resizing and slicing are not quantized;
   - the *stem* stays float (``keep_stem_float``): the convs that read the network input
     through non-compute ops only (YOLOX's Focus slices), found on the autograd graph
     (`input_convs`), as `calibration.tail.find_input_convs` does on ONNX graphs;
   - any further layers named in ``keep_float`` (module names, or ONNX node names of a converted
     model, e.g. the layers `calibration`'s mixed-precision search kept float);
3. fine-tune those fake-quantized weights and scales by label-free distillation from the float
   teacher (`edgedet.train.distill.Distiller`);
4. export QDQ ONNX: every NNCF quantizer is switched to ``QuantizeLinear / DequantizeLinear``
   pairs (`set_qdq_export`) and ``torch.onnx.export`` writes the graph, with its `ModelMeta`
   (``precision="int8"``, the training record under ``options["training"]``). ONNX Runtime and
   OpenVINO both run it.

The decode tail stays float: for `EdgeDet` it is not part of the quantized module at all
(`ExportModel` adds `DecodeTail` after the quantized network); for converted ONNX detectors NNCF
places quantizers only on inputs of compute ops, and `tail_quantizers` counts any Q/DQ that
reached the tail in the exported graph (reported, expected 0).

Checkpoints hold NNCF's quantizer config and the state dict (``nncf.torch.get_config`` /
``load_from_config``), since NNCF-hooked modules do not pickle, plus the quantization plan: a
resume rebuilds the student from them (no second calibration pass) and refuses a different plan.

Note: NNCF compiles a small C++ extension for CPU fake quantization on first use (cached under
``~/.cache/torch_extensions``); without a compiler it falls back to slower torch operations.
"""

from __future__ import annotations

import copy
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedet.errors import CalibrationError, InvalidInputError, TrainingError

SCOPES = ("conv_inputs", "all")

#: NNCF torch op types whose inputs are not quantized with ``scope="conv_inputs"`` (the torch
#: counterpart of `calibration.nncf_int8.NON_COMPUTE_OV_TYPES`).
NON_COMPUTE_TORCH_TYPES = (
    "mul", "add", "sub", "div", "__mul__", "__add__", "__iadd__", "__radd__", "__rmul__",
    "__sub__", "__truediv__", "cat", "interpolate", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "sigmoid", "silu", "__getitem__",
)  # fmt: skip

#: module types that hold quantizable weights
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)


def fuse_conv_bn(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` in a module with ``conv`` and
    ``bn`` attributes (EdgeDet's ``ConvBNAct``) into the conv; returns how many were folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    n = 0
    for mod in model.modules():
        conv, bn = getattr(mod, "conv", None), getattr(mod, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            mod.conv = fuse_conv_bn_eval(conv.eval(), bn.eval())
            mod.bn = nn.Identity()
            n += 1
    return n


def input_convs(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the weighted modules that read the network input directly or through
    non-compute ops only (slices, concatenations, transposes): the *stem*.

    Found by running ``example`` and walking each conv's input back on the autograd graph: a
    walk that reaches the input without passing through another convolution / matmul is a stem
    conv. Works for any torch module (converted ONNX graphs and EdgeDet alike)."""
    names: dict[nn.Module, str] = {
        m: n for n, m in model.named_modules() if isinstance(m, _WEIGHTED)
    }
    found: list[str] = []
    x = example.detach().clone().requires_grad_(True)

    def reaches_input(t: torch.Tensor) -> bool:
        if t is x:
            return True
        stack, seen = [t.grad_fn], set()
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen:
                continue
            seen.add(fn)
            kind = type(fn).__name__
            if kind == "AccumulateGrad":
                if getattr(fn, "variable", None) is x:
                    return True
                continue
            if kind.startswith(("Convolution", "Mm", "Addmm", "Bmm", "Linear")):
                continue  # another learned layer: not the stem
            stack.extend(f for f, _ in fn.next_functions)
        return False

    def hook(mod: nn.Module, inputs: tuple[Any, ...], _out: Any) -> None:
        t = inputs[0] if inputs else None
        if isinstance(t, torch.Tensor) and reaches_input(t) and names[mod] not in found:
            found.append(names[mod])

    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    try:
        with torch.enable_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found


def _resolve_layers(model: nn.Module, wanted: Sequence[str]) -> list[str]:
    """Module names for ``wanted``: module names, or ONNX node names of a converted model
    (``Conv_44`` -> ``layers.Conv_44``)."""
    modules = [n for n, m in model.named_modules() if isinstance(m, _WEIGHTED)]
    out: list[str] = []
    for w in wanted:
        key = re.sub(r"\W", "_", w).strip("_")
        hits = [n for n in modules if n == w] or [
            n for n in modules if n.endswith("." + key) or n == key
        ]
        if len(hits) != 1:
            sample = ", ".join(modules[:4])
            why = "is not a conv/linear layer of the model" if not hits else "is ambiguous"
            raise InvalidInputError(
                f"layer {w!r} to keep float {why}; layer names look like: {sample}"
            )
        if hits[0] not in out:
            out.append(hits[0])
    return out


@dataclass
class QuantPlan:
    """What `quantize_for_qat` quantizes: ``float_layers`` maps each module kept in float to why
    (``"stem"`` / ``"user"``); ``nncf_names`` are the same layers as NNCF graph node names."""

    scope: str = "conv_inputs"
    symmetric_activations: bool = False
    float_layers: dict[str, str] = field(default_factory=dict)
    nncf_names: list[str] = field(default_factory=list)
    ignored_types: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The part of the plan that defines the quantized model (for reports and resume)."""
        return {
            "scope": self.scope,
            "activations": "symmetric" if self.symmetric_activations else "asymmetric",
            "float_layers": dict(self.float_layers),
        }


def plan_quantization(
    model: nn.Module,
    example: torch.Tensor,
    *,
    keep_stem_float: bool = True,
    keep_float: Sequence[str] = (),
    scope: str = "conv_inputs",
    symmetric_activations: bool = False,
) -> QuantPlan:
    """Which layers stay float and which op inputs NNCF may quantize (module docstring)."""
    from nncf.torch import wrap_model

    if scope not in SCOPES:
        raise InvalidInputError(f"scope must be one of {SCOPES}, got {scope!r}")
    if isinstance(keep_float, str):
        raise InvalidInputError(f"keep_float must be a sequence of names, got {keep_float!r}")
    plan = QuantPlan(scope=scope, symmetric_activations=symmetric_activations)
    if keep_stem_float:
        for name in input_convs(model, example):
            plan.float_layers[name] = "stem"
    for name in _resolve_layers(model, keep_float):
        plan.float_layers.setdefault(name, "user")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = wrap_model(copy.deepcopy(model).eval(), example, trace_parameters=True).get_graph()
    present = {n.node_type for n in graph.get_all_nodes()}
    if scope == "conv_inputs":
        plan.ignored_types = [t for t in NON_COMPUTE_TORCH_TYPES if t in present]
    # NNCF names ops by type and call order ("/conv2d/0"); a layer is found by its weight input
    by_weight = {f"{name}.weight": name for name in plan.float_layers}
    for node in graph.get_all_nodes():
        for edge in graph.get_input_edges(node):
            if edge.from_node.node_name in by_weight and node.node_name not in plan.nncf_names:
                plan.nncf_names.append(node.node_name)
    if len(plan.nncf_names) < len(plan.float_layers):
        raise CalibrationError(
            f"could not find all of {sorted(plan.float_layers)} in NNCF's graph of the model"
        )
    return plan


def quantize_for_qat(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    plan: QuantPlan | None = None,
    ignored_scope: Any = None,
    fast_bias_correction: bool = True,
) -> nn.Module:
    """NNCF post-training initialisation of fake quantizers; the result is trainable (QAT).

    ``plan`` (default: `plan_quantization` with its defaults) says what stays float;
    ``ignored_scope`` (an ``nncf.IgnoredScope``) adds to it."""
    import nncf

    if not calibration:
        raise CalibrationError("QAT needs calibration images (got none)")
    model.eval()
    if plan is None:
        plan = plan_quantization(model, calibration[0])
    names, types = list(plan.nncf_names), list(plan.ignored_types)
    patterns: list[str] = []
    if ignored_scope is not None:
        names += list(ignored_scope.names)
        types += list(ignored_scope.types)
        patterns += list(ignored_scope.patterns)
    kw: dict[str, Any] = {
        "subset_size": len(calibration),
        "fast_bias_correction": fast_bias_correction,
        "preset": nncf.QuantizationPreset.PERFORMANCE
        if plan.symmetric_activations
        else nncf.QuantizationPreset.MIXED,
        "ignored_scope": nncf.IgnoredScope(
            names=names, types=types, patterns=patterns, validate=False
        ),
    }
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf_logger.setLevel("WARNING")  # not one INFO line per op left unquantized
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nncf.quantize(model, nncf.Dataset(list(calibration)), **kw)  # type: ignore[no-any-return]
    except (RuntimeError, nncf.InternalError) as err:  # type: ignore[attr-defined]
        raise CalibrationError(f"NNCF could not quantize the model: {err}") from err
    finally:
        nncf_logger.setLevel(level)


def qat_pack(plan: QuantPlan | None = None) -> Callable[[nn.Module], dict[str, Any]]:
    """A picklable form of an NNCF-quantized model: NNCF's config plus the state dict (and the
    plan's record, checked on resume)."""

    def pack(model: nn.Module) -> dict[str, Any]:
        import nncf.torch

        return {
            "nncf_config": nncf.torch.get_config(model),
            "state_dict": model.state_dict(),
            "plan": plan.record() if plan is not None else None,
        }

    return pack


def qat_unpack(
    float_model: nn.Module, plan: QuantPlan | None = None
) -> Callable[[dict[str, Any]], nn.Module]:
    """Rebuild from `qat_pack` output on a copy of the float (BN-folded) model; refuses a
    checkpoint quantized with another plan than ``plan``."""

    def unpack(obj: dict[str, Any]) -> nn.Module:
        import nncf.torch

        saved = obj.get("plan")
        if plan is not None and saved is not None and saved != plan.record():
            raise TrainingError(
                f"--resume with different quantization settings than the checkpoint (saved: "
                f"{saved}, now: {plan.record()}); resume with the same settings or start a new run"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = nncf.torch.load_from_config(copy.deepcopy(float_model), obj["nncf_config"])
        model.load_state_dict(obj["state_dict"])
        return model

    return unpack


def set_qdq_export(model: nn.Module) -> int:
    """Make every NNCF quantizer export as ONNX ``QuantizeLinear / DequantizeLinear``."""
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    n = 0
    for mod in model.modules():
        if isinstance(mod, BaseQuantizer):
            mod.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
            n += 1
    if n == 0:
        raise TrainingError("the model has no NNCF quantizers; run quantize_for_qat first")
    return n


def export_qdq(
    wrapper: nn.Module,
    example: torch.Tensor,
    out: str | Path,
    *,
    meta: Any,
    input_names: Sequence[str] = ("images",),
    output_names: Sequence[str] = ("output",),
    opset: int = 17,
) -> dict[str, Any]:
    """Export a model holding NNCF quantizers (``wrapper`` may add a float decode tail around it)
    to QDQ ONNX at ``out`` (atomically, with ``meta``); returns counts for the report."""
    import onnx

    from edgedet.meta import write_onnx_meta

    set_qdq_export(wrapper)
    wrapper.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (example,), str(raw), input_names=list(input_names),
                output_names=list(output_names), opset_version=opset, dynamo=False,
            )  # fmt: skip
        graph = onnx.load(str(raw))
        write_onnx_meta(raw, out, meta)
    ops = [n.op_type for n in graph.graph.node]
    return {
        "path": str(out),
        "quantize_linear": ops.count("QuantizeLinear"),
        "dequantize_linear": ops.count("DequantizeLinear"),
        "tail_quantizers": tail_quantizers(graph),
    }


def tail_quantizers(graph: Any) -> int:
    """How many Q/DQ nodes sit in the decode tail (per `edgedet.calibration.tail`); 0 is the
    goal."""
    from edgedet.calibration.tail import ensure_node_names, find_decode_tail

    g = copy.deepcopy(graph)
    ensure_node_names(g)
    tail = set(find_decode_tail(g).nodes)
    return sum(1 for n in g.graph.node if n.name in tail and n.op_type.endswith("QuantizeLinear"))


def qat_distill(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    images: Sequence[str | Path],
    pre: Any,
    cfg: Any,
    *,
    adapter: str,
    reg_max: int = 16,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    ignored_scope: Any = None,
    keep_stem_float: bool = True,
    keep_float: Sequence[str] = (),
    scope: str = "conv_inputs",
    symmetric_activations: bool = False,
    teacher: nn.Module | None = None,
    stop_after_steps: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fold BN, initialise NNCF fake quantizers from ``calibration``, then distil from the float
    ``model`` on ``images``. Returns (the trained fake-quantized model, the distillation result
    with the quantization plan's record under ``"quantization"``).

    ``cfg`` is a `DistillConfig`; checkpoints are resumable like distillation's: with ``resume``
    the student is rebuilt from the checkpoint (no calibration pass), and the run ends with the
    same weights as an uninterrupted one. ``keep_stem_float`` / ``keep_float`` / ``scope`` /
    ``symmetric_activations``: see `plan_quantization`. ``teacher``: the float model distilled
    from (default: ``model`` itself)."""
    from .distill import Distiller

    if not calibration:
        raise CalibrationError("QAT needs calibration images (got none)")
    teacher = copy.deepcopy(teacher if teacher is not None else model).eval()
    fused = copy.deepcopy(model).eval()
    fuse_conv_bn(fused)
    plan = plan_quantization(
        fused, calibration[0], keep_stem_float=keep_stem_float, keep_float=keep_float,
        scope=scope, symmetric_activations=symmetric_activations,
    )  # fmt: skip
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        student = copy.deepcopy(fused)  # replaced by the checkpoint's student
    else:
        student = quantize_for_qat(
            copy.deepcopy(fused), calibration, plan=plan, ignored_scope=ignored_scope
        )
    d = Distiller(
        student, teacher, images, pre, cfg, adapter=adapter, reg_max=reg_max,
        checkpoint=checkpoint, resume=resume, log=log, pack=qat_pack(plan),
        unpack=qat_unpack(fused, plan),
    )  # fmt: skip
    result = d.fit(stop_after_steps=stop_after_steps)
    result["quantization"] = plan.record()
    return d.student.eval(), result
