"""Timing statistics (no outlier clipping) and the latency / throughput loops."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from edgedet.benchmarks.latency import measure_latency, measure_throughput, peak_rss_mb, rss_mb
from edgedet.benchmarks.stats import STAT_KEYS, summarize_ns

from edgedet.errors import InvalidInputError


def test_summary_matches_numpy_and_keeps_outliers() -> None:
    rng = np.random.default_rng(0)
    ns = [*rng.integers(1_000_000, 2_000_000, size=999).tolist(), 500_000_000]  # one outlier
    s = summarize_ns(ns)
    ms = np.asarray(ns, np.float64) / 1e6
    assert list(s) == list(STAT_KEYS)
    for key, q in (("p50", 50), ("p90", 90), ("p99", 99)):
        assert s[key] == pytest.approx(np.percentile(ms, q), rel=1e-12)
    assert s["mean"] == pytest.approx(ms.mean(), rel=1e-12)  # the outlier is in the mean
    assert s["std"] == pytest.approx(ms.std(), rel=1e-12)
    assert s["max"] == pytest.approx(500.0)  # and not clipped away
    assert s["min"] == pytest.approx(ms.min())


def test_summary_of_known_values() -> None:
    s = summarize_ns([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    assert s["p50"] == pytest.approx(2.5)
    assert s["mean"] == pytest.approx(2.5)
    assert s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4]))


def test_summary_rejects_empty_and_negative() -> None:
    with pytest.raises(InvalidInputError, match="empty list of timings"):
        summarize_ns([])
    with pytest.raises(InvalidInputError, match="non-negative"):
        summarize_ns([5, -1])


class _SleepyDetector:
    """Stands in for a Detector to test the timing loop itself (not a runtime)."""

    runtime = object()

    def __init__(self, infer_s: float = 0.001) -> None:
        self.infer_s = infer_s
        self.calls = 0

    def preprocess(self, images):
        return {"x": np.stack(images)}, [None] * len(images)

    def infer(self, feeds):
        self.calls += 1
        time.sleep(self.infer_s)
        return feeds

    def postprocess(self, outputs, metas):
        return [None] * len(metas)


def test_latency_loop_counts_and_stops() -> None:
    det = _SleepyDetector(0.001)
    img = np.zeros((8, 8, 3), np.uint8)
    res = measure_latency(det, [img], warmup=3, min_iterations=20, min_seconds=0.0)
    assert res.iterations == 20 and det.calls == 23
    assert res.stopped_by == "min_iterations+min_seconds"
    assert set(res.stages) == {"e2e", "preprocess", "infer", "postprocess"}
    assert res.stages["infer"]["min"] >= 1.0  # slept 1 ms
    e2e = np.asarray(res.samples_ns["e2e"])
    parts = sum(np.asarray(res.samples_ns[k]) for k in ("preprocess", "infer", "postprocess"))
    assert np.all(e2e >= parts)
    # max_seconds stops a slow model before min_iterations
    slow = measure_latency(
        _SleepyDetector(0.02), [img], warmup=0, min_iterations=1000, max_seconds=0.1
    )
    assert slow.stopped_by == "max_seconds" and slow.iterations < 1000
    # min_seconds keeps going past min_iterations
    longer = measure_latency(det, [img], warmup=0, min_iterations=1, min_seconds=0.05)
    assert longer.seconds >= 0.05 and longer.iterations > 1


def test_latency_rejects_bad_arguments() -> None:
    det = _SleepyDetector()
    with pytest.raises(InvalidInputError, match="at least one image"):
        measure_latency(det, [])
    with pytest.raises(InvalidInputError, match="min_iterations >= 1"):
        measure_latency(det, [np.zeros((4, 4, 3), np.uint8)], min_iterations=0)


def test_throughput_without_async_api_says_why() -> None:
    res = measure_throughput(_SleepyDetector(), [np.zeros((4, 4, 3), np.uint8)])
    assert res.fps is None and "no async API" in res.reason


def test_memory_readings() -> None:
    now = rss_mb()
    assert now is not None and now > 1
    assert peak_rss_mb() >= now * 0.9


@pytest.mark.testdata
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_real_detector_latency_and_throughput(models_dir: Path, runtime: str) -> None:
    pytest.importorskip(runtime)
    import edgedet

    det = edgedet.load(
        models_dir / "nanodet_m_320.onnx",
        runtime=runtime,
        family="nanodet",
        runtime_options={"threads": 1},
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(2)]
    res = measure_latency(det, images, warmup=2, min_iterations=5, min_seconds=0.0)
    assert res.iterations == 5
    assert 0 < res.stages["infer"]["p50"] <= res.stages["e2e"]["p50"]
    tp = measure_throughput(det, images, requests=2, seconds=0.3, warmup=1)
    assert tp.fps is not None and tp.fps > 0, tp.reason
    assert tp.images > 0
    det.close()
