"""A small fake of the ``tensorrt`` (10.x) and ``pycuda.driver`` modules, for tests only.

TensorRT and pycuda install only from NVIDIA's index / JetPack and need a GPU, so the tests of
edgedet's TensorRT runtime run against this test double instead. It fakes only the documented
calls edgedet makes (TensorRT 10 tensor-name API, builder, ONNX parser, timing cache, DLA
settings; pycuda contexts, streams, pinned/device memory) and checks how they are used:

- the "builder" parses the ONNX model with ``onnx``, refuses non-standard-domain ops with a parser
  error, refuses a dynamic input without an optimisation profile (as TensorRT does), and
  serialises a JSON "engine" holding the ONNX model, I/O specs, profile, flags and the
  TensorRT version / GPU it was built for;
- ``deserialize_cuda_engine`` returns None for bytes that are not such an engine, or one built
  with another (fake) TensorRT version or GPU, as the real one does;
- ``execute_async_v3`` really runs the embedded ONNX model with ONNX Runtime (CPU) on the bytes
  found at the tensor addresses, so data movement, shapes and output keying are tested, not
  mocked;
- "device memory" is numpy byte arrays keyed by fake pointer ints; allocation, copies and
  execution require a current (pushed) CUDA context, so context handling is tested too.

Simplification, stated: after ``set_input_shape``, a dynamic output dimension takes the value of
the input dimension with the same ONNX symbolic name (``N``, ``H``...); one with no such input
stays -1 (as a data-dependent shape would).

Not a reimplementation: no precision effects (everything runs in float32), no tactics, no DLA.
"""

from __future__ import annotations

import base64
import enum
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FAKE_TRT_VERSION = "10.3.0"
_MAGIC = b"FAKETRT\x00"


@dataclass
class FakeState:
    """Everything the fake records, and the knobs a test may turn."""

    gpu_name: str = "Fake GPU"
    compute_capability: tuple[int, int] = (9, 0)
    device_count: int = 1
    num_dla_cores: int = 2
    cuda_fails: bool = False
    trt_version: str = FAKE_TRT_VERSION
    builds: int = 0
    configs: list[Any] = field(default_factory=list)
    timing_cache_inputs: list[bytes] = field(default_factory=list)
    deserialize_calls: int = 0
    runtime_dla_cores: list[int | None] = field(default_factory=list)
    executions: int = 0
    mem_allocs: int = 0
    mem_frees: int = 0
    device_memory: dict[int, np.ndarray] = field(default_factory=dict)
    next_ptr: int = 0x10000
    context_stack: list[Any] = field(default_factory=list)
    contexts_made: int = 0
    contexts_detached: int = 0


STATE = FakeState()


# == tensorrt ===================================================================================


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NP = {
    DataType.FLOAT: np.float32,
    DataType.HALF: np.float16,
    DataType.INT8: np.int8,
    DataType.INT32: np.int32,
    DataType.BOOL: np.bool_,
    DataType.UINT8: np.uint8,
    DataType.INT64: np.int64,
}
# ONNX TensorProto elem_type -> DataType
_FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32,
              9: DataType.BOOL, 2: DataType.UINT8, 7: DataType.INT64}  # fmt: skip


def nptype(dtype: DataType) -> type:
    return _NP[dtype]


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    TF32 = 7


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class NetworkDefinitionCreationFlag(enum.Enum):
    STRONGLY_TYPED = 1


class Logger:
    VERBOSE = 4
    INFO = 3
    WARNING = 2
    ERROR = 1
    INTERNAL_ERROR = 0

    def __init__(self, min_severity: int = WARNING) -> None:
        self.min_severity = min_severity


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: DataType
    symbols: tuple[str, ...] = ()  # ONNX dim_param per dimension ("" when fixed or unnamed)


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.onnx_bytes: bytes | None = None
        self._inputs: list[_Tensor] = []
        self._outputs: list[_Tensor] = []

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_input(self, index: int) -> _Tensor:
        return self._inputs[index]

    def get_output(self, index: int) -> _Tensor:
        return self._outputs[index]


