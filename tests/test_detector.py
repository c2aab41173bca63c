"""Detector and load(): the device-side API, its settings, and every bad input it must refuse."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet.detections import Detections
from edgedet.errors import (
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)
from edgedet.meta import ModelMeta
from tests.tiny_models import make_tiny_yolov5, tiny_meta


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())


@pytest.fixture()
def det(tiny: Path) -> edgedet.Detector:
    return edgedet.load(tiny, score_threshold=0.1, iou_threshold=0.9)


def image(h: int = 48, w: int = 64, c: int | None = 3, seed: int = 0) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


# -- images ------------------------------------------------------------------------------------


def test_returns_detections_in_original_pixels(det: edgedet.Detector) -> None:
    img = image(100, 40)
    out = det(img)
    assert isinstance(out, Detections)
    assert out.xyxy.dtype == np.float32 and out.class_ids.dtype == np.int32
    assert len(out) > 0
    assert (out.xyxy[:, [0, 2]] >= 0).all() and (out.xyxy[:, [0, 2]] <= 40).all()
    assert (out.xyxy[:, [1, 3]] >= 0).all() and (out.xyxy[:, [1, 3]] <= 100).all()
    assert (out.scores >= 0.1).all()
    assert det.class_names == ("thing0", "thing1")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((10, 10, 3), np.float32), "dtype must be uint8, got float32"),
        (np.zeros((10, 10, 3), np.uint16), "dtype must be uint8, got uint16"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN or inf"),
        (np.zeros((10, 10, 2), np.uint8), "1, 3 or 4 channels, got 2"),
        (np.zeros((1, 10, 10, 3), np.uint8), r"shape H×W×3"),
        (np.zeros((0, 0, 3), np.uint8), "image is empty"),
        ([[1, 2], [3, 4]], "must be a numpy array"),
    ],
)
def test_bad_images_are_refused(det: edgedet.Detector, bad: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        det(bad)  # type: ignore[arg-type]


def test_oversized_image_is_refused(det: edgedet.Detector) -> None:
    huge = np.lib.stride_tricks.as_strided(np.zeros(3, np.uint8), (40000, 2, 3), (0, 0, 1))
    with pytest.raises(InvalidInputError, match="largest side"):
        det(huge)


def test_grayscale_and_rgba_are_converted(det: edgedet.Detector) -> None:
    rgb = image(48, 64)
    gray = cv2.cvtColor(rgb, cv2.COLOR_BGR2GRAY)
    expected = det(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    for variant in (gray, gray[:, :, None]):
        got = det(variant)
        np.testing.assert_allclose(got.xyxy, expected.xyxy)
    bgra = cv2.cvtColor(rgb, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(det(bgra).xyxy, det(rgb).xyxy)


def test_large_image_works(det: edgedet.Detector) -> None:
    out = det(np.full((3000, 4000, 3), 90, np.uint8))
    assert (out.xyxy[:, 2] <= 4000).all() and (out.xyxy[:, 3] <= 3000).all()


def test_batch_equals_single(det: edgedet.Detector) -> None:
    imgs = [image(48, 64, seed=i) for i in range(3)]
    batch = det.predict_batch(imgs)
    for img, got in zip(imgs, batch):
        one = det(img)
        np.testing.assert_allclose(got.xyxy, one.xyxy)
        np.testing.assert_allclose(got.scores, one.scores)


def test_dynamic_batch_model(tmp_path: Path) -> None:
    model = make_tiny_yolov5(tmp_path / "dyn.onnx", batch="N", meta=tiny_meta())
    d = edgedet.load(model, score_threshold=0.1, iou_threshold=0.9)
    assert d.fixed_batch is None
    imgs = [image(48, 64, seed=i) for i in range(5)]
    got = d.predict_batch(imgs, batch_size=4)
    for img, g in zip(imgs, got):
        np.testing.assert_allclose(g.xyxy, d(img).xyxy, atol=1e-4)


def test_settings(det: edgedet.Detector) -> None:
    img = image()
    det.max_detections = 3
    assert len(det(img)) == 3
    det.max_detections = 300
    det.classes = ["thing1"]
    assert set(det(img).class_ids.tolist()) <= {1}
    with pytest.raises(InvalidInputError, match="unknown class 'nope'"):
        det.classes = ["nope"]  # refused when set, not at the next call
    assert det.classes == ("thing1",)
    det.classes = None
    for method in ("agnostic", "soft_linear", "soft_gaussian", "diou", "none"):
        det.nms = method
        assert len(det(img)) > 0
    with pytest.raises(InvalidInputError, match="score_threshold must be in"):
        edgedet.load(det.runtime.model_path, score_threshold=2.0)
    with pytest.raises(InvalidInputError, match="nms must be one of"):
        edgedet.load(det.runtime.model_path, nms="magic")


# -- video -------------------------------------------------------------------------------------


def test_stream_video_file_keeps_every_frame(det: edgedet.Detector, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(12):
        writer.write(image(48, 64, seed=i))
    writer.release()
    results = list(det.stream(path))
    assert [r.index for r in results] == list(range(12))
    assert all(r.dropped == 0 for r in results)
    assert all(r.frame.shape == (48, 64, 3) for r in results)


def test_stream_missing_source(det: edgedet.Detector, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="video source not found"):
        list(det.stream(tmp_path / "nope.mp4"))


# -- loading -----------------------------------------------------------------------------------


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        edgedet.load(tmp_path / "nope.onnx")


def test_truncated_model(tiny: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny.read_bytes()[:200])
    with pytest.raises(ModelLoadError, match=r"not a readable ONNX model|could not load"):
        edgedet.load(cut, family="yolov5")


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelLoadError):
        edgedet.load(bogus, family="yolov5")


def test_no_meta_no_family(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx")
    with pytest.raises(IncompatibleModelError, match=r"carries no edgedet metadata.*family="):
        edgedet.load(plain)


def test_family_preset_with_overrides(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx", nc=2)
    d = edgedet.load(plain, family="yolov5", names="a,b")
    assert d.class_names == ("a", "b")
    with pytest.raises(IncompatibleModelError, match="2 classes but the model has 80 class names"):
        edgedet.load(plain, family="yolov5")  # preset names are COCO-80
    with pytest.raises(InvalidInputError, match="unknown model setting"):
        edgedet.load(plain, family="yolov5", names="a,b", colour="RGB")


def test_outputs_that_do_not_fit_the_family(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx", nc=2)
    with pytest.raises(IncompatibleModelError, match="do not fit family 'yolox'"):
        edgedet.load(plain, family="yolox", names="a,b")
    with pytest.raises(IncompatibleModelError, match="do not fit family 'nanodet'"):
        edgedet.load(plain, family="nanodet", names="a,b")


def test_unknown_runtime_and_family(tiny: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown runtime 'tflite'"):
        edgedet.load(tiny, runtime="tflite")
    with pytest.raises(InvalidInputError, match="unknown model family 'yolo99'"):
        edgedet.load(tiny, family="yolo99")


def test_missing_runtime_names_the_extra(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    monkeypatch.delitem(sys.modules, "edgedet.runtimes.openvino_runtime", raising=False)
    with pytest.raises(RuntimeUnavailableError, match=r"the 'openvino' extra\): pip install .+\[openvino\]"):
        edgedet.load(tiny, runtime="openvino")


def test_tensorrt_requested_is_not_silently_replaced(tiny: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match=r"the 'tensorrt' extra"):
        edgedet.load(tiny, runtime="tensorrt")


def test_opt_in_fallback(tiny: Path) -> None:
    d = edgedet.load(tiny, runtime=("tensorrt", "onnxruntime"))
    assert d.runtime_name == "onnxruntime"


def test_missing_onnxruntime_provider(tiny: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match="CUDAExecutionProvider"):
        edgedet.load(tiny, runtime="onnxruntime", device="cuda:0")


def test_meta_input_size_mismatch(tmp_path: Path) -> None:
    model = make_tiny_yolov5(
        tmp_path / "m.onnx",
        meta=ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(64, 64)),
    )
    with pytest.raises(IncompatibleModelError, match="meta says"):
        edgedet.load(model)


def test_nan_outputs_are_refused(tiny: Path) -> None:
    d = edgedet.load(tiny)
    feeds, lbs = d.preprocess([image()])
    out = d.infer(feeds)
    out["output"][0, 0, 0] = np.nan
    with pytest.raises(IncompatibleModelError, match="NaN/inf"):
        d.postprocess(out, lbs)


def test_describe_reports_what_ran(det: edgedet.Detector) -> None:
    info = det.describe()
    assert info["runtime"] == "onnxruntime" and info["precision"] == "fp32"
    assert info["runtime_version"]
    assert info["family"] == "yolov5"


# -- real detectors ----------------------------------------------------------------------------

REAL = [
    ("yolox_nano_416.onnx", "yolox"),
    ("nanodet_m_320.onnx", "nanodet"),
    ("yolov8n_dequant_fp32_640.onnx", None),
]


@pytest.mark.testdata
@pytest.mark.parametrize(("model", "family"), REAL)
def test_real_models_agree_across_runtimes(
    model: str, family: str | None, models_dir: Path, datasets_dir: Path
) -> None:
    """ORT and OpenVINO (f32) give the same boxes on real photos, and find people in them."""
    images = sorted((datasets_dir / "coco_tiny_val2017" / "val2017").glob("*.jpg"))[:3]
    ort = edgedet.load(
        models_dir / model, runtime="onnxruntime", family=family, runtime_options={"threads": 2}
    )
    ov = edgedet.load(
        models_dir / model, runtime="openvino", family=family, runtime_options={"threads": 2}
    )
    assert ov.describe()["precision"] == "fp32"
    total = 0
    for path in images:
        img = cv2.imread(str(path))
        a, b = ort(img), ov(img)
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
        np.testing.assert_allclose(a.scores, b.scores, atol=2e-3)
        total += len(a)
    assert total > 0
    assert "person" in ort.class_names


def test_unknown_runtime_option(tiny: Path) -> None:
    with pytest.raises(
        InvalidInputError, match=r"does not accept option\(s\) \['treads'\].*'threads'"
    ):
        edgedet.load(tiny, runtime_options={"treads": 2})
