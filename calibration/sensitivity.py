"""Per-layer INT8 sensitivity, and mixed precision under an accuracy budget.

Sensitivity: each compute layer (Conv / Gemm / MatMul outside the decode tail) is quantized
*alone*, everything else float, exactly as ONNX Runtime's QDQ quantizer would do it (input
activation Q/DQ with the calibrated range, per-channel symmetric int8 weights, output Q/DQ),
by inserting QuantizeLinear/DequantizeLinear pairs into a copy of the float graph with the
cached calibration ranges: no shape inference, no re-calibration, about a second per layer.
The effect is measured on a validation set by

- ``metric="map"``: mAP50-95 drop (needs labels; slow: one full evaluation per layer), or
- ``metric="proxy"`` (default): the *detection error* against the float model on a few images,
  no labels needed: for every float detection with score >= 0.25, 1 - IoU with the best
  same-class INT8 detection plus the absolute score change (1 + score when nothing matches),
  averaged. On YOLOX-nano its first layer is mAP's first layer by far; below that, single layers
  move mAP on 80 images by less than the set can resolve (calibration/README.md).

Mixed precision (`mixed_precision`): from the full INT8 model, keep the k most sensitive layers
in float for k = 0, 1, 2, 4, 8, ... until ``max_map_drop`` and ``max_class_drop`` hold; the
result records which layers stayed float and what it cost in latency.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.boxes import box_iou
from edgedet.errors import CalibrationError
from edgedet.workdir import make_work_dir, remove_work_dir

from .evaluate import Score, load_dataset, score_model, within_budget
from .ort_int8 import PreparedModel, calibrate_ranges, prepare, quantize_onnx
from .source import CalibrationSource
from .spec import CalibrationSpec, quantizable_layers, resolve_exclusions

log = logging.getLogger("edgedet.calibration")

PROXY_SCORE = 0.25


@dataclass
class LayerSensitivity:
    name: str
    op_type: str
    proxy: float | None = None
    map50_95: float | None = None
    map_drop: float | None = None  # points


@dataclass
class SensitivityReport:
    """Layers ranked most sensitive first (by ``metric``)."""

    metric: str
    layers: list[LayerSensitivity]
    float_map: float | None = None
    images: int = 0

    def ranking(self) -> list[str]:
        return [layer.name for layer in self.layers]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "float_map50_95": self.float_map,
            "images": self.images,
            "layers": [vars(layer) for layer in self.layers],
        }

    def to_markdown(self, top: int = 20) -> str:
        lines = [
            f"Per-layer INT8 sensitivity ({self.metric}, {self.images} images), most sensitive first:",
            "",
            "| rank | layer | op | proxy error | mAP drop (points) |",
            "|---:|---|---|---:|---:|",
        ]
        for i, layer in enumerate(self.layers[:top], 1):
            proxy = f"{layer.proxy:.4f}" if layer.proxy is not None else "-"
            drop = f"{layer.map_drop:.2f}" if layer.map_drop is not None else "-"
            lines.append(f"| {i} | `{layer.name}` | {layer.op_type} | {proxy} | {drop} |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path, top: int = 30) -> Path:
        """Bar chart of the ``top`` most sensitive layers (matplotlib, imported here)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.layers[:top]
        values = [(r.map_drop if self.metric == "map" else r.proxy) or 0.0 for r in rows]
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(rows))))
        ax.barh(range(len(rows))[::-1], values, color="#c0504d")
        ax.set_yticks(range(len(rows))[::-1])
        ax.set_yticklabels([r.name[-40:] for r in rows], fontsize=7)
        ax.set_xlabel(
            "mAP50-95 drop (points)" if self.metric == "map" else "detection error vs float"
        )
        ax.set_title("INT8 sensitivity: one layer quantized at a time")
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
        plt.close(fig)
        return out


# -- one-layer fake quantization --------------------------------------------------------------


def _qparams(lo: float, hi: float, symmetric: bool) -> tuple[float, int, int]:
    """(scale, zero point, onnx elem type) as ORT computes them for activations."""
    import onnx

    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if symmetric:
        t = max(abs(lo), abs(hi)) or 1e-8
        return t / 127.0, 0, onnx.TensorProto.INT8
    scale = (hi - lo) / 255.0 or 1e-8
    zp = int(np.clip(round(-lo / scale), 0, 255))
    return scale, zp, onnx.TensorProto.UINT8


