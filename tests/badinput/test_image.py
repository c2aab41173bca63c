"""Catalogue, entry point ``det(image)``: every image shape, dtype and layout the probe tried.

Rows marked ``same`` must give exactly the detections of the plain contiguous BGR image;
``ok`` rows must run; ``Fails`` rows must raise that edgedet error with that message fragment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgedet
from edgedet.errors import InvalidInputError
from tests.badinput.helpers import Fails, expect_error
from tests.tiny_models import make_tiny_yolov5, tiny_meta

BASE = np.random.default_rng(3).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def det(tmp_path_factory: pytest.TempPathFactory) -> edgedet.Detector:
    path = make_tiny_yolov5(tmp_path_factory.mktemp("img") / "tiny.onnx", meta=tiny_meta())
    return edgedet.load(path, runtime="onnxruntime", score_threshold=0.1, iou_threshold=0.9)


def _bgra() -> np.ndarray:
    return np.concatenate([BASE, np.full((48, 64, 1), 255, np.uint8)], axis=2)


def _readonly() -> np.ndarray:
    a = BASE.copy()
    a.flags.writeable = False
    return a


def _same_as(expected: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    return lambda _: expected


ROWS: list[tuple[str, Callable[[], Any], Any]] = [
    # -- accepted ------------------------------------------------------------------------------
    ("bgr uint8", lambda: BASE, "same"),
    ("read-only array", _readonly, "same"),
    ("bgra", _bgra, "same"),
    ("grayscale 2-D", lambda: BASE[..., 0], "ok"),
    ("H×W×1", lambda: BASE[..., :1], "ok"),
    ("1×1", lambda: np.zeros((1, 1, 3), np.uint8), "ok"),
    ("1×20000", lambda: np.zeros((1, 20000, 3), np.uint8), "ok"),
    ("20000×1", lambda: np.zeros((20000, 1, 3), np.uint8), "ok"),
    # -- views give the same result as a contiguous copy ----------------------------------------
    ("view [:, ::-1]", lambda: BASE[:, ::-1], "view"),
    ("view [::-1]", lambda: BASE[::-1], "view"),
    ("view [::2, ::2]", lambda: BASE[::2, ::2], "view"),
    ("view [..., ::-1]", lambda: BASE[..., ::-1], "view"),
    ("transpose(1, 0, 2)", lambda: BASE.transpose(1, 0, 2), "view"),
    ("Fortran order", lambda: np.asfortranarray(BASE), "view"),
    # -- refused ---------------------------------------------------------------------------------
    ("float32 0..255", lambda: BASE.astype(np.float32), Fails(InvalidInputError, "dtype must be uint8, got float32")),
    ("float32 0..1", lambda: BASE.astype(np.float32) / 255, Fails(InvalidInputError, "(img * 255)")),
    ("float64", lambda: BASE.astype(np.float64), Fails(InvalidInputError, "got float64")),
    ("uint16", lambda: BASE.astype(np.uint16), Fails(InvalidInputError, "dtype must be uint8, got uint16")),
    ("bool", lambda: BASE > 0, Fails(InvalidInputError, "got bool")),
    ("int8", lambda: BASE.astype(np.int8), Fails(InvalidInputError, "got int8")),
    ("object", lambda: BASE.astype(object), Fails(InvalidInputError, "got object")),
    ("NaN float", lambda: np.full((8, 8, 3), np.nan, np.float32), Fails(InvalidInputError, "NaN or inf")),
    ("4-D batch", lambda: BASE[None], Fails(InvalidInputError, "got shape (1, 48, 64, 3)")),
    ("1-D", lambda: BASE.ravel(), Fails(InvalidInputError, "must have shape")),
    ("0-D", lambda: np.array(3, np.uint8), Fails(InvalidInputError, "must have shape")),
    ("2 channels", lambda: BASE[..., :2], Fails(InvalidInputError, "1, 3 or 4 channels, got 2")),
    ("5 channels", lambda: np.zeros((8, 8, 5), np.uint8), Fails(InvalidInputError, "got 5")),
    ("CHW", lambda: BASE.transpose(2, 0, 1), Fails(InvalidInputError, "got 64")),
    ("0×0×3", lambda: np.zeros((0, 0, 3), np.uint8), Fails(InvalidInputError, "image is empty")),
    ("0×10×3", lambda: np.zeros((0, 10, 3), np.uint8), Fails(InvalidInputError, "image is empty")),
    ("1×40000", lambda: np.zeros((1, 40000, 3), np.uint8), Fails(InvalidInputError, "largest side edgedet accepts is 32767")),
    ("python list", lambda: BASE.tolist(), Fails(InvalidInputError, "must be a numpy array")),
    ("None", lambda: None, Fails(InvalidInputError, "got NoneType")),
    ("a path string", lambda: "img.jpg", Fails(InvalidInputError, "got str")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_image(det: edgedet.Detector, case: str, make: Callable[[], Any], expected: Any) -> None:
    img = make()
    if isinstance(expected, Fails):
        expect_error(expected, det, img)
        return
    out = det(img)
    if expected == "same":
        ref = det(BASE)
        np.testing.assert_array_equal(out.xyxy, ref.xyxy)
        np.testing.assert_array_equal(out.class_ids, ref.class_ids)
    elif expected == "view":
        ref = det(np.ascontiguousarray(img))
        np.testing.assert_array_equal(out.xyxy, ref.xyxy)
        np.testing.assert_array_equal(out.scores, ref.scores)


BATCH_ROWS: list[tuple[str, Callable[[], Any], Any]] = [
    ("empty list", lambda: [], 0),
    ("two images", lambda: [BASE, BASE[::-1]], 2),
    ("4-D uint8 stack", lambda: np.stack([BASE, BASE]), 2),
    ("a None inside", lambda: [BASE, None], Fails(InvalidInputError, "got NoneType")),
    ("a float inside", lambda: [BASE, BASE.astype(np.float32)], Fails(InvalidInputError, "got float32")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "make", "expected"), BATCH_ROWS, ids=[r[0] for r in BATCH_ROWS])
def test_predict_batch(det: edgedet.Detector, case: str, make: Callable[[], Any], expected: Any) -> None:
    if isinstance(expected, Fails):
        expect_error(expected, det.predict_batch, make())
    else:
        assert len(det.predict_batch(make())) == expected


def test_call_after_close(tmp_path: Path) -> None:
    path = make_tiny_yolov5(tmp_path / "t.onnx", meta=tiny_meta())
    d = edgedet.load(path, runtime="onnxruntime")
    d.close()
    expect_error(Fails(InvalidInputError, "is closed; load the model again"), d, BASE)
