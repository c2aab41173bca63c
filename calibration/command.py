"""``edgedet calibrate``: INT8 calibration from the command line.

    edgedet calibrate MODEL --images DIR | --data DATA [--runtime onnxruntime|openvino|tensorrt]
        [--method minmax|entropy|percentile|mse] [--num N] [--exclude NAME|TYPE|/REGEX/ ...]
        [--family F] [--names coco] [--val DATA [--max-map-drop X] [--max-class-drop Y]]
        [--out PATH]
    edgedet calibrate sweep MODEL --images DIR|--data DATA --val DATA
        [--methods minmax,percentile,mse] [--nums 100,300] [--runtime ...] [--out DIR]

Writes the INT8 model (QDQ ONNX for onnxruntime / tensorrt, OpenVINO IR for openvino) and a
report beside it: ``<out>.calibration.json`` and ``<out>.calibration.md`` (settings, mAP before
and after overall and per class, model sizes, latency on this machine).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import CalibrationError, EdgedetError, InvalidInputError

from .spec import METHODS, CalibrationSpec

log = logging.getLogger("edgedet.calibration")


def int8_runtimes() -> list[str]:
    """Runtimes whose declaration lists an INT8 format (`edgedet.runtimes.capabilities`)."""
    from edgedet.runtimes.registry import runtime_capabilities, runtime_names

    return [n for n in runtime_names() if runtime_capabilities(n).int8_formats]


_OP_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _add_common(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", help="folder of calibration images (searched recursively)")
    src.add_argument("--data", help="a dataset edgedet reads (COCO JSON, YOLO, VOC, KITTI)")
    p.add_argument(
        "--runtime", choices=int8_runtimes(), default="onnxruntime", help="target runtime"
    )
    p.add_argument("--num", type=int, default=300, help="calibration images (default 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image draw (default 0)")
    p.add_argument("--family", help="decoder family, for models without edgedet meta")
    p.add_argument("--names", help="class names for models without meta: coco, a file, or a,b,c")
    p.add_argument("--val", help="labelled validation dataset: mAP before/after, budgets")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")
    p.add_argument("--val-names", help="class names of --val when it has none (YOLO: coco)")
    from edgedet.protocol import add_protocol_arguments

    add_protocol_arguments(p)  # how --val is scored (default: the model family's validator)
    p.add_argument("--symmetric", action="store_true", help="symmetric int8 activations")
    p.add_argument(
        "--scope",
        choices=("conv_inputs", "all"),
        default="conv_inputs",
        help="quantize conv inputs+weights only (default, accurate) or every op ORT can (faster on ORT)",
    )
    p.add_argument("--no-per-channel", action="store_true", help="per-tensor weight scales")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NAME|OpType|/REGEX/",
        help="keep layers in float: a node name, an op type (e.g. Resize), or /regex/ (repeatable)",
    )
    p.add_argument(
        "--quantize-decode-tail",
        action="store_true",
        help="also quantize the decode tail (not recommended; it is float by default)",
    )
    p.add_argument(
        "--quantize-stem",
        action="store_true",
        help="also quantize the convs reading the input image (float by default)",
    )
    p.add_argument(
        "--head-convs",
        choices=("auto", "quantize", "float"),
        default="auto",
        help="the head's last convs: float for NanoDet-like heads (auto), or as said",
    )


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgedet calibrate`` (``edgedet calibrate sweep ...`` is dispatched from
    the same parser: its first word is ``sweep``)."""
    from .guard import DEFAULT_PROXY_BOUND

    parser.add_argument(
        "target",
        nargs="+",
        metavar="MODEL",
        help="float ONNX model (or: sweep MODEL)",
    )
    _add_common(parser)
    parser.add_argument("--method", choices=METHODS, default=None, help="range estimator")
    parser.add_argument("--percentile", type=float, default=99.999, help="for --method percentile")
    parser.add_argument("--max-map-drop", type=float, help="budget: mAP50-95 points (needs --val)")
    parser.add_argument("--max-class-drop", type=float, help="budget per safety class, AP points")
    parser.add_argument(
        "--safety-classes",
        default="person,bicycle,car,motorcycle,bus,truck",
        help="comma-separated classes --max-class-drop guards",
    )
    parser.add_argument(
        "--accuracy-control",
        action="store_true",
        help="openvino: NNCF accuracy-controlled quantization with edgedet mAP (needs --val)",
    )
    parser.add_argument(
        "--sensitivity",
        choices=("proxy", "map"),
        default="proxy",
        help="how layers are ranked for mixed precision (default: proxy error)",
    )
    parser.add_argument(
        "--holdout",
        default="auto",
        metavar="N|auto",
        help="images of the calibration pool set aside, never calibrated on, for the label-free "
        "check and the fidelity report (default auto: a fifth of the pool, 8..64)",
    )
    parser.add_argument(
        "--proxy-bound",
        type=float,
        default=None,
        help="label-free guard: keep layers float until the held-out proxy error (detection "
        f"error vs the float model) is at most this (default {DEFAULT_PROXY_BOUND:g}, chosen "
        "by measurement: calibration/README.md)",
    )
    parser.add_argument(
        "--no-guard",
        action="store_true",
        help="skip the label-free guard (plain INT8; fidelity is still measured and printed)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency measurement")
    parser.add_argument("--out", help="output model (default: MODEL_int8.onnx / .xml)")
    parser.add_argument("--methods", default="minmax,percentile,mse", help="sweep: methods")
    parser.add_argument("--nums", default="100,300", help="sweep: image counts")


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of a standalone ``sweep`` subcommand (when wired separately)."""
    parser.add_argument("target", nargs="+", metavar="MODEL", help="float ONNX model")
    _add_common(parser)
    parser.add_argument("--methods", default="minmax,percentile,mse", help="comma-separated")
    parser.add_argument("--nums", default="100,300", help="comma-separated image counts")
    parser.add_argument("--percentile", type=float, default=99.999)
    parser.add_argument("--out", help="output folder (default: MODEL_sweep/)")


# -- helpers ----------------------------------------------------------------------------------


def spec_from_args(args: argparse.Namespace, **overrides: Any) -> CalibrationSpec:
    names, types, patterns = [], [], []
    for item in args.exclude:
        if len(item) > 2 and item.startswith("/") and item.endswith("/"):
            patterns.append(item[1:-1])
        elif (
            _OP_TYPE.match(item) and "/" not in item and "_" not in item and not item[-1].isdigit()
        ):
            types.append(item)
        else:
            names.append(item)
    method = getattr(args, "method", None) or CalibrationSpec.method
    safety = tuple(s.strip() for s in getattr(args, "safety_classes", "").split(",") if s.strip())
    kwargs: dict[str, Any] = {
        "method": method,
        "percentile": args.percentile,
        "num_images": args.num,
        "seed": args.seed,
        "per_channel": not args.no_per_channel,
        "symmetric_activations": args.symmetric or _capabilities(args.runtime).int8_symmetric,
        "exclude_names": tuple(names),
        "exclude_types": tuple(types),
        "exclude_patterns": tuple(patterns),
        "keep_decode_tail_float": not args.quantize_decode_tail,
        "keep_stem_float": not args.quantize_stem,
        "head_convs": args.head_convs,
        "scope": args.scope,
        "max_map_drop": getattr(args, "max_map_drop", None),
        "max_class_drop": getattr(args, "max_class_drop", None),
        "safety_classes": safety if getattr(args, "max_class_drop", None) is not None else (),
    }
    kwargs.update(overrides)
    return CalibrationSpec(**kwargs)


def _progress_factory() -> tuple[Any, Callable[[str], Callable[[int, int], None]]]:
    """A rich progress display (or log lines when rich is missing) and a task maker."""
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    except ImportError:

        def plain(label: str) -> Callable[[int, int], None]:
            def cb(done: int, total: int) -> None:
                if done == total or done % 25 == 0:
                    log.warning("%s: %d/%d", label, done, total)

            return cb

        return None, plain
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )

    def rich_task(label: str) -> Callable[[int, int], None]:
        task = progress.add_task(label, total=None)

        def cb(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return cb

    return progress, rich_task


def _capabilities(runtime: str) -> Any:
    """The runtime's declared capabilities (`edgedet.runtimes.capabilities`)."""
    from edgedet.runtimes.registry import runtime_capabilities

    return runtime_capabilities(runtime)


