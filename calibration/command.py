"""``edgedet calibrate``: INT8 calibration from the command line.

    edgedet calibrate MODEL --images DIR | --data DATA [--runtime onnxruntime|openvino|tensorrt]
        [--method minmax|entropy|percentile|mse|mean_minmax] [--num N]
        [--exclude NAME|TYPE|/REGEX/ ...] [--family F] [--names coco]
        [--val DATA [--max-map-drop X] [--max-class-drop Y]] [--out PATH]
    edgedet calibrate sweep MODEL --images DIR|--data DATA --val DATA
        [--methods minmax,percentile,mse] [--nums 100,300] [--runtime ...] [--out DIR]

Writes the INT8 model (QDQ ONNX for onnxruntime / tensorrt, OpenVINO IR for openvino) and a
report beside it: ``<out>.calibration.json`` and ``<out>.calibration.md`` (settings, mAP before
and after overall and per class, model sizes, latency on this machine).

This module parses, calls and prints: the work is `pipeline.calibrate` / `pipeline.sweep`,
whose `CalibrateConfig` declares every flag below.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgedet.configflags import add_flags, from_args
from edgedet.errors import InvalidInputError

from .pipeline import CalibrateConfig, calibrate, sweep
from .report import NO_LABELS, summary_lines
from .spec import CalibrationSpec

__all__ = [
    "NO_LABELS",
    "add_calibrate_arguments",
    "config_from_args",
    "run_calibrate",
    "run_sweep",
    "spec_from_args",
]


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``edgedet calibrate`` (``edgedet calibrate sweep ...`` is dispatched from
    the same parser: its first word is ``sweep``)."""
    parser.add_argument(
        "target",
        nargs="+",
        metavar="MODEL",
        help="float ONNX model (or: sweep MODEL)",
    )
    add_flags(parser, CalibrateConfig)
    from edgedet.protocol import add_protocol_arguments

    add_protocol_arguments(parser)  # how --val is scored (default: the model family's validator)


def config_from_args(args: argparse.Namespace) -> CalibrateConfig:
    """The `CalibrateConfig` of parsed ``edgedet calibrate`` arguments (MODEL: the last
    ``target`` word, after an optional ``sweep``)."""
    target = list(getattr(args, "target", None) or [])
    return from_args(CalibrateConfig, args, model=target[-1] if target else "")


def spec_from_args(args: argparse.Namespace, **overrides: Any) -> CalibrationSpec:
    """The `CalibrationSpec` parsed ``edgedet calibrate`` arguments ask for."""
    return config_from_args(args).spec(**overrides)


def _progress() -> Any:
    from edgedet.progress import progress_tasks

    return progress_tasks()


def run_calibrate(args: argparse.Namespace) -> int:
    """``edgedet calibrate``; returns the exit code (0 ok, 1 budget or guard bound not met)."""
    if args.target and args.target[0] == "sweep":
        args.target = args.target[1:]
        return run_sweep(args)
    if len(args.target) != 1:
        raise InvalidInputError(f"calibrate takes one model, got {args.target}")
    with _progress() as task:
        result = calibrate(config_from_args(args), progress=task)
    print("\n".join(summary_lines(result.output, result.report)))
    return 0 if result.budget_met else 1


def run_sweep(args: argparse.Namespace) -> int:
    """``edgedet calibrate sweep``: methods x image counts, scored by mAP and latency."""
    if len(args.target) != 1:
        raise InvalidInputError(f"calibrate sweep takes one model, got {args.target}")
    with _progress() as task:
        result = sweep(config_from_args(args), progress=task)
    print(result.table)
    return 0 if result.ok else 1
