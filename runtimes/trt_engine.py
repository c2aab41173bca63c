"""Building TensorRT engines from ONNX, and the on-disk engine cache.

A TensorRT engine only runs on the TensorRT version and the GPU model it was built for; loading
one built elsewhere fails inside ``deserialize_cuda_engine`` (returns None) or, worse, later.
So every engine edgedet writes has a JSON sidecar (``<stem>.edgedet.json``, see
`edgedet.meta.sidecar_path`) whose ``"tensorrt"`` key records what it was built with::

    {"trt_version", "gpu_name", "compute_capability", "precision", "model_sha256",
     "dla_core", "max_batch", "cache_key", "engine_bytes", "engine_sha256"}

and `check_engine_sidecar` refuses a mismatched engine *before* deserialising it.

Engines built from an ONNX model are cached under a key made of the model bytes' sha256, the
TensorRT version, the GPU name and compute capability, the precision, ``max_batch`` and the DLA
core; engine and sidecar are written atomically (temporary file + rename), engine first, so a
crash leaves either no engine or an engine without sidecar, which is rebuilt.

TensorRT API used here (TensorRT 10 Python API; names checked against the pybind11 bindings in
NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` and the docs pages cited next to each call):
``trt.Builder(logger)``, ``builder.create_network(flags)``, ``builder.create_builder_config()``,
``builder.create_optimization_profile()``, ``builder.build_serialized_network(network, config)``,
``builder.num_DLA_cores``; ``IBuilderConfig.set_flag``, ``set_memory_pool_limit(pool, size)``,
``add_optimization_profile``, ``create_timing_cache(bytes)``, ``set_timing_cache(cache,
ignore_mismatch)``, ``default_device_type``, ``DLA_core``; ``IOptimizationProfile.set_shape(name,
min, opt, max)``; ``ITimingCache.serialize()``; ``trt.OnnxParser(network, logger).parse(bytes,
path)``, ``parser.num_errors``, ``parser.get_error(i)``.

Docs checked (2026-11): TensorRT Python API "Builder" / "IBuilderConfig" / "ITimingCache"
(docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/*.html), "Onnx Parser"
(.../api/python_api/parsers/Onnx/pyOnnx.html), "Optimizing Builder Performance -> Timing Cache"
(docs.nvidia.com/deeplearning/tensorrt/10.16.1/performance/builder-performance.html), "Working with
Quantized Types" (.../tensorrt/latest/inference-library/work-quantized-types.html). CUDA:
device facts, contexts and memory through `edgedet.runtimes.cuda_binding` (cuda-python's driver
API, or pycuda).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgedet.errors import (
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
    missing_extra,
)
from edgedet.fileio import atomic_write_bytes
from edgedet.meta import (
    ModelMeta,
    read_meta,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)

from .capabilities import TENSORRT, normalize_precision

try:
    import tensorrt as trt
except ImportError as _err:  # the registry's own message covers the runtime; this covers callers
    raise missing_extra("tensorrt", "tensorrt", "building a TensorRT engine") from _err

from .cuda_binding import load_backend

#: The CUDA binding (cuda-python, else pycuda) this process uses.
cuda = load_backend("building a TensorRT engine")

log = logging.getLogger("edgedet.runtimes.tensorrt")

#: Precisions a user can ask for. INT8 means explicit quantization (a Q/DQ ONNX model); the
#: implicit calibrator is deprecated in TensorRT 10 and removed in 11, so edgedet does not use it.
PRECISIONS = TENSORRT.precision_option  # the runtime's declaration (capabilities.py)

#: Default engine cache folder (``cache_dir=None``).
DEFAULT_CACHE_DIR = Path("~/.cache/edgedet/engines")

#: What to tell a user whose engine does not fit this machine.
REBUILD_HINT = (
    "rebuild it from the ONNX model on this machine: load the .onnx with runtime='tensorrt' "
    "(edgedet builds and caches an engine), or call "
    "edgedet.runtimes.trt_engine.build_engine(onnx_path, engine_path)"
)

_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: ONNX Runtime's dynamic / operator-oriented quantization: TensorRT has no importer for these.
_NON_QDQ_INT8_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"}
)

_trt_logger: Any = None

#: The oldest TensorRT edgedet builds and runs with (JetPack 6.0 ships 8.6).
MIN_TRT_VERSION = (8, 6)


def _logger_class() -> type:
    class CapturingLogger(trt.ILogger):  # type: ignore[misc,name-defined]
        """Sends TensorRT's messages to Python logging (``edgedet.runtimes.tensorrt``) instead of
        stdout, and keeps the recent errors so edgedet's exceptions can say what TensorRT said
        (``trt.ILogger`` subclass overriding ``log(severity, msg)``, as the TensorRT Python API
        docs show for custom loggers; pyCore.cpp binds it through a trampoline)."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=32)
            self.count = 0

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.ERROR):
                self.errors.append(str(msg))
                self.count += 1
                log.error("TensorRT: %s", msg)
            elif level == int(trt.ILogger.WARNING):
                log.warning("TensorRT: %s", msg)
            else:
                log.debug("TensorRT: %s", msg)

    return CapturingLogger


