"""The ``edgedet`` command.

Subcommands are thin: they parse arguments and call the library. Commands whose code needs an
optional extra (train, calibrate, bench) import it only when run, so ``edgedet --help`` and the
device-side commands work with torch absent.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from ._cli_support import (
    CurrentStderrHandler,
    chosen_parser,
    flag_names,
    import_sidecar,
    require_extra,
)
from .errors import EdgedetError, InvalidInputError
from .hints import SIDECAR_SUFFIXES, cli_flags, import_command

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


# -- shared arguments --------------------------------------------------------------------------


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--runtime/--device/--family/--names/--threads/--precision, shared by model commands."""
    p.add_argument(
        "--runtime",
        default="auto",
        help="onnxruntime, openvino, tensorrt, or auto (by file suffix); several comma-separated = fallbacks in order",
    )
    p.add_argument(
        "--device", default=None, help="runtime device: cpu, cuda:0, CPU, GPU, NPU, AUTO, dla:0 ..."
    )
    p.add_argument(
        "--family",
        default=None,
        help="decoder family for models without edgedet meta: yolov8, yolo11, yolov5, yolox, nanodet, end2end, detr, edgedet",
    )
    p.add_argument(
        "--names",
        default=None,
        help="class names: 'coco', a comma-separated list, or a file with one per line",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="inference threads (default: runtime decides)"
    )
    p.add_argument(
        "--precision",
        default=None,
        help="runtime inference precision, e.g. fp32/bf16/fp16 (OpenVINO), fp16/int8 (TensorRT)",
    )
    p.add_argument(
        "--conf", type=float, default=None,
        help="score threshold (default: the model family's, 0.25 for most; see edgedet info)",
    )  # fmt: skip
    p.add_argument(
        "--iou", type=float, default=None,
        help="NMS IoU threshold (default: the model family's, e.g. 0.7 Ultralytics, 0.45 YOLOX)",
    )  # fmt: skip


def load_from_args(args: argparse.Namespace, model: str | Path) -> Any:
    from .detector import load

    runtime: str | tuple[str, ...] = args.runtime
    if "," in args.runtime:
        runtime = tuple(r.strip() for r in args.runtime.split(",") if r.strip())
    opts: dict[str, Any] = {}
    if args.threads is not None:
        opts["threads"] = args.threads
    if args.precision is not None:
        opts["precision"] = args.precision
    overrides: dict[str, Any] = {}
    if args.names:
        overrides["names"] = args.names
    return load(
        model,
        runtime=runtime,
        device=args.device,
        family=args.family,
        runtime_options=opts,
        score_threshold=args.conf,
        iou_threshold=args.iou,
        **overrides,
    )


def escape(text: str) -> str:
    """Escape rich markup: "edgedet[openvino]" must print as written, not as a style tag."""
    from rich.markup import escape as _escape

    return _escape(text)


def shown(text: str, limit: int = 200) -> str:
    """Untrusted text (from a model or dataset file) made safe for the console: control and
    escape characters removed, cut to ``limit`` characters, rich markup escaped."""
    from .validate import printable

    return escape(printable(text, limit))


def console() -> Any:
    from rich.console import Console

    return Console(stderr=False)


# -- predict -------------------------------------------------------------------------------------


