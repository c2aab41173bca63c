"""Command-line flags generated from a config dataclass, so each setting is declared once.

A field declared with `setting` carries its default, its type (the annotation) and its help;
`add_flags` turns those fields into argparse arguments and `from_args` builds the config back
from the parsed namespace. A field's name is its argparse ``dest``; its flag is ``--name-with-
dashes`` unless ``flag`` says otherwise (``--no-per-channel`` for a ``no_per_channel: bool``).
A ``bool`` field defaulting to False is a ``store_true`` switch. Fields without `setting`
metadata are not flags (set from Python, or by a shared flag group such as
`edgedet.protocol.add_protocol_arguments`).

Written here (about 60 lines) rather than taken from tyro or jsonargparse: the commands' flags
must stay exactly as they were (names, negations, mutually exclusive pairs, metavars,
repeatable flags), and the device install takes no extra dependency for its parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    help: str | None = None,
    *,
    flag: str | None = None,
    choices: Iterable[Any] | Callable[[], Iterable[Any]] | None = None,
    metavar: str | None = None,
    action: str | type[argparse.Action] | None = None,
    exclusive: str | None = None,
    required: bool = False,
    positional: bool = False,
    default_factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag (see the module docstring).
    ``choices`` may be a callable, evaluated when the parser is built; ``exclusive`` names a
    mutually exclusive group; ``action="append"`` makes a repeatable flag (give
    ``default_factory=list``); ``positional`` makes a required positional argument named like
    the field, ``required`` a required flag."""
    meta = {"flag": flag, "help": help, "choices": choices, "metavar": metavar,
            "action": action, "exclusive": exclusive, "required": required,
            "positional": positional}  # fmt: skip
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata={"cli": meta})
    return dataclasses.field(default=default, metadata={"cli": meta})


def _flag_type(hint: Any) -> Any:
    """``int | None`` -> int; ``str`` -> str; other hints (Any, lists) -> None (argparse's str)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0] if len(args) == 1 else None
    return hint if hint in (int, float, str) else None


def add_flags(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add one argparse argument per `setting` field of dataclass ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("cli")
        if meta is None:
            continue
        target: Any = parser
        if meta["positional"]:
            parser.add_argument(f.name, help=meta["help"])
            continue
        if meta["exclusive"]:
            if meta["exclusive"] not in groups:
                groups[meta["exclusive"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["exclusive"]]
        kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
        default = f.default_factory() if f.default_factory is not _MISSING else f.default
        action = meta["action"]
        if action is None and hints[f.name] is bool and default is False:
            action = "store_true"
        if action is not None:
            kwargs["action"] = action
        if action not in ("store_true", "store_false"):
            if _flag_type(hints[f.name]) is not None and action != argparse.BooleanOptionalAction:
                kwargs["type"] = _flag_type(hints[f.name])
            if meta["metavar"]:
                kwargs["metavar"] = meta["metavar"]
            choices = meta["choices"]
            if choices is not None:
                kwargs["choices"] = list(choices() if callable(choices) else choices)
        kwargs["default"] = default
        if meta["required"]:
            kwargs["required"] = True
        target.add_argument(meta["flag"] or "--" + f.name.replace("_", "-"), **kwargs)


def from_args(cls: type[T], args: argparse.Namespace, **values: Any) -> T:
    """An instance of dataclass ``cls`` from ``args``: every field found on the namespace (flags
    and shared flag groups alike), then ``values`` on top; missing fields keep their defaults."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    found = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**found, **values})