def load_ranges(cache: Path) -> dict[str, tuple[float, float]]:
    """Tensor -> (lowest, highest) from ORT's calibration cache JSON."""
    raw = json.loads(Path(cache).read_text())
    out: dict[str, tuple[float, float]] = {}
    for name, item in raw.get("data", {}).items():
        lo, hi = item.get("lowest"), item.get("highest")
        lo = lo.get("data", lo) if isinstance(lo, dict) else lo
        hi = hi.get("data", hi) if isinstance(hi, dict) else hi
        lo = lo[0] if isinstance(lo, list) else lo
        hi = hi[0] if isinstance(hi, list) else hi
        if lo is not None and hi is not None:
            out[name] = (float(lo), float(hi))
    return out


def fake_quantize_layer(
    model: Any, node_name: str, ranges: dict[str, tuple[float, float]], spec: CalibrationSpec
) -> Any:
    """A copy of ``model`` with one Conv/Gemm/MatMul quantized as ORT's QDQ would do it."""
    import copy

    import onnx
    from onnx import helper, numpy_helper

    m = copy.deepcopy(model)
    g = m.graph
    node = next((n for n in g.node if n.name == node_name), None)
    if node is None:
        raise CalibrationError(f"layer {node_name!r} is not in the model")
    inits = {i.name: i for i in g.initializer}
    new_nodes: list[Any] = []

    def qdq(tensor: str, tag: str) -> str | None:
        if tensor not in ranges:
            return None
        scale, zp, etype = _qparams(*ranges[tensor], spec.symmetric_activations)
        s_name, z_name = f"{tensor}_{tag}_scale", f"{tensor}_{tag}_zp"
        g.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s_name))
        g.initializer.append(
            numpy_helper.from_array(
                np.array(zp, np.int8 if etype == onnx.TensorProto.INT8 else np.uint8), z_name
            )
        )
        q_out, dq_out = f"{tensor}_{tag}_q", f"{tensor}_{tag}_dq"
        new_nodes.append(helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_out]))
        new_nodes.append(helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out]))
        return dq_out

    # input activation
    dq = qdq(node.input[0], "sens_in")
    if dq is not None:
        node.input[0] = dq
    # weights: per-channel (axis 0 for Conv) or per-tensor symmetric int8, folded as float
    if len(node.input) > 1 and node.input[1] in inits:
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        qmax = 63.0 if spec.reduce_range else 127.0
        if spec.per_channel and node.op_type in ("Conv", "ConvTranspose") and w.ndim > 1:
            axis = 0 if node.op_type == "Conv" else 1
            red = tuple(i for i in range(w.ndim) if i != axis)
            amax = np.abs(w).max(axis=red, keepdims=True)
        else:
            amax = np.abs(w).max()
        w_scale = np.where(amax > 0, amax / qmax, 1.0)
        wq = (np.clip(np.round(w / w_scale), -qmax, qmax) * w_scale).astype(np.float32)
        new_w = f"{node.input[1]}_sens_fq"
        g.initializer.append(numpy_helper.from_array(wq, new_w))
        node.input[1] = new_w
    # output activation (only when the spec re-quantizes outputs)
    out = node.output[0]
    if out in ranges and spec.scope == "all":
        renamed = f"{out}_sens_pre"
        node.output[0] = renamed
        o_scale, zp, etype = _qparams(*ranges[out], spec.symmetric_activations)
        s_name, z_name = f"{out}_sens_out_scale", f"{out}_sens_out_zp"
        g.initializer.append(numpy_helper.from_array(np.array(o_scale, np.float32), s_name))
        g.initializer.append(
            numpy_helper.from_array(
                np.array(zp, np.int8 if etype == onnx.TensorProto.INT8 else np.uint8), z_name
            )
        )
        new_nodes.append(
            helper.make_node("QuantizeLinear", [renamed, s_name, z_name], [f"{out}_sens_q"])
        )
        new_nodes.append(
            helper.make_node("DequantizeLinear", [f"{out}_sens_q", s_name, z_name], [out])
        )
    # insert the new nodes right before the layer (keeps the topological order)
    idx = list(g.node).index(node)
    nodes = list(g.node)
    before = [n for n in new_nodes if n.output[0].endswith(("_sens_in_q", "_sens_in_dq"))]
    after = [n for n in new_nodes if n not in before]
    rebuilt = [*nodes[:idx], *before, node, *after, *nodes[idx + 1 :]]
    del g.node[:]
    g.node.extend(rebuilt)
    return m


