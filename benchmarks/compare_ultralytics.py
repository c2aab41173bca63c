"""edgedet's default path against Ultralytics ``predict`` on the same ONNX file and images.

    python -m benchmarks.compare_ultralytics MODEL.onnx IMAGES [--num 40] [--rounds 3]
        [--out compare_ultralytics/]

Run it from the repository root in a Python where both ``edgedet`` and ``ultralytics`` import
(Ultralytics is AGPL and not an edgedet dependency: use a scratch environment; docs/optimize.md,
"Against Ultralytics predict", gives the commands). Both tools run in this one process, so they
use the same ONNX Runtime build.

What is timed, per image, end to end (a decoded H×W×3 uint8 BGR frame -> detections in original
pixels):

- ``edgedet``: ``edgedet.load(MODEL)(frame)``, the default path (no deploy profile, no
  runtime options: ONNX Runtime at its default settings).
- ``ultralytics``: ``YOLO(MODEL, task="detect").predict(frame, verbose=False)`` (ONNX Runtime
  through Ultralytics' AutoBackend, torch for its pre- and post-processing).

The images are decoded once up front. After a warm-up, each round runs every image through one
path, then the other, the order alternating between rounds (a machine that slows for a while
slows both); the ratio edgedet / Ultralytics of the p50s is taken within each round. The
pre / infer / post split comes from Ultralytics' ``Results.speed`` and, for edgedet, from a
separate untimed-for-e2e pass calling ``Detector.preprocess`` / ``infer`` / ``postprocess``.

Two threshold settings: each tool's own defaults, then both set to the same confidence and NMS
IoU (``--conf`` / ``--iou``; Ultralytics' defaults unless given). When the defaults already
coincide, the matched setting is the same run and is not repeated (the record says so). The
detections of the two paths are compared image by image (count, boxes matched by class and IoU)
so the timing compares like with like.

Writes ``OUT/compare_ultralytics.json`` (every sample's summary, the settings, versions, thread
counts, the machine) and ``OUT/compare_ultralytics.md``; exit code 0 when measured, 2 on bad
input or a missing package.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.errors import EdgedetError, InvalidInputError, RuntimeUnavailableError

#: What to run when ``ultralytics`` does not import (it is not an edgedet dependency).
ULTRALYTICS_INSTALL = (
    "python -m venv /tmp/ulcmp && /tmp/ulcmp/bin/python -m pip install ultralytics "
    "onnxruntime==<this venv's onnxruntime version> && /tmp/ulcmp/bin/python -m pip install "
    "-e . (then run this module with /tmp/ulcmp/bin/python; docs/optimize.md, 'Against "
    "Ultralytics predict')"
)

EDGEDET, ULTRALYTICS = "edgedet", "ultralytics"

#: A round is "quiet" when every path's calls used at least this share of the most CPU cores
#: any path used in the run (process CPU time / wall time): on a shared machine a round where
#: another process took cores from one path says nothing about the two tools.
QUIET = 0.9
STAGES = ("pre", "infer", "post")


def import_ultralytics() -> Any:
    """The ``ultralytics`` module, or `RuntimeUnavailableError` with what to install."""
    try:
        import ultralytics
    except ImportError as err:
        raise RuntimeUnavailableError(
            f"ultralytics is not importable in this Python ({sys.executable}): {err}. It is not "
            f"an edgedet dependency (AGPL-3.0); make a scratch environment: {ULTRALYTICS_INSTALL}"
        ) from err
    return ultralytics


# -- comparing detections -----------------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (N, M) of boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy pixels, float."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_detections(
    ours: tuple[np.ndarray, np.ndarray, np.ndarray],
    theirs: tuple[np.ndarray, np.ndarray, np.ndarray],
    iou_min: float = 0.5,
) -> dict[str, Any]:
    """Pair two detection sets of one image: greedy by IoU within each class.

    ``ours`` / ``theirs``: ``(xyxy (N, 4) pixels, scores (N,), class ids (N,))``. Returns the
    counts, how many pairs have IoU >= ``iou_min``, the smallest IoU of those pairs, the largest
    absolute corner difference in pixels and the largest score difference over them."""
    (xa, sa, ca), (xb, sb, cb) = ours, theirs
    ca, cb = np.asarray(ca).astype(np.int64), np.asarray(cb).astype(np.int64)
    ious: list[float] = []
    corner: list[float] = []
    score: list[float] = []
    for cls in np.union1d(ca, cb):
        ia, ib = np.flatnonzero(ca == cls), np.flatnonzero(cb == cls)
        if not len(ia) or not len(ib):
            continue
        m = box_iou(np.asarray(xa)[ia], np.asarray(xb)[ib])
        while m.size and m.max() >= iou_min:
            i, j = np.unravel_index(int(np.argmax(m)), m.shape)
            ious.append(float(m[i, j]))
            corner.append(float(np.abs(np.asarray(xa)[ia[i]] - np.asarray(xb)[ib[j]]).max()))
            score.append(abs(float(np.asarray(sa)[ia[i]]) - float(np.asarray(sb)[ib[j]])))
            m[i, :] = -1.0
            m[:, j] = -1.0
    return {
        "count_edgedet": len(ca),
        "count_ultralytics": len(cb),
        "matched": len(ious),
        "min_iou": min(ious) if ious else None,
        "max_corner_px": max(corner) if corner else None,
        "max_score_diff": max(score) if score else None,
    }


def summarize_matches(per_image: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over images of `match_detections` results."""
    def worst(key: str, pick: Callable[[list[float]], float]) -> float | None:
        vals = [float(p[key]) for p in per_image if p.get(key) is not None]
        return pick(vals) if vals else None

    return {
        "images": len(per_image),
        "images_same_count": sum(p["count_edgedet"] == p["count_ultralytics"] for p in per_image),
        "images_all_matched": sum(
            p["matched"] == p["count_edgedet"] == p["count_ultralytics"] for p in per_image
        ),
        "detections_edgedet": sum(int(p["count_edgedet"]) for p in per_image),
        "detections_ultralytics": sum(int(p["count_ultralytics"]) for p in per_image),
        "matched": sum(int(p["matched"]) for p in per_image),
        "min_iou": worst("min_iou", min),
        "max_corner_px": worst("max_corner_px", max),
        "max_score_diff": worst("max_score_diff", max),
    }


