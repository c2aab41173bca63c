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
Quantized Types" (.../tensorrt/latest/inference-library/work-quantized-types.html). pycuda:
``cuda.init``, ``Device.count/name/compute_capability`` (pycuda driver API reference).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
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
from edgedet.meta import (
    ModelMeta,
    atomic_write_bytes,
    read_meta,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)

from .capabilities import TENSORRT, normalize_precision

try:
    import pycuda.driver as cuda
    import tensorrt as trt
except ImportError as _err:  # the registry's own message covers the runtime; this covers callers
    raise missing_extra("tensorrt and pycuda", "tensorrt", "building a TensorRT engine") from _err

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


def trt_logger() -> Any:
    """One process-wide ``trt.Logger`` (TensorRT wants a single logger), made on first use."""
    global _trt_logger
    if _trt_logger is None:
        _trt_logger = trt.Logger(trt.Logger.WARNING)
    return _trt_logger


# -- where we are: TensorRT version and GPU -----------------------------------------------------


@dataclass(frozen=True)
class TrtTarget:
    """The TensorRT version and GPU an engine is built for (or a machine has)."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"

    @property
    def sm(self) -> str:
        return "sm_" + self.compute_capability.replace(".", "")

    def describe(self) -> str:
        return f"TensorRT {self.trt_version} on {self.gpu_name} ({self.sm})"


def current_target(device_index: int = 0) -> TrtTarget:
    """This machine's TensorRT version and the name / compute capability of GPU ``device_index``.

    pycuda: ``cuda.init()``, ``cuda.Device(i).name()``, ``.compute_capability()`` -> (major,
    minor) (pycuda driver API docs). Raises RuntimeUnavailableError when CUDA cannot start.
    """
    try:
        cuda.init()
        count = cuda.Device.count()
        if device_index >= count:
            raise InvalidInputError(
                f"device cuda:{device_index} does not exist: this machine has {count} CUDA "
                f"device(s); use cuda:0..cuda:{max(count - 1, 0)}"
            )
        dev = cuda.Device(device_index)
        name = str(dev.name())
        major, minor = dev.compute_capability()
    except cuda.Error as err:
        raise RuntimeUnavailableError(
            f"runtime 'tensorrt' cannot start CUDA ({type(err).__name__}: {err}); check the "
            "NVIDIA driver (nvidia-smi / tegrastats) and that this process can see a GPU"
        ) from err
    return TrtTarget(str(trt.__version__), name, f"{int(major)}.{int(minor)}")


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
) -> str:
    """The key an engine is cached under: everything that makes two engines differ."""
    parts = {
        "model_sha256": model_sha256,
        "trt_version": target.trt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "precision": precision,
        "max_batch": int(max_batch),
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
    )
    if (built.trt_version, built.gpu_name, built.compute_capability) != (
        target.trt_version,
        target.gpu_name,
        target.compute_capability,
    ):
        raise IncompatibleModelError(
            f"engine {engine_path} was built with TensorRT {built.trt_version} for "
            f"{built.gpu_name} ({built.sm}); this machine has {target.describe()}: an engine "
            f"only runs on the TensorRT version and GPU it was built for; {REBUILD_HINT}"
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


def _profile_shapes(
    name: str,
    shape: Sequence[int],
    max_batch: int,
    opt_batch: int,
    where: str,
    meta: ModelMeta | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """min/opt/max shapes for an input with a dynamic batch; None when the input is static.

    A dynamic image size (e.g. an Ultralytics ``dynamic=True`` export) is fixed to the model
    meta's ``input_size`` when the meta has one; any other dynamic dimension is refused.
    """
    dims = [int(d) for d in shape]
    if all(d >= 0 for d in dims):
        return None
    if (
        len(dims) == 4
        and meta is not None
        and meta.input_size is not None
        and meta.input_name in (None, name)
    ):
        h_axis, w_axis = (2, 3) if meta.layout == "NCHW" else (1, 2)
        for axis, size in ((h_axis, meta.input_size[0]), (w_axis, meta.input_size[1])):
            if dims[axis] < 0:
                dims[axis] = int(size)
    if len(dims) == 0 or any(d < 0 for d in dims[1:]):
        shown = ",".join("?" if d < 0 else str(d) for d in shape)
        raise InvalidInputError(
            f"{where}: input '{name}' [{shown}] has dynamic dimensions other than the batch; "
            "export the ONNX model with a fixed input size, or give it edgedet meta with an "
            "input_size (only the batch may stay dynamic)"
        )
    rest = tuple(dims[1:])
    batch = dims[0]
    if batch >= 0:  # only the image size was dynamic
        return (batch, *rest), (batch, *rest), (batch, *rest)
    return (1, *rest), (opt_batch, *rest), (max_batch, *rest)


def build_serialized_engine(
    onnx_bytes: bytes,
    *,
    where: str,
    precision: str = "fp16",
    max_batch: int = 1,
    opt_batch: int | None = None,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    onnx_path: str | Path | None = None,
    meta: ModelMeta | None = None,
) -> BuildResult:
    """Parse ONNX bytes and build a serialized engine (no files written except the timing cache).

    - precision: FP16 (default) or FP32; a model with Q/DQ nodes is built as explicit INT8
      (``BuilderFlag.INT8``; FP16 too unless fp32 was asked, for the layers left in float).
    - dynamic batch: an optimisation profile min 1 / opt ``opt_batch`` (default ``max_batch``) /
      max ``max_batch`` for every input whose first dimension is dynamic; a dynamic image size
      is fixed to ``meta.input_size`` (the ONNX model's own meta when built through the cache).
    - timing cache: read from and written back to ``timing_cache`` when given.
    - DLA: ``default_device_type = DLA``, ``DLA_core``, ``GPU_FALLBACK`` for unsupported layers.
    """
    has_qdq = onnx_has_qdq(onnx_bytes, where)
    prec = effective_precision(precision, has_qdq, where)
    max_batch = int(max_batch)
    if max_batch < 1:
        raise InvalidInputError(f"max_batch must be >= 1, got {max_batch}")
    opt = max_batch if opt_batch is None else int(opt_batch)
    if not 1 <= opt <= max_batch:
        raise InvalidInputError(f"opt_batch must be in 1..max_batch={max_batch}, got {opt_batch}")
    if int(workspace_mb) < 1:
        raise InvalidInputError(f"workspace_mb must be >= 1, got {workspace_mb}")
    if dla_core is not None and prec == "fp32":
        raise InvalidInputError(
            "DLA runs FP16 or INT8 only; use precision='fp16' (or a Q/DQ INT8 model) with a DLA core"
        )

    logger = trt_logger()
    builder = trt.Builder(logger)
    # TensorRT 10: networks are always explicit-batch, the EXPLICIT_BATCH flag is deprecated and
    # ignored, so flags=0 (docs: TensorRT 10 "Builder"/NetworkDefinitionCreationFlag page).
    network = builder.create_network(0)
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
    if prec == "int8":
        # Explicit quantization: Q/DQ layers carry the scales; a weakly typed network still needs
        # the INT8 flag (docs: "Working with Quantized Types" / explicit quantization).
        config.set_flag(trt.BuilderFlag.INT8)
        if precision != "fp32":
            config.set_flag(trt.BuilderFlag.FP16)
    elif prec == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)

    profile = None
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = _profile_shapes(tensor.name, tuple(tensor.shape), max_batch, opt, where, meta)
        if shapes is None:
            continue
        if profile is None:
            profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, *shapes)
    if profile is not None:
        config.add_optimization_profile(profile)

    if dla_core is not None:
        available = int(builder.num_DLA_cores)
        if not 0 <= int(dla_core) < available:
            raise InvalidInputError(
                f"DLA core {dla_core} does not exist: this device has {available} DLA core(s)"
                + (" (DLA is on Jetson AGX/NX Orin and Xavier only)" if available == 0 else "")
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)

    cache_obj = None
    cache_path = None if timing_cache is None else Path(timing_cache).expanduser()
    if cache_path is not None:
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        # create_timing_cache(serialized_timing_cache) / set_timing_cache(cache, ignore_mismatch)
        # (docs: "Optimizing Builder Performance" -> Timing Cache; pyCore.cpp bindings).
        cache_obj = config.create_timing_cache(blob)
        config.set_timing_cache(cache_obj, False)
        log.info("timing cache %s (%d bytes)", cache_path, len(blob))

    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelLoadError(
            f"TensorRT could not build an engine from {where} (precision={prec}, "
            f"max_batch={max_batch}, dla_core={dla_core}); the TensorRT log above says why. "
            "Try precision='fp32', a larger workspace_mb, or without DLA"
        )
    engine_bytes = bytes(serialized)
    log.info("built TensorRT engine from %s in %.1f s", where, time.perf_counter() - started)
    if cache_obj is not None and cache_path is not None:
        atomic_write_bytes(cache_path, bytes(cache_obj.serialize()))
    return BuildResult(engine_bytes, prec)


def _engine_record(
    *,
    target: TrtTarget,
    precision: str,
    model_sha256: str,
    dla_core: int | None,
    max_batch: int,
    engine_bytes: bytes,
    cache_key: str,
    source: str,
) -> dict[str, Any]:
    return {
        "trt_version": target.trt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "precision": precision,
        "model_sha256": model_sha256,
        "dla_core": dla_core,
        "max_batch": int(max_batch),
        "cache_key": cache_key,
        "engine_bytes": len(engine_bytes),
        "engine_sha256": sha256_bytes(engine_bytes),
        "source": source,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _meta_for_engine(meta: ModelMeta | None, precision: str) -> ModelMeta | None:
    return None if meta is None else meta.replace(precision=precision)


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    max_batch: int = 1,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    device_index: int = 0,
    opt_batch: int | None = None,
) -> Path:
    """Build a TensorRT engine from an ONNX model and write it with its sidecar, atomically.

    The sidecar records TensorRT version, GPU, precision and model hash (so the engine can be
    refused on a mismatched machine), plus the ONNX model's edgedet meta when it has one.
    Returns ``engine_path``.
    """
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path)
    onnx_bytes = _load_onnx_bytes(onnx_path)
    target = current_target(device_index)
    meta = read_meta(onnx_path)
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
    )
    model_sha = sha256_bytes(onnx_bytes)
    key = engine_cache_key(
        model_sha, target, precision=result.precision, max_batch=max_batch, dla_core=dla_core
    )
    record = _engine_record(
        target=target,
        precision=result.precision,
        model_sha256=model_sha,
        dla_core=dla_core,
        max_batch=max_batch,
        engine_bytes=result.engine_bytes,
        cache_key=key,
        source=onnx_path.name,
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
    max_batch: int = 1,
    dla_core: int | None = None,
    workspace_mb: int = 1024,
    timing_cache: str | Path | None = None,
    device_index: int = 0,
) -> CachedEngine:
    """The cached engine for an ONNX model on this machine, built (and cached) when missing.

    Cache files are ``<cache_dir>/<onnx stem>.<key[:16]>.engine`` plus sidecar; the timing cache
    defaults to ``<cache_dir>/timing-<trt version>-<sm>.cache``, shared by every build here.
    """
    onnx_path = Path(onnx_path)
    root = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    onnx_bytes = _load_onnx_bytes(onnx_path)
    target = current_target(device_index)
    has_qdq = onnx_has_qdq(onnx_bytes, str(onnx_path))
    prec = effective_precision(precision, has_qdq, str(onnx_path))
    model_sha = sha256_bytes(onnx_bytes)
    key = engine_cache_key(
        model_sha, target, precision=prec, max_batch=max_batch, dla_core=dla_core
    )
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
        "building TensorRT engine for %s (%s, max_batch=%d, %s) into %s",
        onnx_path, prec, max_batch, target.describe(), engine_path,
    )  # fmt: skip
    if timing_cache is None:
        timing_cache = root / f"timing-{target.trt_version}-{target.sm}.cache"
    build_engine(
        onnx_path,
        engine_path,
        precision=precision,
        max_batch=max_batch,
        dla_core=dla_core,
        workspace_mb=workspace_mb,
        timing_cache=timing_cache,
        device_index=device_index,
    )
    built = read_sidecar(engine_path)
    record = built.get("tensorrt") if built is not None else None
    if not isinstance(record, Mapping) or record.get("cache_key") != key:
        raise ModelLoadError(
            f"the engine just built for {onnx_path} at {engine_path} does not carry the expected "
            f"cache key {key[:16]}; the cache folder may be shared with another process"
        )
    return CachedEngine(engine_path, False, dict(record))
