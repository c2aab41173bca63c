"""A small fake of the ``tensorrt`` (8.6, 10.x, 11.x) and ``pycuda.driver`` modules, for tests only.

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
the input dimension with the same ONNX symbolic name (``N``, ``H``...); any other is found by
running the model on zeros (TensorRT computes it from the graph), except in a graph with
data-dependent ops (NonMaxSuppression, NonZero, Unique), where it stays -1.

Versions (``FakeState.trt_version``; `make_modules` builds the module for it): each exposes only
names the imitated release has (checked against the table in ``runtimes/trt_api_surface.json``
by ``test_trt_api_surface.py``):

- 8.6: ``create_network(0)`` is an implicit-batch network, which the ONNX parser refuses (as
  onnx-tensorrt's ``ModelImporter::importModel`` does); ``EXPLICIT_BATCH`` must be set.
- 10.x: explicit batch always; ``BuilderFlag.FP16/INT8`` and the implicit calibrators exist.
- 11.x: no ``BuilderFlag.FP16/INT8``, no ``IInt8EntropyCalibrator2`` / ``int8_calibrator``;
  networks are strongly typed (the engine's precision is the graph's).

Plugins: ops named in ``PLUGIN_OPS`` parse as TensorRT plugins (the parser registers the standard
plugins itself, as onnx-tensorrt does); an engine holding one deserialises only after
``init_libnvinfer_plugins`` (or a parse) in the same "process" (``FakeState``), else None.

DLA: a DLA build whose optimisation profile has min != max silently "falls back" to the GPU
(recorded in the engine payload as ``dla_fell_back``), as real TensorRT does with GPU_FALLBACK.

Implicit calibrator (8.6 / 10.x): when ``config.int8_calibrator`` is set with the INT8 flag, the
builder pulls batches from it; a Python exception in ``get_batch`` is printed to stderr and read
as "no more batches", as the pybind11 trampoline in ``pyInt8.cpp`` does.

Attribute accesses on the fake's classes, enums and module are recorded in
``FakeState.accessed`` as ``(owner, name)`` pairs, so a test can check every TensorRT name edgedet
touches against the published API of each version.

Not a reimplementation: no precision effects (everything runs in float32), no tactics, no DLA
kernels.
"""

from __future__ import annotations

import base64
import ctypes
import enum
import json
import re
import sys
import traceback
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
    gpu_names: list[str] | None = None  # per device index; None: gpu_name for every device
    sm_count: int = 132
    total_memory: int = 80 << 30
    plugins_registered: bool = False  # a fresh "process" has an empty plugin registry
    build_devices: list[int] = field(default_factory=list)  # device of the context per build
    calibration_batches: int = 0
    accessed: set[tuple[str, str]] = field(default_factory=set)
    pinned: dict[int, np.ndarray] = field(default_factory=dict)  # cuMemHostAlloc'ed host memory
    timing_cache_mismatch: bool = False  # set_timing_cache(cache, False) returns False

    @property
    def trt_major(self) -> int:
        return int(self.trt_version.split(".")[0])


STATE = FakeState()

#: Ops whose output shapes depend on the data: TensorRT reports -1 for them after shape setting.
_DATA_DEPENDENT_OPS = frozenset({"NonMaxSuppression", "NonZero", "Unique"})

#: Op types the fake parser imports as TensorRT plugins (from the standard plugin library).
PLUGIN_OPS = frozenset({"EfficientNMS_TRT", "BatchedNMSDynamic_TRT"})


def _record(owner: str, name: str) -> None:
    """Record a read of ``owner.name`` made by edgedet's code (the fake's own reads and the
    tests' are not TensorRT calls edgedet makes)."""
    if name.startswith("_"):
        return
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller.startswith("edgedet."):
        STATE.accessed.add((owner, name))


class _RecordedClass(type):
    """Records public reads on the class itself (``trt.Logger.WARNING``)."""

    def __getattribute__(cls, name: str) -> Any:
        value = super().__getattribute__(name)
        if type.__getattribute__(cls, "__module__") == __name__:
            own = type.__getattribute__(cls, "__dict__")
            _record(own.get("_api_name", type.__getattribute__(cls, "__name__")), name)
        return value