def _int8_format(runtime: str) -> str:
    fmt = _capabilities(runtime).int8_format
    if fmt is None:
        raise InvalidInputError(f"runtime '{runtime}' declares no INT8 format to calibrate for")
    return str(fmt)


def _int8_suffix(runtime: str) -> str:
    return ".xml" if _int8_format(runtime) == "openvino_ir" else ".onnx"


def _default_out(model: Path, runtime: str, suffix: str = "int8") -> Path:
    return model.with_name(f"{model.stem}_{suffix}{_int8_suffix(runtime)}")


def _eval_runtime(runtime: str) -> str:
    """Where the INT8 model is checked: ``runtime`` when it runs here, else the first runtime
    available here that runs the same INT8 format (a TensorRT QDQ model on ONNX Runtime)."""
    from edgedet.runtimes.registry import probe, runtime_names

    if probe(runtime)["available"]:
        return runtime
    fmt = _int8_format(runtime)
    for name in runtime_names():
        if fmt in _capabilities(name).int8_formats and probe(name)["available"]:
            log.warning("runtime '%s' is not available here: checking its INT8 model on '%s'",
                        runtime, name)  # fmt: skip
            return name
    raise InvalidInputError(f"no runtime here runs the {fmt} INT8 model built for '{runtime}'")