def _iter_sources(source: str) -> tuple[str, list[Path] | int | str | Path]:
    """Classify a source: ('images', [paths]) / ('video', path or camera index or URL)."""
    from .data.images import IMAGE_SUFFIXES, find_images

    if source.isdigit():
        return "video", int(source)
    if "://" in source:
        return "video", source
    path = Path(source)
    if path.is_dir():
        files = find_images(path)
        if not files:
            raise InvalidInputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {path}")
        return "images", files
    if not path.exists():
        import glob

        matches = (
            sorted(Path(m) for m in glob.glob(source)) if any(c in source for c in "*?[") else []
        )
        if matches:
            return "images", [m for m in matches if m.suffix.lower() in IMAGE_SUFFIXES]
        raise InvalidInputError(f"source not found: {source}")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video", path
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images", [path]
    raise InvalidInputError(
        f"'{source}' is neither an image ({sorted(IMAGE_SUFFIXES)}) nor a video ({sorted(VIDEO_SUFFIXES)})"
    )


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2
    from rich.progress import Progress

    from ._predict_output import coco_results, detection_records, detections_document, source_fps
    from .draw import draw_detections
    from .fileio import atomic_write_bytes
    from .video import stop_when_lost
    from .wrap import load_from_args_wrapped

    model = args.model or default_sample_model()
    det = load_from_args_wrapped(args, model, load_from_args)  # plain, or --tiles/--tta/--ensemble
    kind, src = _iter_sources(args.source)
    from .workdir import check_out_dir

    out_dir = check_out_dir(args.save, "--save")  # writable, or an error naming it
    results: list[dict[str, Any]] = []
    unreadable = 0
    con = console()
    con.print(f"[bold]{det}[/] · {det.describe().get('precision')} · saving to {out_dir}")

    def record(image_id: int, file_name: str, dets: Any) -> None:
        results.extend(detection_records(image_id, file_name, dets, det.class_names))

    with Progress(console=con, transient=False) as progress:
        if kind == "images":
            assert isinstance(src, list)  # for the type checker; _iter_sources guarantees it
            task = progress.add_task("predict", total=len(src))
            names = _image_output_names(src, args.source)
            for i, path in enumerate(src):
                image, problem = _read_image_file(path)
                unreadable += image is None
                if image is None:
                    con.print(f"[yellow]skipped {shown(str(path))}: {shown(problem or '')}")
                    progress.advance(task)
                    continue
                if problem:
                    con.print(f"[yellow]warning: {shown(str(path))}: {shown(problem)}")
                bgr = _as_bgr(image)
                dets = det(bgr)
                rel, drawn = names[path]
                record(i, rel, dets)
                if not args.no_draw:
                    ok, buf = cv2.imencode(drawn.suffix, draw_detections(bgr, dets, det.class_names))
                    if ok:
                        atomic_write_bytes(out_dir / drawn, buf.tobytes())
                progress.advance(task)
        else:
            task = progress.add_task("predict (video)", total=None)
            writer = None
            dropped = 0
            video_out = out_dir / (
                Path(str(src)).stem + "_pred.mp4"
                if not isinstance(src, int)
                else f"camera{src}_pred.mp4"
            )
            tmp_out = video_out.with_name("." + video_out.name + ".part.mp4")
            finished = False
            try:
                for res in stop_when_lost(det.stream(src)):  # a lost camera: keep its frames
                    record(res.index, f"frame_{res.index:06d}", res.detections)
                    dropped += res.dropped
                    if not args.no_draw:
                        if writer is None:
                            h, w = res.frame.shape[:2]
                            fps, fps_note = source_fps(src)
                            if fps_note:
                                progress.console.print(f"[yellow]{fps_note}", highlight=False)
                            writer = cv2.VideoWriter(
                                str(tmp_out), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h)
                            )
                        writer.write(draw_detections(res.frame, res.detections, det.class_names))
                    progress.advance(task)
                finished = True
            finally:
                if writer is not None:
                    writer.release()
                    if finished:
                        tmp_out.replace(video_out)
                    else:  # an error or Ctrl-C: no partial video under the final name
                        tmp_out.unlink(missing_ok=True)
            if dropped:
                con.print(
                    f"[yellow]dropped {dropped} frame(s): detection was slower than the live source"
                )
    if isinstance(src, list) and unreadable == len(src):
        det.close()
        raise InvalidInputError(
            f"none of the {len(src)} image(s) could be read (missing or corrupt); nothing written"
        )
    atomic_write_bytes(
        out_dir / "detections.json",
        json.dumps(
            detections_document(str(model), det.describe(), det.class_names, results), indent=1
        ).encode(),
    )
    if args.coco_results:
        atomic_write_bytes(
            Path(args.coco_results),
            json.dumps(coco_results(results, det.class_names)).encode(),
        )
        con.print(f"COCO results (bbox x,y,w,h; COCO category ids) written to {args.coco_results}")
    con.print(f"{len(results)} detections written to {out_dir / 'detections.json'}")
    det.close()
    return 0


