"""Fixtures for calibration tests: a tiny dynamic-batch detector and a folder of images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.meta import ModelMeta
from tests.tiny_models import make_tiny_yolov5

TINY_META = ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(32, 32))


@pytest.fixture()
def tiny_model(tmp_path: Path) -> Path:
    """A 1×1-conv YOLOv5-shaped model with a dynamic batch dimension and edgedet meta."""
    return make_tiny_yolov5(tmp_path / "tiny.onnx", batch="N", meta=TINY_META)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """12 small random JPEGs and one corrupt file."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        img = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i:02d}.jpg"), img)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    return folder


@pytest.fixture()
def tiny_detector(tiny_model: Path):
    import edgedet

    det = edgedet.load(tiny_model, runtime="onnxruntime")
    yield det
    det.close()
