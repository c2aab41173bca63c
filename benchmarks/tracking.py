"""``edgedet bench`` on data with identities: tracking accuracy and stream speed.

When ``--data`` is a MOTChallenge sequence folder (``img1/`` + ``gt/gt.txt``; the synthetic
generator writes them: ``edgedet data synth --sequences K``) or a folder of such sequences,
``edgedet bench`` runs this instead of the mAP harness. For each model and runtime it reports:

- tracking accuracy of ``Detector.track`` (ByteTrack) over all sequences together: MOTA, IDF1,
  id switches, false positives, misses (motmetrics, IoU 0.5; `edgedet.track_metrics`);
- stream speed through ``Detector.stream``, sequential and pipelined: frames per second with
  the sequences read as fast as they decode (frames / wall time, decoding included; the loops
  alternate for `ROUNDS` rounds and the median round is reported), and the capture-to-result
  latency p50 / p99 / max and dropped frames with the sequences replayed as a live
  `CAMERA_FPS` camera (`edgedet.video.ReplaySource`).

Writes ``tracking.json`` (every number) and ``tracking.md`` (a table) into ``--out``. The
process that measures is this one (not a worker per configuration as for mAP): the numbers
are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.errors import EdgedetError


def tracking_sequences(data: str | Path) -> list[Path]:
    """The MOTChallenge sequences with ground truth at ``data``: itself, or its subfolders."""
    from edgedet.data.mot import is_sequence

    p = Path(data)
    if not p.is_dir():
        return []
    candidates = [p] if is_sequence(p) else sorted(c for c in p.iterdir() if is_sequence(c))
    return [c for c in candidates if (c / "gt" / "gt.txt").is_file()]


#: Frame rate at which the sequences are replayed as a live camera for the latency numbers.
CAMERA_FPS = 30.0
#: Rounds of the throughput measurement (sequential and pipelined alternate).
ROUNDS = 3


def _summary(frames: int, wall: float, lat: list[float], dropped: int) -> dict[str, float]:
    ms = np.asarray(lat) * 1000.0
    return {
        "frames": frames,
        "dropped": dropped,
        "seconds": round(wall, 4),
        "fps": round(frames / wall, 2),
        "latency_ms_p50": round(float(np.percentile(ms, 50)), 3),
        "latency_ms_p99": round(float(np.percentile(ms, 99)), 3),
        "latency_ms_max": round(float(ms.max()), 3),
    }


def _speed(det: Any, sequences: list[Path], pipelined: bool, camera_fps: float | None) -> dict[str, float]:
    """Frames per second and latency over ``sequences``: read as fast as they decode
    (``camera_fps`` None: throughput) or replayed as a live camera at ``camera_fps``."""
    from edgedet.errors import SourceLostError
    from edgedet.video import ReplaySource

    frames = dropped = 0
    lat: list[float] = []
    t0 = time.perf_counter()
    for seq in sequences:
        source: Any = seq if camera_fps is None else ReplaySource(seq, camera_fps)
        try:
            for res in det.stream(source, pipelined=pipelined, queue_size=2):
                frames += 1
                dropped += res.dropped
                lat.append(res.latency)
        except SourceLostError:
            if camera_fps is None:
                raise  # a replay's end is its camera going away: expected
    return _summary(frames, time.perf_counter() - t0, lat, dropped)


def _accuracy(det: Any, sequences: list[Path]) -> dict[str, Any]:
    from edgedet.data.mot import MotBoxes, read_sequence
    from edgedet.track_metrics import evaluate

    items = []
    for path in sequences:
        seq = read_sequence(path)
        hyp = {}
        for res in det.track(path):
            d = res.detections
            hyp[res.index + 1] = MotBoxes(
                d.xyxy, res.tracks.ids, d.scores, d.class_ids, np.ones(len(d), np.float32)
            )
        items.append((seq.name, seq.gt or {}, hyp, len(seq.frames)))
    metrics = evaluate(items)
    return {"overall": metrics["overall"], "per_sequence": {k: v for k, v in metrics.items() if k != "overall"}}


def run_tracking_bench(args: argparse.Namespace, sequences: list[Path]) -> int:
    """Measure every ``--model`` x ``--runtime`` on ``sequences`` (see the module docstring)."""
    import edgedet
    from edgedet.fileio import atomic_write_bytes
    from edgedet.workdir import check_out_dir

    from .sweep import per_model_settings

    out = check_out_dir(args.out)
    records: list[dict[str, Any]] = []
    failed = 0
    for entry in per_model_settings(list(args.model), args.family, args.names):
        for runtime in args.runtime or ["auto"]:
            record: dict[str, Any] = {"model": entry["model"], "runtime": runtime}
            opts = {"threads": args.threads} if args.threads else {}
            overrides = {"names": entry["names"]} if entry.get("names") else {}
            try:
                det = edgedet.load(
                    entry["model"], runtime=runtime, device=args.device,
                    family=entry.get("family"), runtime_options=opts,
                    score_threshold=args.conf, iou_threshold=args.iou, **overrides,
                )  # fmt: skip
                try:
                    record["runtime_info"] = det.describe()
                    det.warmup(max(1, args.warmup))
                    record["tracking"] = _accuracy(det, sequences)
                    # throughput: the two loops alternate, ROUNDS times each, and the round
                    # with the median fps is reported (all rounds' fps are kept): a busy
                    # machine then hits both loops alike
                    rounds: dict[str, list[dict[str, float]]] = {"sequential": [], "pipelined": []}
                    for _ in range(ROUNDS):
                        for mode, runs in rounds.items():
                            runs.append(_speed(det, sequences, mode == "pipelined", None))
                    for mode, runs in rounds.items():
                        runs.sort(key=lambda run: run["fps"])
                        record[mode] = {
                            **runs[len(runs) // 2],
                            "fps_rounds": [run["fps"] for run in runs],
                        }
                        record[f"{mode}_camera"] = _speed(
                            det, sequences, mode == "pipelined", CAMERA_FPS
                        )
                finally:
                    det.close()
                record["status"] = "ok"
            except EdgedetError as err:
                record.update(status="failed", error=str(err))
                failed += 1
            records.append(record)
            _print(record)
    doc = {
        "schema": "edgedet.bench.tracking",
        "sequences": [str(s) for s in sequences],
        "iou": 0.5,
        "records": records,
    }
    atomic_write_bytes(out / "tracking.json", json.dumps(doc, indent=1).encode())
    atomic_write_bytes(out / "tracking.md", _markdown(records, sequences).encode())
    print(f"wrote {out / 'tracking.json'} and {out / 'tracking.md'}")
    if failed == len(records):
        print("edgedet bench: nothing was measured: every configuration failed")
        return 1
    return 1 if failed else 0


def _print(r: dict[str, Any]) -> None:
    name = f"{Path(r['model']).name} · {r['runtime']}"
    if r["status"] != "ok":
        print(f"{name}: failed: {r['error']}")
        return
    m = r["tracking"]["overall"]
    print(
        f"{name}: MOTA {m['mota']:.3f} · IDF1 {m['idf1']:.3f} · id switches {m['id_switches']} "
        f"· FP {m['false_positives']} · misses {m['misses']}"
    )
    for mode in ("sequential", "pipelined"):
        s, c = r[mode], r[f"{mode}_camera"]
        print(
            f"  {mode:10s}: {s['fps']:.1f} fps from files (median of {s['fps_rounds']}); as a "
            f"{CAMERA_FPS:g} fps camera: "
            f"latency p50 {c['latency_ms_p50']:.1f} / p99 {c['latency_ms_p99']:.1f} ms, "
            f"{c['dropped']} of {c['frames'] + c['dropped']} frames dropped"
        )


def _markdown(records: list[dict[str, Any]], sequences: list[Path]) -> str:
    lines = [
        f"# Tracking and stream speed ({len(sequences)} sequence(s))",
        "",
        f"fps: frames read from the files as fast as they decode, median of {ROUNDS} alternating "
        f"rounds. Latency (capture to result) and drops: the same frames replayed as a live "
        f"{CAMERA_FPS:g} fps camera.",
        "",
        "| model | runtime | MOTA | IDF1 | ID sw. | FP | misses | loop | fps | latency p50 / p99 ms "
        "| dropped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {Path(r['model']).name} | {r['runtime']} | failed: {r['error']} |")
            continue
        m = r["tracking"]["overall"]
        for mode in ("sequential", "pipelined"):
            s, c = r[mode], r[f"{mode}_camera"]
            head = (
                f"| {Path(r['model']).name} | {r['runtime']} | {m['mota']:.3f} | {m['idf1']:.3f} "
                f"| {m['id_switches']} | {m['false_positives']} | {m['misses']} "
                if mode == "sequential"
                else "| | | | | | | "
            )
            lines.append(
                f"{head}| {mode} | {s['fps']:.1f} | {c['latency_ms_p50']:.1f} / "
                f"{c['latency_ms_p99']:.1f} | {c['dropped']} / {c['frames'] + c['dropped']} |"
            )
    return "\n".join(lines) + "\n"