# -- the two paths ------------------------------------------------------------------------------


def _os_threads() -> int | None:
    """Threads of this process now (Linux ``/proc``), None elsewhere."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


@contextlib.contextmanager
def _thread_delta(into: dict[str, Any], key: str) -> Iterator[None]:
    before = _os_threads()
    yield
    after = _os_threads()
    into[key] = None if before is None or after is None else after - before


def _session_threads(session: Any) -> dict[str, Any]:
    """The intra/inter-op thread settings of an ``onnxruntime.InferenceSession`` (0: ORT's
    default, one intra-op thread per physical core)."""
    if session is None:
        return {"intra_op_num_threads": "unknown", "inter_op_num_threads": "unknown"}
    so = session.get_session_options()
    return {
        "intra_op_num_threads": so.intra_op_num_threads,
        "inter_op_num_threads": so.inter_op_num_threads,
        "execution_mode": str(so.execution_mode),
        "graph_optimization_level": str(so.graph_optimization_level),
        "providers": list(session.get_providers()),
    }


Dets = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Path_:
    """One way of running the model: ``run(frame) -> Dets``; ``split(frame)`` gives the
    (pre, infer, post) milliseconds of one call where the tool exposes them."""

    name: str
    run: Callable[[np.ndarray], Dets]
    split: Callable[[np.ndarray], tuple[float, float, float] | None]
    set_thresholds: Callable[[float | None, float | None], None]
    thresholds: Callable[[], dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    #: run before each pass: puts back the process-wide settings this tool runs with by default
    enter: Callable[[], None] = lambda: None


def edgedet_path(model: Path) -> Path_:
    """``edgedet.load(model)`` with no other argument: the default path."""
    import edgedet
    from edgedet.deploy import find_profile

    beside, _ = find_profile(model)
    if beside is not None:  # edgedet.load would run the profile's choice, not the default
        raise InvalidInputError(
            f"{model} has a deploy profile beside it ({beside.name}): this compares edgedet's "
            "default path; copy the model without its profile to another folder"
        )
    info: dict[str, Any] = {}
    with _thread_delta(info, "os_threads_added_by_load"):
        det = edgedet.load(model)
    defaults = (det.score_threshold, det.iou_threshold)
    info["describe"] = det.describe()
    info["session"] = _session_threads(getattr(det.runtime, "session", None))

    def run(frame: np.ndarray) -> Dets:
        d = det(frame)
        return d.xyxy, d.scores, d.class_ids

    def split(frame: np.ndarray) -> tuple[float, float, float]:
        t0 = time.perf_counter_ns()
        feeds, lbs = det.preprocess([frame])
        t1 = time.perf_counter_ns()
        out = det.infer(feeds)
        t2 = time.perf_counter_ns()
        det.postprocess(out, lbs)
        t3 = time.perf_counter_ns()
        return (t1 - t0) / 1e6, (t2 - t1) / 1e6, (t3 - t2) / 1e6

    def set_thresholds(conf: float | None, iou: float | None) -> None:
        det.score_threshold = defaults[0] if conf is None else conf
        det.iou_threshold = defaults[1] if iou is None else iou

    def thresholds() -> dict[str, Any]:
        return {"conf": det.score_threshold, "iou": det.iou_threshold,
                "max_det": det.max_detections, "nms": det.nms, "multi_label": det.multi_label}  # fmt: skip

    return Path_(EDGEDET, run, split, set_thresholds, thresholds, info)


def ultralytics_path(model: Path) -> Path_:
    """``YOLO(model, task="detect").predict(frame, verbose=False)``."""
    ul = import_ultralytics()
    info: dict[str, Any] = {}
    yolo = ul.YOLO(str(model), task="detect")
    kwargs: dict[str, Any] = {}
    last: dict[str, Any] = {}

    def run(frame: np.ndarray) -> Dets:
        r = yolo.predict(frame, verbose=False, **kwargs)[0]
        last["speed"] = dict(r.speed)
        b = r.boxes
        return b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy().astype(np.int64)

    def split(frame: np.ndarray) -> tuple[float, float, float] | None:
        speed = last.get("speed")
        if not speed:
            return None
        return float(speed["preprocess"]), float(speed["inference"]), float(speed["postprocess"])

    def set_thresholds(conf: float | None, iou: float | None) -> None:
        kwargs.clear()
        if conf is not None:
            kwargs["conf"] = conf
        if iou is not None:
            kwargs["iou"] = iou

    def thresholds() -> dict[str, Any]:
        args = getattr(yolo.predictor, "args", None)
        return {k: getattr(args, k, None) for k in ("conf", "iou", "max_det", "agnostic_nms")}

    def start(frame: np.ndarray) -> None:  # the predictor (and its ORT session) is made lazily
        with _thread_delta(info, "os_threads_added_by_first_predict"):
            run(frame)
        backend = getattr(yolo.predictor, "model", None)
        inner = getattr(backend, "backend", backend)
        info["session"] = _session_threads(getattr(inner, "session", None))
        try:
            import torch

            info["torch_threads"] = torch.get_num_threads()
        except ImportError:  # pragma: no cover - ultralytics needs torch
            pass

    path = Path_(ULTRALYTICS, run, split, set_thresholds, thresholds, info)
    path.info["_start"] = start
    return path


# -- timing -------------------------------------------------------------------------------------


def _summary(ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(ms, dtype=np.float64)
    p50, p90 = np.percentile(arr, [50, 90])
    return {"p50": float(p50), "p90": float(p90), "mean": float(arr.mean()),
            "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}  # fmt: skip


@dataclass
class Samples:
    """One path's samples in one round: e2e wall ms and process CPU ms per call, detections,
    and the tool's own (pre, infer, post) ms where it reports them with the call."""

    e2e: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    dets: list[Dets] = field(default_factory=list)
    splits: list[tuple[float, float, float]] = field(default_factory=list)