def _size_mb(path: Path) -> float:
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        total += path.with_suffix(".bin").stat().st_size
    return round(total / 1e6, 3)


def _load_float(args: argparse.Namespace, model: Path) -> Any:
    from .evaluate import load_for_eval

    return load_for_eval(
        model, runtime="onnxruntime", family=args.family, names=args.names, threads=args.threads
    )


def _make_source(
    args: argparse.Namespace, det: Any, num: int, progress: Any, *, holdout: int | str = 0
) -> Any:
    from .source import CalibrationSource

    if not args.images and not args.data:
        raise InvalidInputError("calibration needs images: pass --images DIR or --data DATASET")
    return CalibrationSource(
        det,
        images=args.images or None,
        dataset=args.data or None,
        num=num,
        seed=args.seed,
        progress=progress,
        holdout=holdout,
    )


def _parse_holdout(value: Any) -> int | str:
    if value is None or str(value).lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise InvalidInputError(f"--holdout must be 'auto' or an integer >= 0, got {value!r}")
    return n


def _builder(args: argparse.Namespace, model: Path, det: Any, spec: CalibrationSpec,
             source: Any, out: Path) -> Any:  # fmt: skip
    """The INT8 builder for the format the target runtime declares it runs."""
    from .guard import builder_for

    return builder_for(
        _int8_format(args.runtime), model, source, spec, det.meta,
        threads=args.threads, work_dir=out.parent,
    )  # fmt: skip


def _build(
    args: argparse.Namespace,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    *,
    keep_float: Sequence[str] = (),
) -> Any:
    if getattr(args, "accuracy_control", False):
        from .nncf_int8 import quantize_openvino_with_accuracy_control

        if _int8_format(args.runtime) != "openvino_ir":
            raise InvalidInputError(
                "--accuracy-control is NNCF's mode for OpenVINO IR: use --runtime openvino"
            )
        if not args.val or spec.max_map_drop is None:
            raise InvalidInputError("--accuracy-control needs --val DATA and --max-map-drop X")
        return quantize_openvino_with_accuracy_control(
            model,
            source,
            spec,
            out,
            det.meta,
            args.val,
            max_drop_points=spec.max_map_drop,
            threads=args.threads,
        )
    builder = _builder(args, model, det, spec, source, out)
    try:
        return builder.build(out, keep_float)
    finally:
        builder.close()


def _score(
    path: Path,
    args: argparse.Namespace,
    runtime: str,
    *,
    latency: bool,
    safety: Sequence[str],
    progress: Any = None,
) -> Any:
    from edgedet.protocol import protocol_overrides

    from .evaluate import score_model

    return score_model(
        path,
        args.val,
        runtime=_eval_runtime(runtime),
        family=args.family,
        names=args.names,
        threads=args.threads,
        safety_classes=safety or None,
        latency=latency,
        progress=progress,
        overrides=protocol_overrides(args),
    )


def _open(path: Path, args: argparse.Namespace, runtime: str) -> Any:
    from .evaluate import load_for_eval

    return load_for_eval(
        path, runtime=runtime, family=args.family, names=args.names, threads=args.threads
    )


def _run_on(path: Path, args: argparse.Namespace, runtime: str, images: Sequence[Any],
            latency: bool) -> tuple[list[Any], tuple[float, float] | None]:  # fmt: skip
    """Detections of model ``path`` on ``images`` (and its p50 latency when asked)."""
    from .evaluate import p50_latency_images
    from .guard import detect_all

    det = _open(path, args, runtime)
    try:
        dets = detect_all(det, images)
        return dets, (p50_latency_images(det, images[:8]) if latency and images else None)
    finally:
        det.close()


NO_LABELS = (
    "no labelled check ran: this INT8 model was checked only against the float model's own "
    "detections on held-out images (fidelity), not against ground truth; pass --val DATA "
    "(with --max-map-drop / --max-class-drop) for a measured mAP budget"
)


