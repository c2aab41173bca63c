"""Where the shared test material lives (the tests read it through this one setting).

``EDGEDET_TESTDATA`` points at a folder laid out like ``../shared/testdata`` (``models/``,
``datasets/``); by default ``../shared/testdata`` beside the repository. This material is public
but not ours (see its PROVENANCE.md): it is read in place and never copied into the project.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "EDGEDET_TESTDATA"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path | None:
    """The test-material folder, or None when it is absent."""
    raw = os.environ.get(ENV_VAR)
    path = Path(raw) if raw else _REPO_ROOT.parent / "shared" / "testdata"
    return path if path.is_dir() else None


def why_missing() -> str:
    raw = os.environ.get(ENV_VAR)
    where = raw or str(_REPO_ROOT.parent / "shared" / "testdata")
    return f"shared test data not found at {where} (set {ENV_VAR} to its folder)"
