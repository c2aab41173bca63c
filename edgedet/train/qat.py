"""Quantization-aware training through NNCF's torch backend, exported to QDQ ONNX.

The flow (`run_qat`):

1. fold batch norms into their convolutions (`fuse_conv_bn`), as the deployed INT8 graph has them;
2. ``nncf.quantize(model, calibration_dataset)``: NNCF inserts FakeQuantize hooks (8-bit, weights
   per channel, activations per tensor) initialised from calibration statistics on the
   deployment-preprocessed images, and returns the same module class, still trainable;
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
``load_from_config``), since NNCF-hooked modules do not pickle.

Note: NNCF compiles a small C++ extension for CPU fake quantization on first use (cached under
``~/.cache/torch_extensions``); without a compiler it falls back to slower torch operations.
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgedet.errors import CalibrationError, TrainingError


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


def quantize_for_qat(
    model: nn.Module,
    calibration: Sequence[torch.Tensor],
    *,
    ignored_scope: Any = None,
    fast_bias_correction: bool = True,
) -> nn.Module:
    """NNCF post-training initialisation of fake quantizers; the result is trainable (QAT)."""
    import nncf

    if not calibration:
        raise CalibrationError("QAT needs calibration images (got none)")
    model.eval()
    kw: dict[str, Any] = {
        "subset_size": len(calibration),
        "fast_bias_correction": fast_bias_correction,
    }
    if ignored_scope is not None:
        kw["ignored_scope"] = ignored_scope
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nncf.quantize(model, nncf.Dataset(list(calibration)), **kw)  # type: ignore[no-any-return]
    except (RuntimeError, nncf.InternalError) as err:  # type: ignore[attr-defined]
        raise CalibrationError(f"NNCF could not quantize the model: {err}") from err


def qat_pack(model: nn.Module) -> dict[str, Any]:
    """A picklable form of an NNCF-quantized model: NNCF's config plus the state dict."""
    import nncf.torch

    return {"nncf_config": nncf.torch.get_config(model), "state_dict": model.state_dict()}


def qat_unpack(float_model: nn.Module) -> Callable[[dict[str, Any]], nn.Module]:
    """Rebuild from `qat_pack` output on a copy of the float (BN-folded) model."""

    def unpack(obj: dict[str, Any]) -> nn.Module:
        import nncf.torch

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
    """How many Q/DQ nodes sit in the decode tail (per `calibration.tail`); 0 is the goal."""
    try:
        from calibration.tail import ensure_node_names, find_decode_tail
    except ImportError:  # calibration/ is a sibling package, absent from some installs
        return -1
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
    stop_after_steps: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Fold BN, initialise NNCF fake quantizers from ``calibration``, then distil from the float
    ``model`` on ``images``. Returns (the trained fake-quantized model, the distillation result).
    ``cfg`` is a `DistillConfig`; checkpoints are resumable like distillation's."""
    from .distill import Distiller

    teacher = copy.deepcopy(model).eval()
    fused = copy.deepcopy(model).eval()
    fuse_conv_bn(fused)
    student = quantize_for_qat(copy.deepcopy(fused), calibration, ignored_scope=ignored_scope)
    d = Distiller(
        student, teacher, images, pre, cfg, adapter=adapter, reg_max=reg_max,
        checkpoint=checkpoint, resume=resume, log=log, pack=qat_pack, unpack=qat_unpack(fused),
    )  # fmt: skip
    result = d.fit(stop_after_steps=stop_after_steps)
    return d.student.eval(), result