def trt_error_mark() -> int:
    """A mark for `trt_errors_since`: how many errors TensorRT has logged so far."""
    return int(trt_logger().count)


def trt_errors_since(mark: int) -> str:
    """``"; TensorRT said: ..."`` with the errors logged after ``mark``, or ``""``."""
    logger = trt_logger()
    new = int(logger.count) - mark
    if new <= 0:
        return ""
    said = list(logger.errors)[-min(new, len(logger.errors)) :]
    return "; TensorRT said: " + " | ".join(said[-3:])


def trt_logger() -> Any:
    """One process-wide TensorRT logger (TensorRT wants a single logger), made on first use:
    a ``trt.ILogger`` that forwards to Python logging and keeps recent errors.

    Also registers TensorRT's standard plugins (EfficientNMS_TRT, BatchedNMSDynamic_TRT...) in
    this process, before any Builder or Runtime exists: ONNX parsing registers them itself, but a
    process that only deserialises an engine holding a plugin finds an empty registry and gets
    None from ``deserialize_cuda_engine``. ``trt.init_libnvinfer_plugins(logger, namespace)``
    is in every supported release (python/src/infer/pyPlugin.cpp at v8.6.1, v10.3.0, v11.1;
    NVIDIA's samples call it before deserialising, e.g. samples/python/efficientdet/infer.py).
    """
    global _trt_logger
    if _trt_logger is None:
        logger = _logger_class()()
        trt.init_libnvinfer_plugins(logger, "")
        _trt_logger = logger
    return _trt_logger


def trt_version_tuple() -> tuple[int, int]:
    """(major, minor) of the installed TensorRT, from ``trt.__version__`` ("10.3.0.30")."""
    parts = str(trt.__version__).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0


def has_precision_flags() -> bool:
    """Whether ``BuilderFlag.FP16`` / ``INT8`` exist (TensorRT 8.6 and 10.x; removed in 11).

    Feature detection, not a version number: TensorRT 11's "Removed Python APIs and
    Replacements" (docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
    tensorrt-10x-to-11x-python-api-reference.html) replaces ``BuilderFlag.FP16`` by strong
    typing (a float16 graph) and ``BuilderFlag.INT8`` by Q/DQ nodes.
    """
    return hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "INT8")


def has_implicit_calibrator() -> bool:
    """Whether this TensorRT has ``IInt8EntropyCalibrator2`` (8.6 / 10.x; pyInt8.cpp is gone
    in 11)."""
    return hasattr(trt, "IInt8EntropyCalibrator2") and has_precision_flags()


def network_flags() -> int:
    """``create_network`` flags: explicit batch on TensorRT 8.x, where flags=0 is an implicit-
    batch network the ONNX parser refuses; 0 from 10 on (EXPLICIT_BATCH is "ignored because
    networks are always explicit batch", pyCoreDoc.h at v10.3.0; gone in 11)."""
    if trt_version_tuple()[0] < 10:
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def check_trt_version() -> None:
    """Refuse a TensorRT older than `MIN_TRT_VERSION` with what to install instead."""
    have = trt_version_tuple()
    if have < MIN_TRT_VERSION:
        raise RuntimeUnavailableError(
            f"runtime 'tensorrt' needs TensorRT 8.6 or newer (JetPack 6.0+), found "
            f"{trt.__version__}; upgrade JetPack, or pip install \"tensorrt>=10,<12\" on a desktop"
        )


# -- where we are: TensorRT version and GPU -----------------------------------------------------


#: Where a Jetson (and many ARM boards) names itself; absent on x86.
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def board_model(path: Path | None = None) -> str:
    """``/proc/device-tree/model`` without its trailing NUL ("NVIDIA Jetson AGX Orin Developer
    Kit"), or "" where there is none (x86)."""
    try:
        raw = (path or DEVICE_TREE_MODEL).read_bytes()
    except OSError:
        return ""
    return raw.split(b"\0")[0].decode(errors="replace").strip()