def _image_output_names(paths: Sequence[Path], source: str) -> dict[Path, tuple[str, Path]]:
    """For each input image: (its path relative to the input root, as recorded in
    detections.json; the relative path of its drawn output).

    The input root is the source folder (or the common folder of a glob's matches). Drawn
    outputs mirror the input tree, so ``s1/x.jpg`` and ``s2/x.jpg`` stay apart; a JPEG or PNG
    keeps its name, any other format is written as ``<name>.jpg`` (``y.tiff`` ->
    ``y.tiff.jpg``, apart from ``y.jpg``). Names are unique: a clash left over gets ``_<n>``.
    """
    import os

    root = Path(source)
    if not root.is_dir():
        root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path(".")
    out: dict[Path, tuple[str, Path]] = {}
    taken: set[str] = set()
    for n, path in enumerate(paths):
        try:
            rel = path.relative_to(root)
        except ValueError:
            rel = Path(path.name)
        drawn = rel if rel.suffix.lower() in (".jpg", ".jpeg", ".png") else rel.with_name(rel.name + ".jpg")
        if str(drawn).lower() in taken:
            drawn = drawn.with_name(f"{drawn.stem}_{n}{drawn.suffix}")
        taken.add(str(drawn).lower())
        out[path] = (rel.as_posix(), drawn)
    return out


def _read_image_file(path: Path) -> tuple[Any, str | None]:
    """(uint8 image as read, warning) or (None, why it was skipped), for ``predict``.

    8-bit images as they are; 16-bit scaled by 1/257; float images (e.g. 32-bit TIFF) in
    0..1 scaled by 255, in 0..255 rounded; other float ranges, NaN/inf and other pixel types
    are refused with the reason rather than turned black. A JPEG or PNG cut short still
    decodes partly: it is predicted, with a warning.
    """
    import cv2
    import numpy as np

    from .data.images import _looks_truncated

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # decodes what it can of a cut file
    if image is None:
        return None, "OpenCV cannot read it (missing or corrupt)"
    try:
        warning = _looks_truncated(path.read_bytes())
    except OSError as err:
        return None, f"cannot read it: {err.strerror or err}"
    if image.dtype == np.uint8:
        return image, warning
    if image.dtype == np.uint16:  # 16-bit PNG/TIFF -> 8-bit
        return (image / 257).round().astype(np.uint8), warning
    if image.dtype.kind == "f":
        if not np.isfinite(image).all():
            return None, f"{image.dtype} image with NaN/inf pixels"
        low, high = float(image.min()), float(image.max())
        if low >= 0 and high <= 1.0:
            return (image * 255).round().astype(np.uint8), warning
        if low >= 0 and high <= 255:
            return image.round().astype(np.uint8), warning
        return None, (
            f"{image.dtype} image with values {low:g}..{high:g}: edgedet reads float images in "
            "0..1 or 0..255; convert it to 8-bit first"
        )
    return None, f"{image.dtype} pixels are not supported; convert it to 8-bit first"


def _as_bgr(image: Any) -> Any:
    from .preprocess import as_bgr_image

    return as_bgr_image(image)