class _Recorded(metaclass=_RecordedClass):
    """Records public attribute reads and writes on instances (see FakeState.accessed);
    subclasses that stand for another TensorRT class name set ``_api_name``."""

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)  # a failed probe (hasattr) is not a use
        cls = type(self)
        if cls.__module__ == __name__:  # not edgedet's own subclasses (its calibrator)
            _record(cls.__dict__.get("_api_name", cls.__name__), name)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if cls.__module__ == __name__:
            _record(cls.__dict__.get("_api_name", cls.__name__), name)
        object.__setattr__(self, name, value)


class _RecordedEnumMeta(enum.EnumMeta):
    """Records public member reads on an enum class (``trt.BuilderFlag.FP16``)."""

    def __getattribute__(cls, name: str) -> Any:
        if not name.startswith("_") and name in type.__getattribute__(cls, "_member_map_"):
            _record(re.sub(r"\d+$", "", type.__getattribute__(cls, "__name__")), name)
        return super().__getattribute__(name)


# == tensorrt ===================================================================================


class DataType(enum.Enum, metaclass=_RecordedEnumMeta):
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


class DataType8(enum.Enum, metaclass=_RecordedEnumMeta):
    """TensorRT 8.6: no INT64 (its ONNX parser casts INT64 tensors down to INT32)."""

    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


def nptype(dtype: Any) -> type:
    return _NP[DataType[dtype.name]]


class TensorIOMode(enum.Enum, metaclass=_RecordedEnumMeta):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.IntEnum, metaclass=_RecordedEnumMeta):
    """TensorRT 8.6 / 10.x (a subset of both)."""

    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    TF32 = 7


class BuilderFlag11(enum.IntEnum, metaclass=_RecordedEnumMeta):
    """TensorRT 11: FP16 / INT8 / BF16 / FP8 are gone (pyCore.cpp at v11.1)."""

    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5
    TF32 = 7


class MemoryPoolType(enum.IntEnum, metaclass=_RecordedEnumMeta):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1


class DeviceType(enum.IntEnum, metaclass=_RecordedEnumMeta):
    GPU = 0
    DLA = 1


class NetworkDefinitionCreationFlag8(enum.IntEnum, metaclass=_RecordedEnumMeta):
    """TensorRT 8.6: flags=0 is an implicit-batch network."""

    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


class NetworkDefinitionCreationFlag(enum.IntEnum, metaclass=_RecordedEnumMeta):
    """TensorRT 10.x: EXPLICIT_BATCH is deprecated and ignored."""

    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class NetworkDefinitionCreationFlag11(enum.IntEnum, metaclass=_RecordedEnumMeta):
    """TensorRT 11: always explicit batch and strongly typed."""

    STRONGLY_TYPED = 0


def _flags_enum() -> Any:
    return {8: NetworkDefinitionCreationFlag8, 10: NetworkDefinitionCreationFlag}.get(
        STATE.trt_major, NetworkDefinitionCreationFlag11
    )


def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
    """Registers the standard plugins (pyPlugin.cpp ``initLibNvInferPlugins``)."""
    STATE.plugins_registered = True
    return True


class ILogger(_Recorded):
    """Base class of Python loggers; Severity values exported on it (pyCore.cpp)."""

    VERBOSE = 4
    INFO = 3
    WARNING = 2
    ERROR = 1
    INTERNAL_ERROR = 0

    def __init__(self) -> None:
        pass

    def log(self, severity: int, msg: str) -> None:
        pass


class Logger(ILogger):
    def __init__(self, min_severity: int = ILogger.WARNING) -> None:
        self.min_severity = min_severity


def _log_error(logger: Any, msg: str) -> None:
    """What TensorRT does on a failure: an ERROR through the user's logger."""
    if logger is not None:
        logger.log(ILogger.ERROR, msg)


