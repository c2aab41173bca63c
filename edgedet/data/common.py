"""Helpers every dataset format shares: the problem log (`ProblemLog`: skip or stop, with the
place of each problem), box checks, annotations, label files, and placing images when writing."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .dataset import Annotation


class ProblemLog:
    """Collects located problems; raises at the first error when ``on_error="stop"``."""

    def __init__(self, root: Path, on_error: str) -> None:
        self.root = root
        self.stop = on_error == "stop"
        self.problems: list[str] = []

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def error(self, message: str) -> None:
        if self.stop:
            raise DatasetError(
                f"{message} (on_error='stop'; pass on_error='skip' to drop such images and list "
                "them in dataset.problems)"
            )
        self.problems.append(message)

    def note(self, message: str) -> None:
        self.problems.append(f"note: {message}")


def fmt_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def check_box(
    box: Sequence[float], width: int, height: int
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """Validate an xyxy box in pixels: (clipped box, None) or (None, what is wrong).

    Wrong: a non-finite coordinate, x2 < x1 or y2 < y1, a box further outside the image than
    ``max(2 px, 2 %)`` of the side, and a box of zero width or height (as given, or once
    clipped to the image): no detection can ever match it, so it would cost recall silently.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, f"box {fmt_box(box)} has non-finite coordinates"
    if x2 < x1 or y2 < y1:
        return None, f"box {fmt_box(box)} has negative width or height"
    tx, ty = max(2.0, 0.02 * width), max(2.0, 0.02 * height)
    if x1 < -tx or y1 < -ty or x2 > width + tx or y2 > height + ty:
        return None, (
            f"box {fmt_box(box)} (x1 y1 x2 y2) lies outside the {width}x{height} image by more than 2%"
        )
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        clipped = (x1, y1, x2, y2) != tuple(float(v) for v in box)
        return None, (
            f"box {fmt_box(box)} (x1 y1 x2 y2) has zero width or height"
            + (f" once clipped to the {width}x{height} image" if clipped else "")
            + ": no detection can match it"
        )
    return (x1, y1, x2, y2), None


def make_annotation(
    boxes: list[tuple[float, ...]],
    classes: list[int],
    ignore: list[bool],
    area: list[float] | None = None,
) -> Annotation:
    if not boxes:
        return Annotation.empty()
    return Annotation(
        np.asarray(boxes, np.float32),
        np.asarray(classes, np.int32),
        np.asarray(ignore, bool),
        None if area is None else np.asarray(area, np.float32),
    )


def label_text(path: Path, log: ProblemLog) -> str | None:
    """A label file's text, or None (problem logged) when it cannot be read as UTF-8 text."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        log.error(f"{log.rel(path)}: cannot read label file as text: {err}")
        return None


def listdir(path: Path) -> list[Path]:
    try:
        return sorted(path.iterdir())
    except OSError:
        return []


def default_name(root: Path) -> str:
    return root.name or str(root)


def relative_to_root(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def place_image(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fmt_num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")