# -- calibrate ----------------------------------------------------------------------------------


def run_calibrate(args: argparse.Namespace) -> int:
    """``edgedet calibrate``; returns the exit code (0 ok, 1 budget or guard bound not met)."""
    if args.target and args.target[0] == "sweep":
        args.target = args.target[1:]
        return run_sweep(args)
    if len(args.target) != 1:
        raise InvalidInputError(f"calibrate takes one model, got {args.target}")
    model = Path(args.target[0])
    if not model.is_file():
        raise InvalidInputError(f"model file not found: {model}")
    if model.suffix.lower() != ".onnx":
        raise InvalidInputError(f"calibrate needs a float ONNX model, got {model.name}")
    if (args.max_map_drop is not None or args.max_class_drop is not None) and not args.val:
        raise InvalidInputError(
            "--max-map-drop / --max-class-drop need --val DATA (a labelled set)"
        )
    from .guard import DEFAULT_PROXY_BOUND

    bound = DEFAULT_PROXY_BOUND if args.proxy_bound is None else args.proxy_bound
    if not bound >= 0 or bound == float("inf"):
        raise InvalidInputError(f"--proxy-bound must be a finite number >= 0, got {bound}")
    holdout = _parse_holdout(args.holdout)
    if args.val:
        from .evaluate import load_dataset

        # read once, with its names: every later step (float mAP, sensitivity, the INT8 model's
        # mAP) takes the dataset object instead of re-reading the folder
        args.val = load_dataset(args.val, class_names=getattr(args, "val_names", None))
    spec = spec_from_args(args)
    out = Path(args.out) if args.out else _default_out(model, args.runtime)
    if out.suffix.lower() != _int8_suffix(args.runtime):
        raise InvalidInputError(
            f"--out {out}: runtime '{args.runtime}' runs {_int8_format(args.runtime)} INT8 "
            f"models; name the output *{_int8_suffix(args.runtime)}"
        )
    from edgedet.workdir import check_out_file

    out = check_out_file(out)  # writable: else an error naming it
    checked_on = _eval_runtime(args.runtime)
    progress, task = _progress_factory()
    report: dict[str, Any] = {
        "model": str(model), "runtime": args.runtime, "output": str(out), "checked_on": checked_on,
    }  # fmt: skip
    want_latency = not args.no_latency
    guard_on = not (args.no_guard or spec.has_budget or getattr(args, "accuracy_control", False))
    det = _load_float(args, model)
    try:
        ctx = progress if progress is not None else _Null()
        with ctx:
            from .guard import HeldOutImages, guard_without_labels

            source = _make_source(
                args, det, spec.num_images, task("calibration images"), holdout=holdout
            )
            heldout = HeldOutImages.load(source.holdout_paths)
            for msg in heldout.skipped:
                log.warning("held-out image skipped: %s", msg)
            reference, float_latency = _run_on(
                model, args, checked_on, heldout.images, want_latency
            )
            met = True
            builder = _builder(args, model, det, spec, source, out)
            try:
                if getattr(args, "accuracy_control", False):
                    result = _build(args, model, det, spec, source, out)
                elif guard_on and heldout.images:
                    rank_images = [source.load_image(e) for e in source.entries[:16]]
                    guarded = guard_without_labels(
                        builder, out, heldout, reference,
                        lambda p: _open(p, args, checked_on), rank_images,
                        bound=bound, progress=task,
                    )  # fmt: skip
                    result = guarded.result
                    report["label_free_guard"] = guarded.to_dict()
                    if guarded.sensitivity is not None:
                        _write_sensitivity(out, guarded.sensitivity)
                    met = guarded.met
                    if not met:
                        log.warning(
                            "label-free guard: no candidate reached the held-out proxy bound "
                            "%.3f; kept the closest (%d layers float)",
                            bound, len(guarded.kept_float),
                        )  # fmt: skip
                else:
                    if guard_on:
                        log.warning("label-free guard skipped: no held-out images (--holdout)")
                        report["label_free_guard"] = {"skipped": "no held-out images"}
                    result = builder.build(out)
                report.update(
                    spec=spec.to_dict(), images=source.record(), excluded=result.exclusion.summary()
                )
                if args.val:
                    met = _labelled_check(
                        args, model, det, spec, source, out, builder, report, task,
                        latency=want_latency and not heldout.images,
                    ) and met  # fmt: skip
                    result = report.pop("_result", result)
            finally:
                builder.close()
            if heldout.images:
                from .guard import fidelity

                int8_dets, int8_latency = _run_on(
                    result.path, args, checked_on, heldout.images, want_latency
                )
                report["fidelity"] = fidelity(
                    reference, int8_dets, det.class_names, heldout
                ) | {"runtime": checked_on}
                if float_latency is not None and int8_latency is not None:
                    report["latency_ms"] = {
                        "float_p50": round(float_latency[0], 2),
                        "int8_p50": round(int8_latency[0], 2),
                        "float_infer_p50": round(float_latency[1], 2),
                        "int8_infer_p50": round(int8_latency[1], 2),
                        "images": min(8, len(heldout.images)),
                        "runtime": checked_on,
                    }
            report["labelled_check"] = bool(args.val)
            report["size_mb"] = {"float": _size_mb(model), "int8": _size_mb(result.path)}
            _record_checks(result.path, report)
            report["budget_met"] = met
    finally:
        det.close()
    write_report(out, report)
    _print_summary(out, report)
    return 0 if met else 1


