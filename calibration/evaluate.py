"""Score a model (float or INT8) the way the benchmark harness does: mAP on a labelled dataset
through `edgedet.scoring.score` under the model's `EvalProtocol` (its family's published
validator unless overridden, e.g. YOLOX: score 0.001, class-aware NMS IoU 0.65), and p50
latency through `edgedet.benchmarks.latency`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.eval.bootstrap import DEFAULT_RESAMPLES


@dataclass
class Score:
    """mAP50-95, mAP50 and per-class AP (0..1), and optionally latency (ms), of one model."""

    map50_95: float
    map50: float
    per_class_ap: dict[str, float | None]
    safety_recall: dict[str, float | None] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    infer_p50_ms: float | None = None
    images: int = 0
    # What the mAP was computed from, for `drop_interval` (not written to reports).
    detections: dict[int, Any] | None = field(default=None, repr=False, compare=False)
    class_names: tuple[str, ...] = ()
    protocol: dict[str, Any] | None = None  # the `EvalProtocol` the mAP was computed under

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "map50_95": _safe(self.map50_95),
            "map50": _safe(self.map50),
            "per_class_ap": {k: _safe(v) for k, v in self.per_class_ap.items()},
            "safety_recall": {k: _safe(v) for k, v in self.safety_recall.items()},
            "latency_p50_ms": self.latency_p50_ms,
            "infer_p50_ms": self.infer_p50_ms,
            "images": self.images,
        }


def _safe(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def load_for_eval(
    model: str | Path,
    *,
    runtime: str = "onnxruntime",
    family: str | None = None,
    names: Any = None,
    threads: int | None = 2,
    runtime_options: Mapping[str, Any] | None = None,
) -> Any:
    """A Detector of ``model`` (its deployment settings; `score_detector` applies the mAP
    protocol for the accuracy pass); ``family`` / ``names`` only apply to models without
    edgedet meta."""
    from edgedet.runtimes.registry import runtime_capabilities

    import edgedet
    from edgedet.meta import read_meta

    opts = dict(runtime_options or {})
    if threads is not None and runtime_capabilities(runtime).threads:
        opts.setdefault("threads", threads)  # TensorRT has no thread option: it would refuse it
    path = Path(model)
    carried = read_meta(path) if path.suffix.lower() == ".onnx" else None
    overrides: dict[str, Any] = {}
    if carried is None and names is not None:
        overrides["names"] = names
    return edgedet.load(
        path,
        runtime=runtime,
        family=None if carried is not None else family,
        runtime_options=opts,
        **overrides,
    )


def load_dataset(data: Any, class_names: Any = None) -> Any:
    """A `DetectionDataset` from a path (``class_names`` for YOLO folders without names)."""
    from edgedet.scoring import as_dataset

    return as_dataset(data, class_names)


def score_detector(
    det: Any,
    dataset: Any,
    *,
    safety_classes: Sequence[str] | None = None,
    latency: bool = False,
    progress: Any = None,
    protocol: Any = None,
    overrides: Mapping[str, Any] | None = None,
    samples: Sequence[Any] | None = None,
) -> Score:
    """mAP of ``det`` on ``dataset`` through `edgedet.scoring.score` under ``protocol``
    (default: the detector's own, `edgedet.protocol.resolve_protocol`, with ``overrides`` from
    the flags on top), and p50 latency on 8 of its images if asked."""
    from edgedet.eval.metrics import DEFAULT_SAFETY_CLASSES
    from edgedet.protocol import resolve_protocol
    from edgedet.scoring import score

    dataset = load_dataset(dataset)
    proto = protocol or resolve_protocol(det.meta, overrides=overrides)
    result = score(
        det,
        dataset,
        proto,
        samples=samples,
        safety_classes=tuple(safety_classes) if safety_classes else DEFAULT_SAFETY_CLASSES,
        progress=progress,
        data_flag="--val",
    )
    report = result.report
    out = Score(
        map50_95=float(report.map50_95),
        map50=float(report.map50),
        per_class_ap=dict(report.per_class_ap),
        safety_recall=dict(report.safety_recall),
        images=result.images,
        detections=result.detections,
        class_names=result.class_names,
        protocol=proto.to_dict(),
    )
    if latency:
        out.latency_p50_ms, out.infer_p50_ms = p50_latency(det, dataset)
    return out


def p50_latency(det: Any, dataset: Any, images: int = 8) -> tuple[float, float]:
    """(end-to-end p50, inference p50) in ms, batch 1, on the first ``images`` of ``dataset``."""
    dataset = load_dataset(dataset)
    return p50_latency_images(det, [dataset.read_image(s) for s in dataset.samples[:images]])


def p50_latency_images(det: Any, images: Sequence[Any]) -> tuple[float, float]:
    """(end-to-end p50, inference p50) in ms of ``det`` on ``images`` (BGR uint8 arrays),
    batch 1, through the benchmark harness."""
    from edgedet.benchmarks.latency import measure_latency

    res = measure_latency(
        det, list(images), warmup=5, min_iterations=30, min_seconds=2.0, max_seconds=30.0
    )
    return float(res.stages["e2e"]["p50"]), float(res.stages["infer"]["p50"])


def score_model(
    model: str | Path,
    dataset: Any,
    *,
    runtime: str = "onnxruntime",
    family: str | None = None,
    names: Any = None,
    threads: int | None = 2,
    safety_classes: Sequence[str] | None = None,
    latency: bool = False,
    progress: Any = None,
    protocol: Any = None,
    overrides: Mapping[str, Any] | None = None,
) -> Score:
    """Load ``model`` on ``runtime`` and `score_detector` it."""
    det = load_for_eval(model, runtime=runtime, family=family, names=names, threads=threads)
    try:
        return score_detector(
            det, dataset, safety_classes=safety_classes, latency=latency, progress=progress,
            protocol=protocol, overrides=overrides,
        )  # fmt: skip
    finally:
        det.close()


def class_drops(before: Score, after: Score, classes: Sequence[str]) -> dict[str, float | None]:
    """AP points lost per class (positive = worse), None where a class has no ground truth."""
    out: dict[str, float | None] = {}
    for name in classes:
        a, b = before.per_class_ap.get(name), after.per_class_ap.get(name)
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            out[name] = None
        else:
            out[name] = round((a - b) * 100.0, 3)
    return out


def drop_interval(
    before: Score, after: Score, dataset: Any, *, resamples: int = DEFAULT_RESAMPLES
) -> dict[str, float] | None:
    """The mAP50-95 drop from ``before`` to ``after`` in points with its 95% paired bootstrap
    interval over the validation images (`edgedet.eval.bootstrap`), or None when either score lacks
    its detections or the class names differ. ``half_width`` is what these images resolve: a
    budget below it is judged on noise."""
    if before.detections is None or after.detections is None:
        return None
    if before.class_names != after.class_names or not before.class_names:
        return None
    from edgedet.eval.bootstrap import bootstrap_map

    result = bootstrap_map(
        load_dataset(dataset),
        {"float": before.detections, "int8": after.detections},
        before.class_names,
        reference="float",
        resamples=resamples,
    )
    d = result.differences["int8"]  # int8 - float
    return {
        "drop_points": round(-100.0 * d.estimate, 3) + 0.0,  # + 0.0: no "-0.0" in reports
        "low": round(-100.0 * d.high, 3) + 0.0,
        "high": round(-100.0 * d.low, 3) + 0.0,
        "half_width": round(50.0 * (d.high - d.low), 3),
        "confidence": d.confidence,
        "resamples": result.resamples,
        "images": result.images,
    }


def within_budget(
    before: Score,
    after: Score,
    *,
    max_map_drop: float | None,
    max_class_drop: float | None,
    safety_classes: Sequence[str],
) -> tuple[bool, list[str]]:
    """Whether ``after`` keeps the budget (drops in mAP points); and why not."""
    why: list[str] = []
    drop = (before.map50_95 - after.map50_95) * 100.0
    if max_map_drop is not None and drop > max_map_drop:
        why.append(f"mAP50-95 drops {drop:.2f} points > {max_map_drop:g}")
    if max_class_drop is not None:
        for name, d in class_drops(before, after, safety_classes).items():
            if d is not None and d > max_class_drop:
                why.append(f"{name} AP drops {d:.2f} points > {max_class_drop:g}")
    return not why, why
