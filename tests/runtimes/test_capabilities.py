"""Each runtime's declaration (`RuntimeCapabilities`) against what the runtime really accepts:
real ONNX Runtime, OpenVINO and torch; TensorRT against the fake in this folder (a fake)."""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgedet.runtimes.base import AsyncInfer
from edgedet.runtimes.capabilities import PRECISIONS, RuntimeCapabilities, normalize_precision
from edgedet.runtimes.registry import register_runtime, runtime_capabilities, runtime_class

from edgedet.errors import InvalidInputError, RuntimeUnavailableError
from edgedet.meta import ModelMeta
from tests.runtimes.test_tensorrt_fake import fake  # noqa: F401  (the fixture installing the fake)
from tests.tiny_models import make_tiny_yolov5

META = ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(32, 32))
REAL = ("onnxruntime", "openvino")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_yolov5(tmp_path / "tiny.onnx", batch="N", meta=META)


def _feeds(rt: Any) -> dict[str, np.ndarray]:
    return {rt.inputs[0].name: np.random.default_rng(0).random((1, 3, 32, 32), np.float32)}


def test_normalize_precision() -> None:
    assert normalize_precision("FP16") == "fp16"
    assert normalize_precision("f32") == "fp32" and normalize_precision("half") == "fp16"
    assert normalize_precision("bfloat16", ("fp32", "bf16")) == "bf16"
    with pytest.raises(InvalidInputError, match=r"--precision must be one of fp32, fp16, got 'int4'"):
        normalize_precision("int4", ("fp32", "fp16"), what="--precision")
    with pytest.raises(InvalidInputError, match="must be one of fp32, fp16, got 'bf16'"):
        normalize_precision("bf16", ("fp32", "fp16"))
    with pytest.raises(InvalidInputError):
        normalize_precision(16)


def test_declarations_are_valid_and_known() -> None:
    for name in ("onnxruntime", "openvino", "tensorrt", "torch"):
        caps = runtime_capabilities(name)
        assert set(caps.precisions) <= set(PRECISIONS)
        assert set(caps.precision_option) <= set(caps.precisions)
    with pytest.raises(InvalidInputError, match="must declare its INT8 formats"):
        RuntimeCapabilities(devices=("cpu",), precisions=("int8",))
    with pytest.raises(InvalidInputError, match="unknown runtime 'nope'"):
        runtime_capabilities("nope")


def test_plugin_without_declaration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgedet.runtimes import registry

    monkeypatch.setattr(registry, "_registry", dict(registry._load_registry()))
    register_runtime("nodecl_test", "tests.tiny_models:make_tiny_yolov5")
    with pytest.raises(InvalidInputError, match="declares no capabilities"):
        runtime_capabilities("nodecl_test")


@pytest.mark.parametrize("name", [*REAL, "torch"])
def test_class_carries_the_registry_declaration_and_options_match(name: str) -> None:
    if name == "torch":
        pytest.importorskip("torch")
    cls = runtime_class(name)
    caps = runtime_capabilities(name)
    assert cls.capabilities is caps
    params = inspect.signature(cls).parameters
    assert ("threads" in params) == caps.threads
    assert ("precision" in params) == bool(caps.precision_option)


@pytest.mark.usefixtures("fake")
def test_tensorrt_declaration_matches_the_fake() -> None:
    caps = runtime_capabilities("tensorrt")
    TRT = runtime_class("tensorrt")
    assert TRT.capabilities is caps
    params = inspect.signature(TRT).parameters
    assert ("threads" in params) == caps.threads and "precision" in params
    from edgedet.runtimes import trt_engine

    for p in caps.precision_option:
        assert trt_engine._check_precision(p.upper()) == p
    with pytest.raises(InvalidInputError, match="TensorRT precision must be one of"):
        trt_engine._check_precision("bf16")
    assert (hasattr(TRT, "submit") and hasattr(TRT, "wait_all")) == caps.async_infer


@pytest.mark.parametrize("name", REAL)
def test_devices_async_and_precisions_really_accepted(name: str, tiny: Path) -> None:
    cls = runtime_class(name)
    caps = runtime_capabilities(name)
    with cls(tiny, device="cpu") as rt:
        out = rt.infer(_feeds(rt))
        assert all(np.isfinite(v).all() for v in out.values())
        assert isinstance(rt, AsyncInfer) == caps.async_infer
        assert rt.precision in caps.precisions
    for kind in caps.devices:  # each declared device is a valid name: it runs or is absent here
        with contextlib.suppress(RuntimeUnavailableError):
            cls(tiny, device=kind).close()
    with pytest.raises((InvalidInputError, RuntimeUnavailableError)):
        cls(tiny, device="tpu")  # not declared: refused
    for p in caps.precision_option:
        with cls(tiny, device="cpu", precision=p) as rt:
            assert rt.infer(_feeds(rt))
    if caps.precision_option:
        with pytest.raises(InvalidInputError, match="precision must be one of"):
            cls(tiny, device="cpu", precision="int8")


@pytest.mark.parametrize("name", REAL)
def test_int8_formats_really_run(name: str, tiny: Path, image_dir: Path, tmp_path: Path) -> None:
    """Every declared INT8 format, built by edgedet's builder for it, loads and runs as int8."""
    from edgedet.calibration.guard import builder_for
    from edgedet.calibration.source import CalibrationSource
    from edgedet.calibration.spec import CalibrationSpec

    import edgedet

    caps = runtime_capabilities(name)
    assert caps.int8_formats and "int8" in caps.precisions
    det = edgedet.load(tiny, runtime="onnxruntime")
    source = CalibrationSource(det, images=image_dir, num=4)
    spec = CalibrationSpec(method="minmax", keep_stem_float=False)
    for fmt in caps.int8_formats:
        builder = builder_for(fmt, tiny, source, spec, det.meta, work_dir=tmp_path)
        try:
            q = builder.build(tmp_path / f"q_{fmt}{builder.suffix}").path
        finally:
            builder.close()
        with runtime_class(name)(q) as rt:
            assert rt.precision == "int8"
            assert rt.infer(_feeds(rt))
    det.close()


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    import cv2

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"img_{i}.jpg"), rng.integers(0, 255, (40, 48, 3), np.uint8))
    return folder


def test_detector_asks_the_meta_precision_only_where_declared(tmp_path: Path) -> None:
    """A model whose meta says fp16 runs at fp16 on a runtime declaring precision_from_meta
    (OpenVINO); ONNX Runtime, which has no precision option, loads it as it is."""
    import edgedet

    model = make_tiny_yolov5(tmp_path / "half.onnx", meta=META.replace(precision="fp16"))
    assert runtime_capabilities("openvino").precision_from_meta
    with edgedet.load(model, runtime="openvino") as det:
        assert det.runtime.requested_precision == "fp16"
    with edgedet.load(model, runtime="openvino", runtime_options={"precision": "fp32"}) as det:
        assert det.runtime.requested_precision == "fp32"
    assert not runtime_capabilities("onnxruntime").precision_from_meta
    with edgedet.load(model, runtime="onnxruntime") as det:
        assert det.runtime.precision == "fp32"