def _record_checks(path: Path, report: dict[str, Any]) -> None:
    """Write what checked the INT8 model into its own calibration record (meta / sidecar)."""
    guard = report.get("label_free_guard") or {}
    fid = report.get("fidelity") or {}
    changes = {
        "holdout_images": report.get("images", {}).get("holdout", 0),
        "labelled_check": report.get("labelled_check", False),
        "label_free_guard": {
            k: guard.get(k) for k in ("bound", "met", "kept_float", "tries", "skipped") if k in guard
        } or None,
        "fidelity": {
            k: fid.get(k) for k in ("map50_95", "map50", "images", "reference_boxes", "runtime")
        } or None,
    }
    if path.suffix == ".onnx":
        from .ort_int8 import update_record

        update_record(path, **changes)
    else:
        _update_sidecar(path, **changes)


def _print_summary(out: Path, report: dict[str, Any]) -> None:
    print(f"wrote {out} and {_report_path(out, '.md')}")
    guard = report.get("label_free_guard")
    if guard and "tries" in guard:
        last = guard["tries"][-1] if guard["tries"] else {}
        print(
            f"label-free guard: {len(guard['kept_float'])} layer(s) kept float; held-out proxy "
            f"error {last.get('proxy_error')} ({'within' if guard['met'] else 'NOT within'} "
            f"{guard['bound']})"
        )
    fid = report.get("fidelity")
    if fid:
        if fid["map50_95"] is None:
            print(f"fidelity: the float model found nothing on the {fid['images']} held-out images")
        else:
            worst = sorted(fid["per_class_ap"].items(), key=lambda kv: kv[1])[:3]
            print(
                f"fidelity on {fid['images']} held-out images (not calibrated on; INT8 scored "
                f"against the float model's {fid['reference_boxes']} detections): mAP50-95 "
                f"{fid['map50_95']:.3f}, mAP50 {fid['map50']:.3f}; lowest classes: "
                + ", ".join(f"{k} {v:.3f}" for k, v in worst)
            )
    lat = report.get("latency_ms")
    if lat:
        print(
            f"p50 latency on {lat['runtime']} (ms, end to end): float {lat['float_p50']:.1f}, "
            f"int8 {lat['int8_p50']:.1f}"
        )
    if "accuracy" in report:
        acc = report["accuracy"]
        print(
            f"mAP50-95 float {_pct(acc['float']['map50_95'])}% -> int8 "
            f"{_pct(acc['int8']['map50_95'])}% ({acc['retained_pct']}% kept)"
        )
    if not report.get("labelled_check"):
        print(f"NOTE: {NO_LABELS}")


def _write_sensitivity(out: Path, sens: Any) -> None:
    from edgedet.meta import atomic_write_bytes

    try:  # the plot is an extra: matplotlib may be missing on a device install
        sens.plot(_report_path(out, ".sensitivity.png"))
    except ImportError as err:
        log.warning("no sensitivity plot: %s", err)
    atomic_write_bytes(_report_path(out, ".sensitivity.md"), sens.to_markdown().encode())


