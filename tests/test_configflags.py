"""Flags generated from a config dataclass (`edgedet.configflags`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from edgedet.configflags import add_flags, from_args, setting


@dataclass
class _Config:
    name: str = "x"  # no metadata: not a flag
    count: int = setting(3, "how many")
    rate: float | None = setting(None, "a rate", metavar="R")
    fast: bool = setting(False, "go fast")
    mode: str = setting("a", "the mode", choices=lambda: ("a", "b"))
    tags: list[str] = setting(help="repeatable", action="append", default_factory=list)
    left: str | None = setting(None, "one side", exclusive="side")
    right: str | None = setting(None, "other side", exclusive="side")
    no_check: bool = setting(False, "skip the check", flag="--skip-check")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, _Config)
    return p


def test_defaults_round_trip() -> None:
    cfg = from_args(_Config, _parser().parse_args([]))
    assert cfg == _Config()


def test_types_switches_choices_append_and_flag_names() -> None:
    args = _parser().parse_args(
        ["--count", "5", "--rate", "0.5", "--fast", "--mode", "b", "--tags", "p", "--tags", "q",
         "--left", "L", "--skip-check"]
    )  # fmt: skip
    cfg = from_args(_Config, args, name="y")
    assert cfg == _Config("y", 5, 0.5, True, "b", ["p", "q"], "L", None, True)
    assert "--name" not in _parser().format_help() and "R" in _parser().format_help()


@pytest.mark.parametrize(
    "argv", [["--count", "x"], ["--mode", "c"], ["--left", "a", "--right", "b"]]
)
def test_bad_values_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(argv)
