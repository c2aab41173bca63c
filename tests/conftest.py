"""Shared fixtures. Tests needing ../shared/testdata skip with the reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from tests.testdata import testdata_dir, why_missing


@pytest.fixture(scope="session")
def testdata() -> Path:
    path = testdata_dir()
    if path is None:
        pytest.skip(why_missing())
    return path


@pytest.fixture(scope="session")
def models_dir(testdata: Path) -> Path:
    return testdata / "models"


@pytest.fixture(scope="session")
def datasets_dir(testdata: Path) -> Path:
    return testdata / "datasets"


@pytest.fixture(scope="session")
def detr_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny trained DETR (tests/detr_models.py) exported in each DETR output layout."""
    pytest.importorskip("torch")
    from tests import detr_models as dm

    folder = tmp_path_factory.mktemp("detr")
    model = dm.load_state(dm.build_model())
    return {lay: dm.export_layout(model, lay, folder / f"{lay}.onnx") for lay in dm.LAYOUTS}