def _labelled_check(
    args: argparse.Namespace,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    builder: Any,
    report: dict[str, Any],
    task: Any,
    *,
    latency: bool,
) -> bool:
    """mAP before/after on ``--val``, the budget (mixed precision when missed), the loss
    interval; fills ``report`` (``report["_result"]``: the model kept, when it changed)."""
    result_path = Path(report["output"])
    safety = list(spec.safety_classes) or [
        "person", "bicycle", "car", "motorcycle", "bus", "truck",
    ]  # fmt: skip
    before = _score(model, args, args.runtime, latency=latency, safety=safety,
                    progress=task("float mAP"))  # fmt: skip
    after = _score(result_path, args, args.runtime, latency=latency, safety=safety,
                   progress=task("int8 mAP"))  # fmt: skip
    met = True
    if spec.has_budget:
        from .evaluate import within_budget

        met, why = within_budget(
            before,
            after,
            max_map_drop=spec.max_map_drop,
            max_class_drop=spec.max_class_drop,
            safety_classes=spec.safety_classes,
        )
        if not met and not getattr(args, "accuracy_control", False):
            log.warning("budget not met (%s): running mixed precision", "; ".join(why))
            result, after, met, mixed = _mixed(
                args, model, det, spec, source, out, before, safety, task, builder, latency
            )
            report["mixed_precision"] = mixed
            report["_result"] = result
            report["excluded"] = result.exclusion.summary()
        elif not met:
            log.warning("budget not met (%s)", "; ".join(why))
        report["budget_checked"] = True
    report["accuracy"] = _accuracy_section(before, after, safety)
    from .ort_int8 import update_record

    if result_path.suffix == ".onnx":
        update_record(result_path, map_before=before.map50_95, map_after=after.map50_95)
    else:
        _update_sidecar(result_path, map_before=before.map50_95, map_after=after.map50_95)
    from .evaluate import drop_interval

    try:  # an extra on the report: its failure must not cost the model or report
        drop = drop_interval(before, after, args.val)
    except (EdgedetError, OSError, ValueError, MemoryError) as err:
        log.warning("no interval for the mAP loss: %s", err)
        drop = None
    if drop is not None:
        report["accuracy"]["map_drop_interval_points"] = drop
        budget = spec.max_map_drop
        if budget is not None and drop["half_width"] > budget:
            log.warning(
                "the mAP budget (%g points) is finer than these %d validation images "
                "resolve: the drop is %.2f points, 95%% interval [%.2f, %.2f]; use "
                "more validation images",
                budget, drop["images"], drop["drop_points"], drop["low"], drop["high"],
            )  # fmt: skip
    return bool(met)


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _mixed(
    args: argparse.Namespace,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    before: Any,
    safety: Sequence[str],
    task: Any,
    builder: Any,
    latency: bool,
) -> tuple[Any, Any, bool, dict[str, Any]]:
    from .evaluate import load_dataset
    from .sensitivity import layer_sensitivity, mixed_precision

    val = load_dataset(args.val)
    sens = layer_sensitivity(
        model,
        source,
        spec,
        det.meta,
        val,
        metric=args.sensitivity,
        threads=args.threads,
        prepared=builder.prepared,
        progress=task("layer sensitivity"),
    )
    _write_sensitivity(out, sens)

    def evaluate(path: Path) -> Any:
        return _score(path, args, args.runtime, latency=False, safety=safety)

    res = mixed_precision(
        model,
        source,
        spec,
        det.meta,
        val,
        out,
        sens.ranking(),
        before=before,
        evaluate=evaluate,
        build=lambda path, keep: builder.build(path, keep).path,
        suffix=builder.suffix,
    )
    after = _score(res.path, args, args.runtime, latency=latency, safety=safety)
    from edgedet.meta import read_meta

    from .ort_int8 import QuantizeResult
    from .spec import Exclusion

    meta = read_meta(res.path)
    if meta is None or meta.calibration is None:  # pragma: no cover - written just above
        raise CalibrationError(f"{res.path} lost its calibration record")
    names = tuple(meta.calibration["excluded_nodes"])
    exclusion = Exclusion(names, dict.fromkeys(names, "float"), None)
    mixed = {
        "kept_float": res.kept_float,
        "tries": res.tries,
        "met": res.met,
        "sensitivity": sens.to_dict()["layers"][:20],
    }
    return QuantizeResult(res.path, meta, dict(meta.calibration), exclusion), after, res.met, mixed


def _update_sidecar(path: Path, **changes: Any) -> None:
    from edgedet.meta import read_meta, write_sidecar

    meta = read_meta(path)
    if meta is None or meta.calibration is None:
        raise CalibrationError(f"{path} has no edgedet sidecar with a calibration record")
    record = dict(meta.calibration)
    record.update(changes)
    write_sidecar(path, meta.replace(calibration=record))


def _accuracy_section(before: Any, after: Any, safety: Sequence[str]) -> dict[str, Any]:
    from .evaluate import class_drops

    retained = 100.0 * after.map50_95 / before.map50_95 if before.map50_95 > 0 else float("nan")
    return {
        "float": before.to_dict(),
        "int8": after.to_dict(),
        "retained_pct": round(retained, 2),
        "map_drop_points": round((before.map50_95 - after.map50_95) * 100.0, 3),
        "safety_class_drop_points": class_drops(before, after, safety),
    }


