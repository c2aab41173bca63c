"""Export an `EdgeDet` to ONNX with its `ModelMeta`, and check ONNX Runtime against torch.

The graph: input ``images [B, 3, H, W]`` float32 RGB 0..1 (centred letterbox, pad 114), output
``output [B, N, 4 + nc]`` (xyxy in input pixels, sigmoid scores; see
`edgedet.decoders.edgedet_family`). Nodes of the decode tail are named ``/decode/...``; the
meta's ``options["decode_tail"]`` says so, for calibration to keep them in float.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgedet.errors import TrainingError
from edgedet.meta import ModelMeta, write_onnx_meta

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
    try:
        from importlib.metadata import version

        v = version("edgedet")
    except Exception:  # PackageNotFoundError when running from a source tree
        v = ""
    return meta.replace(edgedet_version=v)


def parity(
    wrapper: torch.nn.Module, onnx_path: str | Path, hw: tuple[int, int], batch: int = 2
) -> float:
    """Max abs difference between torch and ONNX Runtime outputs on random input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = sess.get_inputs()[0].shape
    b = batch if not isinstance(shape[0], int) else shape[0]
    x = torch.rand(b, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = wrapper(x).numpy()
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
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


def _runner(model_path: str | Path, runtime: str) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    """``(infer(x) -> output, output shape)`` for ONNX Runtime or OpenVINO (f32) on CPU."""
    if runtime == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        shape = sess.get_outputs()[0].shape
        return (lambda x: sess.run(["output"], {"images": x})[0]), shape
    if runtime == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(
            str(model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        out = compiled.output(0)
        shape = [d.get_length() if d.is_static else None for d in out.get_partial_shape()]
        return (lambda x: np.asarray(compiled({"images": x})[out])), shape
    raise TrainingError(f"runtime must be 'onnxruntime' or 'openvino', got {runtime!r}")


def evaluate_onnx(
    model_path: str | Path,
    data: str | Path,
    *,
    runtime: str = "onnxruntime",
    conf: float = 0.001,
    iou: float = 0.6,
) -> dict[str, Any]:
    """mAP of an exported edgedet model through ONNX Runtime or OpenVINO f32, with edgedet's
    preprocessing, the edgedet decoder and class-aware NMS (IoU 0.6, score threshold 0.001, at most
    300 boxes), one image per inference."""
    from edgedet.boxes import nms
    from edgedet.data import load_dataset
    from edgedet.decoders.edgedet_family import make_edgedet_decoder
    from edgedet.detections import Detections
    from edgedet.meta import read_meta
    from edgedet.metrics import evaluate
    from edgedet.preprocess import Preprocessor

    meta = read_meta(model_path)
    if meta is None or meta.input_size is None:
        raise TrainingError(f"{model_path} carries no edgedet meta")
    infer, shape = _runner(model_path, runtime)

    class _Spec:
        name = "output"

    spec = _Spec()
    spec.shape = tuple(d if isinstance(d, int) else None for d in shape)  # type: ignore[attr-defined]
    dec = make_edgedet_decoder(meta, [spec], meta.input_size)  # type: ignore[list-item]
    pre = Preprocessor(meta, meta.input_size)
    ds = load_dataset(data)
    preds = {}
    for s in ds.samples:
        x, lbs = pre([ds.read_image(s)])
        (c,) = dec({"output": infer(x)}, score_threshold=conf, max_candidates=3000)
        keep = nms(c.xyxy, c.scores, iou, c.class_ids, max_det=300)
        preds[s.image_id] = Detections(
            lbs[0].to_original(c.xyxy[keep]), c.scores[keep], c.class_ids[keep]
        )
    rep = evaluate(ds, preds, meta.class_names)
    result: dict[str, Any] = {
        "map50_95": float(rep.map50_95),
        "map50": float(rep.map50),
        "report": rep.to_dict(),
    }
    return result