class _Tensor(_Recorded):
    """``trt.ITensor`` (pyGraph.cpp): the network's inputs and outputs."""

    _api_name = "ITensor"

    def __init__(
        self, name: str, shape: tuple[int, ...], dtype: DataType, symbols: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.shape = shape
        self.dtype = dtype
        self.symbols = symbols  # ONNX dim_param per dimension ("" when fixed or unnamed)


class INetworkDefinition(_Recorded):
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.major = STATE.trt_major
        self.explicit_batch = self.major >= 10 or bool(
            flags & (1 << int(NetworkDefinitionCreationFlag8.EXPLICIT_BATCH))
        )
        self.strongly_typed = self.major >= 11 or (
            self.major == 10 and bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
        )
        self.plugins: list[str] = []
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


class ParserError(_Recorded):
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
    dtype = _FROM_ONNX[ttype.elem_type]
    if dtype == DataType.INT64 and STATE.trt_major < 10:
        dtype = DataType.INT32  # TensorRT 8.x: "Attempting to cast down to INT32"
    return _Tensor(vi.name, dims, dtype, symbols)


class OnnxParser(_Recorded):
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
        if not self.network.explicit_batch:
            # onnx-tensorrt ModelImporter::importModel on TensorRT 8.x
            self._errors.append(
                ParserError(
                    "INVALID_GRAPH",
                    "This version of the ONNX parser only supports TensorRT "
                    "INetworkDefinitions with an explicit batch dimension. Please ensure the "
                    "network was initialized with the EXPLICIT_BATCH NetworkDefinitionCreationFlag.",
                )
            )
            return False
        STATE.plugins_registered = True  # the parser calls initLibNvInferPlugins itself
        for i, node in enumerate(proto.graph.node):
            if node.op_type in PLUGIN_OPS:
                self.network.plugins.append(node.op_type)
                continue
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


class IOptimizationProfile(_Recorded):
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


class ITimingCache(_Recorded):
    def __init__(self, blob: bytes) -> None:
        self.entries = int(blob.split(b":")[1]) if blob.startswith(b"FAKECACHE:") else 0

    def serialize(self) -> bytes:
        return b"FAKECACHE:%d" % self.entries


class IBuilderConfig(_Recorded):
    """TensorRT 11's config: no ``int8_calibrator`` / ``set_calibration_profile``."""

    def __init__(self) -> None:
        self.flags_set: set[Any] = set()
        self.pool_limits: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing_cache: ITimingCache | None = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_flag(self, flag: Any) -> None:
        self.flags_set.add(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags_set

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pool_limits[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self.pool_limits.get(pool, 0)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        STATE.timing_cache_inputs.append(bytes(serialized_timing_cache))
        blob = bytes(serialized_timing_cache)
        if blob and not blob.startswith(b"FAKECACHE:"):
            return None  # pyCore.cpp: a blob TensorRT cannot read gives nullptr (None)
        return ITimingCache(blob)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if STATE.timing_cache_mismatch and not ignore_mismatch:
            return False  # "the CUDA device property in the provided cache is different"
        self.timing_cache = cache
        return True


class IBuilderConfig10(IBuilderConfig):
    """TensorRT 8.6 / 10.x config: adds the implicit-calibration settings."""

    _api_name = "IBuilderConfig"

    def __init__(self) -> None:
        super().__init__()
        self.int8_calibrator: Any = None
        self.calibration_profile: IOptimizationProfile | None = None

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True


class IInt8Calibrator(_Recorded):
    pass


class IInt8EntropyCalibrator2(IInt8Calibrator):
    """Base class for Python calibrators (pyInt8.cpp's trampoline calls the overrides)."""

    def __init__(self) -> None:
        pass


def _run_calibrator(calibrator: Any, network: INetworkDefinition) -> None:
    """Pull batches as TensorRT does: exceptions are printed, then read as "no more batches"."""
    names = [t.name for t in network._inputs]
    calibrator.read_calibration_cache()
    while True:
        try:
            ptrs = calibrator.get_batch(names)
        except Exception:  # pyInt8.cpp: "[ERROR] Exception caught in get_batch()"
            print("[ERROR] Exception caught in get_batch()", file=sys.stderr)
            traceback.print_exc()
            ptrs = None
        if not ptrs:
            break
        STATE.calibration_batches += 1
    calibrator.write_calibration_cache(b"FAKE-CALIBRATION-TABLE")


class Builder(_Recorded):
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    @property
    def num_DLA_cores(self) -> int:
        return STATE.num_dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig() if STATE.trt_major >= 11 else IBuilderConfig10()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> bytes | None:
        STATE.builds += 1
        STATE.configs.append(config)
        STATE.build_devices.append(
            STATE.context_stack[-1].device.number if STATE.context_stack else 0
        )  # cudart's current device: 0 unless a context for another GPU is current
        if network.onnx_bytes is None:
            return None
        profile = config.profiles[0].shapes if config.profiles else {}
        for t in network._inputs:
            if any(d < 0 for d in t.shape) and t.name not in profile:
                _log_error(self.logger, "Network has dynamic or shape inputs, but no "
                           "optimization profile has been defined.")  # fmt: skip
                return None
        dla = config.default_device_type == DeviceType.DLA
        if dla and not (0 <= config.DLA_core < STATE.num_dla_cores):
            return None
        # DLA needs min == opt == max; with GPU_FALLBACK TensorRT silently uses the GPU instead
        dla_fell_back = dla and any(len({lo, mid, hi}) > 1 for lo, mid, hi in profile.values())
        if dla_fell_back and not config.get_flag(_gpu_fallback_flag()):
            return None
        calibrator = getattr(config, "int8_calibrator", None)
        if calibrator is not None and config.get_flag(BuilderFlag.INT8):
            _run_calibrator(calibrator, network)
        if config.timing_cache is not None:
            config.timing_cache.entries += 1
        payload = {
            "trt_version": STATE.trt_version,
            "gpu_name": _gpu_name(STATE.build_devices[-1]),
            "compute_capability": list(STATE.compute_capability),
            "onnx": base64.b64encode(network.onnx_bytes).decode(),
            "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
            "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
            "symbols": {t.name: list(t.symbols) for t in (*network._inputs, *network._outputs)},
            "profile": {k: [list(s) for s in v] for k, v in profile.items()},
            "flags": sorted(f.name for f in config.flags_set),
            "strongly_typed": network.strongly_typed,
            "plugins": list(network.plugins),
            "dla_core": config.DLA_core if dla else None,
            "dla_fell_back": dla_fell_back,
        }
        return _MAGIC + json.dumps(payload).encode()


def _gpu_fallback_flag() -> Any:
    return BuilderFlag11.GPU_FALLBACK if STATE.trt_major >= 11 else BuilderFlag.GPU_FALLBACK


def _gpu_name(index: int) -> str:
    return STATE.gpu_names[index] if STATE.gpu_names else STATE.gpu_name


class ICudaEngine(_Recorded):
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

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)


class LayerInformationFormat(enum.IntEnum, metaclass=_RecordedEnumMeta):
    ONELINE = 0
    JSON = 1


class ProfilingVerbosity(enum.IntEnum, metaclass=_RecordedEnumMeta):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class EngineInspector(_Recorded):
    """One "layer" per engine: on the DLA when built for it and not fallen back to the GPU."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        p = self.engine.payload
        device = "DLA" if p.get("dla_core") is not None and not p.get("dla_fell_back") else "GPU"
        return json.dumps({"Layers": [{"Name": "fake", "Device": device}]})


class IExecutionContext(_Recorded):
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
        dims = tuple(known.get(sym, -1) if d < 0 else d for d, sym in zip(shape, symbols[name]))
        if any(d < 0 for d in dims) and not self._data_dependent():
            dims = self._shape_by_running(name, dims)
        return dims

    def _data_dependent(self) -> bool:
        import onnx

        model = onnx.load_from_string(base64.b64decode(self.engine.payload["onnx"]))
        return any(n.op_type in _DATA_DEPENDENT_OPS for n in model.graph.node)

    def _shape_by_running(self, name: str, dims: tuple[int, ...]) -> tuple[int, ...]:
        """TensorRT computes output shapes from the graph (8400 = f(H, W)); the fake runs the
        model on zeros of the set input shapes to get them."""
        inputs = self.engine.payload["inputs"]
        if any(n not in self._shapes for n, _s, _d in inputs):
            return dims
        feeds = {n: np.zeros(self._shapes[n], _NP[DataType[d]]) for n, _s, d in inputs}
        outs = self._session_for_run().run([name], feeds)
        return tuple(int(v) for v in outs[0].shape)

    def _session_for_run(self) -> Any:
        import onnxruntime as ort

        if self._session is None:
            model = base64.b64decode(self.engine.payload["onnx"])
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        return self._session

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        _require_context("execute_async_v3")
        self._session_for_run()
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


class Runtime(_Recorded):
    def __init__(self, logger: Logger) -> None:
        self.logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        STATE.deserialize_calls += 1
        STATE.runtime_dla_cores.append(self.DLA_core if self.DLA_core >= 0 else None)
        data = bytes(serialized_engine)
        try:
            if not data.startswith(_MAGIC):
                raise ValueError("magic")
            payload = json.loads(data[len(_MAGIC) :])
        except ValueError:
            _log_error(self.logger, "1: [stdArchiveReader.cpp::StdArchiveReader::32] Error Code "
                       "1: Serialization (Serialization assertion magicTagRead == kMAGIC_TAG "
                       "failed.Magic tag does not match)")  # fmt: skip
            return None
        current = STATE.context_stack[-1].device.number if STATE.context_stack else 0
        if (
            payload.get("trt_version") != STATE.trt_version
            or payload.get("gpu_name") != _gpu_name(current)
            or tuple(payload.get("compute_capability", ())) != STATE.compute_capability
        ):
            _log_error(self.logger, "The engine plan file is not compatible with this version of "
                       f"TensorRT, expecting library version {STATE.trt_version} got "
                       f"{payload.get('trt_version')}, please rebuild.")  # fmt: skip
            return None
        if payload.get("plugins") and not STATE.plugins_registered:
            _log_error(self.logger, "getPluginCreator could not find plugin: "
                       f"{payload['plugins'][0]} version: 1")  # fmt: skip
            return None
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

    @staticmethod
    def get_current() -> Context | None:
        return STATE.context_stack[-1] if STATE.context_stack else None

    @staticmethod
    def get_device() -> Device:
        _require_context("cuCtxGetDevice")
        return STATE.context_stack[-1].device  # type: ignore[no-any-return]


class device_attribute(enum.IntEnum):
    MULTIPROCESSOR_COUNT = 16


class Device:
    def __init__(self, number: int) -> None:
        if not 0 <= number < STATE.device_count:
            raise LogicError(f"cuDeviceGet failed: invalid device ordinal {number}")
        self.number = number

    @staticmethod
    def count() -> int:
        return STATE.device_count

    def __eq__(self, other: object) -> bool:  # pycuda compares the CUdevice handles
        return isinstance(other, Device) and other.number == self.number

    def __hash__(self) -> int:
        return self.number

    def name(self) -> str:
        return _gpu_name(self.number)

    def compute_capability(self) -> tuple[int, int]:
        return STATE.compute_capability

    def get_attribute(self, attr: device_attribute) -> int:
        if attr != device_attribute.MULTIPROCESSOR_COUNT:
            raise LogicError(f"fake: attribute {attr} not modelled")
        return STATE.sm_count

    def total_memory(self) -> int:
        return STATE.total_memory

    def retain_primary_context(self) -> Context:
        ctx = Context(self)  # cuDevicePrimaryCtxRetain: not made current
        STATE.contexts_made += 1
        return ctx

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


def memcpy_htod(dest: Any, src: np.ndarray) -> None:
    memcpy_htod_async(dest, src)


def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Stream | None = None) -> None:
    _require_context("cuMemcpyDtoHAsync")
    flat = dest.reshape(-1).view(np.uint8)
    flat[:] = _dev(src)[: flat.size]


# == cuda.bindings.driver (cuda-python) =========================================================
# The same fake device as pycuda's above, through the driver API's (CUresult, value) returns.


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_VALUE = 1
    CUDA_ERROR_NO_DEVICE = 100
    CUDA_ERROR_INVALID_DEVICE = 101
    CUDA_ERROR_INVALID_CONTEXT = 201


class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


class _Handle:
    """CUdevice / CUcontext / CUstream / CUdeviceptr: int() gives the raw value."""

    def __init__(self, value: int, obj: Any = None) -> None:
        self.value = value
        self.obj = obj

    def __int__(self) -> int:
        return self.value


_OK = CUresult.CUDA_SUCCESS


def _cu_context_error(what: str) -> CUresult | None:
    return None if STATE.context_stack else CUresult.CUDA_ERROR_INVALID_CONTEXT


_CU_MESSAGES = {  # cuGetErrorString's texts (CUDA driver API reference)
    CUresult.CUDA_ERROR_NO_DEVICE: "no CUDA-capable device is detected",
    CUresult.CUDA_ERROR_INVALID_CONTEXT: "invalid device context",
    CUresult.CUDA_ERROR_INVALID_DEVICE: "invalid device ordinal",
    CUresult.CUDA_ERROR_INVALID_VALUE: "invalid argument",
}


def cuGetErrorString(err: CUresult) -> tuple[CUresult, bytes]:
    return _OK, _CU_MESSAGES.get(CUresult(err), CUresult(err).name).encode()


def cuInit(flags: int) -> tuple[CUresult]:
    return (CUresult.CUDA_ERROR_NO_DEVICE,) if STATE.cuda_fails else (_OK,)


def cuDeviceGetCount() -> tuple[CUresult, int]:
    return _OK, STATE.device_count


def cuDeviceGet(ordinal: int) -> tuple[CUresult, Any]:
    if not 0 <= ordinal < STATE.device_count:
        return CUresult.CUDA_ERROR_INVALID_DEVICE, None
    return _OK, _Handle(ordinal)


def cuDeviceGetName(length: int, dev: _Handle) -> tuple[CUresult, bytes]:
    return _OK, _gpu_name(int(dev)).encode()[: length - 1] + b"\0" * 8


def cuDeviceGetAttribute(attr: CUdevice_attribute, dev: _Handle) -> tuple[CUresult, int]:
    values = {
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: STATE.sm_count,
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: STATE.compute_capability[0],
        CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: STATE.compute_capability[1],
    }
    return _OK, values[attr]


def cuDeviceTotalMem(dev: _Handle) -> tuple[CUresult, int]:
    return _OK, STATE.total_memory


def cuDevicePrimaryCtxRetain(dev: _Handle) -> tuple[CUresult, Any]:
    ctx = Context(Device(int(dev)))
    STATE.contexts_made += 1
    return _OK, _Handle(id(ctx), ctx)


def cuDevicePrimaryCtxRelease(dev: _Handle) -> tuple[CUresult]:
    STATE.contexts_detached += 1
    return (_OK,)


def cuCtxPushCurrent(ctx: _Handle) -> tuple[CUresult]:
    ctx.obj.push()
    return (_OK,)


def cuCtxPopCurrent() -> tuple[CUresult, Any]:
    if not STATE.context_stack:
        return CUresult.CUDA_ERROR_INVALID_CONTEXT, None
    ctx = STATE.context_stack.pop()
    return _OK, _Handle(id(ctx), ctx)


def cuCtxGetCurrent() -> tuple[CUresult, Any]:
    if not STATE.context_stack:
        return _OK, _Handle(0)
    return _OK, _Handle(id(STATE.context_stack[-1]), STATE.context_stack[-1])


def cuCtxGetDevice() -> tuple[CUresult, Any]:
    if not STATE.context_stack:
        return CUresult.CUDA_ERROR_INVALID_CONTEXT, None
    return _OK, _Handle(STATE.context_stack[-1].device.number)


def cuStreamCreate(flags: int) -> tuple[CUresult, Any]:
    err = _cu_context_error("cuStreamCreate")
    if err is not None:
        return err, None
    Stream._next += 1
    return _OK, _Handle(Stream._next)


def cuStreamSynchronize(stream: _Handle) -> tuple[CUresult]:
    return (_cu_context_error("cuStreamSynchronize") or _OK,)


def cuStreamDestroy(stream: _Handle) -> tuple[CUresult]:
    return (_OK,)


def cuMemAlloc(nbytes: int) -> tuple[CUresult, Any]:
    err = _cu_context_error("cuMemAlloc")
    if err is not None:
        return err, None
    return _OK, _Handle(mem_alloc(nbytes).ptr)


def cuMemFree(ptr: _Handle) -> tuple[CUresult]:
    err = _cu_context_error("cuMemFree")
    if err is not None:
        return (err,)
    DeviceAllocation(int(ptr)).free()
    return (_OK,)


def cuMemHostAlloc(nbytes: int, flags: int) -> tuple[CUresult, int]:
    err = _cu_context_error("cuMemHostAlloc")
    if err is not None:
        return err, 0
    buf = np.zeros(int(nbytes), np.uint8)  # real host memory, so edgedet's ctypes view works
    STATE.pinned[buf.ctypes.data] = buf
    return _OK, buf.ctypes.data


def cuMemFreeHost(ptr: int) -> tuple[CUresult]:
    return (_OK,) if STATE.pinned.pop(int(ptr), None) is not None else (CUresult.CUDA_ERROR_INVALID_VALUE,)


def cuMemcpyHtoDAsync(dst: Any, src: int, nbytes: int, stream: Any) -> tuple[CUresult]:
    err = _cu_context_error("cuMemcpyHtoDAsync")
    if err is not None:
        return (err,)
    _dev(int(dst))[: int(nbytes)] = np.frombuffer(ctypes.string_at(int(src), int(nbytes)), np.uint8)
    return (_OK,)


def cuMemcpyHtoD(dst: Any, src: int, nbytes: int) -> tuple[CUresult]:
    return cuMemcpyHtoDAsync(dst, src, nbytes, None)


def cuMemcpyDtoHAsync(dst: int, src: Any, nbytes: int, stream: Any) -> tuple[CUresult]:
    err = _cu_context_error("cuMemcpyDtoHAsync")
    if err is not None:
        return (err,)
    data = np.ascontiguousarray(_dev(int(src))[: int(nbytes)])
    ctypes.memmove(int(dst), data.ctypes.data, int(nbytes))
    return (_OK,)


# == installing =================================================================================

_TRT_NAMES = (
    "DataType", "nptype", "TensorIOMode", "BuilderFlag", "MemoryPoolType", "DeviceType", "ILogger",
    "NetworkDefinitionCreationFlag", "Logger", "INetworkDefinition", "ParserError", "OnnxParser",
    "IOptimizationProfile", "ITimingCache", "IBuilderConfig", "Builder", "ICudaEngine",
    "IExecutionContext", "Runtime", "init_libnvinfer_plugins", "EngineInspector",
    "LayerInformationFormat", "ProfilingVerbosity",
)  # fmt: skip
_CU_NAMES = (
    "CUresult", "CUdevice_attribute", "cuGetErrorString", "cuInit", "cuDeviceGetCount",
    "cuDeviceGet", "cuDeviceGetName", "cuDeviceGetAttribute", "cuDeviceTotalMem",
    "cuDevicePrimaryCtxRetain", "cuDevicePrimaryCtxRelease", "cuCtxPushCurrent",
    "cuCtxPopCurrent", "cuCtxGetCurrent", "cuCtxGetDevice", "cuStreamCreate",
    "cuStreamSynchronize", "cuStreamDestroy", "cuMemAlloc", "cuMemFree", "cuMemHostAlloc",
    "cuMemFreeHost", "cuMemcpyHtoDAsync", "cuMemcpyHtoD", "cuMemcpyDtoHAsync",
)  # fmt: skip
_CUDA_NAMES = (
    "Error", "LogicError", "init", "Context", "Device", "Stream", "DeviceAllocation", "mem_alloc",
    "pagelocked_empty", "memcpy_htod_async", "memcpy_dtoh_async", "device_attribute",
    "memcpy_htod",
)  # fmt: skip


#: Module-level names only TensorRT 8.6 / 10.x have (removed in 11: pyInt8.cpp is gone).
_TRT_NAMES_BEFORE_11 = ("IInt8Calibrator", "IInt8EntropyCalibrator2")
#: Per major version: (BuilderFlag, NetworkDefinitionCreationFlag, DataType) enums.
_ENUMS_BY_MAJOR = {
    8: (BuilderFlag, NetworkDefinitionCreationFlag8, DataType8),
    10: (BuilderFlag, NetworkDefinitionCreationFlag, DataType),
    11: (BuilderFlag11, NetworkDefinitionCreationFlag11, DataType),
}


class _RecordedModule(types.ModuleType):
    """A module whose public attribute reads are recorded as ``("tensorrt", name)``."""

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)  # a failed probe (hasattr) is not a use
        _record("tensorrt", name)
        return value


def make_modules(state: FakeState, cuda_binding: str = "cuda-python") -> dict[str, types.ModuleType]:
    """Fresh ``tensorrt``, ``pycuda`` / ``pycuda.driver`` and (``cuda_binding="cuda-python"``)
    ``cuda.bindings.driver`` module objects backed by ``state``, with the TensorRT names of
    ``state.trt_version``'s major release (8, 10 or 11). With ``cuda_binding="pycuda"`` the
    ``cuda`` modules are None in sys.modules (their import fails), as where only pycuda is
    installed."""
    global STATE
    STATE = state
    major = state.trt_major
    if major not in _ENUMS_BY_MAJOR:
        raise ValueError(f"fake TensorRT models majors {sorted(_ENUMS_BY_MAJOR)}, not {major}")
    this = sys.modules[__name__]
    trt = _RecordedModule("tensorrt", "fake tensorrt (tests/runtimes/fake_tensorrt.py)")
    names = _TRT_NAMES + (_TRT_NAMES_BEFORE_11 if major < 11 else ())
    for name in names:
        setattr(trt, name, getattr(this, name))
    (  # type: ignore[attr-defined]
        trt.BuilderFlag, trt.NetworkDefinitionCreationFlag, trt.DataType,
    ) = _ENUMS_BY_MAJOR[major]  # fmt: skip
    trt.__version__ = state.trt_version  # type: ignore[attr-defined]
    driver = types.ModuleType("pycuda.driver", "fake pycuda.driver")
    for name in _CUDA_NAMES:
        setattr(driver, name, getattr(this, name))
    pycuda = types.ModuleType("pycuda", "fake pycuda")
    pycuda.__path__ = []  # type: ignore[attr-defined]  # a package, so "pycuda.driver" imports
    pycuda.driver = driver  # type: ignore[attr-defined]
    mods: dict[str, types.ModuleType | None] = {
        "tensorrt": trt, "pycuda": pycuda, "pycuda.driver": driver,
    }  # fmt: skip
    if cuda_binding == "cuda-python":
        cu_driver = types.ModuleType("cuda.bindings.driver", "fake cuda-python driver API")
        for name in _CU_NAMES:
            setattr(cu_driver, name, getattr(this, name))
        bindings = types.ModuleType("cuda.bindings", "fake cuda.bindings")
        bindings.__path__ = []  # type: ignore[attr-defined]
        bindings.driver = cu_driver  # type: ignore[attr-defined]
        cuda_pkg = types.ModuleType("cuda", "fake cuda")
        cuda_pkg.__path__ = []  # type: ignore[attr-defined]
        cuda_pkg.bindings = bindings  # type: ignore[attr-defined]
        mods.update({"cuda": cuda_pkg, "cuda.bindings": bindings, "cuda.bindings.driver": cu_driver})
    else:  # cuda-python absent: importing it fails, so edgedet falls back to pycuda
        mods.update({"cuda": None, "cuda.bindings": None, "cuda.bindings.driver": None})
    return mods  # type: ignore[return-value]