# -- info / runtimes / import ------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .meta import read_meta
    from .runtimes.registry import AUTO_BY_SUFFIX, probe

    path = Path(args.model)
    if not path.exists():
        raise InvalidInputError(f"model file not found: {path}")
    con = console()
    info: dict[str, Any] = {"model": str(path), "size_mb": round(path.stat().st_size / 1e6, 2)}
    try:
        meta = read_meta(path)
    except EdgedetError as err:
        meta = None
        info["meta_error"] = str(err)
    info["meta"] = meta.to_dict() if meta else None
    if path.suffix.lower() == ".onnx":
        from .meta import load_onnx_model

        m = load_onnx_model(path)  # ModelLoadError (exit 2) for truncated / text / random files

        def dims(v: Any) -> list[Any]:
            return [d.dim_value or d.dim_param or "?" for d in v.type.tensor_type.shape.dim]

        inits = {i.name for i in m.graph.initializer}
        info["inputs"] = [
            {"name": v.name, "shape": dims(v)} for v in m.graph.input if v.name not in inits
        ]
        info["outputs"] = [{"name": v.name, "shape": dims(v)} for v in m.graph.output]
        info["opset"] = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    candidates = (
        {"onnxruntime", "openvino", "tensorrt"}
        if path.suffix.lower() == ".onnx"
        else {AUTO_BY_SUFFIX.get(path.suffix.lower(), "")}
    )
    info["runtimes"] = {name: probe(name) for name in sorted(c for c in candidates if c)}
    if meta:
        from .protocol import resolve_protocol

        try:
            info["eval_protocol"] = resolve_protocol(meta).to_dict()
        except EdgedetError as err:
            info["eval_protocol_error"] = str(err)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    # Everything below may come from the model file: control characters stripped (no terminal
    # escape sequences), rich markup escaped, long strings cut.
    con.print(f"[bold]{shown(str(path))}[/] ({info['size_mb']} MB)")
    for key in ("inputs", "outputs"):
        for t in info.get(key, []):
            con.print(f"  {key[:-1]:6s} {shown(t['name'])} {shown(str(t['shape']))}")
    if meta:
        con.print(
            f"  family {shown(meta.family)} · source {shown(meta.source)} · input {meta.input_size} · {meta.color} · "
            f"scale {meta.scale:.5g} · letterbox {meta.letterbox} · precision {meta.precision} · "
            f"{len(meta.class_names)} classes"
        )
        if meta.calibration:
            con.print(f"  calibration: {shown(json.dumps(dict(meta.calibration)), 300)}")
        if info.get("eval_protocol"):
            from .protocol import EvalProtocol

            proto = EvalProtocol.from_dict(info["eval_protocol"])
            con.print(
                f"  mAP protocol: {proto.describe()} · deployment score "
                f"{proto.deploy_score_threshold:g}, IoU {proto.deploy_iou_threshold:g}"
            )
            if proto.source:
                con.print(f"    ({shown(proto.source)})")
    else:
        con.print(
            f"  [yellow]no edgedet meta[/] {shown(info.get('meta_error', ''), 600)}: load it with --family, or run "
            f"`{escape(import_command(path))}` once"
        )
    table = Table("runtime", "can run here", "version", "devices / reason")
    for name, p in info["runtimes"].items():
        table.add_row(
            name,
            "yes" if p["available"] else "no",
            str(p.get("version") or ""),
            ", ".join(p.get("devices", [])) if p["available"] else escape(p["reason"]),
        )
    con.print(table)
    return 0