def timed_call(path: Path_, frame: np.ndarray, into: Samples) -> None:
    """One e2e call of ``path`` on ``frame`` (the process-wide settings put back first)."""
    path.enter()
    c0, t0 = time.process_time_ns(), time.perf_counter_ns()
    d = path.run(frame)
    t1, c1 = time.perf_counter_ns(), time.process_time_ns()
    into.e2e.append((t1 - t0) / 1e6)
    into.cpu.append((c1 - c0) / 1e6)
    into.dets.append(d)
    if path.name == ULTRALYTICS:  # Results.speed of this call
        split = path.split(frame)
        if split is not None:
            into.splits.append(split)


def run_round(paths: Sequence[Path_], frames: Sequence[np.ndarray], first: int,
              interleave: str) -> tuple[list[str], dict[str, Samples]]:  # fmt: skip
    """Every frame through every path, ``paths[first]`` first, then edgedet's stage-split pass.

    ``interleave="pass"`` (the default of the command): all frames through one path, then all
    through the other, as an application runs one model frame after frame. ``"image"``: each
    frame through both paths before the next, the order alternating frame to frame; a burst of
    load then hits both, but each call also runs right after the other tool's ONNX Runtime call,
    whose intra-op threads are still spinning (ORT's default) and compete for the cores: on the
    2-core VM of docs/optimize.md both tools were ~10 ms slower per image that way.
    Returns the order and the samples per path."""
    order = list(paths[first:]) + list(paths[:first])
    samples = {p.name: Samples() for p in paths}
    if interleave == "pass":
        for p in order:
            for frame in frames:
                timed_call(p, frame, samples[p.name])
            if p.name == EDGEDET:  # right after its e2e pass: the same machine state
                samples[p.name].splits = split_pass(p, frames)
    elif interleave == "image":
        for i, frame in enumerate(frames):
            for p in order if i % 2 == 0 else order[::-1]:
                timed_call(p, frame, samples[p.name])
        for p in paths:
            if p.name == EDGEDET:
                samples[p.name].splits = split_pass(p, frames)
    else:
        raise InvalidInputError(f"--interleave must be 'image' or 'pass', got {interleave!r}")
    return [p.name for p in order], samples


