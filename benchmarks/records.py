"""Benchmark records: one JSON object per configuration, in JSON Lines files.

`append_record` rewrites the whole file through `edgedet.fileio.atomic_write_bytes`, so a crash
or a Ctrl-C in the middle of a sweep leaves every finished record intact and never half a line.
Several devices' files merge into one list (`merge_records`); each record carries its ``host``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import InvalidInputError
from edgedet.fileio import atomic_write_bytes

#: The fields that identify one configuration (two records with the same key measured the same
#: thing, e.g. before and after a change).
CONFIG_KEY_FIELDS: tuple[str, ...] = (
    "model_sha256",
    "runtime",
    "device",
    "precision_requested",
    "imgsz",
    "batch",
    "threads",
    "dataset",
    "images",
)


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None (JSON has no NaN), tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _clean(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_record(record: Mapping[str, Any]) -> str:
    """One record as one line of JSON (no trailing newline)."""
    return json.dumps(_clean(record), sort_keys=False, allow_nan=False)


def append_record(path: str | Path, record: Mapping[str, Any]) -> None:
    """Add ``record`` as the last line of ``path`` (created if missing), atomically."""
    p = Path(path)
    old = p.read_bytes() if p.exists() else b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    atomic_write_bytes(p, old + dumps_record(record).encode() + b"\n")


def write_records(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write ``records`` as a whole JSON Lines file, atomically."""
    text = "".join(dumps_record(r) + "\n" for r in records)
    atomic_write_bytes(Path(path), text.encode())


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSON Lines file. Blank lines are skipped.

    Raises:
        InvalidInputError: the file is missing, or a line is not a JSON object (the message
            gives the file and line number).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "records.jsonl"
    if not p.is_file():
        raise InvalidInputError(
            f"records file not found: {p}; pass a records.jsonl written by `edgedet bench`"
        )
    out: list[dict[str, Any]] = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InvalidInputError(
                f"{p} line {n}: not valid JSON ({err.msg}); expected one record per line"
            ) from err
        if not isinstance(obj, dict):
            raise InvalidInputError(
                f"{p} line {n}: expected a JSON object, got {type(obj).__name__}"
            )
        out.append(obj)
    return out


def merge_records(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Records of several files (one per device, say), in file order.

    Each record keeps its own ``host``; records that lack one get ``host.name`` from their
    file's name so they stay apart in reports.
    """
    merged: list[dict[str, Any]] = []
    for path in paths:
        for rec in read_records(path):
            host = rec.get("host")
            if not isinstance(host, dict) or not host.get("name"):
                rec["host"] = {**(host if isinstance(host, dict) else {}), "name": Path(path).stem}
            merged.append(rec)
    return merged


def config_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """What identifies a record's configuration (see `CONFIG_KEY_FIELDS`), plus its host name."""
    host = record.get("host")
    host_name = host.get("name") if isinstance(host, dict) else None
    key = []
    for f in CONFIG_KEY_FIELDS:
        v = record.get(f)
        if f == "model_sha256" and not v:
            v = record.get("model")
        if f == "precision_requested" and v is None:
            v = record.get("precision")
        key.append(json.dumps(v, sort_keys=True))
    return (*key, host_name)


def get_path(record: Mapping[str, Any], dotted: str) -> Any:
    """``record["a"]["b"]`` for ``"a.b"``; None when any step is missing."""
    cur: Any = record
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur
