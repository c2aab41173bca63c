"""Command-line functions for ``edgedet prune``, ``edgedet distill`` and ``edgedet qat``.

They parse the flags into the job configs of `compress.py` (which declare every flag), call
`compress.prune_model` / `distill_model` / `qat_model`, and print what was written. Each
``run_*`` returns the job's report dict (the CLI exits 0 on it). The files written are listed
in `compress.py`.
"""

from __future__ import annotations

import argparse
from typing import Any

from edgedet.configflags import add_flags, from_args

from .compress import (
    CompressionResult,
    DistillJob,
    PruneJob,
    QatJob,
    distill_model,
    prune_model,
    qat_model,
)


def _add(p: argparse.ArgumentParser, job: type[Any]) -> None:
    from edgedet.protocol import add_protocol_arguments

    add_flags(p, job)
    add_protocol_arguments(p)


def _say(line: str) -> None:
    print(line, flush=True)


def add_prune_arguments(p: argparse.ArgumentParser) -> None:
    _add(p, PruneJob)


def add_distill_arguments(p: argparse.ArgumentParser) -> None:
    _add(p, DistillJob)


def add_qat_arguments(p: argparse.ArgumentParser) -> None:
    _add(p, QatJob)


def _wrote(res: CompressionResult, detail: str = "") -> dict[str, Any]:
    print(f"wrote {res.onnx}{detail}")
    return res.report


def run_prune(args: argparse.Namespace) -> dict[str, Any]:
    res = prune_model(from_args(PruneJob, args), log=_say)
    return _wrote(res, f" ({res.report['macs_kept']:.1%} of MACs, {res.report['note']})")


def run_distill(args: argparse.Namespace) -> dict[str, Any]:
    return _wrote(distill_model(from_args(DistillJob, args), log=_say))


def run_qat(args: argparse.Namespace) -> dict[str, Any]:
    return _wrote(qat_model(from_args(QatJob, args), log=_say))
