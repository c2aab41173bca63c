"""edgedet's TensorRT calls against NVIDIA's published Python API, per release (no GPU needed).

``runtimes/trt_api_surface.json`` lists, for TensorRT 8.6, 10.3, 10.16 and 11.1, the members of
every TensorRT class / enum edgedet touches, derived from the pybind11 binding sources at the
release tags of https://github.com/NVIDIA/TensorRT (``python/src/infer/pyCore.cpp``,
``pyGraph.cpp``, ``pyInt8.cpp``, ``pyPlugin.cpp``, ``python/src/parsers/pyOnnx.cpp``; tags and
commits inside the file) by ``tests/runtimes/trt_api_extract.py``.

- (a) ``test_every_call_edgedet_makes_exists_in_that_version``: runs edgedet's builder and
  runtime (fp16, fp32, Q/DQ INT8, dynamic batch, DLA, engine files, the implicit calibrator
  where it exists) against the FAKE configured as each version, records every TensorRT
  attribute edgedet's code reads, and checks each against that version's table.
- (b) ``test_fake_exposes_nothing_the_version_lacks``: every public name of the fake's module,
  classes and enums for a version is in that version's table, so the fake cannot hide a call
  the real release lacks.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from edgedet.errors import ModelLoadError
from tests.tiny_models import make_tiny_yolov5, tiny_meta

from .test_tensorrt_fake import _affine_graph, _save, fake_tensorrt

pytestmark = pytest.mark.fake_tensorrt

SURFACE_PATH = Path(__file__).resolve().parents[2] / "runtimes" / "trt_api_surface.json"
SURFACE = json.loads(SURFACE_PATH.read_text())
#: Table version -> the ``__version__`` the fake reports for it.
FAKE_VERSIONS = {"8.6": "8.6.2", "10.3": "10.3.0", "10.16": "10.16.0", "11.1": "11.1.0"}
_OURS = (
    "edgedet.runtimes.tensorrt_runtime",
    "edgedet.runtimes.trt_engine",
    "edgedet.calibration.trt_int8",
)


def _api(version: str) -> dict[str, set[str]]:
    return {k: set(v) for k, v in SURFACE["versions"][version]["api"].items()}


def test_table_covers_the_versions_and_pins_known_differences() -> None:
    assert set(SURFACE["versions"]) == set(FAKE_VERSIONS)
    for entry in SURFACE["versions"].values():
        assert entry["tag"].startswith("v") and len(entry["commit"]) == 40
    v86, v103, v11 = _api("8.6"), _api("10.3"), _api("11.1")
    # TensorRT 11 removed the weak-typing flags and the implicit calibrators
    assert {"FP16", "INT8"} <= v103["BuilderFlag"] and not {"FP16", "INT8"} & v11["BuilderFlag"]
    assert "IInt8EntropyCalibrator2" in v103["tensorrt"]
    assert "IInt8EntropyCalibrator2" not in v11["tensorrt"]
    assert "int8_calibrator" in v103["IBuilderConfig"]
    assert "int8_calibrator" not in v11["IBuilderConfig"]
    # 8.6 has EXPLICIT_BATCH (and no STRONGLY_TYPED); 11 has no EXPLICIT_BATCH
    assert "EXPLICIT_BATCH" in v86["NetworkDefinitionCreationFlag"]
    assert "STRONGLY_TYPED" not in v86["NetworkDefinitionCreationFlag"]
    assert "EXPLICIT_BATCH" not in v11["NetworkDefinitionCreationFlag"]
    # the tensor-name API edgedet runs with exists in all of them
    for version in FAKE_VERSIONS:
        api = _api(version)
        assert {"execute_async_v3", "set_input_shape", "set_tensor_address"} <= api[
            "IExecutionContext"
        ]
        assert {"num_io_tensors", "get_tensor_profile_shape"} <= api["ICudaEngine"]
        assert {"init_libnvinfer_plugins", "nptype"} <= api["tensorrt"]


def _fake_members(cls: type) -> set[str]:
    """Public names a fake class or enum exposes at class level (methods, properties, members)."""
    if isinstance(cls, type) and issubclass(cls, __import__("enum").Enum):
        return set(cls.__members__)
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ == fake_tensorrt.__name__ and not klass.__name__.startswith("_R"):
            names |= {n for n in vars(klass) if not n.startswith("_")}
    return names


@pytest.mark.parametrize("version", sorted(FAKE_VERSIONS))
def test_fake_exposes_nothing_the_version_lacks(version: str) -> None:
    state = fake_tensorrt.FakeState(trt_version=FAKE_VERSIONS[version])
    trt = fake_tensorrt.make_modules(state)["tensorrt"]
    api = _api(version)
    public = {n for n in vars(trt) if not n.startswith("_")}
    assert public - api["tensorrt"] == set(), f"fake module names TensorRT {version} lacks"
    for name in sorted(public):
        obj = vars(trt)[name]
        if not isinstance(obj, type):
            continue
        extra = _fake_members(obj) - api.get(name, set())
        assert extra == set(), f"fake {name} has {sorted(extra)}, which TensorRT {version} lacks"


class _Device:
    def alloc(self, nbytes: int) -> int:
        return 0x1000

    def copy_htod(self, ptr: int, array: np.ndarray) -> None:
        pass


class _Source:
    batch_size = 2
    report = type("R", (), {"images_sha256": "0" * 64})()

    def __iter__(self) -> Any:
        for _ in range(2):
            yield {"images": np.zeros((2, 3, 8, 8), np.float32)}


def _exercise(tmp_path: Path, major: int) -> None:
    """Every TensorRT path edgedet has, as a user reaches it."""
    rt = importlib.import_module("edgedet.runtimes.tensorrt_runtime")
    eng = importlib.import_module("edgedet.runtimes.trt_engine")
    cache = tmp_path / "cache"
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", size=8, batch="N", meta=tiny_meta())
    static = _save(_affine_graph(1), tmp_path / "static.onnx")
    qdq = _save(_affine_graph(1, qdq=True), tmp_path / "qdq.onnx")
    x = np.zeros((2, 3, 8, 8), np.float32)
    for kwargs in ({}, {"precision": "fp32"}, {"device": "dla:0", "max_batch": 2}):
        with rt.TensorRTRuntime(tiny, cache_dir=cache, **kwargs) as r:
            r.infer({"images": x})
            r.describe()
    with rt.TensorRTRuntime(qdq, cache_dir=cache) as r:
        r.infer({"images": np.zeros((1, 3, 4, 4), np.float32)})
        engine = r.engine_path
    with rt.TensorRTRuntime(engine) as r:
        r.infer({"images": np.zeros((1, 3, 4, 4), np.float32)})
    eng.build_engine(static, tmp_path / "static.plan")
    rt.TensorRTRuntime.probe()
    custom = _save(_affine_graph(1), tmp_path / "custom.onnx")
    model = onnx.load(str(custom))
    model.graph.node[0].domain = "com.example"  # the parser refuses it: get_error is read
    onnx.save(model, str(custom))
    with pytest.raises(ModelLoadError, match="parser rejected"):
        rt.TensorRTRuntime(custom, cache_dir=cache, precision="fp32")
    if major < 11:
        trt_int8 = importlib.import_module("edgedet.calibration.trt_int8")
        cal = trt_int8.make_entropy_calibrator(
            _Source(), tiny_meta(), cache_dir=tmp_path, model_stem="t", device=_Device()
        )  # type: ignore[arg-type]
        eng.build_serialized_engine(tiny.read_bytes(), where="t", max_batch=2, calibrator=cal)


@pytest.mark.parametrize("version", sorted(FAKE_VERSIONS))
def test_every_call_edgedet_makes_exists_in_that_version(
    version: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    state = fake_tensorrt.FakeState(trt_version=FAKE_VERSIONS[version])
    for name, module in fake_tensorrt.make_modules(state).items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in _OURS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        _exercise(tmp_path, state.trt_major)
    finally:
        for name in _OURS:
            sys.modules.pop(name, None)
    api = _api(version)
    used = sorted(state.accessed)
    assert len(used) > 40, "the recorder saw too little: is recording broken?"
    missing = [f"{owner}.{name}" for owner, name in used if name not in api.get(owner, set())]
    assert missing == [], f"edgedet uses {missing}, absent from TensorRT {version}"
    # the calls that differ between versions took the version's own path
    if state.trt_major >= 11:
        assert ("BuilderFlag", "FP16") not in state.accessed
    else:
        assert ("BuilderFlag", "FP16") in state.accessed
    if state.trt_major < 10:
        assert ("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH") in state.accessed
    assert ("tensorrt", "init_libnvinfer_plugins") in state.accessed
