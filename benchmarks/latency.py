"""Latency, throughput and memory of one loaded `Detector`.

Method (written into every record): the images are decoded before timing starts; ``warmup``
untimed iterations run first (lazy allocations, kernel selection, caches); then iterations run
until at least ``min_iterations`` AND ``min_seconds`` have passed, or ``max_seconds`` (whichever
comes first once the minimum count is met; ``max_seconds`` also stops a model too slow to reach
``min_iterations``, and the record says so). Each iteration times preprocess, infer and
postprocess apart with `time.perf_counter_ns`, and end to end as their sum plus the glue between
them. No sample is discarded (see `stats.summarize_ns`).

Cold start (load / compile) is timed by the caller around `edgedet.load`, so it includes reading
the file and building the session; `first_inference_ms` is the first call after load.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgedet.errors import InferenceError, InvalidInputError

from .stats import summarize_ns

#: How long throughput measurement waits for a free request slot before giving up.
STALL_SECONDS = 30.0

STAGES: tuple[str, ...] = ("e2e", "preprocess", "infer", "postprocess")


def rss_mb() -> float | None:
    """Resident set size of this process now, in MiB (None when it cannot be read)."""
    try:
        import psutil

        return float(psutil.Process(os.getpid()).memory_info().rss) / 2**20
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started, in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return float(peak) / (2**20 if sys.platform == "darwin" else 2**10)


@dataclass
class LatencyResult:
    """What `measure_latency` measured. ``stages`` maps each of `STAGES` to its statistics."""

    stages: dict[str, dict[str, float]]
    iterations: int
    warmup: int
    batch: int
    seconds: float
    stopped_by: str  # "min_iterations+min_seconds" or "max_seconds"
    rss_start_mb: float | None
    rss_end_mb: float | None
    samples_ns: dict[str, list[int]] = field(repr=False, default_factory=dict)
    cpu_seconds: float | None = None  # CPU time of this process during the timed loop

    @property
    def cpu_cores_used(self) -> float | None:
        """Average CPU cores this process kept busy while timed (CPU time / wall time). Far
        below the thread count means the process waited for the CPU: a busy machine."""
        if self.cpu_seconds is None or self.seconds <= 0:
            return None
        return self.cpu_seconds / self.seconds

    @property
    def fps_sequential(self) -> float:
        """Images per second one request at a time (batch / mean end-to-end latency)."""
        mean_ms = self.stages["e2e"]["mean"]
        return self.batch * 1000.0 / mean_ms if mean_ms > 0 else float("inf")

    def latency_ms(self) -> dict[str, dict[str, float]]:
        return {k: dict(v) for k, v in self.stages.items()}


def _batches(images: Sequence[np.ndarray], batch: int) -> list[list[np.ndarray]]:
    """Fixed batches cycling through ``images`` (the same inputs in the same order every run)."""
    n = max(len(images), batch)
    seq = [images[i % len(images)] for i in range(((n + batch - 1) // batch) * batch)]
    return [seq[i : i + batch] for i in range(0, len(seq), batch)]


def _check_images(images: Sequence[np.ndarray], batch: int) -> None:
    if len(images) == 0:
        raise InvalidInputError("measure_latency needs at least one image, got none")
    if batch < 1:
        raise InvalidInputError(f"batch must be >= 1, got {batch}")


def measure_latency(
    detector: Any,
    images: Sequence[np.ndarray],
    *,
    batch: int = 1,
    warmup: int = 10,
    min_iterations: int = 50,
    min_seconds: float = 2.0,
    max_seconds: float = 60.0,
) -> LatencyResult:
    """Time ``detector`` on ``images`` (BGR uint8), ``batch`` images per call.

    Returns per-stage statistics in milliseconds per call (a call holds ``batch`` images).
    """
    _check_images(images, batch)
    if warmup < 0 or min_iterations < 1 or min_seconds < 0 or max_seconds <= 0:
        raise InvalidInputError(
            "expected warmup >= 0, min_iterations >= 1, min_seconds >= 0, max_seconds > 0; got "
            f"warmup={warmup}, min_iterations={min_iterations}, min_seconds={min_seconds}, "
            f"max_seconds={max_seconds}"
        )
    batches = _batches(images, batch)
    clock = time.perf_counter_ns
    for i in range(warmup):
        chunk = batches[i % len(batches)]
        feeds, metas = detector.preprocess(chunk)
        detector.postprocess(detector.infer(feeds), metas)

    rss_start = rss_mb()
    pre: list[int] = []
    inf: list[int] = []
    post: list[int] = []
    e2e: list[int] = []
    cpu_start = time.process_time()
    start = clock()
    min_ns = int(min_seconds * 1e9)
    max_ns = int(max_seconds * 1e9)
    stopped_by = "min_iterations+min_seconds"
    i = 0
    while True:
        chunk = batches[i % len(batches)]
        t0 = clock()
        feeds, metas = detector.preprocess(chunk)
        t1 = clock()
        outputs = detector.infer(feeds)
        t2 = clock()
        detector.postprocess(outputs, metas)
        t3 = clock()
        pre.append(t1 - t0)
        inf.append(t2 - t1)
        post.append(t3 - t2)
        e2e.append(t3 - t0)
        i += 1
        elapsed = t3 - start
        if i >= min_iterations and elapsed >= min_ns:
            break
        if elapsed >= max_ns:
            stopped_by = "max_seconds"
            break
    seconds = (clock() - start) / 1e9
    cpu_seconds = time.process_time() - cpu_start
    samples = {"e2e": e2e, "preprocess": pre, "infer": inf, "postprocess": post}
    return LatencyResult(
        stages={k: summarize_ns(v) for k, v in samples.items()},
        iterations=i,
        warmup=warmup,
        batch=batch,
        seconds=seconds,
        stopped_by=stopped_by,
        rss_start_mb=rss_start,
        rss_end_mb=rss_mb(),
        samples_ns=samples,
        cpu_seconds=cpu_seconds,
    )


def measure_network_latency(
    model: Any, *, iters: int = 50, warmup: int = 5, threads: int = 2
) -> dict[str, float]:
    """Latency of the network alone (no pre- or postprocessing): ``model`` (an ONNX path) opened
    on ONNX Runtime through the runtime registry with ``threads`` intra-op threads, fed one fixed random
    float32 batch in [0, 1) shaped like its inputs (dynamic dimensions as 1), ``warmup`` untimed
    calls, then ``iters`` timed ones. For compression reports that compare two exports of a
    model that has no meta (`edgedet.train.prune`); a `Detector` is timed by `measure_latency`.

    Returns milliseconds: ``p50_ms``, ``p90_ms``, ``mean_ms`` (`stats.summarize_ns`, nothing
    clipped), and ``iters`` / ``threads`` as floats.
    """
    from edgedet.runtimes.registry import runtime_class

    if iters < 1 or warmup < 0:
        raise InvalidInputError(f"expected iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    rng = np.random.default_rng(0)
    rt = runtime_class("onnxruntime")(model, threads=threads, inter_threads=1)
    try:
        feeds = {
            spec.name: rng.random([d if isinstance(d, int) else 1 for d in spec.shape]).astype(
                np.float32
            )
            for spec in rt.inputs
        }
        for _ in range(warmup):
            rt.infer(feeds)
        clock = time.perf_counter_ns
        samples: list[int] = []
        for _ in range(iters):
            t0 = clock()
            rt.infer(feeds)
            samples.append(clock() - t0)
    finally:
        rt.close()
    st = summarize_ns(samples)
    return {
        "p50_ms": st["p50"],
        "p90_ms": st["p90"],
        "mean_ms": st["mean"],
        "iters": float(iters),
        "threads": float(threads),
    }


@dataclass
class ThroughputResult:
    """Images per second with ``requests`` calls in flight, or None with the reason why not."""

    fps: float | None
    requests: int
    images: int = 0
    seconds: float = 0.0
    reason: str = ""


def measure_throughput(
    detector: Any,
    images: Sequence[np.ndarray],
    *,
    requests: int = 4,
    batch: int = 1,
    seconds: float = 2.0,
    warmup: int = 4,
) -> ThroughputResult:
    """End-to-end images per second with ``requests`` inferences in flight.

    Uses the runtime's async API (`edgedet.runtimes.base.AsyncInfer`: OpenVINO's infer queue,
    ONNX Runtime's ``run_async``...). The calling thread preprocesses and submits; each callback
    postprocesses its own result. A runtime without an async API gives ``fps=None`` and the
    reason: a sequential figure is in ``LatencyResult.fps_sequential`` instead.
    """
    from edgedet.runtimes.base import AsyncInfer

    _check_images(images, batch)
    if requests < 1:
        raise InvalidInputError(f"requests must be >= 1, got {requests}")
    runtime = detector.runtime
    if not isinstance(runtime, AsyncInfer):
        return ThroughputResult(
            None,
            requests,
            reason=f"runtime '{getattr(runtime, 'name', type(runtime).__name__)}' has no "
            "async API; see fps_sequential",
        )
    batches = _batches(images, batch)
    slots = threading.BoundedSemaphore(requests)
    lock = threading.Lock()
    done = [0]
    errors: list[BaseException] = []

    def callback(outputs: dict[str, np.ndarray], metas: Any) -> None:
        try:
            detector.postprocess(outputs, metas)
            with lock:
                done[0] += 1
        except BaseException as err:  # re-raised in the calling thread below
            errors.append(err)
        finally:
            slots.release()

    def submit(k: int) -> None:
        feeds, metas = detector.preprocess(batches[k % len(batches)])
        # A request that fails inside the runtime never calls back, so its slot is never
        # released: wait with a timeout and let wait_all() raise the runtime's error instead
        # of blocking here forever.
        while not slots.acquire(timeout=STALL_SECONDS):
            runtime.wait_all()
            raise InferenceError(f"async requests stopped calling back for {STALL_SECONDS:.0f} s")
        try:
            runtime.submit(feeds, callback, metas)
        except BaseException:
            slots.release()
            raise

    for k in range(warmup):
        submit(k)
    runtime.wait_all()
    done[0] = 0
    clock = time.perf_counter_ns
    start = clock()
    limit = int(seconds * 1e9)
    k = 0
    while clock() - start < limit and not errors:
        submit(k)
        k += 1
    runtime.wait_all()
    elapsed = (clock() - start) / 1e9
    if errors:
        raise errors[0]
    if done[0] != k:
        return ThroughputResult(
            None,
            requests,
            reason=f"{k - done[0]} of {k} async requests never called back (runtime error)",
        )
    n_images = done[0] * batch
    return ThroughputResult(n_images / elapsed, requests, n_images, elapsed)
