"""Validation of untrusted input: model metadata, sidecars, dataset annotations.

One place for the checks that turn a malformed value from a file into an edgedet error that
names the file and stays short. Model files, sidecars and datasets come from elsewhere (a model
zoo, a colleague, a camera log), so every value read from them is checked here for its type,
range and size before edgedet uses it, and every parse that Python can blow up on (deep
nesting -> RecursionError, huge literals -> MemoryError, bad bytes -> UnicodeDecodeError) is
caught and reported.

Rules this module keeps:

* messages quote values through `brief`, so a 20 MB string never becomes a 20 MB message;
* a value from a file is never used as a path to read (class names come from the file itself;
  only the user's ``names=`` / ``--names`` may name a file), see `class_names_from_file`;
* paths from annotation files must stay inside the dataset root, see `inside_root`.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Longest quoted value in a message.
MESSAGE_VALUE_CHARS = 120
#: Most classes a model or dataset may declare (COCO has 80, LVIS 1203, Objects365 365).
MAX_CLASSES = 100_000
#: Highest class id + 1 a dataset without class names may use (it gets class_0..class_N-1).
MAX_CLASSES_WITHOUT_NAMES = 10_000
#: Longest class name / short meta string accepted from a file.
MAX_NAME_CHARS = 256
#: Longest Python literal parsed from foreign (Ultralytics) metadata.
MAX_LITERAL_CHARS = 1_000_000

#: What a parser raises on hostile input besides its own error type.
PARSE_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    SyntaxError,
    RecursionError,
    MemoryError,
    OverflowError,
    UnicodeDecodeError,
)


def brief(value: Any, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was.

    >>> brief("x" * 500, 10)
    "'xxxxxxxx… (502 chars)"
    """
    try:
        text = repr(value)
    except RecursionError:  # a deeply nested value
        text = f"<deeply nested {type(value).__name__}>"
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} chars)"


def clip(text: str, limit: int = 400) -> str:
    """A message (or part of one) cut to ``limit`` characters."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} chars)"


def printable(text: str, limit: int = 200) -> str:
    """``text`` without control characters (terminal escape sequences, BEL, NUL, C1 codes),
    cut to ``limit`` characters: safe to print on a terminal."""
    import unicodedata

    clean = "".join(ch for ch in str(text) if unicodedata.category(ch) not in ("Cc", "Cf"))
    return clip(clean, limit)


def parse_json(text: str | bytes, what: str) -> Any:
    """`json.loads`, raising ValueError("<what> is not valid JSON: ...") for anything malformed.

    Catches deep nesting (RecursionError), exhausted memory and invalid UTF-8 in bytes too; the
    caller wraps the ValueError into its own edgedet error with the file's name.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON: {clip(str(err), 200)}") from err
    except RecursionError as err:
        raise ValueError(f"{what} is nested too deeply to read") from err
    except MemoryError as err:
        raise ValueError(f"{what} is too large to read") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} is not UTF-8 text ({err.reason} at byte {err.start})") from err


def read_text(path: Path) -> str:
    """A file's UTF-8 text; OSError / UnicodeDecodeError become ValueError naming the problem."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise ValueError(f"cannot read it: {err.strerror or err}") from err


def parse_literal(text: str, what: str) -> Any:
    """`ast.literal_eval` of foreign metadata (literals only, nothing runs), never a raw error."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be text, got {type(text).__name__}")
    if len(text) > MAX_LITERAL_CHARS:
        raise ValueError(f"{what} is {len(text)} characters long; refusing to parse it")
    try:
        return ast.literal_eval(text)
    except (RecursionError, MemoryError) as err:
        raise ValueError(f"{what} is nested too deeply or too large to parse") from err
    except (ValueError, TypeError, SyntaxError, OverflowError) as err:
        raise ValueError(f"{what}: {clip(str(err), 200)}") from err


# -- scalar and vector fields -------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or _numpy_number(v)


def _numpy_number(v: Any) -> bool:
    import numpy as np

    return isinstance(v, (np.integer, np.floating))