def cmd_runtimes(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .runtimes.registry import probe, runtime_names

    rows = [probe(n) for n in runtime_names()]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    table = Table("runtime", "installed", "version", "devices / what to install")
    for r in rows:
        table.add_row(
            r["name"],
            "yes" if r["available"] else "no",
            str(r.get("version") or ""),
            ", ".join(r.get("devices", [])) if r["available"] else escape(r["reason"]),
        )
    console().print(table)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .detector import resolve_meta
    from .meta import write_onnx_meta

    src = Path(args.model)
    sidecar = src.suffix.lower() in SIDECAR_SUFFIXES
    if src.suffix.lower() != ".onnx" and not sidecar:
        raise InvalidInputError(
            f"edgedet import reads .onnx models (and writes a sidecar for {', '.join(SIDECAR_SUFFIXES)}), got '{src.suffix}'"
        )
    if not sidecar and not args.out:
        raise InvalidInputError(f"--out is required for an ONNX model, e.g. --out {src.stem}_edgedet.onnx")
    overrides: dict[str, Any] = {}
    if args.names:
        overrides["names"] = args.names
    if args.input_size:
        overrides["input_size"] = tuple(args.input_size)
    for key in ("color", "letterbox", "layout"):
        if getattr(args, key):
            overrides[key] = getattr(args, key)
    if args.pad_value is not None:
        overrides["pad_value"] = args.pad_value
    if args.scale is not None:
        overrides["scale"] = args.scale
    if args.mean:
        overrides["mean"] = tuple(args.mean)
    if args.std:
        overrides["std"] = tuple(args.std)
    if args.strides:
        overrides["strides"] = tuple(args.strides)
    meta = resolve_meta(src, args.family, None, overrides)
    from . import __version__ as version

    meta = meta.replace(edgedet_version=version, source=f"imported from {src.name}")
    from .protocol import protocol_overrides, resolve_protocol

    given = {k: v for k, v in protocol_overrides(args).items() if v is not None}
    if given:  # record the model's own mAP protocol in its meta (else its family's applies)
        proto = resolve_protocol(meta, overrides=given)
        meta = meta.replace(eval_protocol=proto.replace(
            source=f"edgedet import flags over: {proto.source or 'defaults'}").to_dict())  # fmt: skip
    if sidecar:
        console().print(import_sidecar(src, meta, args.out), markup=False, highlight=False, soft_wrap=True)
        return 0
    import os

    from .workdir import check_out_file, temp_beside

    out = check_out_file(args.out)
    # Written beside --out, proved to decode (loaded with no flags by the first runtime
    # available), then renamed over --out: a failed import leaves a file already there intact.
    from .detector import load

    with temp_beside(out) as tmp:
        write_onnx_meta(src, tmp, meta)
        det = load(tmp, runtime=("onnxruntime", "openvino"))
        os.replace(tmp, out)
    console().print(f"wrote {out}: {det} (checked with {det.runtime_name})")
    det.close()
    return 0


# -- data --------------------------------------------------------------------------------------


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data import detect_layout, load_dataset

    fmt, desc = detect_layout(args.path)
    ds = load_dataset(args.path, format=fmt)
    con = console()
    con.print(f"[bold]{args.path}[/]: {desc}")
    con.print(
        f"{len(ds)} images, {len(ds.class_names)} classes: {', '.join(ds.class_names[:20])}{' ...' if len(ds.class_names) > 20 else ''}"
    )
    for p in ds.problems[:50]:
        con.print(f"  [yellow]{shown(p, 400)}")  # problems quote file contents
    if len(ds.problems) > 50:
        con.print(f"  ... and {len(ds.problems) - 50} more problems")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .data import convert_dataset, load_dataset

    ds = load_dataset(args.path, format=args.format, on_error=args.on_error)
    out = convert_dataset(ds, args.out, to=args.to)
    console().print(
        f"converted {len(ds)} images ({ds.format} -> {args.to}) into {out}; {len(ds.problems)} problem(s) reported"
    )
    return 0


# -- parser ------------------------------------------------------------------------------------

#: Subcommands implemented by optional parts: name -> (module, add-arguments fn, run fn, help).
_PLUGGED: dict[str, tuple[str, str, str, str]] = {
    "bench": (
        "edgedet.benchmarks.command",
        "add_bench_arguments",
        "run_bench",
        "measure mAP and latency of models on this machine",
    ),
    "calibrate": (
        "edgedet.calibration.command",
        "add_calibrate_arguments",
        "run_calibrate",
        "INT8 post-training calibration",
    ),
    "optimize": (
        "edgedet.benchmarks.optimize",
        "add_optimize_arguments",
        "run_optimize",
        "the fastest runtime/precision within an mAP budget, measured here: a deploy profile",
    ),
    "train": (
        "edgedet.train.command",
        "add_train_arguments",
        "run_train",
        "train an edgedet detector (needs the train extra)",
    ),
    "prune": (
        "edgedet.train.compress_command",
        "add_prune_arguments",
        "run_prune",
        "structured channel pruning with recovery (needs the train extra)",
    ),
    "distill": (
        "edgedet.train.compress_command",
        "add_distill_arguments",
        "run_distill",
        "label-free distillation from a float teacher (train extra)",
    ),
    "qat": (
        "edgedet.train.compress_command",
        "add_qat_arguments",
        "run_qat",
        "quantization-aware training to a QDQ INT8 model (train extra)",
    ),
    "export": (
        "edgedet.train.command",
        "add_export_arguments",
        "run_export",
        "export a training checkpoint to ONNX with meta",
    ),
    "ros2": (
        "edgedet.ros2.command",
        "add_ros2_arguments",
        "run_ros2",
        "ROS 2 node: images in, vision_msgs/Detection2DArray out (rclpy, DDS or rosbag2)",
    ),
    "track": (
        "edgedet.track_command",
        "add_track_arguments",
        "run_track",
        "track objects (ByteTrack) in a video, frame folder, camera or stream (track extra)",
    ),
}


def default_sample_model() -> Path:
    """The sample detector shipped inside the package (trained by edgedet on synthetic roads)."""
    from . import assets

    path = assets.SAMPLE_MODEL
    if not path.is_file():
        raise InvalidInputError(
            "no model given and the embedded sample model is not installed; pass a model: "
            "edgedet predict MODEL.onnx IMAGES"
        )
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgedet",
        description="Object detectors from the workstation to the robot.",
        epilog="exit codes: 0 done; 1 bench measured nothing or a configuration failed, bench "
        "compare found a regression, or calibrate missed its budget; 2 a usage or input error; "
        f"{EXIT_OS_ERROR} the system refused a file operation (disk full, permission denied, "
        "read-only file system); 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"edgedet {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what edgedet decides (runtime chosen, caches)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "predict", help="detect objects in images, a folder, a video, a camera or a stream"
    )
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="model file (.onnx/.xml/.engine); default: the embedded sample",
    )
    p.add_argument(
        "source", help="image, folder, glob, video file, camera index (0) or rtsp:// URL"
    )
    add_model_arguments(p)
    p.add_argument(
        "--save",
        default="runs/predict",
        help="output folder for drawn images/video and detections.json (a folder source: its tree is mirrored, paths recorded relative to it)",
    )
    p.add_argument("--no-draw", action="store_true", help="write only detections.json")
    from .wrap import add_view_arguments

    add_view_arguments(p)
    p.add_argument(
        "--coco-results",
        metavar="FILE",
        default=None,
        help="also write the boxes as a COCO results list (bbox x,y,w,h; COCO category ids)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "info", help="inputs, outputs, meta of a model, and which runtimes can run it here"
    )
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "runtimes", help="which runtimes are installed and usable here, with versions and devices"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runtimes)

    p = sub.add_parser(
        "import",
        help="give a foreign model edgedet meta once (ONNX: a copy; .xml/.engine: a sidecar)",
        description="Write the description edgedet needs to decode a foreign model (family, "
        "preprocessing, class names) once, so later commands need no flags. An .onnx model is "
        "copied to --out with the meta inside; an OpenVINO .xml or a TensorRT .engine/.plan gets "
        "a <stem>.edgedet.json sidecar beside it. The result is loaded once to prove it decodes. "
        "Preprocessing options default to the family's preset (README, 'What runs where').",
    )
    p.add_argument("model", help="the model file: .onnx, .xml (OpenVINO IR), .engine / .plan")
    p.add_argument(
        "--family",
        required=True,
        help="decoder family: yolov8, yolo11, yolov5, yolox, nanodet, end2end, detr, edgedet",
    )
    p.add_argument(
        "--names",
        default=None,
        help="class names: 'coco' (the 80 COCO classes), comma-separated names, or a file with one per line",
    )
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="network input height and width (default: read from the model)",
    )
    p.add_argument("--color", choices=["BGR", "RGB"], help="channel order the model expects")
    p.add_argument(
        "--letterbox",
        choices=["center", "topleft", "stretch"],
        help="how a frame is fitted into the input: padded centred, padded from the top-left, or stretched",
    )
    p.add_argument("--layout", choices=["NCHW", "NHWC"], help="input tensor layout")
    p.add_argument("--pad-value", type=int, help="letterbox padding grey level, 0-255 (e.g. 114)")
    p.add_argument(
        "--scale", type=float, help="pixel scale applied before mean/std (e.g. 0.00392 = 1/255)"
    )
    p.add_argument(
        "--mean", type=float, nargs=3, metavar="M", help="per-channel mean subtracted (3 values)"
    )
    p.add_argument(
        "--std", type=float, nargs=3, metavar="S", help="per-channel std divided by (3 values)"
    )
    p.add_argument(
        "--strides", type=int, nargs="+", metavar="S", help="head strides, e.g. 8 16 32"
    )
    p.add_argument(
        "--out",
        default=None,
        help="ONNX file to write (required for .onnx); for .xml/.engine the sidecar path, may be omitted",
    )
    from .protocol import add_protocol_arguments

    add_protocol_arguments(p)  # given: recorded in the meta as the model's own mAP protocol
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("data", help="inspect and convert datasets (COCO, YOLO, VOC, KITTI)")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = dsub.add_parser("info", help="detect a dataset's layout and report what was found")
    d.add_argument("path")
    d.set_defaults(func=cmd_data_info)
    d = dsub.add_parser("convert", help="convert a dataset to another format")
    d.add_argument("path")
    d.add_argument("--to", required=True, choices=["coco", "yolo", "voc", "kitti"])
    d.add_argument("--format", default="auto")
    d.add_argument("--on-error", default="skip", choices=["skip", "stop"])
    d.add_argument("--out", required=True)
    d.set_defaults(func=cmd_data_convert)
    _plug(
        dsub,
        "synth",
        "edgedet.train.command",
        "add_synth_arguments",
        "run_synth",
        "generate synthetic road scenes (COCO + YOLO)",
    )

    for name, (module, add, run, help_text) in _PLUGGED.items():
        _plug(sub, name, module, add, run, help_text)
    return parser


