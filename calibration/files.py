"""Moving a finished model into place: shared by the label-free guard (`guard.py`) and the
mixed-precision search (`sensitivity.py`), which both build candidates beside the output."""

from __future__ import annotations

import os
from pathlib import Path


def move_model(src: Path, dst: Path) -> Path:
    """Rename a model (``.xml``: its ``.bin`` and its edgedet sidecar too) to ``dst`` in the
    same folder, so a finished ``dst`` only ever appears complete: an old ``dst`` ``.xml`` is
    removed first (it must never be read with the new ``.bin`` or meta), the model file itself
    is renamed last. A crash in between leaves no ``dst`` model (rerun), never a mixed set."""
    from edgedet.meta import sidecar_path

    if src.resolve() == dst.resolve():
        return dst
    if src.suffix.lower() == ".xml":
        dst.unlink(missing_ok=True)
    if sidecar_path(src).is_file():
        os.replace(sidecar_path(src), sidecar_path(dst))
    if src.suffix.lower() == ".xml":
        os.replace(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    os.replace(src, dst)
    return dst