def finite_float(value: Any, name: str, *, positive: bool = False) -> float:
    """A finite float (``positive``: > 0); ValueError naming ``name`` otherwise."""
    if isinstance(value, str) or not _is_number(value):
        raise ValueError(f"{name} must be a number, got {brief(value)}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    if positive and out <= 0:
        raise ValueError(f"{name} must be positive, got {out:g}")
    return out


def int_value(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """An integer (a float with no fraction is accepted) within ``[low, high]``."""
    if isinstance(value, bool) or not _is_number(value):
        raise ValueError(f"{name} must be an integer, got {brief(value)}")
    f = float(value)
    if not math.isfinite(f) or f != int(f):
        raise ValueError(f"{name} must be an integer, got {brief(value)}")
    out = int(f) if isinstance(value, float) else int(value)
    if (low is not None and out < low) or (high is not None and out > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise ValueError(f"{name} must be in {bounds}, got {out}")
    return out


def sequence(value: Any, name: str, length: int | None = None) -> tuple[Any, ...]:
    """A list/tuple (of ``length`` items if given); ValueError for scalars, strings, mappings."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, _ndarray())):
        raise ValueError(f"{name} must be a list, got {brief(value)}")
    items: tuple[Any, ...] = tuple(value)  # type: ignore[arg-type]
    if length is not None and len(items) != length:
        raise ValueError(f"{name} must have {length} values, got {brief(value)}")
    return items


def _ndarray() -> type:
    import numpy as np

    return np.ndarray


def positive_ints(value: Any, name: str, length: int | None = None) -> tuple[int, ...]:
    """A non-empty list of integers > 0 (strides, input size)."""
    items = sequence(value, name, length)
    if not items:
        raise ValueError(f"{name} must not be empty")
    return tuple(int_value(v, f"{name} entries", low=1, high=1 << 20) for v in items)


def finite_floats(value: Any, name: str, length: int, *, positive: bool = False) -> tuple[float, ...]:
    """``length`` finite floats (``positive``: each > 0)."""
    items = sequence(value, name, length)
    return tuple(finite_float(v, name, positive=positive) for v in items)


def short_string(value: Any, name: str, limit: int = MAX_NAME_CHARS) -> str:
    """A string of at most ``limit`` characters."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {brief(value)}")
    if len(value) > limit:
        raise ValueError(f"{name} is {len(value)} characters long (at most {limit}): {brief(value)}")
    return value


def mapping(value: Any, name: str) -> dict[str, Any]:
    """A JSON object (dict with string keys)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a JSON object (mapping), got {brief(value)}")
    return dict(value)


# -- class names ---------------------------------------------------------------------------------


def class_names_from_file(value: Any, name: str = "class_names") -> tuple[str, ...]:
    """Class names as a file (meta, sidecar, Ultralytics metadata, data.yaml) gives them.

    Accepts a list of names or an ``{id: name}`` mapping with ids 0..N-1. A string is refused
    even when it names an existing file: a file's content decides the names, never a path
    inside it (only the user's ``names=`` / ``--names`` may point at a names file).
    """
    if isinstance(value, str):
        raise ValueError(
            f"{name} must be a list of names or an {{id: name}} mapping, got the string "
            f"{brief(value, 60)} (a names file can be given only by the user: names=... / --names)"
        )
    if isinstance(value, Mapping):
        if len(value) > MAX_CLASSES:
            raise ValueError(f"{name} has {len(value)} entries (at most {MAX_CLASSES})")
        try:
            ids = sorted(int(k) if isinstance(k, str) else int_value(k, name) for k in value)
        except ValueError as err:
            raise ValueError(
                f"{name}: class-name mapping must have integer ids as keys, got "
                f"{brief(list(value)[:5])}"
            ) from err
        if ids != list(range(len(ids))):
            raise ValueError(f"{name}: class-name mapping must have ids 0..N-1, got {brief(ids[:10])}")
        items = [value[k] if k in value else value[str(k)] for k in ids]
    else:
        items = list(sequence(value, name))
        if len(items) > MAX_CLASSES:
            raise ValueError(f"{name} has {len(items)} entries (at most {MAX_CLASSES})")
    out = []
    for item in items:
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        out.append(short_string(item, f"{name} entries"))
    return tuple(out)


# -- dataset values ------------------------------------------------------------------------------


def flag01(value: Any, name: str) -> bool:
    """A COCO 0/1 flag (``iscrowd``, ``ignore``): 0, 1, False, True; anything else refused."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{name} must be 0 or 1, got {brief(value, 40)}")


def within(root: Path | str, path: Path | str) -> bool:
    """True if ``path`` (absolute, or relative to the working directory) lies inside ``root``
    once ``.`` and ``..`` are resolved.

    Symbolic links are not resolved (``os.path.normpath``, not ``realpath``): a link inside
    the dataset that points elsewhere is still followed, as the user who made it intends; a
    ``../`` or an absolute path written in an annotation file is not.
    """
    import os

    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    return full == base or full.startswith(base.rstrip(os.sep) + os.sep)


def inside_root(root: Path, relative: str, *, boundary: Path | None = None) -> Path | None:
    """``root / relative`` if it stays inside ``boundary`` (default ``root``), else None.

    ``relative`` comes from an annotation file (COCO ``file_name``, VOC ``<filename>``, a YOLO
    list file): an absolute path outside the boundary, or one that climbs out with ``..``, is
    refused (see `within` for symbolic links).
    """
    if not relative or "\x00" in relative:
        return None
    full = Path(root) / relative
    return full if within(boundary if boundary is not None else root, full) else None
