"""``edgedet bench``: the command-line face of the benchmark harness.

    edgedet bench --model M.onnx [--model ...] --data DATASET [--runtime R ...] [--precision P ...]
                  [--family F] [--names N] [--imgsz N ...] [--batch N ...] [--threads N]
                  [--images N] [--out DIR] [--sweep FILE.yaml]
    edgedet bench compare OLD NEW [--max-map-drop X] [--max-latency-increase Y]
    edgedet bench report A.jsonl [B.jsonl ...] --out DIR

`add_bench_arguments` fills the ``bench`` parser (including its ``compare`` and ``report``
subcommands) and `run_bench` runs whatever was asked; ``python -m edgedet.benchmarks`` does
the same without the main CLI. Exit codes: 0 done (skipped configurations are fine), 1 a
configuration failed or ``compare`` found a regression, 2 a usage error.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError
from edgedet.eval.bootstrap import DEFAULT_RESAMPLES
from edgedet.workdir import check_out_dir, work_dir

DEFAULT_OUT = "bench_results"

NO_MODEL_HELP = (
    "edgedet bench: no --model given and the embedded sample model is not installed "
    "(expected {path}).\n"
    "Point bench at a model and a labelled dataset, e.g.:\n"
    "  edgedet bench --model yolox.onnx --family yolox --data path/to/coco\n"
    "(--family is needed for models without edgedet metadata; --data takes a COCO, YOLO, VOC or "
    "KITTI folder)"
)


def _alias(text: str) -> tuple[str, str]:
    model, sep, data = text.partition("=")
    if not sep or not model.strip() or not data.strip():
        raise argparse.ArgumentTypeError(
            f"--alias takes MODEL_CLASS=DATASET_CLASS (e.g. person=Pedestrian), got '{text}'"
        )
    return model.strip(), data.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgedet bench`` plus its ``compare`` and ``report`` subcommands."""
    parser.description = (
        "Measure accuracy (COCO mAP) and latency of one or more models on runtimes, each "
        "configuration in its own process, and write records.jsonl, results.md, results.csv "
        "and frontier.png. With no --model, runs the shipped sample model on its synthetic "
        "validation set."
    )
    g = parser.add_argument_group("what to measure")
    g.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="PATH",
        help="model file (repeat for several)",
    )
    g.add_argument(
        "--data",
        default=None,
        metavar="PATH",
        help="labelled dataset (COCO / YOLO / VOC / KITTI folder); a MOTChallenge sequence "
        "folder (or a folder of them) with gt/gt.txt: tracking metrics and stream speed instead",
    )
    g.add_argument(
        "--runtime",
        action="append",
        default=None,
        metavar="R",
        help="runtime(s): onnxruntime, openvino, tensorrt... (default: by file suffix, "
        ".onnx -> onnxruntime, .xml -> openvino, .engine -> tensorrt; for the embedded sample: "
        "every installed CPU runtime)",
    )
    g.add_argument(
        "--precision",
        action="append",
        default=None,
        metavar="P",
        help="precision(s): fp32, fp16, bf16, int8 (default: the model's own)",
    )
    g.add_argument(
        "--family",
        action="append",
        default=None,
        help="decoder family for models WITHOUT edgedet meta (yolox, nanodet, yolov8...): once "
        "for all of them, or once per such model, in --model order",
    )
    g.add_argument(
        "--names",
        action="append",
        default=None,
        help="class names for models without meta ('coco' or a file); once or once per model "
        "without meta, like --family",
    )
    g.add_argument(
        "--imgsz",
        action="append",
        type=_positive_int,
        default=None,
        metavar="N",
        help="input size(s); a static model only runs at its own",
    )
    g.add_argument(
        "--batch",
        action="append",
        type=_positive_int,
        default=None,
        metavar="N",
        help="batch size(s) (default 1)",
    )
    g.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads of the runtime and preprocessing (pinned and recorded)",
    )
    g.add_argument("--device", default=None, help="runtime device (cpu, cuda:0, CPU, GPU...)")
    g.add_argument(
        "--images",
        type=_positive_int,
        default=None,
        metavar="N",
        help="evaluate on N dataset images (default: all)",
    )
    g.add_argument(
        "--alias",
        action="append",
        type=_alias,
        default=None,
        metavar="MODEL=DATA",
        help="class alias, model name = dataset name (repeat)",
    )
    g.add_argument(
        "--safety-classes",
        default=None,
        metavar="A,B,...",
        help="classes whose recall is reported on its own (default: road-scene classes)",
    )
    g.add_argument(
        "--iou",
        type=float,
        default=None,
        help="deployment NMS IoU of the latency pass (default: the model family's, e.g. "
        "Ultralytics 0.7, YOLOX 0.45); the mAP pass uses --eval-iou",
    )
    g.add_argument(
        "--conf",
        type=float,
        default=None,
        help="deployment score threshold: latency pass, precision / recall / F1 (default: the "
        "model family's, 0.25 for most)",
    )
    g.add_argument(
        "--sweep", default=None, metavar="FILE.yaml", help="YAML sweep file with per-model settings"
    )
    from edgedet.protocol import add_protocol_arguments

    add_protocol_arguments(parser)
    from edgedet.wrap import add_view_arguments

    add_view_arguments(parser, sweep=True)
    m = parser.add_argument_group("method")
    m.add_argument("--warmup", type=int, default=10, help="untimed warm-up iterations (default 10)")
    m.add_argument(
        "--min-iterations",
        type=_positive_int,
        default=50,
        help="timed iterations at least (default 50)",
    )
    m.add_argument(
        "--min-seconds", type=float, default=3.0, help="timed seconds at least (default 3)"
    )
    m.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop timing after this long (default 60)"
    )
    m.add_argument(
        "--latency-images",
        type=_positive_int,
        default=8,
        help="dataset images cycled in the latency pass (default 8)",
    )
    m.add_argument(
        "--requests",
        type=int,
        default=4,
        help="requests in flight for throughput (0: skip; default 4)",
    )
    m.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        help="run the sweep N times, rounds interleaved, and pool each configuration's "
        "latency samples (steadier numbers on a shared machine; default 1)",
    )
    m.add_argument(
        "--cpus", default=None, metavar="0,1", help="pin each worker process to these CPUs"
    )
    m.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="per-configuration limit: a worker still running after it is killed (with the "
        "processes it started) and its configuration recorded as failed, 'timed out after N s' "
        "(default: from the work, 15 min for the load + 2 s per evaluated image and view + "
        "twice the latency pass's limits)",
    )
    m.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        metavar="N",
        help="bootstrap resamples for the 95%% interval of mAP50-95 and, between configurations "
        "on the same images, of the difference to the first one (paired); 0: none "
        f"(default {DEFAULT_RESAMPLES})",
    )
    m.add_argument(
        "--cross-check",
        action="store_true",
        help="also evaluate with pycocotools and record the difference",
    )
    o = parser.add_argument_group("output")
    o.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default {DEFAULT_OUT}/)"
    )
    o.add_argument(
        "--save-detections",
        action="store_true",
        help="write each configuration's accuracy-pass detections to DIR/detections/",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--no-plot", action="store_true", help="skip frontier.png")
    o.add_argument(
        "--wide", action="store_true", help="console table with every column (default: fits 80)"
    )
    sub = parser.add_subparsers(dest="bench_command", metavar="{compare,report}")
    add_compare_arguments(
        sub.add_parser("compare", help="compare two runs; exit 1 on a regression")
    )
    add_report_arguments(sub.add_parser("report", help="render (and merge) records files"))


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "old", metavar="OLD", help="records.jsonl (or its folder) of the reference run"
    )
    parser.add_argument("new", metavar="NEW", help="records.jsonl (or its folder) of the new run")
    parser.add_argument(
        "--max-map-drop",
        type=float,
        default=None,
        metavar="X",
        help="fail when mAP50-95 drops by more than X (absolute, 0.01 = one point)",
    )
    parser.add_argument(
        "--max-latency-increase",
        type=float,
        default=None,
        metavar="Y",
        help="fail when p50 latency grows by more than Y (fraction, 0.1 = 10%%) and beyond the "
        "spread both runs measured (new rounds all slower than old rounds with --repeat, else "
        "new p50 above old p90)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        metavar="N",
        help="resamples for the 95%% paired interval of the mAP difference, where both runs "
        f"saved detections (--save-detections) on the same images; 0: none (default "
        f"{DEFAULT_RESAMPLES})",
    )


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "records",
        nargs="+",
        metavar="RECORDS",
        help="records.jsonl files (one per device) to merge",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help="where results.md / .csv / frontier.png go",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip frontier.png")
    parser.add_argument(
        "--wide", action="store_true", help="console table with every column (default: fits 80)"
    )