# -- proxy error ------------------------------------------------------------------------------


def detection_error(
    reference: Sequence[Any], candidate: Sequence[Any], min_score: float = PROXY_SCORE
) -> float:
    """Mean over reference detections (score >= ``min_score``) of 1 - IoU with the best
    same-class candidate detection plus the absolute score change; unmatched count 1 + score."""
    errors: list[float] = []
    for ref, cand in zip(reference, candidate):
        keep = ref.scores >= min_score
        for box, score, cls in zip(ref.xyxy[keep], ref.scores[keep], ref.class_ids[keep]):
            same = cand.class_ids == cls
            if not same.any():
                errors.append(1.0 + float(score))
                continue
            ious = box_iou(box[None], cand.xyxy[same], dtype=np.float64)[0]
            j = int(np.argmax(ious))
            if ious[j] < 0.3:
                errors.append(1.0 + float(score))
                continue
            errors.append(1.0 - float(ious[j]) + abs(float(score) - float(cand.scores[same][j])))
    return float(np.mean(errors)) if errors else 0.0


# -- the analysis ---------------------------------------------------------------------------


def _detector_for(path: Path, meta: Any, threads: int | None) -> Any:
    import edgedet

    opts = {"threads": threads} if threads else {}
    return edgedet.load(
        path,
        runtime="onnxruntime",
        meta=meta,
        runtime_options=opts,
        score_threshold=0.001,
        iou_threshold=0.45,
    )


