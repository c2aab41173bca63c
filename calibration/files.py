"""Moving a finished model into place: shared by the label-free guard (`guard.py`) and the
mixed-precision search (`sensitivity.py`), which both build candidates beside the output."""

from __future__ import annotations

import os
from pathlib import Path


def move_model(src: Path, dst: Path) -> Path:
    """Rename a model (``.xml``: its ``.bin`` first, and its edgedet sidecar) to ``dst`` in the
    same folder, so a finished ``dst`` only ever appears complete."""
    from edgedet.meta import sidecar_path

    if src.suffix.lower() == ".xml":
        os.replace(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    if sidecar_path(src).is_file():
        os.replace(sidecar_path(src), sidecar_path(dst))
    os.replace(src, dst)
    return dst
