"""ONNX Runtime static quantization to QDQ: real quantize_static runs, ORT and OpenVINO load the
result, the meta carries the calibration record, and an interrupted run leaves nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from edgedet.calibration.ort_int8 import mse_range, quantize_onnx, update_record
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec

import edgedet
from edgedet.errors import CalibrationError
from edgedet.meta import is_quantized_onnx, read_meta


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile", "mse"])
def test_tiny_dynamic_batch_qdq(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path, method: str
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=8, batch_size=2)
    out = tmp_path / "out" / "tiny_int8.onnx"
    out.parent.mkdir()
    spec = CalibrationSpec(method=method, num_images=8, keep_stem_float=False)
    res = quantize_onnx(tiny_model, src, spec, out, tiny_detector.meta)
    assert out.is_file() and is_quantized_onnx(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny_int8.onnx"]  # no temp leftovers
    model = onnx.load(str(out))
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param, "the dynamic batch dimension is kept"
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    meta = read_meta(out)
    assert meta is not None and meta.precision == "int8"
    rec = meta.calibration
    assert rec is not None and rec["method"] == method and rec["images"]["count"] == 8
    assert len(rec["images"]["images_sha256"]) == 64
    assert any("fewer than 100" in w for w in rec["warnings"])
    assert rec["excluded_nodes"] == list(res.exclusion.names) and rec["excluded_nodes"]
    assert rec["map_before"] is None and "date" in rec and rec["edgedet_version"]
    image = np.full((32, 32, 3), 100, np.uint8)
    for runtime in ("onnxruntime", "openvino"):
        det = edgedet.load(out, runtime=runtime)
        det(image)
        feeds, _ = det.preprocess([image, image])
        outputs = det.infer(feeds)
        assert next(iter(outputs.values())).shape[0] == 2
        det.close()
    new = update_record(out, map_before=0.5, map_after=0.49)
    assert new.calibration is not None and new.calibration["map_after"] == 0.49


def test_interrupted_calibration_leaves_no_file(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=8)
    calls = {"n": 0}
    real = src.preprocess_entries

    def failing(entries):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("user pressed Ctrl-C")
        return real(entries)

    src.preprocess_entries = failing  # type: ignore[method-assign]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(KeyboardInterrupt):
        quantize_onnx(tiny_model, src, CalibrationSpec(), out_dir / "m.onnx", tiny_detector.meta)
    assert list(out_dir.iterdir()) == []


def test_reader_error_becomes_calibration_error(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=4)
    src.entries[1].path.unlink()
    with pytest.raises(CalibrationError, match="became unreadable during calibration"):
        quantize_onnx(tiny_model, src, CalibrationSpec(), tmp_path / "m.onnx", tiny_detector.meta)
    assert not (tmp_path / "m.onnx").exists()


def test_output_suffix(tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=2)
    with pytest.raises(CalibrationError, match=r"must be a \.onnx file"):
        quantize_onnx(tiny_model, src, CalibrationSpec(), tmp_path / "m.xml", tiny_detector.meta)


def test_mse_range_clips_outliers() -> None:
    # a million N(0, 1) values and one outlier at 60: clipping the outlier's side pays
    values = np.concatenate([np.random.default_rng(0).normal(0, 1, 1_000_000), [60.0]])
    hist, edges = np.histogram(values, bins=2048, range=(-60, 60))
    lo, hi = mse_range(hist, edges, float(values.min()), 60.0)
    assert hi < 30 and -6 < lo < -3
    assert mse_range(np.zeros(4), np.linspace(0, 1, 5), 0.0, 0.0) == (0.0, 0.0)


@pytest.mark.testdata
@pytest.mark.slow
def test_yolox_nano_8_images(models_dir: Path, datasets_dir: Path, tmp_path: Path) -> None:
    model = models_dir / "yolox_nano_416.onnx"
    images = datasets_dir / "coco128" / "images"
    if not model.is_file() or not images.is_dir():
        pytest.skip("YOLOX-nano or coco128 missing from the test data")
    det = edgedet.load(model, family="yolox", names="coco", runtime_options={"threads": 2})
    src = CalibrationSource(det, images=images, num=8)
    out = tmp_path / "yolox_int8.onnx"
    res = quantize_onnx(
        model, src, CalibrationSpec(method="percentile", num_images=8), out, det.meta
    )
    assert res.exclusion.summary()["decode tail"] == 14
    feeds, _ = det.model_feeds([src.load_image(src.entries[0])])
    ref = next(iter(det.infer(feeds).values()))
    for runtime in ("onnxruntime", "openvino"):  # both fed the model file's float input
        opts = {"threads": 2, "pixel_transform": None} if runtime == "openvino" else {"threads": 2}
        q = edgedet.load(out, runtime=runtime, runtime_options=opts)
        assert q.meta.family == "yolox" and q.meta.precision == "int8"
        got = next(iter(q.infer(feeds).values()))
        assert got.shape == ref.shape and np.isfinite(got).all()
        if runtime == "onnxruntime":  # objectness of the INT8 model follows the float model's
            assert np.corrcoef(ref[..., 4].ravel(), got[..., 4].ravel())[0, 1] > 0.7
        assert q.meta.calibration is not None and q.meta.calibration["images"]["count"] == 8
        q.close()
    det.close()