@dataclass(frozen=True)
class TrtTarget:
    """The TensorRT version and GPU an engine is built for (or a machine has).

    Every Orin module (AGX 64/32 GB, NX 16/8 GB, Nano 8/4 GB) reports the CUDA name "Orin" and
    compute capability 8.7, so the SM count, the memory size and the board model tell them apart
    (0 / "" when unknown, e.g. in an old sidecar: then they are not compared).
    """

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    sm_count: int = 0
    memory_mb: int = 0
    board: str = ""

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")

    def describe(self) -> str:
        extra = f", {self.sm_count} SMs" if self.sm_count else ""
        board = f" [{self.board}]" if self.board else ""
        return f"TensorRT {self.trt_version} on {self.gpu_name} ({self.sm}{extra}){board}"

    def mismatch(self, other: TrtTarget) -> list[str]:
        """The fields that differ (the optional ones only where both are known)."""
        diff = [
            f for f in ("trt_version", "gpu_name", "compute_capability")
            if getattr(self, f) != getattr(other, f)
        ]  # fmt: skip
        for f in ("sm_count", "memory_mb", "board"):
            a, b = getattr(self, f), getattr(other, f)
            if a and b and a != b:
                diff.append(f)
        return diff


def current_target(device_index: int = 0) -> TrtTarget:
    """This machine's TensorRT version and the name / compute capability of GPU ``device_index``.

    Name, compute capability, SM count and memory from the CUDA driver (`cuda_binding`). Raises
    RuntimeUnavailableError when CUDA cannot start.
    """
    try:
        cuda.init()
        count = cuda.device_count()
        if device_index >= count:
            raise InvalidInputError(
                f"device cuda:{device_index} does not exist: this machine has {count} CUDA "
                f"device(s); use cuda:0..cuda:{max(count - 1, 0)}"
            )
        name = cuda.device_name(device_index)
        major, minor = cuda.compute_capability(device_index)
        sm_count = cuda.sm_count(device_index)
        memory_mb = cuda.total_memory(device_index) >> 20
    except cuda.errors as err:
        raise RuntimeUnavailableError(
            f"runtime 'tensorrt' cannot start CUDA ({type(err).__name__}: {err}); check the "
            "NVIDIA driver (nvidia-smi / tegrastats) and that this process can see a GPU"
        ) from err
    return TrtTarget(
        str(trt.__version__), name, f"{int(major)}.{int(minor)}", sm_count, memory_mb, board_model()
    )


# -- the cache key and the sidecar --------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def engine_cache_key(
    model_sha256: str,
    target: TrtTarget,
    *,
    precision: str,
    max_batch: int,
    dla_core: int | None,
    float_precision: str | None = None,
    opt_batch: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> str:
    """The key an engine is cached under: everything that makes two engines differ.

    ``precision`` is the engine's ("int8" for a Q/DQ model); ``float_precision`` what its float
    layers run in ("fp16" / "fp32"), which differs between two Q/DQ builds.
    """
    parts = {
        "model_sha256": model_sha256,
        "trt_version": target.trt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "sm_count": target.sm_count,
        "memory_mb": target.memory_mb,
        "board": target.board,
        "precision": precision,
        "float_precision": float_precision,
        "max_batch": int(max_batch),
        "opt_batch": opt_batch,
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "dla_core": dla_core,
    }
    return sha256_bytes(json.dumps(parts, sort_keys=True).encode())


def check_engine_sidecar(engine_path: Path, target: TrtTarget) -> dict[str, Any] | None:
    """The sidecar's ``"tensorrt"`` record, after refusing an engine built for another setup.

    Returns None when the engine has no sidecar (or the sidecar has no ``"tensorrt"`` key): the
    caller then deserialises and treats a failure as incompatibility.

    Raises:
        IncompatibleModelError: built with another TensorRT version or for another GPU.
        ModelLoadError: the engine file is shorter or longer than the sidecar says (truncated).
    """
    side = read_sidecar(engine_path)
    if side is None or not isinstance(side.get("tensorrt"), Mapping):
        return None
    rec = dict(side["tensorrt"])
    built = TrtTarget(
        str(rec.get("trt_version", "?")),
        str(rec.get("gpu_name", "?")),
        str(rec.get("compute_capability", "?")),
        int(rec.get("sm_count") or 0),
        int(rec.get("memory_mb") or 0),
        str(rec.get("board") or ""),
    )
    differ = built.mismatch(target)
    if differ:
        raise IncompatibleModelError(
            f"engine {engine_path} was built with {built.describe()}; this machine has "
            f"{target.describe()} (differs in {', '.join(differ)}): an engine only runs on the "
            f"TensorRT version and GPU module it was built for; {REBUILD_HINT}"
        )
    expected = rec.get("engine_bytes")
    if isinstance(expected, int):
        size = engine_path.stat().st_size
        if size != expected:
            raise ModelLoadError(
                f"engine {engine_path} is {size} bytes but its sidecar says {expected}: the file "
                f"is truncated or was overwritten; copy it again or {REBUILD_HINT}"
            )
    return rec


