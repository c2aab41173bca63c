"""Fixtures of the ROS 2 output tests: the shipped sample detector and synthetic road frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgedet.assets import sample_model_path


@pytest.fixture(scope="session")
def sample() -> Path:
    return sample_model_path()


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """Four synthetic road scenes, BGR uint8 (240, 320, 3): the sample model finds cars in them."""
    from edgedet.data.synthetic import make_scenes

    return [s.image for s in make_scenes(4, seed=7, imgsz=(240, 320))]


@pytest.fixture(scope="session")
def detector(sample: Path):
    import edgedet

    det = edgedet.load(sample, runtime="onnxruntime")
    yield det
    det.close()
