"""Synthetic benchmark records for tests of records / report / compare (no model runs)."""

from __future__ import annotations

from typing import Any


def make_record(
    model: str = "m1",
    runtime: str = "onnxruntime",
    *,
    map50_95: float | None = 0.30,
    p50: float | None = 10.0,
    status: str = "ok",
    host: str = "hostA",
    precision: str = "fp32",
) -> dict[str, Any]:
    stats = None
    if p50 is not None:
        stats = {
            stage: {
                "p50": p50 * f,
                "p90": p50 * f * 1.1,
                "p99": p50 * f * 1.3,
                "mean": p50 * f * 1.05,
                "std": 0.5,
                "min": p50 * f * 0.9,
                "max": p50 * f * 1.5,
            }
            for stage, f in (
                ("e2e", 1.0),
                ("preprocess", 0.1),
                ("infer", 0.8),
                ("postprocess", 0.1),
            )
        }
    return {
        "model": f"/models/{model}.onnx",
        "model_name": model,
        "model_sha256": f"sha-{model}",
        "family": "yolox",
        "runtime": runtime,
        "runtime_version": "1.0",
        "device": "cpu",
        "precision": precision,
        "precision_requested": None,
        "imgsz": [416, 416],
        "batch": 1,
        "threads": 2,
        "dataset": "coco_tiny_val2017",
        "images": 80,
        "status": status,
        "reason": "" if status == "ok" else "runtime 'x' needs the x package",
        "latency_ms": stats if status == "ok" else None,
        "load_s": 0.3,
        "peak_rss_mb": 200.0,
        "throughput_fps": 90.0 if status == "ok" else None,
        "accuracy": (
            {
                "map50_95": map50_95,
                "map50": 0.5,
                "map75": 0.3,
                "map_small": 0.1,
                "map_medium": 0.3,
                "map_large": 0.4,
                "per_class_ap": {"car": 0.4, "person": 0.5, "cyclist": None},
                "safety_recall": {"person": 0.8, "car": 0.7},
                "precision": 0.6,
                "recall": 0.5,
                "f1": 0.55,
            }
            if status == "ok"
            else None
        ),
        "edgedet_version": "0.1.0",
        "host": {"name": host, "cpu_model": "Test CPU", "cores_logical": 2},
        "timestamp": "2026-01-01T00:00:00+00:00",
    }
