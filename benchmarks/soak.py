"""Soak test: run one detector over many consecutive frames and report whether memory grows.

    python -m edgedet.benchmarks.soak MODEL [--family F] [--runtime R] [--frames 5000]

Frames cycle through the images of a folder (or synthetic noise frames when none is given).
RSS is sampled every ``--every`` frames; the report gives RSS after warm-up, at the end, the
maximum, and the least-squares slope in MiB per 1000 frames over the second half of the run
(the first frames grow caches and arenas legitimately).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def soak(
    model: str,
    *,
    family: str | None,
    runtime: str,
    frames: int,
    images: list[Path],
    threads: int | None,
    every: int = 100,
) -> dict:
    import cv2

    import edgedet

    opts = {"threads": threads} if threads else {}
    det = edgedet.load(model, runtime=runtime, family=family, runtime_options=opts)
    read = (cv2.imread(str(p)) for p in images[:32])
    pool: list[np.ndarray] = [im for im in read if im is not None] or [
        np.random.default_rng(i).integers(0, 255, (480, 640, 3), dtype=np.uint8) for i in range(8)
    ]
    for img in pool[:5]:
        det(img)
    start = rss_mib()
    samples: list[tuple[int, float]] = [(0, start)]
    t0 = time.perf_counter()
    for i in range(1, frames + 1):
        det(pool[i % len(pool)])
        if i % every == 0:
            samples.append((i, rss_mib()))
    elapsed = time.perf_counter() - t0
    xs = np.array([s[0] for s in samples[len(samples) // 2 :]], float)
    ys = np.array([s[1] for s in samples[len(samples) // 2 :]], float)
    slope = float(np.polyfit(xs, ys, 1)[0] * 1000) if len(xs) > 1 else 0.0
    return {
        "model": model,
        "runtime": det.runtime_name,
        "frames": frames,
        "seconds": round(elapsed, 1),
        "rss_start_mib": round(start, 1),
        "rss_end_mib": round(samples[-1][1], 1),
        "rss_max_mib": round(max(s[1] for s in samples), 1),
        "slope_mib_per_1000_frames_second_half": round(slope, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--family")
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--frames", type=int, default=5000)
    p.add_argument("--images", help="folder of images to cycle through")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    images = sorted(Path(args.images).glob("*.jpg")) if args.images else []
    print(
        json.dumps(
            soak(
                args.model,
                family=args.family,
                runtime=args.runtime,
                frames=args.frames,
                images=images,
                threads=args.threads,
            ),
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