def split_pass(path: Path_, frames: Sequence[np.ndarray]) -> list[tuple[float, float, float]]:
    """edgedet's stage split, from a pass of its own (not part of the e2e samples)."""
    out = []
    for frame in frames:
        path.enter()
        s = path.split(frame)
        if s is not None:
            out.append(s)
    return out


def _split_summary(splits: Sequence[tuple[float, float, float]]) -> dict[str, float] | None:
    if not splits:
        return None
    arr = np.asarray(splits, dtype=np.float64)
    return {stage: float(np.percentile(arr[:, i], 50)) for i, stage in enumerate(STAGES)}


def run_setting(paths: Sequence[Path_], frames: Sequence[np.ndarray], rounds: int,
                log: Callable[[str], None], interleave: str = "pass") -> dict[str, Any]:  # fmt: skip
    """``rounds`` rounds over ``paths`` at their current thresholds, the first path alternating
    between rounds (`run_round`); per round: e2e p50/p90 per path, the CPU cores each path's
    calls used (process CPU time / wall time: 2.0 on an idle 2-core machine with two threads
    busy, less when other processes took the cores), the stage split, and the ratio of p50s
    edgedet / Ultralytics, plus the median of the per-image ratios (paired by image)."""
    out_rounds: list[dict[str, Any]] = []
    last: dict[str, Samples] = {}
    for rnd in range(rounds):
        order, last = run_round(paths, frames, rnd % len(paths), interleave)
        entry: dict[str, Any] = {"order": order, "paths": {}}
        for p in paths:
            got = last[p.name]
            entry["paths"][p.name] = {
                "e2e_ms": _summary(got.e2e),
                "cpu_cores_used": sum(got.cpu) / sum(got.e2e),
                "split_p50_ms": _split_summary(got.splits),
            }
        ours = entry["paths"][EDGEDET]["e2e_ms"]["p50"]
        theirs = entry["paths"][ULTRALYTICS]["e2e_ms"]["p50"]
        entry["ratio_p50_edgedet_over_ultralytics"] = ours / theirs
        entry["ratio_per_image_median"] = float(np.median(
            np.asarray(last[EDGEDET].e2e) / np.asarray(last[ULTRALYTICS].e2e)))  # fmt: skip
        out_rounds.append(entry)
        log(f"  round {rnd + 1} ({order[0]} first): edgedet p50 {ours:.2f} ms, ultralytics p50 "
            f"{theirs:.2f} ms, ratio {ours / theirs:.3f} (per-image median "
            f"{entry['ratio_per_image_median']:.3f})")  # fmt: skip
    most = max(q["cpu_cores_used"] for r in out_rounds for q in r["paths"].values())
    for r in out_rounds:  # other processes took cores from one path or both
        r["quiet"] = all(q["cpu_cores_used"] >= QUIET * most for q in r["paths"].values())
    per_image = [match_detections(a, b) for a, b in zip(last[EDGEDET].dets, last[ULTRALYTICS].dets)]
    return {"interleave": interleave, "rounds": out_rounds,
            "detections": summarize_matches(per_image), "detections_per_image": per_image}  # fmt: skip


