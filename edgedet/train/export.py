"""Export an `EdgeDet` to ONNX with its `ModelMeta`, and check ONNX Runtime against torch.

The graph: input ``images [B, 3, H, W]`` float32 RGB 0..1 (centred letterbox, pad 114), output
``output [B, N, 4 + nc]`` (xyxy in input pixels, sigmoid scores; see
`edgedet.decoders.edgedet_family`). Nodes of the decode tail are named ``/decode/...``; the
meta's ``options["decode_tail"]`` says so, for calibration to keep them in float.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedet.errors import TrainingError
from edgedet.meta import ModelMeta, write_onnx_meta
from edgedet.runtimes.capabilities import RuntimeCapabilities

from .models.net import EdgeDet, ExportModel
from .trainer import load_checkpoint, model_from_checkpoint, sample_meta


def export_onnx(
    model: EdgeDet,
    out: str | Path,
    imgsz: int | tuple[int, int],
    class_names: tuple[str, ...] | None = None,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    source: str = "edgedet train",
    check: bool = True,
) -> dict[str, Any]:
    """Write ``out`` (atomically) and return ``{"path", "bytes", "max_abs_diff", "meta"}``.

    ``max_abs_diff`` compares ONNX Runtime with torch on a random batch (boxes in pixels and
    scores together); a difference above 1e-2 raises `TrainingError`.
    """
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    names = tuple(
        class_names or model.cfg.class_names or (f"class{i}" for i in range(model.cfg.num_classes))
    )
    wrapper = ExportModel(model.float().eval(), hw).eval()
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(0))
    out = Path(out)
    meta = sample_meta(names, hw[0], model.strides).replace(input_size=hw, source=source)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (x,),
                str(raw),
                input_names=["images"],
                output_names=["output"],
                opset_version=opset,
                dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}}
                if dynamic_batch
                else None,
                dynamo=False,
            )
        meta = _set_version(meta)
        write_onnx_meta(raw, out, meta)
    diff = float("nan")
    if check:
        diff = parity(wrapper, out, hw)
        if not diff < 1e-2:
            raise TrainingError(
                f"ONNX Runtime output differs from torch by {diff:.3g} (> 1e-2) for {out}"
            )
    return {"path": out, "bytes": out.stat().st_size, "max_abs_diff": diff, "meta": meta}


def _set_version(meta: ModelMeta) -> ModelMeta:
    from edgedet import __version__

    return meta.replace(edgedet_version=__version__)


def parity(
    wrapper: torch.nn.Module, onnx_path: str | Path, hw: tuple[int, int], batch: int = 2
) -> float:
    """Max abs difference between torch and ONNX Runtime outputs on random input (the session
    opened through the runtime registry)."""
    from edgedet.runtimes.registry import runtime_class

    with runtime_class("onnxruntime")(onnx_path) as rt:
        spec = rt.inputs[0]
        b = batch if spec.shape[0] is None else int(spec.shape[0])
        x = torch.rand(b, 3, *hw, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            ref = wrapper(x).numpy()
        got = rt.infer({spec.name: x.numpy()})[rt.outputs[0].name]
    return float(np.abs(ref - got).max())


def export_checkpoint(
    ckpt: str | Path,
    out: str | Path,
    *,
    imgsz: int | None = None,
    opset: int = 17,
    dynamic_batch: bool = False,
    use_ema: bool = True,
) -> dict[str, Any]:
    """Export a checkpoint written by the trainer (EMA weights by default)."""
    ck = load_checkpoint(ckpt)
    model = model_from_checkpoint(ck, use_ema=use_ema)
    size = imgsz or int(ck.get("train_config", {}).get("imgsz", 640))
    if size % 32:
        raise TrainingError(f"export size must be a multiple of 32, got {size}")
    return export_onnx(
        model, out, size, tuple(model.cfg.class_names), opset=opset, dynamic_batch=dynamic_batch,
        source=f"edgedet train ({Path(ckpt).name}, epoch {ck.get('best_epoch', ck.get('epoch'))})",
    )  # fmt: skip


def _cpu_fp32_runtime(runtime: str) -> RuntimeCapabilities:
    """The `RuntimeCapabilities` of ``runtime`` when it declares what `evaluate_onnx` needs: a
    CPU device and fp32 (the exported float model's own mAP, on this machine); else
    `TrainingError` naming what it declares and the runtimes that qualify."""
    from edgedet.errors import EdgedetError
    from edgedet.runtimes.registry import runtime_capabilities, runtime_names

    def fits(name: str) -> bool:
        try:
            caps = runtime_capabilities(name)
        except EdgedetError:  # a plugin without a declaration cannot qualify
            return False
        return "cpu" in caps.devices and "fp32" in caps.precisions

    try:
        declared = runtime_capabilities(runtime)
    except EdgedetError as err:
        raise TrainingError(str(err)) from err
    if not fits(runtime):
        raise TrainingError(
            f"runtime {runtime!r} cannot evaluate the exported model in fp32 on the CPU: it "
            f"declares devices {list(declared.devices)} and precisions "
            f"{list(declared.precisions)}; use one of {[n for n in runtime_names() if fits(n)]}"
        )
    return declared


def evaluate_onnx(
    model_path: str | Path,
    data: str | Path,
    *,
    runtime: str = "onnxruntime",
    protocol: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """mAP of an exported model through ONNX Runtime or OpenVINO (fp32) on CPU: `edgedet.load`
    then `edgedet.scoring.score` under ``protocol`` (default: the model's own, see
    `edgedet.protocol.resolve_protocol`, with ``overrides`` from the flags on top)."""
    import edgedet
    from edgedet.meta import read_meta
    from edgedet.protocol import resolve_protocol
    from edgedet.scoring import score

    declared = _cpu_fp32_runtime(runtime)
    if read_meta(model_path) is None:
        raise TrainingError(f"{model_path} carries no edgedet meta")
    # fp32 where the runtime has a precision option (OpenVINO would pick bf16 on such CPUs)
    opts = {"precision": "fp32"} if "fp32" in declared.precision_option else {}
    with edgedet.load(model_path, runtime=runtime, runtime_options=opts) as det:
        proto = protocol or resolve_protocol(det.meta, overrides=overrides)
        res = score(det, data, proto, data_flag="--val")
    return {
        "map50_95": res.map50_95,
        "map50": res.map50,
        "protocol": proto.to_dict(),
        "report": res.to_dict(),
    }


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
    from edgedet.fileio import atomic_write_bytes
    from edgedet.meta import write_onnx_meta

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
