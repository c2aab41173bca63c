"""Helpers of `edgedet.cli` that run before a subcommand: its extra, and its flag names.

- `require_extra`: a subcommand that needs an optional extra (``train`` needs torch) is refused
  with the install command before anything imports the missing package, instead of a
  ``ModuleNotFoundError`` traceback from deep inside.
- `flag_names`: the running subcommand's ``dest -> --flag`` mapping, so errors raised by the
  library name ``--family`` where the user typed a flag (`edgedet.hints.arg`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EdgedetError, InvalidInputError, RuntimeUnavailableError
from .hints import install_command, missing_packages

if TYPE_CHECKING:
    from .meta import ModelMeta

#: Subcommand -> the extra it needs installed before it can start.
COMMAND_EXTRA: dict[str, str] = {
    "train": "train",
    "prune": "train",
    "distill": "train",
    "qat": "train",
    "export": "train",
    "track": "track",
}


def require_extra(command: str | None) -> None:
    """Raise `RuntimeUnavailableError` naming the install command when ``command``'s extra is
    missing here; nothing is imported (``importlib.util.find_spec`` only)."""
    extra = COMMAND_EXTRA.get(command or "")
    if extra is None:
        return
    missing = missing_packages(extra)
    if missing:
        raise RuntimeUnavailableError(
            f"'edgedet {command}' needs the '{extra}' extra ({', '.join(missing)} not installed "
            f"here): {install_command(extra)}"
        )


def chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser that parsed ``args``: ``edgedet data convert`` -> the convert parser."""
    current = parser
    while True:
        # argparse has no public listing of a parser's actions; _actions is stable since 3.2.
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        name = getattr(args, subs[0].dest, None) if subs else None
        if not subs or name not in subs[0].choices:
            return current
        current = subs[0].choices[name]


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``dest -> first long option`` of a parser (``input_size -> --input-size``)."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and action.dest not in flags:
            flags[action.dest] = longs[0]
    return flags


def import_sidecar(src: Path, meta: ModelMeta, out: str | None) -> str:
    """``edgedet import`` for a model file with no metadata slot (``.xml`` / ``.engine`` /
    ``.plan``): write ``<stem>.edgedet.json`` beside it, keep any other keys an existing sidecar
    holds (a TensorRT engine's compatibility record), then prove the model loads without flags
    where its runtime is installed. On a failed check the previous sidecar is put back.

    Returns the line to print.
    """
    from .detector import load
    from .fileio import atomic_write_bytes
    from .meta import read_sidecar, sidecar_path, write_sidecar

    target = sidecar_path(src)
    if out is not None and Path(out).resolve() != target.resolve():
        raise InvalidInputError(
            f"the meta of a {src.suffix} model lives in its sidecar {target}; drop --out "
            f"(or pass --out {target})"
        )
    if not src.is_file():
        raise InvalidInputError(f"model file not found: {src}")
    before = target.read_bytes() if target.is_file() else None
    previous = read_sidecar(src) or {}
    write_sidecar(src, meta, {k: v for k, v in previous.items() if k != "meta"})
    try:
        det = load(src)
    except RuntimeUnavailableError as err:
        return f"wrote {target} (not checked: {err})"
    except EdgedetError:
        if before is None:
            target.unlink(missing_ok=True)
        else:
            atomic_write_bytes(target, before)
        raise
    line = f"wrote {target}: {det} (checked with {det.runtime_name})"
    det.close()
    return line


class CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A log handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    ``logging.basicConfig`` keeps the stream it saw at setup; rich's progress display swaps in a
    proxy for ``sys.stderr`` while it runs so that other output prints above the bar. Reading the
    stream at emit time lets log lines (a calibration warning) take that path instead of being
    written through the bar's line.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # always the current sys.stderr