def write_engine_files(
    engine_path: Path,
    engine_bytes: bytes,
    record: Mapping[str, Any],
    meta: ModelMeta | None,
) -> None:
    """Write engine, then sidecar, each atomically (a reader never sees half a file)."""
    atomic_write_bytes(engine_path, engine_bytes)
    extra = {"tensorrt": dict(record)}
    if meta is not None:
        write_sidecar(engine_path, meta, extra)
    else:
        atomic_write_bytes(
            sidecar_path(engine_path), json.dumps(extra, indent=2, sort_keys=True).encode()
        )


# -- reading the ONNX model ---------------------------------------------------------------------


def _load_onnx_bytes(onnx_path: Path) -> bytes:
    if not onnx_path.is_file():
        raise ModelLoadError(f"model file not found: {onnx_path}")
    data = onnx_path.read_bytes()
    if not data:
        raise ModelLoadError(f"{onnx_path} is empty: the file is truncated or not an ONNX model")
    return data


def onnx_has_qdq(onnx_bytes: bytes, where: str) -> bool:
    """Whether the ONNX graph has QuantizeLinear / DequantizeLinear nodes (explicit INT8).

    Raises ModelLoadError for integer-operator quantization (ConvInteger, QLinearConv...), which
    TensorRT's ONNX parser does not import.
    """
    import onnx

    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as err:  # onnx raises DecodeError / ValueError / protobuf errors
        raise ModelLoadError(
            f"{where} is not a readable ONNX model ({type(err).__name__}: {err}); the file may "
            "be truncated or not an ONNX file"
        ) from err
    ops = {node.op_type for node in model.graph.node}
    foreign = sorted(ops & _NON_QDQ_INT8_OPS)
    if foreign:
        raise ModelLoadError(
            f"{where} is quantized with integer operators TensorRT cannot import ({', '.join(foreign)}"
            ", e.g. ONNX Runtime dynamic quantization); build the engine from the float model "
            "(precision='fp16') or from a Q/DQ model (static quantization, edgedet.calibration)"
        )
    return bool(ops & _QDQ_OPS)


# -- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    engine_bytes: bytes
    precision: str  # what the engine was built with: "fp16", "int8" or "fp32"
    float_precision: str = "fp16"  # what its float layers run in: "fp16" or "fp32"
    batch: BatchPlan | None = None  # the profile's batches (for a dynamic batch axis)
    strongly_typed: bool = False  # TensorRT 11: precision came from the graph, not flags


def _check_precision(precision: str) -> str:
    return normalize_precision(precision, PRECISIONS, what="TensorRT precision")


def effective_precision(requested: str, has_qdq: bool, where: str) -> str:
    """The precision an engine ends up with: a Q/DQ model is INT8 whatever else was asked."""
    requested = _check_precision(requested)
    if has_qdq:
        return "int8"
    if requested == "int8":
        raise InvalidInputError(
            f"precision='int8' needs a quantized (Q/DQ) ONNX model, but {where} has no "
            "QuantizeLinear/DequantizeLinear nodes; calibrate it first (edgedet.calibration) "
            "and build from the quantized ONNX, or use precision='fp16'"
        )
    return requested


#: Largest batch a dynamic-batch engine accepts when ``max_batch`` is not given (the step
#: `Detector.predict_batch` uses by default); the profile's opt batch is then 1.
DEFAULT_MAX_BATCH = 8


@dataclass(frozen=True)
class BatchPlan:
    """The batch range an engine is built for: min / opt / max of its optimisation profile."""

    min: int
    opt: int
    max: int

    @property
    def fixed(self) -> bool:
        return self.min == self.max


def batch_plan(max_batch: int | None, opt_batch: int | None, dla_core: int | None) -> BatchPlan:
    """The profile batches for a dynamic batch axis.

    - GPU: 1 .. ``max_batch`` (default `DEFAULT_MAX_BATCH`), opt ``opt_batch`` (default
      ``max_batch`` when given, else 1).
    - DLA: min = opt = max = ``max_batch`` (default 1): "DLA does not support dynamic dimensions,
      so the profile's min, max, and opt values must be equal" (docs.nvidia.com/deeplearning/
      tensorrt/latest/inference-library/dla-layer-restrictions.html); a min != max profile
      would silently run on the GPU under GPU_FALLBACK.
    """
    if dla_core is not None:
        mb = 1 if max_batch is None else int(max_batch)
        if mb < 1:
            raise InvalidInputError(f"max_batch must be >= 1, got {max_batch}")
        if opt_batch is not None and int(opt_batch) != mb:
            raise InvalidInputError(
                f"a DLA engine has one fixed batch (DLA has no dynamic shapes): max_batch={mb} "
                f"is the batch; opt_batch={opt_batch} cannot differ"
            )
        return BatchPlan(mb, mb, mb)
    mb = DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)
    if mb < 1:
        raise InvalidInputError(f"max_batch must be >= 1, got {max_batch}")
    opt = (mb if max_batch is not None else 1) if opt_batch is None else int(opt_batch)
    if not 1 <= opt <= mb:
        raise InvalidInputError(f"opt_batch must be in 1..max_batch={mb}, got {opt_batch}")
    return BatchPlan(1, opt, mb)