class ParserError:
    def __init__(self, code: str, desc: str, node: int = -1) -> None:
        self._code, self._desc, self._node = code, desc, node

    def code(self) -> str:
        return self._code

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return f"In node {self._node} ({self._code}): {self._desc}"


def _value_info(vi: Any) -> _Tensor:
    ttype = vi.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim)
    symbols = tuple(d.dim_param for d in ttype.shape.dim)
    return _Tensor(vi.name, dims, _FROM_ONNX[ttype.elem_type], symbols)


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        self.network = network
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as err:  # protobuf DecodeError and friends
            self._errors.append(ParserError("MODEL_DESERIALIZE_FAILED", str(err)))
            return False
        for i, node in enumerate(proto.graph.node):
            if node.domain not in ("", "ai.onnx"):
                self._errors.append(
                    ParserError(
                        "UNSUPPORTED_NODE",
                        f"No importer registered for op: {node.op_type} (domain {node.domain})",
                        i,
                    )
                )
        if self._errors:
            return False
        weights = {t.name for t in proto.graph.initializer}
        self.network._inputs = [_value_info(v) for v in proto.graph.input if v.name not in weights]
        self.network._outputs = [_value_info(v) for v in proto.graph.output]
        self.network.onnx_bytes = bytes(model)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
        if not (len(lo) == len(mid) == len(hi)) or any(
            not a <= b <= c for a, b, c in zip(lo, mid, hi)
        ):
            raise RuntimeError("Shape provided for min/opt/max is inconsistent with other shapes.")
        self.shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[tuple[int, ...]]:
        return list(self.shapes.get(input, ()))