# -- inputs, provenance, report -----------------------------------------------------------------


def load_frames(images: Path, num: int) -> tuple[list[np.ndarray], list[str]]:
    """The first ``num`` images under ``images`` (sorted by path), decoded to BGR uint8."""
    import cv2

    from edgedet.data.images import find_images

    if not images.is_dir():
        raise InvalidInputError(f"IMAGES {images}: not a folder")
    files = find_images(images)[:num]
    if not files:
        raise InvalidInputError(f"IMAGES {images}: no image files in it")
    frames = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise InvalidInputError(f"cannot decode {f}")
        frames.append(img)
    return frames, [str(f) for f in files]


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def check_one_checkout() -> Path:
    """The checkout ``edgedet`` runs from; `InvalidInputError` when ``edgedet``, its runtimes
    and this module come from different ones (an editable install of another checkout mixed
    with the current folder's packages would measure code nobody wrote together)."""
    import edgedet.runtimes

    import edgedet

    roots = {
        "edgedet": Path(edgedet.__file__).resolve().parent.parent,
        "edgedet.runtimes": Path(edgedet.runtimes.__file__).resolve().parent.parent,
        __name__: Path(__file__).resolve().parent.parent,
    }
    if len(set(roots.values())) != 1:
        raise InvalidInputError(
            "edgedet's packages come from different checkouts ("
            + ", ".join(f"{k}: {v}" for k, v in roots.items())
            + f"); install this checkout into this Python first: {Path(sys.executable)} -m pip "
            "install --no-deps -e ."
        )
    return roots["edgedet"]