def _profile_shapes(
    name: str,
    shape: Sequence[int],
    batch: BatchPlan,
    where: str,
    meta: ModelMeta | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """min/opt/max shapes for an input with a dynamic batch; None when the input is static.

    A dynamic image size (e.g. an Ultralytics ``dynamic=True`` export) is fixed to
    ``input_size`` (h, w), else to the model meta's ``input_size``; any other dynamic dimension
    is refused.
    """
    dims = [int(d) for d in shape]
    if all(d >= 0 for d in dims):
        return None
    size = input_size
    if size is None and meta is not None and meta.input_name in (None, name):
        size = meta.input_size
    if len(dims) == 4 and size is not None:
        layout = meta.layout if meta is not None else "NCHW"
        h_axis, w_axis = (2, 3) if layout == "NCHW" else (1, 2)
        for axis, value in ((h_axis, size[0]), (w_axis, size[1])):
            if dims[axis] < 0:
                dims[axis] = int(value)
    if len(dims) == 0 or any(d < 0 for d in dims[1:]):
        shown = ",".join("?" if d < 0 else str(d) for d in shape)
        raise InvalidInputError(
            f"{where}: input '{name}' [{shown}] has dynamic dimensions other than the batch; "
            "export the ONNX model with a fixed input size, or give it an input size "
            "(edgedet.load(..., input_size=(h, w)), runtime option input_size, or edgedet meta)"
        )
    rest = tuple(dims[1:])
    b = dims[0]
    if b >= 0:  # only the image size was dynamic
        return (b, *rest), (b, *rest), (b, *rest)
    return (batch.min, *rest), (batch.opt, *rest), (batch.max, *rest)


def float_precision_of(requested: str) -> str:
    """What float layers run in for a requested precision: fp32 only when asked for."""
    return "fp32" if _check_precision(requested) == "fp32" else "fp16"


def build_serialized_engine(
    onnx_bytes: bytes,
    *,
    where: str,
    precision: str = "fp16",
    max_batch: int | None = None,
    opt_batch: int | None = None,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    onnx_path: str | Path | None = None,
    meta: ModelMeta | None = None,
    input_size: tuple[int, int] | None = None,
    calibrator: Any = None,
    detailed_profile: bool = False,
) -> BuildResult:
    """Parse ONNX bytes and build a serialized engine (no files written except the timing cache).

    One path for TensorRT 8.6, 10.x and 11.x, chosen by feature detection:

    - network: explicit batch (`network_flags`: the flag on 8.x, 0 from 10 on).
    - fp16: with ``BuilderFlag.FP16`` where it exists (8.6 / 10.x); on TensorRT 11, which has no
      precision flags and always builds strongly typed networks, from a float16 copy of the graph
      that keeps I/O and the decode tail in float32 (`edgedet.runtimes.onnx_fp16`).
    - int8: from Q/DQ nodes (explicit quantization); ``BuilderFlag.INT8`` (+ FP16 for the float
      layers unless fp32 was asked) where it exists; on 11 the float layers follow the graph, so
      fp16 converts it too (Q/DQ nodes stay float32).
    - ``calibrator``: a TensorRT implicit INT8 calibrator (`edgedet.calibration.trt_int8`) for a
      float model; TensorRT 8.6 / 10.x only (``IBuilderConfig.int8_calibrator``, removed in 11).
    - dynamic batch: one optimisation profile from `batch_plan` for every input whose first
      dimension is dynamic; a dynamic image size is fixed to ``input_size`` or
      ``meta.input_size``.
    - timing cache: read from and written back to ``timing_cache`` when given.
    - DLA: ``default_device_type = DLA``, ``DLA_core``, ``GPU_FALLBACK`` for unsupported layers,
      and a fixed batch (DLA has no dynamic shapes).
    - ``detailed_profile``: ``profiling_verbosity = ProfilingVerbosity.DETAILED``, so the engine
      inspector lists each layer's device (benchmarks/jetson_check.py reads it for DLA).
    """
    has_qdq = onnx_has_qdq(onnx_bytes, where)
    requested = _check_precision(precision)
    if calibrator is not None:
        if has_qdq:
            raise InvalidInputError(
                f"{where} is already quantized (Q/DQ nodes): build it without a calibrator"
            )
        if not has_implicit_calibrator():
            raise RuntimeUnavailableError(implicit_calibrator_missing())
        prec = "int8"
    else:
        prec = effective_precision(requested, has_qdq, where)
    float_prec = float_precision_of(requested)
    batch = batch_plan(max_batch, opt_batch, dla_core)
    if int(workspace_mb) < 1:
        raise InvalidInputError(f"workspace_mb must be >= 1, got {workspace_mb}")
    if dla_core is not None and prec == "fp32":
        raise InvalidInputError(
            "DLA runs FP16 or INT8 only; use precision='fp16' (or a Q/DQ INT8 model) with a DLA core"
        )
    weak = has_precision_flags()
    if not weak and float_prec == "fp16":
        # TensorRT 11: strongly typed; the graph must carry the float16 (see onnx_fp16).
        from .onnx_fp16 import float16_graph

        onnx_bytes = float16_graph(onnx_bytes, where)
        log.info("TensorRT %s has no FP16 flag: building a float16 copy of %s", trt.__version__, where)

    logger = trt_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags())
    parser = trt.OnnxParser(network, logger)
    # OnnxParser.parse(model: buffer, path: str = None) -> bool; num_errors / get_error(i)
    # (docs: TensorRT Python API "Onnx Parser"). path lets the parser find external weights.
    ok = parser.parse(onnx_bytes, None if onnx_path is None else str(onnx_path))
    if not ok or parser.num_errors:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        listing = "; ".join(errors) if errors else "no message from the parser"
        raise ModelLoadError(
            f"TensorRT's ONNX parser rejected {where}: {listing}. Simplify or re-export the model "
            "(e.g. onnxsim, another opset), or run it with runtime='onnxruntime'"
        )

    config = builder.create_builder_config()
    # set_memory_pool_limit(pool, pool_size) replaces max_workspace_size (pyCore.cpp bindings).
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if detailed_profile:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if weak:
        if prec == "int8":
            # Explicit quantization: Q/DQ layers carry the scales; a weakly typed network still
            # needs the INT8 flag (docs: "Working with Quantized Types" / explicit quantization).
            config.set_flag(trt.BuilderFlag.INT8)
            if float_prec == "fp16":
                config.set_flag(trt.BuilderFlag.FP16)
        elif prec == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)

    profile = None
    calib_shapes: dict[str, tuple[int, ...]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = _profile_shapes(tensor.name, tuple(tensor.shape), batch, where, meta, input_size)
        if shapes is None:
            continue
        if profile is None:
            profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, *shapes)
        calib_shapes[tensor.name] = shapes[2][1:]
    if profile is not None and config.add_optimization_profile(profile) < 0:
        raise ModelLoadError(f"TensorRT refused the optimisation profile for {where} (see log)")

    if calibrator is not None:
        _attach_calibrator(builder, config, calibrator, calib_shapes)

    if dla_core is not None:
        available = int(builder.num_DLA_cores)
        if not 0 <= int(dla_core) < available:
            raise InvalidInputError(
                f"DLA core {dla_core} does not exist: this device has {available} DLA core(s)"
                + (
                    " (DLA is on Jetson AGX/NX Orin and Xavier only, and TensorRT 11.0-11.3 "
                    "and Jetson Thor have none)"
                    if available == 0
                    else ""
                )
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache_obj = None
    cache_path = None if timing_cache is None else Path(timing_cache).expanduser()
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        # create_timing_cache(serialized_timing_cache) / set_timing_cache(cache, ignore_mismatch)
        # (docs: "Optimizing Builder Performance" -> Timing Cache; pyCore.cpp bindings). A
        # corrupt blob gives None (pyCore.cpp): start from an empty cache instead.
        cache_obj = config.create_timing_cache(blob)
        if cache_obj is None and blob:
            log.warning("timing cache %s is unreadable; starting an empty one", cache_path)
            cache_obj = config.create_timing_cache(b"")
        if cache_obj is not None and not config.set_timing_cache(cache_obj, False):
            log.warning("timing cache %s was made on another device; not used", cache_path)
            cache_obj = None
        log.info("timing cache %s (%d bytes)", cache_path, len(blob))

    started = time.perf_counter()
    mark = trt_error_mark()
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None:
        _raise_calibrator_error(calibrator, where)
    if serialized is None:
        raise ModelLoadError(
            f"TensorRT could not build an engine from {where} (precision={prec}, "
            f"max_batch={batch.max}, dla_core={dla_core}){trt_errors_since(mark)}. "
            "Try precision='fp32', a larger workspace_mb, or without DLA"
        )
    engine_bytes = bytes(serialized)
    log.info("built TensorRT engine from %s in %.1f s", where, time.perf_counter() - started)
    if cache_obj is not None and cache_path is not None:
        atomic_write_bytes(cache_path, bytes(cache_obj.serialize()))
    return BuildResult(engine_bytes, prec, float_prec, batch, strongly_typed=not weak)


def implicit_calibrator_missing() -> str:
    return (
        f"TensorRT {trt.__version__} has no implicit INT8 calibrator (IInt8EntropyCalibrator2 "
        "and IBuilderConfig.int8_calibrator were removed in TensorRT 11): quantize the ONNX "
        "model with Q/DQ nodes instead (`edgedet calibrate --runtime tensorrt`, or "
        "edgedet.calibration.ort_int8 with qdq_for_tensorrt) and build that model"
    )


def _attach_calibrator(
    builder: Any, config: Any, calibrator: Any, shapes: Mapping[str, tuple[int, ...]]
) -> None:
    """Implicit INT8 (TensorRT 8.6 / 10.x): INT8 flag, ``config.int8_calibrator`` and, for a
    dynamic network, a calibration profile fixed at the calibrator's batch ("Calibration
    optimization profile must be set if int8 calibration is used", pyCoreDoc.h at v10.3.0)."""
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = calibrator
    if shapes:
        size = int(calibrator.get_batch_size())
        profile = builder.create_optimization_profile()
        for name, rest in shapes.items():
            fixed = (size, *rest)
            profile.set_shape(name, fixed, fixed, fixed)
        config.set_calibration_profile(profile)


def _raise_calibrator_error(calibrator: Any, where: str) -> None:
    """TensorRT's calibrator trampoline prints a Python exception from ``get_batch`` and reads
    it as "no more batches" (pyInt8.cpp); the calibrator keeps it, and it is raised here."""
    logic = getattr(calibrator, "logic", None)
    error = getattr(logic, "error", None)
    if error is not None:
        from edgedet.errors import CalibrationError

        raise CalibrationError(
            f"INT8 calibration of {where} failed in the calibrator: {error}"
        ) from error


def _engine_record(
    *,
    target: TrtTarget,
    result: BuildResult,
    model_sha256: str,
    dla_core: int | None,
    cache_key: str,
    source: str,
    input_size: tuple[int, int] | None,
) -> dict[str, Any]:
    batch = result.batch
    return {
        "trt_version": target.trt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "sm_count": target.sm_count,
        "memory_mb": target.memory_mb,
        "board": target.board,
        "precision": result.precision,
        "float_precision": result.float_precision,
        "strongly_typed": result.strongly_typed,
        "model_sha256": model_sha256,
        "dla_core": dla_core,
        # DLA engines have one fixed batch; GPU_FALLBACK may still move layers to the GPU
        # (not inspected: see benchmarks/jetson_check.py)
        "dla_gpu_fallback": dla_core is not None,
        "max_batch": None if batch is None else batch.max,
        "opt_batch": None if batch is None else batch.opt,
        "input_size": None if input_size is None else [int(v) for v in input_size],
        "cache_key": cache_key,
        "engine_bytes": len(result.engine_bytes),
        "engine_sha256": sha256_bytes(result.engine_bytes),
        "source": source,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _meta_for_engine(meta: ModelMeta | None, precision: str) -> ModelMeta | None:
    return None if meta is None else meta.replace(precision=precision)


def _key_for(
    model_sha: str,
    target: TrtTarget,
    prec: str,
    requested: str,
    batch: BatchPlan,
    dla_core: int | None,
    input_size: tuple[int, int] | None,
) -> str:
    return engine_cache_key(
        model_sha,
        target,
        precision=prec,
        float_precision=float_precision_of(requested),
        max_batch=batch.max,
        opt_batch=batch.opt,
        dla_core=dla_core,
        input_size=input_size,
    )


@contextmanager
def _on_device(device_index: int) -> Iterator[None]:
    """Make GPU ``device_index`` current for a build: TensorRT builds on the current CUDA
    context's device (cudart's device 0 when none is current). Does nothing when a context for
    that device is already current (inside `TensorRTRuntime`)."""
    if cuda.current_device() == device_index:
        yield
        return
    ctx = cuda.primary_context(device_index)
    ctx.push()
    try:
        yield
    finally:
        cuda.pop()
        ctx.release()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    max_batch: int | None = None,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    device_index: int = 0,
    opt_batch: int | None = None,
    input_size: tuple[int, int] | None = None,
) -> Path:
    """Build a TensorRT engine from an ONNX model and write it with its sidecar, atomically.

    Builds on GPU ``device_index`` (its primary context is made current for the build). The
    sidecar records TensorRT version, GPU module, precision and model hash (so the engine can be
    refused on a mismatched machine), plus the ONNX model's edgedet meta when it has one.
    ``max_batch`` / ``opt_batch``: see `batch_plan`; ``input_size`` (h, w) fixes a dynamic image
    size. Returns ``engine_path``.
    """
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path)
    onnx_bytes = _load_onnx_bytes(onnx_path)
    check_trt_version()
    target = current_target(device_index)
    meta = read_meta(onnx_path)
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
        meta = None if meta is None else meta.replace(input_size=input_size)
    with _on_device(device_index):
        result = build_serialized_engine(
            onnx_bytes,
            meta=meta,
            where=str(onnx_path),
            precision=precision,
            max_batch=max_batch,
            opt_batch=opt_batch,
            dla_core=dla_core,
            workspace_mb=workspace_mb,
            timing_cache=timing_cache,
            onnx_path=onnx_path,
            input_size=input_size,
        )
    model_sha = sha256_bytes(onnx_bytes)
    assert result.batch is not None
    key = _key_for(
        model_sha, target, result.precision, str(precision).lower(), result.batch, dla_core,
        input_size,
    )  # fmt: skip
    record = _engine_record(
        target=target,
        result=result,
        model_sha256=model_sha,
        dla_core=dla_core,
        cache_key=key,
        source=onnx_path.name,
        input_size=input_size,
    )
    write_engine_files(
        engine_path, result.engine_bytes, record, _meta_for_engine(meta, result.precision)
    )
    return engine_path