class ITimingCache:
    def __init__(self, blob: bytes) -> None:
        self.entries = int(blob.split(b":")[1]) if blob.startswith(b"FAKECACHE:") else 0

    def serialize(self) -> bytes:
        return b"FAKECACHE:%d" % self.entries


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags_set: set[BuilderFlag] = set()
        self.pool_limits: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags_set.add(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags_set

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pool_limits[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self.pool_limits.get(pool, 0)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        STATE.timing_cache_inputs.append(bytes(serialized_timing_cache))
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.timing_cache = cache
        return True


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    @property
    def num_DLA_cores(self) -> int:
        return STATE.num_dla_cores

    platform_has_fast_fp16 = True

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> bytes | None:
        STATE.builds += 1
        STATE.configs.append(config)
        if network.onnx_bytes is None:
            return None
        profile = config.profiles[0].shapes if config.profiles else {}
        for t in network._inputs:
            if any(d < 0 for d in t.shape) and t.name not in profile:
                return None  # TensorRT: "Network has dynamic or shape inputs, but no profile"
        if config.default_device_type == DeviceType.DLA and not (
            0 <= config.DLA_core < STATE.num_dla_cores
        ):
            return None
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        payload = {
            "trt_version": STATE.trt_version,
            "gpu_name": STATE.gpu_name,
            "compute_capability": list(STATE.compute_capability),
            "onnx": base64.b64encode(network.onnx_bytes).decode(),
            "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
            "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
            "symbols": {t.name: list(t.symbols) for t in (*network._inputs, *network._outputs)},
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
            "flags": sorted(f.name for f in config.flags_set),
            "dla_core": config.DLA_core if config.default_device_type == DeviceType.DLA else None,
        }
        return _MAGIC + json.dumps(payload).encode()


class ICudaEngine:
    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self._io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in payload["inputs"]]
        self._io += [
            (n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in payload["outputs"]
        ]
        self._by_name = {t[0]: t for t in self._io}

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._by_name[name][3] if name in self._by_name else TensorIOMode.NONE

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._by_name[name][1]

    def get_tensor_dtype(self, name: str) -> DataType:
        return self._by_name[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        prof = self.payload["profile"].get(name)
        if prof is None:
            raise RuntimeError(f"no optimization profile {profile_index} for tensor {name}")
        return [tuple(s) for s in prof]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._session: Any = None

    def set_input_shape(self, name: str, shape: Any) -> bool:
        want = self.engine.get_tensor_shape(name)
        got = tuple(int(d) for d in shape)
        if len(got) != len(want) or any(w >= 0 and w != g for w, g in zip(want, got)):
            return False
        prof = self.engine.payload["profile"].get(name)
        if prof is not None:
            lo, _opt, hi = prof
            if any(not a <= g <= b for a, g, b in zip(lo, got, hi)):
                return False
        self._shapes[name] = got
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        shape = self.engine.get_tensor_shape(name)
        if self.engine.get_tensor_mode(name) == TensorIOMode.INPUT:
            return self._shapes.get(name, shape)
        symbols = self.engine.payload["symbols"]
        known: dict[str, int] = {}
        for name_in, dims in self._shapes.items():
            for sym, value in zip(symbols[name_in], dims):
                if sym:
                    known[sym] = value
        return tuple(known.get(sym, -1) if d < 0 else d for d, sym in zip(shape, symbols[name]))

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        import onnxruntime as ort

        _require_context("execute_async_v3")
        if self._session is None:
            model = base64.b64decode(self.engine.payload["onnx"])
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        feeds: dict[str, np.ndarray] = {}
        for name, _shape, dtype in self.engine.payload["inputs"]:
            if name not in self._addresses or name not in self._shapes:
                return False
            raw = STATE.device_memory[self._addresses[name]]
            shape = self._shapes[name]
            count = int(np.prod(shape))
            feeds[name] = raw.view(_NP[DataType[dtype]])[:count].reshape(shape)
        outs = self._session.run(None, feeds)
        for (name, _shape, dtype), value in zip(self.engine.payload["outputs"], outs):
            if name not in self._addresses:
                return False
            raw = STATE.device_memory[self._addresses[name]]
            data = np.ascontiguousarray(value, dtype=_NP[DataType[dtype]]).view(np.uint8).ravel()
            if data.size > raw.size:
                return False  # buffer too small: real TensorRT would write out of bounds
            raw[: data.size] = data
        STATE.executions += 1
        return True


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        STATE.deserialize_calls += 1
        STATE.runtime_dla_cores.append(self.DLA_core if self.DLA_core >= 0 else None)
        data = bytes(serialized_engine)
        if not data.startswith(_MAGIC):
            return None
        try:
            payload = json.loads(data[len(_MAGIC) :])
        except ValueError:
            return None
        if (
            payload.get("trt_version") != STATE.trt_version
            or payload.get("gpu_name") != STATE.gpu_name
            or tuple(payload.get("compute_capability", ())) != STATE.compute_capability
        ):
            return None  # "The engine plan file is not compatible with this version of TensorRT"
        return ICudaEngine(payload)


# == pycuda.driver ==============================================================================


class Error(Exception):
    """pycuda.driver.Error, base of LogicError / RuntimeError / MemoryError."""


class LogicError(Error):
    pass


def _require_context(what: str) -> None:
    if not STATE.context_stack:
        raise LogicError(f"{what} failed: invalid device context (no context is current)")


def init(flags: int = 0) -> None:
    if STATE.cuda_fails:
        raise Error("cuInit failed: no CUDA-capable device is detected")


class Context:
    def __init__(self, device: Device) -> None:
        self.device = device
        self.detached = False

    def push(self) -> None:
        if self.detached:
            raise LogicError("cuCtxPushCurrent failed: context was detached")
        STATE.context_stack.append(self)

    @staticmethod
    def pop() -> Context:
        if not STATE.context_stack:
            raise LogicError("cuCtxPopCurrent failed: no context is current")
        return STATE.context_stack.pop()  # type: ignore[no-any-return]

    def detach(self) -> None:
        if self in STATE.context_stack:
            raise LogicError("detaching a context that is still current")
        self.detached = True
        STATE.contexts_detached += 1


class Device:
    def __init__(self, number: int) -> None:
        if not 0 <= number < STATE.device_count:
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self.number = number

    @staticmethod
    def count() -> int:
        return STATE.device_count

    def name(self) -> str:
        return STATE.gpu_name

    def compute_capability(self) -> tuple[int, int]:
        return STATE.compute_capability

    def make_context(self, flags: int = 0) -> Context:
        ctx = Context(self)
        STATE.context_stack.append(ctx)  # like cuCtxCreate: the new context is made current
        STATE.contexts_made += 1
        return ctx


class Stream:
    _next = 1

    def __init__(self, flags: int = 0) -> None:
        _require_context("cuStreamCreate")
        self.handle = Stream._next
        Stream._next += 1

    def synchronize(self) -> None:
        _require_context("cuStreamSynchronize")


class DeviceAllocation:
    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        _require_context("cuMemFree")
        if STATE.device_memory.pop(self.ptr, None) is not None:
            STATE.mem_frees += 1


def mem_alloc(nbytes: int) -> DeviceAllocation:
    _require_context("cuMemAlloc")
    ptr = STATE.next_ptr
    STATE.next_ptr += int(nbytes) + 256
    STATE.device_memory[ptr] = np.zeros(int(nbytes), np.uint8)
    STATE.mem_allocs += 1
    return DeviceAllocation(ptr)


def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
    _require_context("cuMemHostAlloc")
    return np.empty(shape, dtype)


def _dev(ptr: Any) -> np.ndarray:
    return STATE.device_memory[int(ptr)]


def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyHtoDAsync")
    data = np.ascontiguousarray(src).view(np.uint8).ravel()
    _dev(dest)[: data.size] = data


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyDtoHAsync")
    flat = dest.reshape(-1).view(np.uint8)
    flat[:] = _dev(src)[: flat.size]


# == installing =================================================================================

_TRT_NAMES = (
    "DataType", "nptype", "TensorIOMode", "BuilderFlag", "MemoryPoolType", "DeviceType",
    "NetworkDefinitionCreationFlag", "Logger", "INetworkDefinition", "ParserError", "OnnxParser",
    "IOptimizationProfile", "ITimingCache", "IBuilderConfig", "Builder", "ICudaEngine",
    "IExecutionContext", "Runtime",
)  # fmt: skip
_CUDA_NAMES = (
    "Error", "LogicError", "init", "Context", "Device", "Stream", "DeviceAllocation", "mem_alloc",
    "pagelocked_empty", "memcpy_htod_async", "memcpy_dtoh_async",
)  # fmt: skip


def make_modules(state: FakeState) -> dict[str, types.ModuleType]:
    """Fresh ``tensorrt``, ``pycuda`` and ``pycuda.driver`` module objects backed by ``state``."""
    global STATE
    STATE = state
    this = sys.modules[__name__]
    trt = types.ModuleType("tensorrt", "fake tensorrt (tests/runtimes/fake_tensorrt.py)")
    for name in _TRT_NAMES:
        setattr(trt, name, getattr(this, name))
    trt.__version__ = state.trt_version  # type: ignore[attr-defined]
    driver = types.ModuleType("pycuda.driver", "fake pycuda.driver")
    for name in _CUDA_NAMES:
        setattr(driver, name, getattr(this, name))
    pycuda = types.ModuleType("pycuda", "fake pycuda")
    pycuda.__path__ = []  # type: ignore[attr-defined]  # a package, so "pycuda.driver" imports
    pycuda.driver = driver  # type: ignore[attr-defined]
    return {"tensorrt": trt, "pycuda": pycuda, "pycuda.driver": driver}
