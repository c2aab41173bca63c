"""TensorRT runtime and engine cache, tested against a FAKE tensorrt / CUDA binding (fake-backed).

TensorRT and its CUDA bindings cannot be used on the CI machine (no GPU), so these tests install
the small test double in ``fake_tensorrt.py`` as the ``tensorrt``, ``cuda.bindings.driver``
(cuda-python) and ``pycuda.driver`` modules; every test runs twice, once with cuda-python and
once with only pycuda installed. The fake runs the embedded ONNX model with ONNX Runtime, so
buffer plumbing and outputs are checked for real; TensorRT's numerics, kernels and DLA are NOT
tested here. ``test_missing_tensorrt_names_the_extra`` is the exception: it uses the real, absent
``tensorrt`` module.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgedet.errors import (
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)
from edgedet.meta import ModelMeta, read_meta, read_sidecar, sidecar_path, write_onnx_meta

pytestmark = pytest.mark.fake_tensorrt

_OURS = ("edgedet.runtimes.tensorrt_runtime", "edgedet.runtimes.trt_engine")


def _load_fake() -> ModuleType:
    name = "edgedet_tests_fake_tensorrt"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("fake_tensorrt.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fake_tensorrt = _load_fake()


@pytest.fixture(params=["cuda-python", "pycuda"])
def fake(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Install the fake modules (with cuda-python's driver API, or with only pycuda); our modules
    are imported fresh against them and dropped after."""
    state = fake_tensorrt.FakeState()
    for name, module in fake_tensorrt.make_modules(state, request.param).items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in _OURS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield state
    for name in _OURS:
        sys.modules.pop(name, None)


@pytest.fixture
def TRT(fake: Any) -> Any:
    return importlib.import_module("edgedet.runtimes.tensorrt_runtime").TensorRTRuntime


@pytest.fixture
def engine_mod(fake: Any) -> Any:
    return importlib.import_module("edgedet.runtimes.trt_engine")


# -- tiny ONNX models ---------------------------------------------------------------------------


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _affine_graph(batch: int | str, qdq: bool = False) -> onnx.GraphProto:
    """boxes = x * 2 + 1, scores = x - 1 (two outputs, to check keying); optional Q/DQ on x."""
    shape = [batch, 3, 4, 4]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, shape)
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, shape)
    inits = [
        helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    nodes = []
    src = "images"
    if qdq:
        inits += [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("zp", TensorProto.INT8, [], [0]),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["images", "scale", "zp"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "scale", "zp"], ["xdq"]),
        ]
        src = "xdq"
    nodes += [
        helper.make_node("Mul", [src, "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["boxes"]),
        helper.make_node("Sub", [src, "one"], ["scores"]),
    ]
    return helper.make_graph(nodes, "affine", [x], [boxes, scores], inits)


@pytest.fixture
def onnx_static(tmp_path: Path) -> Path:
    return _save(_affine_graph(1), tmp_path / "static.onnx")


@pytest.fixture
def onnx_dynamic(tmp_path: Path) -> Path:
    return _save(_affine_graph("N"), tmp_path / "dynamic.onnx")


@pytest.fixture
def onnx_qdq(tmp_path: Path) -> Path:
    return _save(_affine_graph(1, qdq=True), tmp_path / "qdq.onnx")


def _x(batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3, 3, (batch, 3, 4, 4)).astype(np.float32)


def _ort(model: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"images": x})))


# -- building and the cache ---------------------------------------------------------------------


