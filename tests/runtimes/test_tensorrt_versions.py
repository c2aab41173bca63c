"""TensorRT 8.6 / 10.x / 11.x, plugins, foreign engines, DLA and Orin modules, against the FAKE.

Each test installs ``fake_tensorrt.py`` configured as one TensorRT release (its module exposes
only that release's names: no ``BuilderFlag.FP16`` / calibrators on 11, implicit-batch
``create_network(0)`` on 8.6) and imports edgedet's TensorRT modules fresh against it. What
they check is edgedet's choice of calls per version and its error messages; TensorRT's numerics,
kernels, DLA placement and real plugins are NOT tested here (benchmarks/jetson_check.py is
the on-device check).
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
from onnx import TensorProto, helper

from edgedet.errors import IncompatibleModelError, RuntimeUnavailableError
from edgedet.meta import read_meta, read_sidecar
from tests.tiny_models import make_tiny_yolov5, tiny_meta

from .test_tensorrt_fake import _affine_graph, _ort, _save, _x, fake_tensorrt

pytestmark = pytest.mark.fake_tensorrt

_OURS = (
    "edgedet.runtimes.tensorrt_runtime",
    "edgedet.runtimes.trt_engine",
    "edgedet.calibration.trt_int8",
)


class Env:
    """One fake "process": the fake state and edgedet's TensorRT modules imported against it."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, binding: str = "cuda-python", **state: Any
    ) -> None:
        self.state = fake_tensorrt.FakeState(**state)
        for name, module in fake_tensorrt.make_modules(self.state, binding).items():
            monkeypatch.setitem(sys.modules, name, module)
        for name in _OURS:
            monkeypatch.delitem(sys.modules, name, raising=False)
        self.rt = importlib.import_module("edgedet.runtimes.tensorrt_runtime")
        self.eng = importlib.import_module("edgedet.runtimes.trt_engine")
        self.TRT = self.rt.TensorRTRuntime
        self.trt = sys.modules["tensorrt"]


@pytest.fixture(autouse=True)
def _drop_our_modules() -> Any:
    yield
    for name in _OURS:
        sys.modules.pop(name, None)


@pytest.fixture
def tiny_dynamic(tmp_path: Path) -> Path:
    """Conv (learned) -> Sigmoid / Reshape / Transpose (decode tail), dynamic batch, with meta."""
    return make_tiny_yolov5(tmp_path / "tiny.onnx", size=8, batch="N", meta=tiny_meta())


def _onnx_initializer_types(engine_path: Path) -> set[int]:
    """ONNX elem types of the initializers of the graph the fake engine was built from."""
    import base64

    payload = json.loads(engine_path.read_bytes()[len(b"FAKETRT\x00") :])
    model = onnx.load_from_string(base64.b64decode(payload["onnx"]))
    return {t.data_type for t in model.graph.initializer}


def _payload(engine_path: Path) -> dict[str, Any]:
    data = engine_path.read_bytes()
    return json.loads(data[data.index(b"FAKETRT\x00") + 8 :])  # type: ignore[no-any-return]


# -- 1. TensorRT 11: no precision flags, no implicit calibrator -----------------------------------


