"""``edgedet track``: detect and track objects in a video, frame folder, camera or stream.

Writes into ``--save``:

- ``tracks.json`` (schema ``edgedet.tracks`` version 1)::

    {"schema": "edgedet.tracks", "version": 1, "model": str, "runtime": {...},
     "source": str, "fps": float, "class_names": [str, ...], "box_format": "xyxy",
     "coordinates": "pixels of the frame", "frames": int, "dropped_frames": int,
     "pipelined": bool, "latency_ms": {"p50": float, "p99": float, "max": float},
     "source_lost": str | null,
     "tracks": [{"frame": int, "timestamp": float, "track_id": int, "age": int,
                 "class_id": int, "class_name": str, "xyxy": [x1, y1, x2, y2],
                 "score": float}, ...]}

  ``frame`` is the 0-based frame index in the source, ``timestamp`` its capture time (Unix
  seconds), ``age`` the frames since the track was first seen (1 = new), ``latency_ms`` the
  capture-to-result time over all frames.
- ``tracks.txt``: the same boxes as MOTChallenge results (1-based frames), for any MOT tool.
- ``<name>_track.mp4``: the frames with ids drawn (not with ``--no-draw``).
- ``metrics.json``: MOTA, IDF1, id switches... when the source is a MOTChallenge sequence
  folder with ``gt/gt.txt`` or ``--gt`` names one (motmetrics, the ``bench`` extra).

A camera or stream that stops mid-way: everything tracked until then is written, then the command
fails (exit 2) saying so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError, SourceLostError


def add_track_arguments(p: argparse.ArgumentParser) -> None:
    from .cli import add_model_arguments

    p.description = (
        "Detect and track objects (ByteTrack) in a video file, a folder of frames or a "
        "MOTChallenge sequence, a camera index or a stream URL; writes tracks.json, tracks.txt "
        "(MOTChallenge) and a video with track ids drawn. Needs the 'track' extra."
    )
    p.add_argument(
        "model", nargs="?", default=None,
        help="model file (.onnx/.xml/.engine); default: the embedded sample",
    )  # fmt: skip
    p.add_argument(
        "source",
        help="video file, frame folder or MOTChallenge sequence folder, camera index (0), rtsp:// URL",
    )
    add_model_arguments(p)
    p.add_argument("--save", default="runs/track", help="output folder")
    p.add_argument("--no-draw", action="store_true", help="write no video")
    p.add_argument(
        "--pipelined", action="store_true",
        help="overlap capture, preprocess, inference and postprocess in threads (same results)",
    )  # fmt: skip
    p.add_argument(
        "--gt", default=None,
        help="MOTChallenge gt.txt to score the tracks against (default: SOURCE/gt/gt.txt if any)",
    )  # fmt: skip
    p.add_argument(
        "--track-conf", type=float, default=None,
        help="score a box needs to start a track (default: --conf, i.e. the model's threshold)",
    )  # fmt: skip
    p.add_argument(
        "--lost-frames", type=int, default=30,
        help="frames (at 30 fps) a lost track is kept to be found again (default 30)",
    )  # fmt: skip
    p.add_argument(
        "--min-hits", type=int, default=1,
        help="frames a track must be seen before it gets an id (default 1)",
    )  # fmt: skip


def _gt_path(args: argparse.Namespace) -> Path | None:
    if args.gt:
        gt = Path(args.gt)
        if not gt.is_file():
            raise InvalidInputError(f"--gt {gt} not found")
        return gt
    default = Path(args.source) / "gt" / "gt.txt"
    return default if default.is_file() else None


class _VideoOut:
    """An annotated video written to a hidden part file and renamed when `finish` is called;
    `abort` removes the part file (no half video under the final name)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self.tmp = path.with_name("." + path.name + ".part.mp4")
        self.writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(
                str(self.tmp), cv2.VideoWriter.fourcc(*"mp4v"), self.fps, (w, h)
            )
        self.writer.write(frame)

    def finish(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.tmp.replace(self.path)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.tmp.unlink(missing_ok=True)


def run_track(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from .cli import _iter_sources, console, default_sample_model, load_from_args
    from .data.mot import read_mot_file, results_lines
    from .draw import draw_detections
    from .fileio import atomic_write_bytes
    from .tracking import Tracker
    from .video import FolderSource, open_source
    from .workdir import check_out_dir

    model = args.model or default_sample_model()
    source: Any = args.source
    if not Path(args.source).is_dir():
        kind, source = _iter_sources(args.source)
        if kind != "video":
            raise InvalidInputError(
                f"'{args.source}' is an image; track needs a video, a frame folder, a camera or a URL"
            )
    gt_path = _gt_path(args)
    out_dir = check_out_dir(args.save, "--save")
    det = load_from_args(args, model)
    src = open_source(source)
    tracker = Tracker(
        track_threshold=args.track_conf if args.track_conf is not None else det.score_threshold,
        lost_frames=args.lost_frames,
        min_hits=args.min_hits,
        frame_rate=src.fps,
    )
    con = console()
    con.print(f"[bold]{det}[/] · ByteTrack · {'pipelined' if args.pipelined else 'sequential'}")
    records: list[dict[str, Any]] = []
    mot_lines: list[str] = []
    latencies: list[float] = []
    dropped = frames = 0
    lost: SourceLostError | None = None
    name = Path(str(source)).stem if not isinstance(source, int) else f"camera{source}"
    video = None if args.no_draw else _VideoOut(out_dir / f"{name}_track.mp4", src.fps)
    try:
        with Progress(console=con, transient=False) as progress:
            total = len(src.files) if isinstance(src, FolderSource) else None
            task = progress.add_task("track", total=total)
            try:
                for res in det.track(src, tracker=tracker, pipelined=args.pipelined):
                    frames += 1
                    dropped += res.dropped
                    latencies.append(res.latency)
                    d, tr = res.detections, res.tracks
                    assert tr is not None  # det.track always sets it
                    for box, score, cid, tid, age in zip(
                        d.xyxy, d.scores, d.class_ids, tr.ids, tr.ages
                    ):
                        records.append(
                            {
                                "frame": res.index,
                                "timestamp": round(res.timestamp, 6),
                                "track_id": int(tid),
                                "age": int(age),
                                "class_id": int(cid),
                                "class_name": det.class_names[int(cid)],
                                "xyxy": [round(float(v), 2) for v in box],
                                "score": round(float(score), 5),
                            }
                        )
                    mot_lines += results_lines(res.index + 1, d.xyxy, tr.ids, d.scores)
                    if video is not None:
                        video.write(draw_detections(res.frame, d, det.class_names, tr.ids))
                    progress.advance(task)
            except SourceLostError as err:
                lost = err
    except BaseException:
        if video is not None:
            video.abort()
        det.close()
        raise
    if video is not None:
        video.finish()
    if frames == 0:
        det.close()
        raise lost or InvalidInputError(f"{args.source} gave no frames; nothing written")
    lat = np.asarray(latencies) * 1000.0
    doc = {
        "schema": "edgedet.tracks",
        "version": 1,
        "model": str(model),
        "runtime": det.describe(),
        "source": str(args.source),
        "fps": src.fps,
        "class_names": list(det.class_names),
        "box_format": "xyxy",
        "coordinates": "pixels of the frame",
        "frames": frames,
        "dropped_frames": dropped,
        "pipelined": bool(args.pipelined),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 3),
            "p99": round(float(np.percentile(lat, 99)), 3),
            "max": round(float(lat.max()), 3),
        },
        "source_lost": str(lost) if lost else None,
        "tracks": records,
    }
    det.close()
    atomic_write_bytes(out_dir / "tracks.json", json.dumps(doc, indent=1).encode())
    atomic_write_bytes(out_dir / "tracks.txt", "".join(x + "\n" for x in mot_lines).encode())
    n_ids = len({r["track_id"] for r in records})
    con.print(
        f"{frames} frame(s), {len(records)} tracked boxes, {n_ids} track id(s); latency "
        f"capture->result p50 {doc['latency_ms']['p50']:.1f} ms, p99 "
        f"{doc['latency_ms']['p99']:.1f} ms; written to {out_dir}"
    )
    if dropped:
        con.print(f"[yellow]dropped {dropped} frame(s): tracking was slower than the live source")
    report: dict[str, Any] = {"tracks": str(out_dir / "tracks.json"), "frames": frames}
    if gt_path is not None and lost is None:
        from .track_metrics import evaluate

        gt = read_mot_file(gt_path)
        hyp = read_mot_file(out_dir / "tracks.txt") if mot_lines else {}
        metrics = evaluate([(name, gt, hyp, frames)])["overall"]
        atomic_write_bytes(
            out_dir / "metrics.json",
            json.dumps({"gt": str(gt_path), "iou": 0.5, **metrics}, indent=1).encode(),
        )
        con.print(
            f"vs {gt_path}: MOTA {metrics['mota']:.3f} · IDF1 {metrics['idf1']:.3f} · "
            f"id switches {metrics['id_switches']} · FP {metrics['false_positives']} · "
            f"misses {metrics['misses']} (motmetrics, IoU 0.5)"
        )
        report["metrics"] = metrics
    if lost is not None:
        raise SourceLostError(f"{lost}; the {frames} frame(s) tracked before are in {out_dir}")
    return 0