def test_build_from_onnx_runs_and_matches_onnxruntime(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with TRT(onnx_static, cache_dir=cache) as rt:
        assert rt.cache_hit is False
        assert [s.name for s in rt.inputs] == ["images"]
        assert [s.name for s in rt.outputs] == ["boxes", "scores"]
        assert rt.inputs[0].shape == (1, 3, 4, 4)
        assert rt.inputs[0].dtype == np.float32
        assert rt.precision == "fp16"
        x = _x()
        out = rt.infer({"images": x})
    want = _ort(onnx_static, x)
    np.testing.assert_allclose(out["boxes"], x * 2 + 1, rtol=1e-6)
    np.testing.assert_allclose(out["scores"], want["scores"], rtol=1e-6)
    assert fake.builds == 1
    config = fake.configs[-1]
    assert config.get_flag(fake_tensorrt.BuilderFlag.FP16)
    assert not config.get_flag(fake_tensorrt.BuilderFlag.INT8)
    assert config.get_memory_pool_limit(fake_tensorrt.MemoryPoolType.WORKSPACE) == 1024 << 20
    assert config.profiles == []  # static input: no profile


def test_engine_and_sidecar_written_atomically(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with TRT(onnx_static, cache_dir=cache) as rt:
        engine = rt.engine_path
    assert engine.parent == cache and engine.suffix == ".engine"
    assert engine.is_file() and sidecar_path(engine).is_file()
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")], "temporary file left"
    rec = read_sidecar(engine)["tensorrt"]  # type: ignore[index]
    assert rec["trt_version"] == fake_tensorrt.FAKE_TRT_VERSION
    assert rec["gpu_name"] == "Fake GPU" and rec["compute_capability"] == "9.0"
    assert rec["precision"] == "fp16" and rec["dla_core"] is None
    assert rec["engine_bytes"] == engine.stat().st_size
    assert len(rec["model_sha256"]) == 64
    # the timing cache file sits in the cache folder and was written by the build
    caches = list(cache.glob("timing-*.cache"))
    assert len(caches) == 1 and caches[0].read_bytes() == b"FAKECACHE:1"


def test_second_load_reuses_cached_engine(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    with TRT(onnx_static, cache_dir=cache) as first:
        path = first.engine_path
    with (
        caplog.at_level("INFO", logger="edgedet.runtimes.tensorrt"),
        TRT(onnx_static, cache_dir=cache) as second,
    ):
        assert second.cache_hit is True
        assert second.engine_path == path
        out = second.infer({"images": _x()})
    assert fake.builds == 1, "the cached engine should have been reused, not rebuilt"
    assert "reusing cached TensorRT engine" in caplog.text
    np.testing.assert_allclose(out["boxes"], _x() * 2 + 1, rtol=1e-6)


def test_cache_key_changes_with_precision_and_timing_cache_is_reused(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with TRT(onnx_static, cache_dir=cache, precision="fp16") as a:
        pa = a.engine_path
    with TRT(onnx_static, cache_dir=cache, precision="fp32") as b:
        pb = b.engine_path
        assert b.precision == "fp32"
    assert pa != pb and fake.builds == 2
    assert not fake.configs[-1].get_flag(fake_tensorrt.BuilderFlag.FP16)
    # the second build started from the first build's timing cache
    assert fake.timing_cache_inputs == [b"", b"FAKECACHE:1"]


def test_cache_key_covers_everything_that_makes_engines_differ(engine_mod: Any) -> None:
    t = engine_mod.TrtTarget("10.3.0", "Orin", "8.7")
    base = dict(precision="fp16", max_batch=1, dla_core=None)
    key = engine_mod.engine_cache_key("a" * 64, t, **base)
    variants = [
        engine_mod.engine_cache_key("b" * 64, t, **base),
        engine_mod.engine_cache_key(
            "a" * 64, engine_mod.TrtTarget("10.7.0", "Orin", "8.7"), **base
        ),
        engine_mod.engine_cache_key(
            "a" * 64, engine_mod.TrtTarget("10.3.0", "H100", "9.0"), **base
        ),
        engine_mod.engine_cache_key("a" * 64, t, **{**base, "precision": "int8"}),
        engine_mod.engine_cache_key("a" * 64, t, **{**base, "max_batch": 4}),
        engine_mod.engine_cache_key("a" * 64, t, **{**base, "dla_core": 0}),
    ]
    assert len({key, *variants}) == 7


def test_onnx_meta_is_copied_into_the_engine_sidecar(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    meta = ModelMeta(family="yolov8", class_names=("cat", "dog"), input_size=(4, 4))
    with_meta = write_onnx_meta(onnx_static, tmp_path / "with_meta.onnx", meta)
    with TRT(with_meta, cache_dir=tmp_path / "cache") as rt:
        engine = rt.engine_path
    carried = read_meta(engine)
    assert carried is not None
    assert carried.family == "yolov8" and carried.class_names == ("cat", "dog")
    assert carried.precision == "fp16"  # the engine's precision, not the ONNX model's


def test_build_engine_function_writes_engine_and_sidecar(
    engine_mod: Any, TRT: Any, fake: Any, onnx_dynamic: Path, tmp_path: Path
) -> None:
    out = engine_mod.build_engine(
        onnx_dynamic, tmp_path / "model.plan", precision="fp16", max_batch=2, workspace_mb=64
    )
    assert out == tmp_path / "model.plan" and out.is_file()
    assert read_sidecar(out)["tensorrt"]["max_batch"] == 2  # type: ignore[index]
    assert (
        fake.configs[-1].get_memory_pool_limit(fake_tensorrt.MemoryPoolType.WORKSPACE) == 64 << 20
    )
    assert fake.context_stack == []  # build_engine leaves no CUDA context behind
    with TRT(out) as rt:  # and the runtime loads it directly
        assert rt.precision == "fp16"
        assert rt.infer({"images": _x(2)})["boxes"].shape == (2, 3, 4, 4)


# -- engines from elsewhere ---------------------------------------------------------------------


def _built_engine(TRT: Any, model: Path, tmp_path: Path) -> Path:
    with TRT(model, cache_dir=tmp_path / "cache") as rt:
        src = rt.engine_path
    dst = tmp_path / "copied.engine"
    dst.write_bytes(src.read_bytes())
    sidecar_path(dst).write_text(sidecar_path(src).read_text())
    return dst


def test_engine_file_loads_directly(TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    engine = _built_engine(TRT, onnx_static, tmp_path)
    with TRT(engine) as rt:
        assert rt.cache_hit is None
        out = rt.infer({"images": _x(seed=3)})
    np.testing.assert_allclose(out["boxes"], _x(seed=3) * 2 + 1, rtol=1e-6)
    assert fake.builds == 1


def test_engine_from_other_trt_and_gpu_is_refused_before_deserialising(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    engine = _built_engine(TRT, onnx_static, tmp_path)
    side = json.loads(sidecar_path(engine).read_text())
    side["tensorrt"].update(trt_version="10.0.1", gpu_name="Orin", compute_capability="8.7")
    sidecar_path(engine).write_text(json.dumps(side))
    calls = fake.deserialize_calls
    with pytest.raises(
        IncompatibleModelError,
        match=r"was built with TensorRT 10\.0\.1 on Orin \(sm_87.*\); this machine has "
        r"TensorRT 10\.3\.0 on Fake GPU \(sm_90.*rebuild it from the ONNX model",
    ):
        TRT(engine)
    assert fake.deserialize_calls == calls, "a mismatched engine must not reach TensorRT"
    assert fake.context_stack == []


def test_engine_without_sidecar_that_fails_to_deserialise_is_incompatible(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    engine = _built_engine(TRT, onnx_static, tmp_path)
    sidecar_path(engine).unlink()
    fake.trt_version = "10.7.0"  # this "machine" now has another TensorRT than the engine's
    with pytest.raises(IncompatibleModelError, match=r"no edgedet sidecar.*rebuild it"):
        TRT(engine)
    assert fake.context_stack == [] and fake.contexts_detached == fake.contexts_made


def test_truncated_engine_is_a_load_error(
    TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path
) -> None:
    engine = _built_engine(TRT, onnx_static, tmp_path)
    data = engine.read_bytes()
    engine.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"truncated"):
        TRT(engine)


def test_empty_engine_is_a_load_error(TRT: Any, tmp_path: Path) -> None:
    engine = tmp_path / "empty.engine"
    engine.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"is empty: the file is truncated"):
        TRT(engine)


def test_engine_precision_check(TRT: Any, onnx_static: Path, tmp_path: Path) -> None:
    engine = _built_engine(TRT, onnx_static, tmp_path)
    with pytest.raises(
        IncompatibleModelError, match=r"built with precision fp16.*'fp32' was asked"
    ):
        TRT(engine, precision="fp32")


def test_missing_model_file(TRT: Any, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model file not found"):
        TRT(tmp_path / "nope.engine")


# -- build options ------------------------------------------------------------------------------


def test_qdq_model_builds_int8(TRT: Any, fake: Any, onnx_qdq: Path, tmp_path: Path) -> None:
    with TRT(onnx_qdq, cache_dir=tmp_path / "cache") as rt:
        assert rt.precision == "int8"
        x = _x()
        out = rt.infer({"images": x})
    config = fake.configs[-1]
    assert config.get_flag(fake_tensorrt.BuilderFlag.INT8)
    assert config.get_flag(fake_tensorrt.BuilderFlag.FP16)  # float layers stay fp16
    np.testing.assert_allclose(out["boxes"], _ort(onnx_qdq, x)["boxes"], rtol=1e-6)


def test_int8_without_qdq_is_refused(TRT: Any, onnx_static: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"needs a quantized \(Q/DQ\) ONNX model"):
        TRT(onnx_static, cache_dir=tmp_path / "cache", precision="int8")


def test_dynamic_batch_gets_a_profile_up_to_max_batch(
    TRT: Any, fake: Any, onnx_dynamic: Path, tmp_path: Path
) -> None:
    with TRT(onnx_dynamic, cache_dir=tmp_path / "cache", max_batch=4) as rt:
        assert rt.inputs[0].shape == (None, 3, 4, 4)
        profile = fake.configs[-1].profiles[0]
        assert profile.get_shape("images") == [(1, 3, 4, 4), (4, 3, 4, 4), (4, 3, 4, 4)]
        out = rt.infer({"images": _x(3)})
        assert out["boxes"].shape == (3, 3, 4, 4)
        np.testing.assert_allclose(out["scores"], _x(3) - 1, rtol=1e-6)
        with pytest.raises(
            InvalidInputError,
            match=r"outside what engine .* accepts \(images\[\?,3,4,4\]:float32, from "
            r"\(1, 3, 4, 4\) to \(4, 3, 4, 4\)\).*max_batch",
        ):
            rt.infer({"images": _x(5)})
        # a refused shape leaves the runtime usable
        np.testing.assert_allclose(rt.infer({"images": _x(2)})["boxes"], _x(2) * 2 + 1, rtol=1e-6)


def test_dla_core_is_configured(TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    with TRT(onnx_static, cache_dir=tmp_path / "cache", device="dla:1") as rt:
        config = fake.configs[-1]
        assert config.default_device_type == fake_tensorrt.DeviceType.DLA
        assert config.DLA_core == 1
        assert config.get_flag(fake_tensorrt.BuilderFlag.GPU_FALLBACK)
        assert fake.runtime_dla_cores[-1] == 1
        assert rt.describe()["device"] == "Fake GPU (DLA core 1, GPU fallback allowed)"
        assert read_sidecar(rt.engine_path)["tensorrt"]["dla_core"] == 1  # type: ignore[index]


def test_dla_errors(TRT: Any, onnx_static: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInputError, match=r"DLA core 5 does not exist: this device has 2"):
        TRT(onnx_static, cache_dir=cache, dla_core=5)
    with pytest.raises(InvalidInputError, match=r"DLA runs FP16 or INT8 only"):
        TRT(onnx_static, cache_dir=cache, device="dla:0", precision="fp32")
    with pytest.raises(InvalidInputError, match=r"disagree"):
        TRT(onnx_static, cache_dir=cache, device="dla:0", dla_core=1)
    with pytest.raises(InvalidInputError, match=r"'cuda', 'cuda:N' or 'dla:N'"):
        TRT(onnx_static, cache_dir=cache, device="gpu0")


def test_parser_errors_are_listed(TRT: Any, tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    node = helper.make_node("FancyNms", ["images"], ["y"], domain="com.example")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)],
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    with pytest.raises(
        ModelLoadError, match=r"parser rejected .*No importer registered for op: FancyNms"
    ):
        TRT(path, cache_dir=tmp_path / "cache")


def test_unknown_option_and_bad_precision(TRT: Any, onnx_static: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"unknown option\(s\) \['threads'\]"):
        TRT(onnx_static, threads=4)
    with pytest.raises(InvalidInputError, match=r"precision must be one of"):
        TRT(onnx_static, precision="bf16")
    with pytest.raises(InvalidInputError, match=r"reads \.onnx, \.engine or \.plan"):
        TRT(onnx_static.with_suffix(".xml"))


# -- buffers, contexts, closing -----------------------------------------------------------------


def test_buffers_allocated_once_per_shape(
    TRT: Any, fake: Any, onnx_dynamic: Path, tmp_path: Path
) -> None:
    with TRT(onnx_dynamic, cache_dir=tmp_path / "cache", max_batch=4) as rt:
        base = fake.mem_allocs
        rt.infer({"images": _x(1)})
        assert fake.mem_allocs == base + 3  # one input, two outputs
        for seed in range(3):
            out = rt.infer({"images": _x(1, seed)})
            np.testing.assert_allclose(out["boxes"], _x(1, seed) * 2 + 1, rtol=1e-6)
        assert fake.mem_allocs == base + 3, "same shape: no new allocation"
        rt.infer({"images": _x(2)})
        assert fake.mem_allocs == base + 6 and fake.mem_frees == 3, "new shape: reallocated"
        assert fake.executions == 5
    assert fake.device_memory == {}, "close() frees every device buffer"


def test_outputs_are_copies(TRT: Any, onnx_static: Path, tmp_path: Path) -> None:
    with TRT(onnx_static, cache_dir=tmp_path / "cache") as rt:
        first = rt.infer({"images": _x(seed=1)})
        rt.infer({"images": _x(seed=2)})
    np.testing.assert_allclose(first["boxes"], _x(seed=1) * 2 + 1, rtol=1e-6)


def test_wrong_dtype_and_shape(TRT: Any, onnx_static: Path, tmp_path: Path) -> None:
    with TRT(onnx_static, cache_dir=tmp_path / "cache") as rt:
        with pytest.raises(InvalidInputError, match=r"must be float32 .*got complex64"):
            rt.infer({"images": np.ones((1, 3, 4, 4), np.complex64)})
        with pytest.raises(InvalidInputError, match=r"must have shape"):
            rt.infer({"images": np.ones((1, 3, 5, 4), np.float32)})
        # float64 and integer arrays are cast
        np.testing.assert_allclose(
            rt.infer({"images": _x().astype(np.float64)})["boxes"], _x() * 2 + 1, rtol=1e-6
        )
        ones = np.ones((1, 3, 4, 4), np.int64)
        np.testing.assert_allclose(rt.infer({"images": ones})["boxes"], ones * 3.0)


def test_infer_from_another_thread(TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    results: list[dict[str, np.ndarray]] = []
    with TRT(onnx_static, cache_dir=tmp_path / "cache") as rt:
        assert fake.context_stack == [], "the context is pushed per call, not left current"
        worker = threading.Thread(target=lambda: results.append(rt.infer({"images": _x()})))
        worker.start()
        worker.join()
    assert len(results) == 1
    np.testing.assert_allclose(results[0]["boxes"], _x() * 2 + 1, rtol=1e-6)


def test_close_is_idempotent(TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    rt = TRT(onnx_static, cache_dir=tmp_path / "cache")
    rt.infer({"images": _x()})
    rt.close()
    rt.close()
    assert fake.contexts_made == 1 and fake.contexts_detached == 1
    assert fake.context_stack == [] and fake.device_memory == {}
    with pytest.raises(InvalidInputError, match=r"is closed"):
        rt.infer({"images": _x()})


def test_describe_and_probe(TRT: Any, fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    with TRT(onnx_static, cache_dir=tmp_path / "cache") as rt:
        d = rt.describe()
    assert d["runtime"] == "tensorrt" and d["runtime_version"] == fake_tensorrt.FAKE_TRT_VERSION
    assert d["device"] == "Fake GPU" and d["precision"] == "fp16"
    info = TRT.probe()
    assert info.pop("cuda_binding") == d["cuda_binding"] in ("cuda-python", "pycuda")
    assert info == {"version": fake_tensorrt.FAKE_TRT_VERSION, "devices": ["Fake GPU"]}
    fake.cuda_fails = True
    info = TRT.probe()
    assert info["available"] is False and "no CUDA-capable device" in info["reason"]
    with pytest.raises(RuntimeUnavailableError, match=r"cannot start CUDA"):
        TRT(onnx_static, cache_dir=tmp_path / "cache")


def test_missing_tensorrt_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uses the real (absent) tensorrt module, not the fake."""
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; this test needs it absent")
    for name in (*_OURS, "tensorrt", "pycuda", "pycuda.driver"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    from edgedet.runtimes.registry import runtime_class

    with pytest.raises(
        RuntimeUnavailableError,
        match=r"runtime 'tensorrt' needs the tensorrt and cuda-python package \(the 'tensorrt' extra\): "
        r"pip install .+\[tensorrt\][^;]*; on a Jetson, TensorRT comes with JetPack",
    ):
        runtime_class("tensorrt")
    for name in _OURS:
        sys.modules.pop(name, None)


def test_registry_protocols_and_probe(fake: Any, onnx_static: Path, tmp_path: Path) -> None:
    from edgedet.runtimes.base import DescribesItself, ReportsPrecision, Runtime
    from edgedet.runtimes.registry import probe, runtime_class

    cls = runtime_class("tensorrt")
    assert cls.name == "tensorrt"
    with cls(onnx_static, cache_dir=tmp_path / "cache") as rt:
        assert isinstance(rt, Runtime)
        assert isinstance(rt, ReportsPrecision)
        assert isinstance(rt, DescribesItself)
    info = probe("tensorrt")
    assert info["available"] is True and info["devices"] == ["Fake GPU"]


def test_dynamic_image_size_is_refused(TRT: Any, tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    path = _save(helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y]),
                 tmp_path / "hw.onnx")  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"dynamic dimensions other than the batch"):
        TRT(path, cache_dir=tmp_path / "cache", max_batch=2)


def test_dynamic_image_size_is_fixed_from_meta(TRT: Any, fake: Any, tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph([helper.make_node("Relu", ["images"], ["y"])], "g", [x], [y])
    plain = _save(graph, tmp_path / "hw.onnx")
    meta = ModelMeta(family="yolov8", input_size=(8, 6))
    with_meta = write_onnx_meta(plain, tmp_path / "hw_meta.onnx", meta)
    with TRT(with_meta, cache_dir=tmp_path / "cache", max_batch=2) as rt:
        profile = fake.configs[-1].profiles[0]
        assert profile.get_shape("images") == [(1, 3, 8, 6), (2, 3, 8, 6), (2, 3, 8, 6)]
        feed = np.random.default_rng(0).normal(size=(2, 3, 8, 6)).astype(np.float32)
        np.testing.assert_allclose(rt.infer({"images": feed})["y"], np.maximum(feed, 0))
        # the image size is fixed by the profile (min == max), so the spec says so
        assert rt.inputs[0].shape == (None, 3, 8, 6)
        with pytest.raises(InvalidInputError, match=r"must have shape images\[\?,3,8,6\]"):
            rt.infer({"images": np.zeros((1, 3, 16, 16), np.float32)})


def test_missing_cuda_device_index(TRT: Any, onnx_static: Path) -> None:
    with pytest.raises(
        InvalidInputError, match=r"device cuda:3 does not exist: this machine has 1"
    ):
        TRT(onnx_static, device="cuda:3")


def test_dynamic_quantization_is_refused_with_advice(TRT: Any, tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4])
    node = helper.make_node("DynamicQuantizeLinear", ["images"], ["y", "s", "zp"])
    path = _save(helper.make_graph([node], "g", [x], [y]), tmp_path / "dyn_int8.onnx")
    with pytest.raises(
        ModelLoadError, match=r"TensorRT cannot import \(DynamicQuantizeLinear.*float model"
    ):
        TRT(path, cache_dir=tmp_path / "cache")


@pytest.mark.testdata
def test_detector_on_fake_tensorrt_matches_onnxruntime(
    fake: Any, models_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    """The whole Detector path (meta from the ONNX, preprocess, decode, NMS) over this runtime."""
    import cv2

    import edgedet

    model = models_dir / "yolov8n_dequant_fp32_640.onnx"
    image = cv2.imread(str(datasets_dir / "coco_tiny_val2017" / "val2017" / "000000005001.jpg"))
    assert image is not None
    with edgedet.load(model, runtime="onnxruntime") as ref_det:
        ref = ref_det(image)
    with edgedet.load(
        model, runtime="tensorrt", runtime_options={"cache_dir": tmp_path / "cache"}
    ) as det:
        assert det.runtime_name == "tensorrt"
        got = det(image)
    assert len(ref) > 0
    np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1e-3)
    np.testing.assert_array_equal(got.class_ids, ref.class_ids)
    # the cached engine's sidecar carries the Ultralytics-derived meta
    engine = next((tmp_path / "cache").glob("*.engine"))
    carried = read_meta(engine)
    assert carried is not None and carried.family == "yolov8" and len(carried.class_names) == 80