def _report_path(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + ".calibration" + suffix)


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``<out>.calibration.json`` and ``.md`` beside the model, atomically."""
    from edgedet.meta import atomic_write_bytes

    atomic_write_bytes(
        _report_path(out, ".json"), json.dumps(report, indent=2, default=str).encode()
    )
    atomic_write_bytes(_report_path(out, ".md"), render_markdown(report).encode())


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * float(v):.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    from edgedet.protocol import EvalProtocol

    spec = report.get("spec", {})
    images = report.get("images", {})
    lines = [
        f"# INT8 calibration of `{Path(report['model']).name}`",
        "",
        f"- output: `{report['output']}` ({report['runtime']})",
        f"- method: {spec.get('method')} (percentile {spec.get('percentile')}), per-channel weights: "
        f"{spec.get('per_channel')}, symmetric activations: {spec.get('symmetric_activations')}",
        f"- images: {images.get('count')} of {images.get('requested')} requested from {images.get('origin')} "
        f"(seed {images.get('seed')}, sha256 {str(images.get('images_sha256'))[:16]}…)",
        f"- kept in float: {report.get('excluded')}",
    ]
    for w in images.get("warnings", []):
        lines.append(f"- **warning**: {w}")
    for s in images.get("skipped", []):
        lines.append(f"- skipped: {s}")
    size = report.get("size_mb")
    if size:
        lines.append(f"- size: float {size['float']} MB, int8 {size['int8']} MB")
    acc = report.get("accuracy")
    if acc:
        f, q = acc["float"], acc["int8"]
        lines += [
            "",
            "| | float | int8 |",
            "|---|---:|---:|",
            f"| mAP50-95 (%) | {_pct(f['map50_95'])} | {_pct(q['map50_95'])} |",
            f"| mAP50 (%) | {_pct(f['map50'])} | {_pct(q['map50'])} |",
            f"| p50 latency (ms, end to end) | {f.get('latency_p50_ms') and round(f['latency_p50_ms'], 1)} | {q.get('latency_p50_ms') and round(q['latency_p50_ms'], 1)} |",
            "",
            f"INT8 keeps {acc['retained_pct']}% of the float mAP50-95 ({acc['map_drop_points']} points lost).",
            *(
                [f"mAP protocol: {EvalProtocol.from_dict(f['protocol']).describe()}."]
                if f.get("protocol")
                else []
            ),
            *(
                [
                    f"95% paired bootstrap interval of the loss over the {d['images']} validation "
                    f"images: [{d['low']:.2f}, {d['high']:.2f}] points (a budget finer than "
                    f"{d['half_width']:.2f} points is judged on noise)."
                ]
                if (d := acc.get("map_drop_interval_points"))
                else []
            ),
            "",
            "| class | float AP | int8 AP | change (points) |",
            "|---|---:|---:|---:|",
        ]
        for name, ap in f["per_class_ap"].items():
            ap8 = q["per_class_ap"].get(name)
            change = "-" if ap is None or ap8 is None else f"{100.0 * (ap8 - ap):+.2f}"
            lines.append(f"| {name} | {_pct(ap)} | {_pct(ap8)} | {change} |")
    lat = report.get("latency_ms")
    if lat:
        lines.append(
            f"- p50 latency (ms, end to end, {lat.get('runtime', '')} on "
            f"{lat.get('images', '?')} held-out images): float {lat['float_p50']:.1f}, "
            f"int8 {lat['int8_p50']:.1f}"
        )
    lines += _guard_and_fidelity_lines(report)
    mixed = report.get("mixed_precision")
    if mixed:
        lines += [
            "",
            f"Mixed precision: kept {len(mixed['kept_float'])} layer(s) float; budget met: {mixed['met']}",
            "",
        ]
        for t in mixed["tries"]:
            lines.append(
                f"- {t['kept_float']} float: mAP {_pct(t['map50_95'])} {'ok' if t['ok'] else '; '.join(t['why'])}"
            )
    return "\n".join(lines) + "\n"


def _guard_and_fidelity_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    guard = report.get("label_free_guard")
    if guard and "tries" in guard:
        lines += [
            "",
            f"Label-free guard (held-out proxy error bound {guard['bound']}, "
            f"{guard['heldout_images']} held-out images): kept {len(guard['kept_float'])} "
            f"layer(s) float; bound met: {guard['met']}",
            "",
        ]
        for t in guard["tries"]:
            lines.append(
                f"- {t['kept_float']} float: proxy error {t['proxy_error']:.4f} "
                f"{'ok' if t['ok'] else 'over the bound'}"
            )
    elif guard:
        lines += ["", f"Label-free guard skipped: {guard.get('skipped')}"]
    fid = report.get("fidelity")
    if fid:
        lines += [
            "",
            f"Fidelity on {fid['images']} held-out images (not calibrated on), on "
            f"{fid.get('runtime')}: the INT8 model's detections scored against the float "
            f"model's {fid['reference_boxes']} detections (score >= "
            f"{fid['reference_min_score']}) as ground truth.",
            "",
            f"- mAP50-95 {_pct(fid['map50_95'])}%, mAP50 {_pct(fid['map50'])}%",
        ]
        if fid["per_class_ap"]:
            lines += ["", "| class | fidelity AP (%) |", "|---|---:|"]
            for name, ap in sorted(fid["per_class_ap"].items(), key=lambda kv: kv[1]):
                lines.append(f"| {name} | {_pct(ap)} |")
    if not report.get("labelled_check", True):
        lines += ["", f"**{NO_LABELS[0].upper() + NO_LABELS[1:]}.**"]
    return lines


# -- sweep ----------------------------------------------------------------------------------


def run_sweep(args: argparse.Namespace) -> int:
    """``edgedet calibrate sweep``: methods × image counts, scored by mAP and latency."""
    if len(args.target) != 1:
        raise InvalidInputError(f"calibrate sweep takes one model, got {args.target}")
    if not args.val:
        raise InvalidInputError("calibrate sweep needs --val DATA to score each INT8 model")
    model = Path(args.target[0])
    if not model.is_file():
        raise InvalidInputError(f"model file not found: {model}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        nums = [int(n) for n in args.nums.split(",") if n.strip()]
    except ValueError as err:
        raise InvalidInputError(
            f"--nums must be comma-separated integers, got {args.nums!r}"
        ) from err
    outdir = Path(args.out) if args.out else model.with_name(model.stem + "_sweep")
    outdir.mkdir(parents=True, exist_ok=True)
    progress, task = _progress_factory()
    rows: list[dict[str, Any]] = []
    det = _load_float(args, model)
    try:
        with progress if progress is not None else _Null():
            before = _score(model, args, args.runtime, latency=True, safety=())
            rows.append(
                {
                    "config": "float",
                    "method": "-",
                    "images": 0,
                    "map50_95": before.map50_95,
                    "map50": before.map50,
                    "p50_ms": before.latency_p50_ms,
                    "path": str(model),
                }
            )
            for num in nums:
                source = _make_source(args, det, num, task(f"images ({num})"))
                for method in methods:
                    spec = spec_from_args(args, method=method, num_images=num)
                    out = outdir / f"{model.stem}_{method}_{num}{_int8_suffix(args.runtime)}"
                    try:
                        result = _build(args, model, det, spec, source, out)
                        s = _score(result.path, args, args.runtime, latency=True, safety=())
                    except EdgedetError as err:
                        rows.append(
                            {
                                "config": f"{method}/{num}",
                                "method": method,
                                "images": source.num_images,
                                "error": str(err),
                            }
                        )
                        continue
                    rows.append(
                        {
                            "config": f"{method}/{num}",
                            "method": method,
                            "images": source.num_images,
                            "map50_95": s.map50_95,
                            "map50": s.map50,
                            "p50_ms": s.latency_p50_ms,
                            "path": str(result.path),
                        }
                    )
    finally:
        det.close()
    ok = [r for r in rows if "error" not in r]
    ok.sort(key=lambda r: (-r["map50_95"], r["p50_ms"] or 0.0))
    table = [
        "| rank | config | images | mAP50-95 (%) | mAP50 (%) | p50 ms | model |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(ok, 1):
        table.append(
            f"| {i} | {r['config']} | {r['images']} | {_pct(r['map50_95'])} | {_pct(r['map50'])} | {r['p50_ms'] and round(r['p50_ms'], 1)} | `{Path(r['path']).name}` |"
        )
    for r in rows:
        if "error" in r:
            table.append(f"| - | {r['config']} | {r['images']} | failed: {r['error'][:80]} | | | |")
    from edgedet.meta import atomic_write_bytes

    atomic_write_bytes(outdir / "sweep.json", json.dumps(rows, indent=2).encode())
    atomic_write_bytes(outdir / "sweep.md", ("\n".join(table) + "\n").encode())
    print("\n".join(table))
    return 0 if ok else 1