def _err(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def _configs(args: argparse.Namespace) -> list[Any]:
    from .sweep import expand, load_sweep_file, per_model_settings

    defaults: dict[str, Any] = {
        "data": args.data,
        "runtime": args.runtime,  # None: by file suffix, like edgedet.load(runtime="auto")
        "precision": args.precision or [None],
        "imgsz": args.imgsz or [None],
        "batch": args.batch or [1],
        "threads": args.threads,
        "device": args.device,
        "family": None,
        "names": None,
        "images": args.images,
        "aliases": dict(args.alias) if args.alias else None,
        "safety_classes": [s.strip() for s in args.safety_classes.split(",") if s.strip()]
        if args.safety_classes
        else None,
        "multi_label": args.multi_label,
        "eval_conf": args.eval_conf,
        "eval_iou": args.eval_iou,
        "max_det": args.max_det,
        "iou_threshold": args.iou,
        "deploy_threshold": args.conf,
        "warmup": args.warmup,
        "min_iterations": args.min_iterations,
        "min_seconds": args.min_seconds,
        "max_seconds": args.max_seconds,
        "latency_images": args.latency_images,
        "throughput_requests": args.requests,
        "cpus": [int(c) for c in args.cpus.split(",")] if args.cpus else None,
        "cross_check": args.cross_check,
        "tiles": args.tiles or [None],
        "tile_overlap": args.tile_overlap,
        "full_frame": not args.no_full_frame,
        "tile_merge": args.tile_merge,
        # --views-one-by-one in bench: each tiled / TTA configuration also with its views in
        # separate runtime calls, beside the batched one (the plain model is not repeated)
        "views_one_by_one": [False, True] if args.views_one_by_one else [False],
        "tta": args.tta or [None],
        "ensemble": args.ensemble or [None],
    }
    if args.sweep:
        # The file's settings win over these flags; flags fill what it leaves unset.
        given = {k: v for k, v in defaults.items() if v not in (None, [None], False)}
        if args.model:
            raise EdgedetError("pass models either with --model or in the --sweep file, not both")
        for key in ("family", "names"):
            values = getattr(args, key) or []
            if len(values) > 1:
                raise EdgedetError(
                    f"with --sweep, give --{key} once (a default) or per model in the file"
                )
            if values:
                given[key] = values[0]
        configs = load_sweep_file(args.sweep, given)
    else:
        configs = expand(per_model_settings(list(args.model), args.family, args.names), defaults)
    return [c for c in configs if not c.views_one_by_one or c.view_settings().active]


def run_bench(args: argparse.Namespace) -> int:
    """Run ``edgedet bench`` (or its ``compare`` / ``report`` subcommand) from parsed args."""
    command = getattr(args, "bench_command", None)
    if command == "compare":
        return run_compare(args)
    if command == "report":
        return run_report(args)
    from .console_table import print_results
    from .report import write_reports
    from .runner import run_in_subprocess
    from .sweep import run_sweep

    if not args.model and not args.sweep:
        from edgedet import assets

        sample = assets.SAMPLE_MODEL
        if not sample.is_file():
            return _err(NO_MODEL_HELP.format(path=sample))
        args.model = [str(sample)]
        if not args.runtime:
            # The embedded default shows the runtimes side by side: every installed runtime
            # that declares it runs an ONNX file on the CPU.
            from edgedet.runtimes.registry import probe, runtime_capabilities, runtime_names

            args.runtime = [
                r
                for r in runtime_names()
                if "cpu" in runtime_capabilities(r).devices
                and "onnx" in runtime_capabilities(r).model_formats
                and probe(r)["available"]
            ]
        if args.data is None:
            from edgedet.data.synthetic import sample_validation_set

            args.data = str(sample_validation_set())
    if args.data is not None and not args.sweep:
        from .tracking import run_tracking_bench, tracking_sequences

        sequences = tracking_sequences(args.data)  # data with identities: tracking metrics
        if sequences:
            return run_tracking_bench(args, sequences)
    if args.model and args.data is None:
        return _err(
            "edgedet bench: --data is required with --model: a labelled dataset folder "
            "(COCO JSON, YOLO, Pascal VOC or KITTI), e.g. --data path/to/coco"
        )
    if args.data is not None and not Path(args.data).exists():
        return _err(f"edgedet bench: dataset not found: {args.data}")
    for m in args.model or []:
        if not Path(m).is_file():
            return _err(f"edgedet bench: model file not found: {m}")
    try:
        from edgedet.protocol import EvalProtocol, protocol_overrides

        # Out-of-range protocol values fail here, naming the flag, before anything runs.
        EvalProtocol().replace(**protocol_overrides(args))
        EvalProtocol().replace(deploy_score_threshold=args.conf, deploy_iou_threshold=args.iou)
        configs = _configs(args)
    except EdgedetError as err:
        return _err(f"edgedet bench: {err}")
    if args.bootstrap < 0:
        return _err(f"edgedet bench: --bootstrap must be >= 0, got {args.bootstrap}")
    timeout = getattr(args, "timeout", None)
    if timeout is not None and not timeout > 0:
        return _err(f"edgedet bench: --timeout must be > 0 seconds, got {timeout}")
    check_out_dir(args.out)  # writable, or an error naming it, before any measurement
    with work_dir("edgedet-detections-") as scratch:  # a killed run's: removed by the next
        # The bootstrap reads every configuration's detections; they go to a scratch folder
        # unless --save-detections keeps them (or the sweep file names a file).
        det_dir = Path(args.out) / "detections" if args.save_detections else Path(scratch)
        scratch_files: set[str] = set()
        if args.save_detections or args.bootstrap > 0:
            det_dir.mkdir(parents=True, exist_ok=True)
            for i, config in enumerate(configs):
                if config.save_detections is None:
                    name = config.label().replace("/", "_")
                    config.save_detections = str((det_dir / f"{i:03d}_{name}.json").resolve())
                    if not args.save_detections:
                        scratch_files.add(config.save_detections)
        t0 = time.perf_counter()
        records = run_sweep(
            configs,
            args.out,
            progress=not args.no_progress,
            repeat=getattr(args, "repeat", 1),
            runner=functools.partial(run_in_subprocess, timeout_s=timeout),
        )
        if args.bootstrap > 0:
            from .paired import add_intervals
            from .records import write_records

            for note in add_intervals(records, resamples=args.bootstrap):
                print(f"edgedet bench: no mAP interval for {note}", file=sys.stderr)
            for r in records:  # the scratch folder goes away with this block
                if r.get("detections_file") in scratch_files:
                    r.pop("detections_file")
                    r.get("config", {})["save_detections"] = None
            write_records(Path(args.out) / "records.jsonl", records)
        wall = time.perf_counter() - t0
    print_results(records, wide=args.wide)
    written = write_reports(records, args.out, plot=not args.no_plot)
    out = Path(args.out)
    print(
        f"{len(records)} configuration(s) in {wall:.0f} s: "
        f"{sum(r.get('status') == 'ok' for r in records)} ok, "
        f"{sum(r.get('status') == 'skipped' for r in records)} skipped, "
        f"{sum(r.get('status') == 'failed' for r in records)} failed; wrote "
        f"{out / 'records.jsonl'}, " + ", ".join(str(p) for p in written.values())
    )
    if not any(r.get("status") == "ok" for r in records):
        print(
            f"edgedet bench: nothing was measured: every one of the {len(records)} "
            "configuration(s) was skipped or failed (reasons above)",
            file=sys.stderr,
        )
        return 1
    return 1 if any(r.get("status") == "failed" for r in records) else 0


def run_compare(args: argparse.Namespace) -> int:
    """``edgedet bench compare OLD NEW``: 0 no regression, 1 regression, 2 usage error."""
    from .compare import compare, print_differences
    from .records import read_records

    try:
        old = read_records(args.old)
        new = read_records(args.new)
        rows, regressed = compare(
            old,
            new,
            max_map_drop=args.max_map_drop,
            max_latency_increase=args.max_latency_increase,
            bootstrap=args.bootstrap,
        )
    except EdgedetError as err:
        return _err(f"edgedet bench compare: {err}")
    print_differences(rows)
    n = sum(bool(r.regressions) for r in rows)
    print(f"{n} regression(s) in {len(rows)} configuration(s)" if regressed else "no regression")
    return 1 if regressed else 0


def run_report(args: argparse.Namespace) -> int:
    """``edgedet bench report A.jsonl [B.jsonl ...] --out DIR``: merge and render records."""
    from .console_table import print_results
    from .records import merge_records, write_records
    from .report import write_reports

    try:
        records = merge_records(args.records)
    except EdgedetError as err:
        return _err(f"edgedet bench report: {err}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if len(args.records) > 1:
        write_records(out / "records.jsonl", records)
    print_results(records, wide=args.wide)
    written = write_reports(records, out, plot=not args.no_plot)
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgedet bench")
    add_bench_arguments(parser)
    args = parser.parse_args(argv)
    return run_bench(args)
