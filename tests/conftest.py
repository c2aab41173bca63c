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
