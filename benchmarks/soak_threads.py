"""Shared-detector soak: one detector called from several threads at once gives, for every frame,
exactly what it gives for that frame called alone; RSS at the start and the end.

    python -m edgedet.benchmarks.soak_threads [MODEL] [--family F] [--runtime R ...]
        [--threads 4] [--frames 10000] [--images DIR]

MODEL defaults to the shipped sample; frames cycle through the images of ``--images`` (default:
the sample's synthetic validation scenes, made on the fly), so threads run different frames at
the same moment. The sequential pass runs each distinct frame once; the threaded pass splits
``--frames`` calls over ``--threads`` threads, each starting at another offset of the pool, and
compares every result with the sequential one (`compare_threaded`, also used by the contract
test in ``tests/runtimes/test_threads.py``). Exit status 1 when any result differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .soak import rss_mib


def same_detections(a: Any, b: Any, atol: float = 1e-4) -> bool:
    """Equal boxes (pixels), scores and class ids; ``atol`` covers float summation order."""
    return (
        len(a) == len(b)
        and bool(np.array_equal(a.class_ids, b.class_ids))
        and bool(np.allclose(a.xyxy, b.xyxy, rtol=0, atol=atol * 100))
        and bool(np.allclose(a.scores, b.scores, rtol=0, atol=atol))
    )


def compare_threaded(
    detect: Callable[[np.ndarray], Any],
    frames: Sequence[np.ndarray],
    *,
    threads: int = 4,
    calls: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``detect`` on every frame sequentially, then ``calls`` times (default: each frame once
    per thread) from ``threads`` threads sharing it; count results that differ from the
    sequential ones and exceptions. Thread ``t`` walks the frames from offset ``t * len / threads``
    so neighbouring threads hold different frames at the same moment."""
    reference = [detect(f) for f in frames]
    n = len(frames)
    total = calls if calls is not None else n * threads
    per = [total // threads + (1 if t < total % threads else 0) for t in range(threads)]
    mismatches = [0] * threads
    errors: list[str] = []
    done = [0] * threads
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        offset = t * n // threads
        start.wait()
        for i in range(per[t]):
            k = (offset + i) % n
            try:
                if not same_detections(detect(frames[k]), reference[k]):
                    mismatches[t] += 1
            except Exception as err:  # counted and reported: the point is to see every failure
                errors.append(f"{type(err).__name__}: {err}")
            done[t] = i + 1
            if on_progress is not None and t == 0 and (i + 1) % 500 == 0:
                on_progress(sum(done))

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return {
        "threads": threads,
        "calls": total,
        "distinct_frames": n,
        "mismatches": sum(mismatches),
        "exceptions": len(errors),
        "first_errors": errors[:3],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _frames(images: str | None, count: int = 32) -> list[np.ndarray]:
    import cv2

    if images:
        folder = Path(images)
    else:
        from edgedet.data.synthetic import sample_validation_set

        folder = sample_validation_set(n=count)
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[:count]
    frames = [im for im in (cv2.imread(str(p)) for p in paths) if im is not None]
    if not frames:
        raise SystemExit(f"no readable images under {folder}")
    return frames


def soak_threads(
    model: str | None, runtime: str, *, family: str | None, threads: int, frames: int,
    images: str | None,
) -> dict[str, Any]:  # fmt: skip
    import edgedet
    from edgedet.assets import sample_model_path

    pool = _frames(images)
    det = edgedet.load(model or sample_model_path(), runtime=runtime, family=family)
    for f in pool[:3]:
        det(f)  # warm-up: arenas and caches grow legitimately on the first calls
    rss_start = rss_mib()
    result = compare_threaded(
        det, pool, threads=threads, calls=frames,
        on_progress=lambda k: print(f"  {runtime}: ~{k} calls", file=sys.stderr, flush=True),
    )  # fmt: skip
    det.close()
    return {
        "model": str(model or "sample_roads.onnx"),
        "runtime": runtime,
        **result,
        "rss_start_mib": round(rss_start, 1),
        "rss_end_mib": round(rss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("model", nargs="?", help="model file (default: the shipped sample)")
    p.add_argument("--family")
    p.add_argument("--runtime", nargs="+", default=["onnxruntime", "openvino"])
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--frames", type=int, default=10000, help="threaded calls in all")
    p.add_argument("--images", help="folder of images to cycle through")
    args = p.parse_args(argv)
    bad = 0
    for rt in args.runtime:
        res = soak_threads(args.model, rt, family=args.family, threads=args.threads,
                           frames=args.frames, images=args.images)  # fmt: skip
        print(json.dumps(res), flush=True)
        bad += res["mismatches"] + res["exceptions"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