@dataclass(frozen=True)
class CachedEngine:
    path: Path
    hit: bool  # True: reused from the cache; False: built now
    record: dict[str, Any]


def cached_engine(
    onnx_path: str | Path,
    cache_dir: str | Path | None = None,
    *,
    precision: str = "fp16",
    max_batch: int | None = None,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    device_index: int = 0,
    input_size: tuple[int, int] | None = None,
) -> CachedEngine:
    """The cached engine for an ONNX model on this machine, built (and cached) when missing.

    Cache files are ``<cache_dir>/<onnx stem>.<key[:16]>.engine`` plus sidecar; the timing cache
    defaults to ``<cache_dir>/timing-<trt version>-<sm>-<gpu>.cache``, shared by every build of
    this GPU model here.
    """
    onnx_path = Path(onnx_path)
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    onnx_bytes = _load_onnx_bytes(onnx_path)
    check_trt_version()
    target = current_target(device_index)
    has_qdq = onnx_has_qdq(onnx_bytes, str(onnx_path))
    prec = effective_precision(precision, has_qdq, str(onnx_path))
    if input_size is not None:
        input_size = (int(input_size[0]), int(input_size[1]))
    model_sha = sha256_bytes(onnx_bytes)
    batch = batch_plan(max_batch, None, dla_core)
    key = _key_for(model_sha, target, prec, str(precision).lower(), batch, dla_core, input_size)
    engine_path = root / f"{onnx_path.stem}.{key[:16]}.engine"

    side = read_sidecar(engine_path) if engine_path.is_file() else None
    rec = side.get("tensorrt") if side is not None else None
    if (
        isinstance(rec, Mapping)
        and rec.get("cache_key") == key
        and rec.get("engine_bytes") == engine_path.stat().st_size
    ):
        log.info("reusing cached TensorRT engine %s for %s", engine_path, onnx_path)
        return CachedEngine(engine_path, True, dict(rec))

    log.info(
        "building TensorRT engine for %s (%s, batch %d..%d, %s) into %s",
        onnx_path, prec, batch.min, batch.max, target.describe(), engine_path,
    )  # fmt: skip
    if timing_cache is None:
        gpu = "".join(c if c.isalnum() else "_" for c in target.gpu_name)[:40]
        timing_cache = root / f"timing-{target.trt_version}-{target.sm}-{gpu}.cache"
    build_engine(
        onnx_path,
        engine_path,
        precision=precision,
        max_batch=max_batch,
        dla_core=dla_core,
        workspace_mb=workspace_mb,
        timing_cache=timing_cache,
        device_index=device_index,
        input_size=input_size,
    )
    built = read_sidecar(engine_path)
    record = built.get("tensorrt") if built is not None else None
    if not isinstance(record, Mapping) or record.get("cache_key") != key:
        raise ModelLoadError(
            f"the engine just built for {onnx_path} at {engine_path} does not carry the expected "
            f"cache key {key[:16]}; the cache folder may be shared with another process"
        )
    return CachedEngine(engine_path, False, dict(record))