def _plug(sub: Any, name: str, module: str, add: str, run: str, help_text: str) -> None:
    """Add a subcommand whose arguments live in an optional module (imported without extras)."""
    p = sub.add_parser(name, help=help_text)
    try:
        mod = importlib.import_module(module)
        getattr(mod, add)(p)
        runner: Callable[[argparse.Namespace], int] = getattr(mod, run)
    except (ImportError, AttributeError) as err:
        reason = str(err)

        def runner(args: argparse.Namespace, _reason: str = reason) -> int:
            raise InvalidInputError(f"'edgedet {name}' is not available in this install: {_reason}")

        p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=runner)


#: Exit code of a command stopped by the operating system refusing a file operation (disk full,
#: permission denied, read-only file system, a file where a folder was expected...): not a usage
#: error (2) and not a measurement that failed (1).
EXIT_OS_ERROR = 3

#: What to do about the usual errnos of a failed file operation.
_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free space or write elsewhere",
    errno.EDQUOT: "the disk quota is exhausted: free space or write elsewhere",
    errno.EACCES: "no permission: choose a folder you can write to, or fix its permissions",
    errno.EPERM: "not permitted: choose another path, or fix its permissions",
    errno.EROFS: "the file system is read-only: write somewhere else",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder; give a file name",
    errno.EEXIST: "something is already there: remove it or choose another path",
    errno.ENOENT: "no such file or folder",
}


