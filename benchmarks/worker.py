"""Benchmark worker: ``python -m edgedet.benchmarks.worker CONFIG.json RECORD.json``.

Measures one `BenchConfig` in this fresh process and writes its record (JSON) to RECORD.json.
Before anything is loaded it pins the process to ``config.cpus`` (when given) and sets OpenCV's
thread count to ``config.threads`` (preprocessing's resize), so the whole pipeline runs with the
recorded thread count.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from edgedet.fileio import atomic_write_bytes

from .records import dumps_record
from .runner import BenchConfig, run_config


def _pin(config: BenchConfig) -> dict[str, object]:
    pinned: dict[str, object] = {}
    if config.cpus:
        try:
            os.sched_setaffinity(0, set(config.cpus))
            pinned["cpu_affinity"] = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError) as err:
            pinned["cpu_affinity"] = f"not pinned: {err}"
    if config.threads is not None:
        import cv2

        cv2.setNumThreads(config.threads)
        pinned["opencv_threads"] = cv2.getNumThreads()
    return pinned


def exit_with_parent(parent: int, every_s: float = 0.5) -> threading.Thread:
    """End this process when ``parent`` is gone (re-parented: ``getppid()`` changes), so a bench
    killed with SIGKILL does not leave its worker measuring on for minutes. A daemon thread;
    polling because PR_SET_PDEATHSIG is Linux-only and racy with ``subprocess`` in threads."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(143)  # no cleanup to run: the parent that wanted the record is gone

    thread = threading.Thread(target=watch, name="edgedet-parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> int:
    exit_with_parent(os.getppid())
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m edgedet.benchmarks.worker CONFIG.json RECORD.json", file=sys.stderr)
        return 2
    config = BenchConfig.from_json(Path(args[0]).read_text())
    pinned = _pin(config)
    record = run_config(config)
    record["worker"] = {"pid": os.getpid(), **pinned}
    atomic_write_bytes(args[1], dumps_record(record).encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
