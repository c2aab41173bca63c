"""OpenVINO runs the uint8 -> float pixel conversion inside its graph (PrePostProcessor): the
detector feeds the letterboxed uint8 BGR batch and gets the outputs the float path gives.

Real OpenVINO on the real public models (BGR identity YOLOX, BGR mean/std NanoDet, RGB 1/255
YOLOv8) and on the shipped sample; ONNX Runtime as the float reference.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet.assets import sample_model_path
from edgedet.errors import IncompatibleModelError, InvalidInputError
from edgedet.preprocess import PixelTransform

MODELS = [
    ("yolox_nano_416.onnx", "yolox"),
    ("nanodet_m_320.onnx", "nanodet"),
    ("yolov8n_dequant_fp32_640.onnx", None),
]


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 420, 3), np.uint8), (7, 7), 0)
    img[:, :, 2] = 255 - img[:, :, 2]  # channels differ, so a missed BGR/RGB swap shows
    return img


@pytest.mark.parametrize(("name", "family"), MODELS)
def test_in_graph_pixels_match_the_float_input(
    models_dir: Path, datasets_dir: Path, name: str, family: str | None
) -> None:
    kw = {"family": family, "names": "coco"} if family else {}
    opts = {"threads": 2, "precision": "fp32"}
    embedded = edgedet.load(models_dir / name, runtime="openvino", runtime_options=opts, **kw)
    plain = edgedet.load(
        models_dir / name,
        runtime="openvino",
        runtime_options={**opts, "pixel_transform": None},
        **kw,
    )
    assert embedded.pixel_transform == PixelTransform.from_meta(embedded.meta)
    assert plain.pixel_transform is None
    assert embedded.describe()["preprocessing"].startswith("in graph")
    assert plain.describe()["preprocessing"] == "numpy/OpenCV"
    photo = sorted((datasets_dir / "coco_tiny_val2017").rglob("*.jpg"))[0]
    image = cv2.imread(str(photo))
    feeds, _ = embedded.preprocess([image])
    pixels = feeds[embedded.input_spec.name]
    assert pixels.dtype == np.uint8 and pixels.shape == (1, *embedded.input_hw, 3)
    float_feeds, _ = embedded.model_feeds([image])
    assert float_feeds[embedded.input_spec.name].dtype == np.float32
    with pytest.raises(InvalidInputError, match="model_feeds"):  # float into a pixel input
        embedded.infer(float_feeds)
    got = embedded.infer(feeds)
    want = plain.infer(plain.preprocess([image])[0])
    for (k, a), b in zip(got.items(), want.values()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3, err_msg=k)
    a, b = embedded(image), plain(image)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    embedded.close()
    plain.close()


def test_a_batch_of_pixels_and_the_float_model_feeds() -> None:
    with edgedet.load(sample_model_path(), runtime="openvino") as det:
        images = [_frame(1), _frame(2)[:200], _frame(3)]
        feeds, lbs = det.preprocess(images)
        assert next(iter(feeds.values())).dtype == np.uint8 and len(lbs) == 3
        batch = det.predict_batch(images)
    with edgedet.load(sample_model_path(), runtime="onnxruntime") as ref:
        want = ref.predict_batch(images)
        ort_feeds, _ = ref.model_feeds(images)
    with edgedet.load(sample_model_path(), runtime="openvino") as det:
        ov_float, _ = det.model_feeds(images)
    for k in ort_feeds:
        np.testing.assert_array_equal(ov_float[k], ort_feeds[k])
    for a, b in zip(batch, want):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_a_runtime_built_for_other_pixels_is_refused() -> None:
    from edgedet.runtimes.registry import runtime_class

    from edgedet.detector import Detector

    det = edgedet.load(sample_model_path(), runtime="openvino")
    wrong = PixelTransform(gain=(1.0, 1.0, 1.0), bias=(0.0, 0.0, 0.0), swap_rb=True, layout="NCHW")
    assert wrong != det.pixel_transform
    rt = runtime_class("openvino")(sample_model_path(), pixel_transform=wrong)
    with pytest.raises(IncompatibleModelError, match="pixel_transform"):
        Detector(rt, det.meta)
    rt.close()
    det.close()


def test_float_model_is_not_reported_as_int8() -> None:
    # the uint8 input moves u8 data through data-movement layers: precision stays the arithmetic's
    with edgedet.load(sample_model_path(), runtime="openvino") as det:
        assert det.pixel_transform is not None
        assert det.describe()["precision"] == "fp32"