def os_error_message(err: OSError) -> str:
    """One line for an `OSError` that ended a command: the errno's text, the path(s) and what
    to do, e.g. ``Not a directory: '/data/x/out.json' (ENOTDIR: a part of the path is a
    file, not a folder)``."""
    text = err.strerror or str(err) or type(err).__name__
    paths = [repr(str(f)) for f in (err.filename, err.filename2) if f is not None]
    where = f": {' -> '.join(paths)}" if paths else " (no path given by the system)"
    name = errno.errorcode.get(err.errno, "") if isinstance(err.errno, int) else ""
    hint = _OS_ERROR_HINTS.get(err.errno, "") if isinstance(err.errno, int) else ""
    detail = ": ".join(x for x in (name, hint) if x)
    return f"{text}{where}" + (f" ({detail})" if detail else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        handlers=[CurrentStderrHandler()],
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        require_extra(args.command)
        with cli_flags(flag_names(chosen_parser(parser, args))):
            rc = args.func(args)
        # Plugged commands return their report (a dict) for Python callers: success here.
        return rc if isinstance(rc, int) else 0
    except EdgedetError as err:
        print(f"edgedet: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgedet: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # disk full, permission denied, read-only: a line, not a traceback
        print(f"edgedet: error: {os_error_message(err)}", file=sys.stderr)
        return EXIT_OS_ERROR


if __name__ == "__main__":
    sys.exit(main())