def test_trt11_fp16_is_a_float16_graph_with_float_io_and_tail(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    env = Env(monkeypatch, trt_version="11.1.0")
    assert not hasattr(env.trt.BuilderFlag, "FP16")
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    with env.TRT(tiny_dynamic, cache_dir=tmp_path / "c", max_batch=2) as rt:
        assert rt.precision == "fp16"
        assert rt.inputs[0].dtype == np.float32 and rt.outputs[0].dtype == np.float32
        out = rt.infer({"images": x})["output"]
        rec = read_sidecar(rt.engine_path)["tensorrt"]  # type: ignore[index]
        payload = _payload(rt.engine_path)
    assert rec["strongly_typed"] is True and rec["float_precision"] == "fp16"
    assert payload["flags"] == [] and payload["strongly_typed"] is True
    assert TensorProto.FLOAT16 in _onnx_initializer_types(rt.engine_path), "conv weights fp16"
    ref = _ort(tiny_dynamic, x)["output"]
    np.testing.assert_allclose(out, ref, atol=5e-3)  # fp16 conv, float32 sigmoid tail
    # the decode tail stayed float32: the Sigmoid's input is a Cast back to float
    import base64

    graph = onnx.load_from_string(base64.b64decode(payload["onnx"])).graph
    sig = next(n for n in graph.node if n.op_type == "Sigmoid")
    producer = next(n for n in graph.node if sig.input[0] in n.output)
    assert producer.op_type == "Cast" and producer.attribute[0].i == TensorProto.FLOAT


def test_trt11_fp32_builds_the_graph_unchanged(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    env = Env(monkeypatch, trt_version="11.1.0")
    with env.TRT(tiny_dynamic, cache_dir=tmp_path / "c", precision="fp32") as rt:
        assert rt.precision == "fp32"
        engine = rt.engine_path
    assert TensorProto.FLOAT16 not in _onnx_initializer_types(engine)


def test_trt11_qdq_builds_int8_without_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch, trt_version="11.1.0")
    qdq = _save(_affine_graph(1, qdq=True), tmp_path / "qdq.onnx")
    with env.TRT(qdq, cache_dir=tmp_path / "c") as rt:
        assert rt.precision == "int8"
        out = rt.infer({"images": _x()})
        assert _payload(rt.engine_path)["flags"] == []
    np.testing.assert_allclose(out["boxes"], _ort(qdq, _x())["boxes"], atol=1e-2)


def test_trt11_default_load_with_fallback_list_uses_tensorrt(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    import edgedet

    Env(monkeypatch, trt_version="11.1.0")
    with edgedet.load(
        tiny_dynamic,
        runtime=("tensorrt", "onnxruntime"),
        runtime_options={"cache_dir": tmp_path / "c"},
    ) as det:
        assert det.runtime_name == "tensorrt"
        dets = det.predict_batch([np.zeros((8, 8, 3), np.uint8)] * 3)
    assert len(dets) == 3


def test_trt11_implicit_calibrator_is_refused_with_the_qdq_path(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path
) -> None:
    env = Env(monkeypatch, trt_version="11.1.0")
    trt_int8 = importlib.import_module("edgedet.calibration.trt_int8")
    with pytest.raises(RuntimeUnavailableError, match=r"removed in TensorRT 11.*Q/DQ"):
        trt_int8.make_entropy_calibrator(
            object(), tiny_meta(), cache_dir=tiny_dynamic.parent, model_stem="m", device=object()
        )
    with pytest.raises(RuntimeUnavailableError, match=r"no implicit INT8 calibrator"):
        env.eng.build_serialized_engine(
            tiny_dynamic.read_bytes(), where="tiny", precision="int8", calibrator=object()
        )


# -- 5. TensorRT 8.6: explicit batch -----------------------------------------------------------


def test_trt86_builds_an_explicit_batch_network(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch, trt_version="8.6.2")
    model = _save(_affine_graph("N"), tmp_path / "dyn.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c", max_batch=2) as rt:
        out = rt.infer({"images": _x(2)})
        assert _payload(rt.engine_path)["flags"] == ["FP16"]
    np.testing.assert_allclose(out["boxes"], _x(2) * 2 + 1, rtol=1e-6)
    assert env.eng.network_flags() == 1 << int(env.trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def test_trt_older_than_86_is_refused_and_probe_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch, trt_version="8.6.2")
    monkeypatch.setattr(env.trt, "__version__", "8.5.2")
    model = _save(_affine_graph(1), tmp_path / "m.onnx")
    with pytest.raises(RuntimeUnavailableError, match=r"needs TensorRT 8\.6 or newer"):
        env.TRT(model, cache_dir=tmp_path / "c")
    info = env.TRT.probe()
    assert info["available"] is False and "older than 8.6" in info["reason"]


# -- 2. plugins in a fresh process -------------------------------------------------------------


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_plugin_engine_deserialises_in_a_fresh_process(
    version: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("num_dets", TensorProto.INT32, [1, 1])
    node = helper.make_node("EfficientNMS_TRT", ["images"], ["num_dets"], name="nms")
    model = helper.make_model(
        helper.make_graph([node], "e2e", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    path = tmp_path / "e2e.onnx"
    onnx.save(model, str(path))  # not checked: EfficientNMS_TRT is a TensorRT plugin op
    first = Env(monkeypatch, trt_version=version)
    with first.TRT(path, cache_dir=tmp_path / "c") as rt:
        engine = rt.engine_path
    assert _payload(engine)["plugins"] == ["EfficientNMS_TRT"]
    # a new process: same machine, empty plugin registry until init_libnvinfer_plugins
    second = Env(monkeypatch, trt_version=version)
    assert second.state.plugins_registered is False
    with second.TRT(path, cache_dir=tmp_path / "c") as rt:
        assert rt.cache_hit is True
        assert [s.name for s in rt.outputs] == ["num_dets"]
    assert second.state.builds == 0 and second.state.plugins_registered is True


# -- 3. Ultralytics engine files ---------------------------------------------------------------


def test_ultralytics_engine_loads_with_its_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    model = _save(_affine_graph(1), tmp_path / "m.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c") as rt:
        plan = rt.engine_path.read_bytes()
    header = json.dumps(
        {"stride": 32, "task": "detect", "batch": 1, "imgsz": [4, 4], "names": {"0": "cat"}}
    ).encode()
    ul = tmp_path / "yolov8n.engine"
    ul.write_bytes(len(header).to_bytes(4, "little") + header + plan)
    meta = read_meta(ul)
    assert meta is not None and meta.family == "yolov8" and meta.class_names == ("cat",)
    assert meta.input_size == (4, 4) and meta.color == "RGB"
    with env.TRT(ul) as rt:
        assert rt.foreign_meta == meta
        np.testing.assert_allclose(rt.infer({"images": _x()})["boxes"], _x() * 2 + 1, rtol=1e-6)
    # a plain plan still loads (no header), and garbage is still refused as before
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"\x05\x00\x00\x00{nope" + plan)
    with pytest.raises(IncompatibleModelError, match=r"could not deserialise"):
        env.TRT(bad)


# -- 6. dynamic batch --------------------------------------------------------------------------


def test_dynamic_batch_default_accepts_batches_up_to_8(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    model = _save(_affine_graph("N"), tmp_path / "dyn.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c") as rt:
        assert env.state.configs[-1].profiles[0].get_shape("images") == [
            (1, 3, 4, 4), (1, 3, 4, 4), (8, 3, 4, 4)
        ]  # fmt: skip
        assert rt.max_batch == 8 and rt.describe()["max_batch"] == 8
        np.testing.assert_allclose(rt.infer({"images": _x(4)})["boxes"], _x(4) * 2 + 1, rtol=1e-6)


def test_predict_batch_stays_within_the_engine_max_batch(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    import edgedet

    env = Env(monkeypatch)
    with edgedet.load(
        tiny_dynamic, runtime="tensorrt", runtime_options={"cache_dir": tmp_path, "max_batch": 2}
    ) as det:
        images = [np.full((8, 8, 3), i * 20, np.uint8) for i in range(5)]
        got = det.predict_batch(images)
    with edgedet.load(tiny_dynamic, runtime="onnxruntime") as ref_det:
        ref = ref_det.predict_batch(images)
    assert [len(d) for d in got] == [len(d) for d in ref]
    assert env.state.executions == 3  # 2 + 2 + 1


def test_bench_load_builds_the_profile_for_its_batch(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    from edgedet.benchmarks.runner import BenchConfig, _load

    env = Env(monkeypatch)
    config = BenchConfig(
        model=str(tiny_dynamic),
        data=str(tmp_path),  # not read by _load
        runtime="tensorrt",
        batch=16,
        runtime_options={"cache_dir": tmp_path},
    )
    det, _ = _load(config, True)
    with det:
        assert det.runtime.max_batch == 16
    assert env.state.configs[-1].profiles[0].get_shape("images")[2][0] == 16


# -- 7. input_size reaches dynamic-H/W builds --------------------------------------------------


def _dynamic_hw_yolov8(path: Path) -> Path:
    """[N,3,H,W] -> [N,84,H*W] (a yolov8-shaped output), no meta: H and W are dynamic."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 84, "A"])
    nodes = [
        helper.make_node("Reshape", ["images", "shape"], ["flat"]),
        helper.make_node("Slice", ["flat", "st", "en", "ax"], ["one"]),
        helper.make_node("Tile", ["one", "rep"], ["output0"]),
    ]
    inits = [
        helper.make_tensor("shape", TensorProto.INT64, [3], [0, 3, -1]),
        helper.make_tensor("st", TensorProto.INT64, [1], [0]),
        helper.make_tensor("en", TensorProto.INT64, [1], [1]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
        helper.make_tensor("rep", TensorProto.INT64, [3], [1, 84, 1]),
    ]
    return _save(helper.make_graph(nodes, "hw", [x], [y], inits), path)


def test_input_size_reaches_a_dynamic_hw_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import edgedet

    env = Env(monkeypatch)
    model = _dynamic_hw_yolov8(tmp_path / "hw.onnx")
    with edgedet.load(
        model, runtime="tensorrt", family="yolov8", input_size=(8, 16), names="coco",
        runtime_options={"cache_dir": tmp_path / "c"},
    ) as det:  # fmt: skip
        assert env.state.configs[-1].profiles[0].get_shape("images")[2] == (8, 3, 8, 16)
        det(np.zeros((8, 16, 3), np.uint8))
    # another size is another engine (the cache key holds input_size)
    with env.TRT(model, cache_dir=tmp_path / "c", input_size=(16, 16)) as rt:
        assert rt.cache_hit is False and rt.inputs[0].shape == (None, 3, 16, 16)
    assert env.state.builds == 2


# -- 9. DLA: a fixed batch ---------------------------------------------------------------------


def test_dla_with_a_dynamic_batch_builds_one_fixed_batch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    model = _save(_affine_graph("N"), tmp_path / "dyn.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c", device="dla:0", max_batch=4) as rt:
        assert env.state.configs[-1].profiles[0].get_shape("images") == [(4, 3, 4, 4)] * 3
        assert _payload(rt.engine_path)["dla_fell_back"] is False
        assert rt.inputs[0].shape == (4, 3, 4, 4)  # the Detector pads to it
        assert "GPU fallback allowed" in rt.describe()["device"]
        np.testing.assert_allclose(rt.infer({"images": _x(4)})["boxes"], _x(4) * 2 + 1, rtol=1e-6)


# -- 11. Orin modules --------------------------------------------------------------------------


def test_engine_from_another_orin_module_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    _save(_affine_graph(1), model)
    dt = tmp_path / "model"
    dt.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    agx = Env(monkeypatch, gpu_name="Orin", compute_capability=(8, 7), sm_count=16)
    monkeypatch.setattr(agx.eng, "DEVICE_TREE_MODEL", dt)
    with agx.TRT(model, cache_dir=tmp_path / "c") as rt:
        engine = rt.engine_path
        assert rt.describe()["board"] == "NVIDIA Jetson AGX Orin Developer Kit"
    nx = Env(monkeypatch, gpu_name="Orin", compute_capability=(8, 7), sm_count=8)
    dt.write_bytes(b"NVIDIA Jetson Orin NX Engineering Reference Developer Kit\x00")
    monkeypatch.setattr(nx.eng, "DEVICE_TREE_MODEL", dt)
    with pytest.raises(IncompatibleModelError, match=r"differs in sm_count, board"):
        nx.TRT(engine)
    assert nx.state.deserialize_calls == 0


# -- 12. device_index --------------------------------------------------------------------------


def test_build_engine_builds_on_the_device_it_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch, device_count=2, gpu_names=["GPU A", "GPU B"])
    model = _save(_affine_graph(1), tmp_path / "m.onnx")
    out = env.eng.build_engine(model, tmp_path / "m.plan", device_index=1)
    assert env.state.build_devices == [1]
    assert read_sidecar(out)["tensorrt"]["gpu_name"] == "GPU B"  # type: ignore[index]
    assert env.state.context_stack == []
    with env.TRT(out, device="cuda:1") as rt:
        np.testing.assert_allclose(rt.infer({"images": _x()})["boxes"], _x() * 2 + 1, rtol=1e-6)


# -- 14. precision normalised; Q/DQ float layers in the key ------------------------------------


def test_precision_is_case_insensitive_and_qdq_float_layers_are_keyed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    qdq = _save(_affine_graph(1, qdq=True), tmp_path / "qdq.onnx")
    with env.TRT(qdq, cache_dir=tmp_path / "c", precision="FP32") as a:
        assert a.precision == "int8" and a.describe()["float_precision"] == "fp32"
        flags_a = _payload(a.engine_path)["flags"]
    with env.TRT(qdq, cache_dir=tmp_path / "c", precision="fp16") as b:
        assert b.cache_hit is False and b.describe()["float_precision"] == "fp16"
        flags_b = _payload(b.engine_path)["flags"]
    assert flags_a == ["INT8"] and flags_b == ["FP16", "INT8"]


# -- 13. the implicit calibrator is attached and its errors surface (TensorRT 10) --------------


class _Device:
    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}

    def alloc(self, nbytes: int) -> int:
        ptr = 0x1000 + 0x10000 * len(self.memory)
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def copy_htod(self, ptr: int, array: np.ndarray) -> None:
        self.memory[ptr][:] = np.frombuffer(array.tobytes(), np.uint8)


class _Source:
    """A stand-in CalibrationSource: ``batches`` batches of ``batch_size`` images."""

    def __init__(self, batches: int, batch_size: int, name: str = "images") -> None:
        self.batch_size = batch_size
        self.name = name
        self.batches = batches
        self.report = type("R", (), {"images_sha256": "0" * 64})()

    def __iter__(self) -> Any:
        rng = np.random.default_rng(0)
        for _ in range(self.batches):
            yield {self.name: rng.uniform(0, 1, (self.batch_size, 3, 8, 8)).astype(np.float32)}


def test_calibrator_is_attached_to_the_build(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    trt_int8 = importlib.import_module("edgedet.calibration.trt_int8")
    cal = trt_int8.make_entropy_calibrator(
        _Source(3, 2), tiny_meta(), cache_dir=tmp_path, model_stem="tiny", device=_Device()
    )  # type: ignore[arg-type]
    result = env.eng.build_serialized_engine(
        tiny_dynamic.read_bytes(), where="tiny", precision="fp16", max_batch=4, calibrator=cal
    )
    config = env.state.configs[-1]
    assert result.precision == "int8" and config.int8_calibrator is cal
    assert config.calibration_profile.get_shape("images") == [(2, 3, 8, 8)] * 3
    assert env.state.calibration_batches == 3
    assert list(tmp_path.glob("tiny.*.calib")), "the calibration table was cached"


def test_calibrator_errors_surface_after_the_build(
    monkeypatch: pytest.MonkeyPatch, tiny_dynamic: Path, tmp_path: Path
) -> None:
    from edgedet.errors import CalibrationError

    env = Env(monkeypatch)
    trt_int8 = importlib.import_module("edgedet.calibration.trt_int8")
    cal = trt_int8.make_entropy_calibrator(
        _Source(3, 2, name="x"), tiny_meta(), cache_dir=tmp_path, model_stem="t", device=_Device()
    )  # type: ignore[arg-type]
    with pytest.raises(CalibrationError, match=r"TensorRT asks for input 'images'"):
        env.eng.build_serialized_engine(
            tiny_dynamic.read_bytes(), where="tiny", max_batch=2, calibrator=cal
        )
    assert env.state.calibration_batches == 0



# -- 4. the CUDA binding: cuda-python first, pycuda where only it is installed -----------------


def test_cuda_binding_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgedet.runtimes.cuda_binding import load_backend

    Env(monkeypatch)  # both installed
    assert load_backend().name == "cuda-python"
    monkeypatch.setenv("EDGEDET_CUDA_BINDING", "pycuda")
    assert load_backend().name == "pycuda"
    monkeypatch.delenv("EDGEDET_CUDA_BINDING")
    Env(monkeypatch, binding="pycuda")  # cuda-python not installed
    assert load_backend().name == "pycuda"
    monkeypatch.setenv("EDGEDET_CUDA_BINDING", "cuda-python")
    with pytest.raises(RuntimeUnavailableError, match=r"needs the cuda-python package"):
        load_backend()
    monkeypatch.delenv("EDGEDET_CUDA_BINDING")
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(
        RuntimeUnavailableError, match=r"cuda-python \(or pycuda\) package \(the 'tensorrt' extra\): pip install"
    ):
        load_backend()


def test_pinned_buffers_are_freed_with_cuda_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    model = _save(_affine_graph("N"), tmp_path / "dyn.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c", max_batch=4) as rt:
        rt.infer({"images": _x(1)})
        assert len(env.state.pinned) == 3  # one page-locked buffer per I/O tensor
        rt.infer({"images": _x(2)})  # larger: reallocated, old ones freed
        assert len(env.state.pinned) == 3
        allocs = env.state.mem_allocs
        out = rt.infer({"images": _x(1, seed=5)})  # smaller: views of the same buffers
        assert env.state.mem_allocs == allocs and out["boxes"].shape == (1, 3, 4, 4)
        np.testing.assert_allclose(out["boxes"], _x(1, seed=5) * 2 + 1, rtol=1e-6)
        assert rt.describe()["cuda_binding"] == "cuda-python"
    assert env.state.pinned == {} and env.state.device_memory == {}
    assert env.state.contexts_made == env.state.contexts_detached


# -- 19. TensorRT's own error text reaches edgedet's exceptions --------------------------------


def test_tensorrt_errors_are_in_the_exception_and_the_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from edgedet.errors import ModelLoadError

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("num_dets", TensorProto.INT32, [1, 1])
    node = helper.make_node("EfficientNMS_TRT", ["images"], ["num_dets"], name="nms")
    model = helper.make_model(
        helper.make_graph([node], "e2e", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    path = tmp_path / "e2e.onnx"
    onnx.save(model, str(path))
    first = Env(monkeypatch)
    with first.TRT(path, cache_dir=tmp_path / "c") as rt:
        engine = rt.engine_path
    # a process whose plugin library cannot be registered (e.g. libnvinfer_plugin missing)
    second = Env(monkeypatch)
    monkeypatch.setattr(second.trt, "init_libnvinfer_plugins", lambda logger, namespace: False)
    with (
        caplog.at_level("ERROR", logger="edgedet.runtimes.tensorrt"),
        pytest.raises(ModelLoadError, match=r"TensorRT said: getPluginCreator could not find "
                      r"plugin: EfficientNMS_TRT.*needs a plugin library"),  # fmt: skip
    ):
        second.TRT(engine)
    assert "TensorRT: getPluginCreator could not find plugin" in caplog.text
    # an engine without sidecar from another TensorRT: TensorRT's reason is quoted
    (engine.parent / (engine.stem + ".edgedet.json")).unlink()
    third = Env(monkeypatch, trt_version="10.7.0")
    with pytest.raises(IncompatibleModelError, match=r"not compatible with this version of "
                       r"TensorRT, expecting library version 10\.7\.0 got 10\.3\.0"):  # fmt: skip
        third.TRT(engine)


def test_a_cached_engine_that_does_not_load_is_rebuilt_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    model = _save(_affine_graph(1), tmp_path / "m.onnx")
    with env.TRT(model, cache_dir=tmp_path / "c") as rt:
        engine = rt.engine_path
    data = engine.read_bytes()
    engine.write_bytes(b"X" * len(data))  # same size, so the sidecar still matches
    with env.TRT(model, cache_dir=tmp_path / "c") as rt:
        assert rt.cache_hit is False and rt.engine_path == engine
        np.testing.assert_allclose(rt.infer({"images": _x()})["boxes"], _x() * 2 + 1, rtol=1e-6)
    assert env.state.builds == 2


# -- 18. timing cache: per GPU model, unreadable or foreign caches do not break a build ---------


def test_timing_cache_is_per_gpu_and_bad_caches_are_survived(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = Env(monkeypatch, gpu_name="NVIDIA RTX A6000", compute_capability=(8, 6))
    cache = tmp_path / "c"
    model = _save(_affine_graph(1), tmp_path / "m.onnx")
    with env.TRT(model, cache_dir=cache):
        pass
    (timing,) = cache.glob("timing-*.cache")
    assert "NVIDIA_RTX_A6000" in timing.name and timing.read_bytes() == b"FAKECACHE:1"
    timing.write_bytes(b"garbage")  # unreadable: create_timing_cache gives None
    with caplog.at_level("WARNING", logger="edgedet.runtimes.tensorrt"):
        with env.TRT(model, cache_dir=cache, precision="fp32"):
            pass
        assert "unreadable" in caplog.text
    assert timing.read_bytes() == b"FAKECACHE:1"  # started again from an empty cache
    env.state.timing_cache_mismatch = True  # made on another device: not used, not rewritten
    with caplog.at_level("WARNING", logger="edgedet.runtimes.tensorrt"):
        with env.TRT(model, cache_dir=cache, precision="fp16", max_batch=1):
            pass
        assert "another device" in caplog.text
    assert env.state.builds == 3