def layer_sensitivity(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    meta: Any,
    val: Any = None,
    *,
    metric: str = "proxy",
    layers: Sequence[str] | None = None,
    proxy_images: int = 16,
    images: Sequence[np.ndarray] | None = None,
    threads: int | None = 2,
    prepared: PreparedModel | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SensitivityReport:
    """Rank layers by the damage quantizing each one alone does (see the module docstring).

    ``metric="proxy"`` needs no labels: it runs on ``images`` (BGR uint8 arrays, the first
    ``proxy_images`` used) when given, else on the first ``proxy_images`` images of ``val``.
    ``metric="map"`` needs ``val``, a labelled dataset.
    """
    import onnx

    if metric not in ("proxy", "map"):
        raise CalibrationError(f"sensitivity metric must be 'proxy' or 'map', got {metric!r}")
    if val is None and (metric == "map" or images is None):
        raise CalibrationError(
            f"sensitivity metric {metric!r} needs "
            + ("a labelled val set" if metric == "map" else "images or a val set")
        )
    work = make_work_dir(".edgedet-sens-")  # a killed run's is removed by the next
    try:
        if prepared is None:
            prepared = prepare(model_path, work)
        calibrate_ranges(prepared, source, spec, meta.family)
        ranges = load_ranges(prepared.cache)
        model = onnx.load(str(prepared.path))
        exclusion = resolve_exclusions(model, spec, meta.family)
        names = list(layers) if layers is not None else quantizable_layers(model, exclusion)
        op_of = {n.name: n.op_type for n in model.graph.node}
        dataset = load_dataset(val) if val is not None else None
        report = SensitivityReport(metric=metric, layers=[])
        float_meta = meta.replace(precision="fp32")
        if metric == "proxy":
            if images is not None:
                images = list(images)[:proxy_images]
            else:
                assert dataset is not None
                images = [dataset.read_image(s) for s in dataset.samples[:proxy_images]]
            ref_det = _detector_for(prepared.path, float_meta, threads)
            reference = [ref_det(im) for im in images]
            ref_det.close()
            report.images = len(images)
        else:
            assert dataset is not None
            report.float_map = score_model(
                prepared.path,
                dataset,
                threads=threads,
                family=meta.family,
                names=list(meta.class_names),
            ).map50_95
            report.images = len(dataset.samples)
        tmp = work / "one_layer.onnx"
        for i, name in enumerate(names):
            onnx.save(fake_quantize_layer(model, name, ranges, spec), str(tmp))
            row = LayerSensitivity(name, op_of.get(name, "?"))
            if metric == "proxy":
                det = _detector_for(tmp, float_meta, threads)
                assert images is not None
                row.proxy = detection_error(reference, [det(im) for im in images])
                det.close()
            else:
                det = _detector_for(tmp, float_meta, threads)
                from .evaluate import score_detector

                s = score_detector(det, dataset)
                det.close()
                row.map50_95 = s.map50_95
                row.map_drop = (float(report.float_map or 0.0) - s.map50_95) * 100.0
            report.layers.append(row)
            if progress is not None:
                progress(i + 1, len(names))
        key = (lambda r: r.proxy or 0.0) if metric == "proxy" else (lambda r: r.map_drop or 0.0)
        report.layers.sort(key=key, reverse=True)
        return report
    finally:
        remove_work_dir(work)


@dataclass
class MixedPrecisionResult:
    path: Path
    kept_float: list[str]
    before: Score
    after: Score
    met: bool
    tries: list[dict[str, Any]] = field(default_factory=list)


def mixed_precision(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    meta: Any,
    val: Any,
    out: str | Path,
    ranking: Sequence[str],
    *,
    before: Score,
    evaluate: Callable[[Path], Score],
    steps: Sequence[int] = (0, 1, 2, 4, 8, 16, 32),
    prepared: PreparedModel | None = None,
    build: Callable[[Path, Sequence[str]], Path] | None = None,
    suffix: str = ".onnx",
) -> MixedPrecisionResult:
    """Keep the first k of ``ranking`` in float for k in ``steps`` until the budget holds.

    ``evaluate(path)`` scores a candidate INT8 model (on the validation set, on the target
    runtime); ``before`` is the float model's score. The last candidate is kept even when the
    budget is not met (``met=False``), so the caller can report how close it came.
    ``build(path, keep_float)`` writes a candidate for another INT8 format (named ``*suffix``,
    e.g. OpenVINO IR, `guard.OpenVinoBuilder`); by default ONNX Runtime QDQ is built here.
    """
    from .files import move_model

    out = Path(out)
    work = make_work_dir(".edgedet-mixed-", out.parent)  # a killed run's: removed by the next
    try:
        if prepared is None and build is None:
            prepared = prepare(model_path, work)
        tries: list[dict[str, Any]] = []
        built: list[tuple[Path, list[str], Score, bool]] = []
        for k in steps:
            if k > len(ranking):
                break
            keep = list(ranking[:k])
            cand = work / f"k{k}{suffix}"
            if build is not None:
                cand = build(cand, keep)
            else:
                quantize_onnx(
                    model_path, source, spec, cand, meta, keep_float=keep, prepared=prepared
                )
            # Only the mAPs are compared here; the command re-scores the kept candidate, so
            # the candidates' detections need not stay in memory.
            score = replace(evaluate(cand), detections=None)
            ok, why = within_budget(
                before,
                score,
                max_map_drop=spec.max_map_drop,
                max_class_drop=spec.max_class_drop,
                safety_classes=spec.safety_classes,
            )
            tries.append({"kept_float": k, "map50_95": score.map50_95, "ok": ok, "why": why})
            log.info(
                "mixed precision: %d layer(s) float -> mAP %.4f (%s)",
                k,
                score.map50_95,
                "ok" if ok else "; ".join(why),
            )
            built.append((cand, keep, score, ok))
            if ok:
                break
        if not built:
            raise CalibrationError("mixed precision: no candidate was built (empty steps)")
        # the first candidate within budget; else the most accurate one tried
        cand, keep, score, ok = (
            built[-1] if built[-1][3] else max(built, key=lambda b: b[2].map50_95)
        )
        move_model(cand, out)  # same folder: atomic renames
        return MixedPrecisionResult(out, keep, before, score, ok, tries)
    finally:
        remove_work_dir(work)