def _versions() -> dict[str, Any]:
    from importlib import metadata

    import edgedet

    out: dict[str, Any] = {"edgedet": edgedet.__version__,
                           "edgedet_commit": _git_commit(Path(edgedet.__file__).resolve().parent)}  # fmt: skip
    for dist in ("ultralytics", "onnxruntime", "numpy", "opencv-python", "opencv-python-headless", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import onnxruntime

    out["onnxruntime_imported"] = f"{onnxruntime.__version__} ({Path(onnxruntime.__file__).parent})"
    return out


def _ratio_range(setting: Mapping[str, Any], quiet_only: bool = False) -> str:
    ratios = [r["ratio_p50_edgedet_over_ultralytics"] for r in setting["rounds"]
              if r.get("quiet", True) or not quiet_only]  # fmt: skip
    if not ratios:
        return "none"
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if len(ratios) > 1 else f"{ratios[0]:.2f}"


def markdown(record: Mapping[str, Any]) -> str:
    """The short report: one row per setting x round x path."""
    v = record["versions"]
    lines = [
        f"# edgedet default path vs Ultralytics predict: {Path(record['model']).name}",
        "",
        f"edgedet {v.get('edgedet')} @ {v.get('edgedet_commit')}, Ultralytics {v.get('ultralytics')}, "
        f"ONNX Runtime {v.get('onnxruntime')} (one process, one build), {record['images']} images "
        f"from {record['images_folder']}, {record['rounds']} rounds interleaved by "
        f"{record.get('interleave', 'pass')}, warm-up {record['warmup']}. "
        f"Machine: {record['host'].get('cpu_model')}, {record['host'].get('cores_logical')} "
        f"logical cores; load average before {record['load_before']}, after {record['load_after']}.",
        "",
        "| setting | round | path | e2e p50 ms | e2e p90 ms | pre / infer / post p50 ms | CPU cores used | edgedet / Ultralytics: p50s (median per image) |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for name, setting in record["settings"].items():
        for i, rnd in enumerate(setting["rounds"], 1):
            for p in rnd["order"]:
                s = rnd["paths"][p]
                sp = s["split_p50_ms"]
                split = " / ".join(f"{sp[k]:.2f}" for k in STAGES) if sp else "n/a"
                ratio = (f"{rnd['ratio_p50_edgedet_over_ultralytics']:.3f} "
                         f"({rnd['ratio_per_image_median']:.3f})"
                         + ("" if rnd.get("quiet", True) else " busy") if p == EDGEDET else "")  # fmt: skip
                lines.append(f"| {name} | {i} | {p} | {s['e2e_ms']['p50']:.2f} | "
                             f"{s['e2e_ms']['p90']:.2f} | {split} | {s['cpu_cores_used']:.2f} | "
                             f"{ratio} |")  # fmt: skip
    lines += ["", "| setting | thresholds (edgedet; ultralytics) | ratio range: all rounds (quiet rounds) | detections: same count / all matched (images), matched / edgedet / ultralytics, min IoU, max corner px |",
              "|---|---|---:|---|"]  # fmt: skip
    for name, setting in record["settings"].items():
        d = setting["detections"]
        th = setting["thresholds"]
        lines.append(
            f"| {name} | {th[EDGEDET]}; {th[ULTRALYTICS]} | {_ratio_range(setting)} "
            f"({_ratio_range(setting, quiet_only=True)}) | "
            f"{d['images_same_count']}/{d['images']} / {d['images_all_matched']}/{d['images']}, "
            f"{d['matched']} / {d['detections_edgedet']} / {d['detections_ultralytics']}, "
            f"{_fmt(d['min_iou'])}, {_fmt(d['max_corner_px'])} |"
        )
    lines += ["", "ORT sessions: " + "; ".join(
        f"{p}: {json.dumps(record['paths'][p].get('session'))}" for p in (EDGEDET, ULTRALYTICS))]  # fmt: skip
    proc = record.get("process", {})
    lines += [f"OpenCV threads: edgedet passes {proc.get('cv2_threads_before_ultralytics')} (OpenCV's "
              f"default here), Ultralytics passes {proc.get('cv2_threads_after_ultralytics')} (set by "
              f"importing ultralytics, which also sets OMP_NUM_THREADS="
              f"{proc.get('OMP_NUM_THREADS_after_ultralytics')}). "
              f"Ultralytics torch threads (its pre/post): {record['paths'][ULTRALYTICS].get('torch_threads')}; "
              f"OS threads added: edgedet load {record['paths'][EDGEDET].get('os_threads_added_by_load')}, "
              f"Ultralytics first predict {record['paths'][ULTRALYTICS].get('os_threads_added_by_first_predict')}."]  # fmt: skip
    lines += ["", f"A round marked busy: a path's calls used under {QUIET:.0%} of the most CPU cores "
              "any path used in this run (other processes took cores); its ratio says little."]  # fmt: skip
    if record.get("notes"):
        lines += ["", *(f"- {n}" for n in record["notes"])]
    return "\n".join(lines) + "\n"


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def compare(model: Path, images: Path, *, num: int = 40, rounds: int = 3, warmup: int = 5,
            conf: float | None = None, iou: float | None = None, interleave: str = "pass",
            log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Run the comparison; returns the record (see the module docstring)."""
    from .system import host_info, load_average

    if not model.is_file():
        raise InvalidInputError(f"MODEL {model}: not found")
    check_one_checkout()
    if rounds < 1 or num < 1 or warmup < 0:
        raise InvalidInputError("--rounds and --num must be >= 1, --warmup >= 0")
    if interleave not in ("image", "pass"):
        raise InvalidInputError(f"--interleave must be 'image' or 'pass', got {interleave!r}")
    import cv2

    process: dict[str, Any] = {"cv2_threads_before_ultralytics": cv2.getNumThreads(),
                               "OMP_NUM_THREADS_before_ultralytics": os.environ.get("OMP_NUM_THREADS")}  # fmt: skip
    import_ultralytics()  # fail before any work when it is missing
    # importing ultralytics sets OpenCV's threads to 0 and OMP_NUM_THREADS=1 (torch: 1 thread)
    # for the whole process; each pass runs with its own tool's OpenCV setting (`Path_.enter`)
    process["cv2_threads_after_ultralytics"] = cv2.getNumThreads()
    process["OMP_NUM_THREADS_after_ultralytics"] = os.environ.get("OMP_NUM_THREADS")
    frames, files = load_frames(images, num)
    log(f"{len(frames)} images decoded; loading both paths on {model.name}")
    ours = edgedet_path(model)
    theirs = ultralytics_path(model)
    theirs.info.pop("_start")(frames[0])
    ours.enter = lambda: cv2.setNumThreads(process["cv2_threads_before_ultralytics"])
    theirs.enter = lambda: cv2.setNumThreads(process["cv2_threads_after_ultralytics"])
    paths = [ours, theirs]
    for p in paths:  # warm-up: kernel selection, lazy allocations, the predictor's setup
        p.enter()
        for frame in frames[: max(warmup, 0)]:
            p.run(frame)
    default_th = {p.name: p.thresholds() for p in paths}
    conf = float(default_th[ULTRALYTICS]["conf"]) if conf is None else conf
    iou = float(default_th[ULTRALYTICS]["iou"]) if iou is None else iou
    same_defaults = (default_th[EDGEDET]["conf"] == default_th[ULTRALYTICS]["conf"]
                     and default_th[EDGEDET]["iou"] == default_th[ULTRALYTICS]["iou"])  # fmt: skip
    notes: list[str] = []
    settings: dict[str, Any] = {}
    load_before = load_average()
    plan: list[tuple[str, float | None, float | None]] = [("defaults", None, None)]
    if same_defaults and (conf, iou) == (default_th[EDGEDET]["conf"], default_th[EDGEDET]["iou"]):
        notes.append(f"each tool's default thresholds are already the same (conf {conf:g}, NMS IoU "
                     f"{iou:g}): the 'defaults' run is also the matched-threshold run")  # fmt: skip
    else:
        plan.append(("matched", conf, iou))
    for name, c, i in plan:
        for p in paths:
            p.set_thresholds(c, i)
        log(f"setting '{name}': " + "; ".join(f"{p.name} {p.thresholds()}" for p in paths))
        result = run_setting(paths, frames, rounds, log, interleave)
        result["thresholds"] = {p.name: p.thresholds() for p in paths}
        settings[name] = result
    record: dict[str, Any] = {
        "kind": "compare_ultralytics",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.compare_ultralytics",
                             *sys.argv[1:]]),
        "model": str(model),
        "model_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "images_folder": str(images),
        "images": len(frames),
        "image_files": [Path(f).name for f in files],
        "rounds": rounds,
        "interleave": interleave,
        "warmup": warmup,
        "versions": _versions(),
        "host": host_info(),
        "load_before": load_before,
        "load_after": load_average(),
        "paths": {p.name: {k: v for k, v in p.info.items() if not k.startswith("_")} for p in paths},
        "process": process,
        "default_thresholds": default_th,
        "settings": settings,
        "notes": notes,
    }
    try:
        from edgedet.deploy import cpu_flags

        record["host"]["cpu_flags"] = cpu_flags()
    except EdgedetError:  # pragma: no cover - stdlib only
        pass
    return record


def write_outputs(out: Path, record: Mapping[str, Any]) -> tuple[Path, Path]:
    from edgedet.fileio import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "compare_ultralytics.json", out / "compare_ultralytics.md"
    atomic_write_bytes(js, (json.dumps(record, indent=1, default=str) + "\n").encode())
    atomic_write_bytes(md, markdown(record).encode())
    return js, md


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.compare_ultralytics",
        description="edgedet's default path against Ultralytics predict on the same ONNX file "
        "and images, interleaved rounds (needs ultralytics importable: a scratch environment)",
    )
    p.add_argument("model", help="an Ultralytics-exported detection ONNX file (carries its metadata)")
    p.add_argument("images", help="folder of images (searched recursively, sorted; the first --num)")
    p.add_argument("--num", type=int, default=40, help="images to use (default 40)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per setting (default 3)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up images per path (default 5)")
    p.add_argument("--conf", type=float, default=None,
                   help="confidence of the matched-threshold run (default: Ultralytics' default)")
    p.add_argument("--iou", type=float, default=None,
                   help="NMS IoU of the matched-threshold run (default: Ultralytics' default)")
    p.add_argument("--interleave", choices=("pass", "image"), default="pass",
                   help="pass (default): all images through one tool, then the other, the order "
                   "alternating between rounds; image: each image through both tools in turn "
                   "(each then competes with the other's spinning ORT threads)")
    p.add_argument("--out", default="compare_ultralytics", help="folder for the JSON and markdown")
    args = p.parse_args(argv)
    try:
        record = compare(Path(args.model), Path(args.images), num=args.num, rounds=args.rounds,
                         warmup=args.warmup, conf=args.conf, iou=args.iou,
                         interleave=args.interleave)  # fmt: skip
    except EdgedetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    js, md = write_outputs(Path(args.out), record)
    print(markdown(record))
    print(f"wrote {js} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
