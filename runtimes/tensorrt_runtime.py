"""TensorRT runtime: runs a serialized engine (``.engine`` / ``.plan``) or builds one from ONNX.

Uses the TensorRT 10 tensor-name API (JetPack 6 ships TensorRT 10.3); names were checked against
NVIDIA/TensorRT ``python/src/infer/pyCore.cpp`` (the pybind11 bindings) and the TensorRT docs
("Appendix: Python Migration Patterns for TensorRT 10.x", "ICudaEngine", "IExecutionContext"):

- engine: ``num_io_tensors``, ``get_tensor_name(i)``, ``get_tensor_mode(name)`` ->
  ``trt.TensorIOMode.INPUT/OUTPUT``, ``get_tensor_shape(name)`` (-1 = dynamic),
  ``get_tensor_dtype(name)`` -> ``trt.nptype(dtype)``, ``get_tensor_profile_shape(name,
  profile_index)`` -> [min, opt, max], ``create_execution_context()``;
- context: ``set_input_shape(name, shape)`` -> bool, ``get_tensor_shape(name)``,
  ``set_tensor_address(name, int_ptr)``, ``execute_async_v3(stream_handle)`` -> bool;
- ``trt.Runtime(logger).deserialize_cuda_engine(bytes)`` (None on failure), ``runtime.DLA_core``.

(docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-8x-to-10x-python-api-patterns
.html; .../tensorrt/api/python_api/infer/Core/Engine.html; .../tensorrt/latest/_static/python-api/
infer/Core/ExecutionContext.html.)

TensorRT 8.6 (JetPack 6.0), 10.x (JetPack 6.1/6.2) and 11.x (JetPack 7.2.2+, desktop wheels) all
have these; the build differs per version (see `edgedet.runtimes.trt_engine`). Engine files from
``yolo export format=engine`` (a JSON metadata header before the plan) load with their
metadata (`edgedet.runtimes.trt_file`). TensorRT's standard plugins are registered before any
engine is deserialised (`trt_logger`).

Device memory, streams and the CUDA context come from `edgedet.runtimes.cuda_binding`
(cuda-python's driver API, or pycuda where only it is installed; no import-time side effects):
the device's *primary* context (shared with the CUDA runtime, torch and cupy, instead of a
second context that costs memory the Jetson's CPU and GPU share), pushed / popped around each
call, a stream, device memory, page-locked host buffers, async copies /
``memcpy_dtoh_async``, ``stream.synchronize()``. The runtime owns its context and pushes it around
every call, so it can be used from any thread (calls are serialised by a lock).

Buffers (pinned host + device, one pair per I/O tensor) only grow: a new input shape that fits
the current allocation (a smaller batch) reuses it through views; a larger one reallocates.
(Jetson's zero-copy mapped memory would save the copies too; not done.)
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import tensorrt as trt

from edgedet.errors import (
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)
from edgedet.meta import sidecar_path

from .base import RuntimeBase, TensorSpec
from .capabilities import TENSORRT, RuntimeCapabilities, normalize_precision
from .trt_engine import (
    MIN_TRT_VERSION,
    REBUILD_HINT,
    TrtTarget,
    cached_engine,
    check_engine_sidecar,
    check_trt_version,
    cuda,
    current_target,
    trt_error_mark,
    trt_errors_since,
    trt_logger,
    trt_version_tuple,
)
from .trt_file import engine_header_meta, split_engine_bytes

log = logging.getLogger("edgedet.runtimes.tensorrt")

_ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
_DEVICE_RE = re.compile(r"^(cuda|dla)(?::(\d+))?$")


def _parse_device(device: str | None, dla_core: int | None) -> tuple[int, int | None]:
    """``"cuda"`` / ``"cuda:N"`` / ``"dla:N"`` -> (gpu index, DLA core or None)."""
    text = "cuda" if device is None else str(device).strip().lower()
    m = _DEVICE_RE.match(text)
    if m is None:
        raise InvalidInputError(
            f"TensorRT device must be 'cuda', 'cuda:N' or 'dla:N' (a DLA core on Jetson), "
            f"got {device!r}"
        )
    kind, num = m.group(1), m.group(2)
    if kind == "cuda":
        return (int(num) if num is not None else 0), dla_core
    core = int(num) if num is not None else 0
    if dla_core is not None and int(dla_core) != core:
        raise InvalidInputError(
            f"device={device!r} and dla_core={dla_core} disagree; give the DLA core once"
        )
    return 0, core


class TensorRTRuntime(RuntimeBase):
    """Run a TensorRT engine; ``.onnx`` models are built into a cached engine first.

    Args:
        model: ``.engine`` / ``.plan`` file (refused before deserialising when its sidecar says
            another TensorRT version or GPU), or ``.onnx`` (built, cached, reused).
        device: ``"cuda"``, ``"cuda:N"``, or ``"dla:N"`` for DLA core N on a Jetson.
        precision: when building from ONNX, ``"fp16"`` (default) or ``"fp32"`` (any case); a
            Q/DQ model is always INT8 (``"int8"`` requires one), its float layers in fp16
            unless ``"fp32"``. For an engine file it is a check: an engine built with another
            precision is refused. None: fp16 for builds, any for engines.
        cache_dir: engine cache folder (default ``~/.cache/edgedet/engines``).
        dla_core: DLA core (same as ``device="dla:N"``).
        max_batch: largest batch a dynamic-batch engine accepts (profile max; default 8 on the
            GPU with opt batch 1). On DLA the engine has this one fixed batch (default 1).
        workspace_mb: builder workspace limit.
        timing_cache: timing-cache file shared between builds (default: one in ``cache_dir``).
        input_size: (h, w) for a model with a dynamic image size (``edgedet.load`` passes the
            resolved meta's); part of the engine cache key.

    Safe to share between threads: ``infer`` holds a lock (one execution context and one set of
    buffers) and pushes the runtime's CUDA context, so concurrent calls are serialised.
    """

    name: ClassVar[str] = "tensorrt"
    capabilities: ClassVar[RuntimeCapabilities] = TENSORRT

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        dla_core: int | None = None,
        max_batch: int | None = None,
        workspace_mb: int = 1024,
        timing_cache: str | Path | None = None,
        input_size: tuple[int, int] | None = None,
        **unknown: Any,
    ) -> None:
        # Everything close() touches exists before anything can fail.
        self._closed = False
        self._cuda_ctx: Any = None
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._trt_runtime: Any = None
        self._buffers: dict[str, tuple[Any, Any]] = {}  # name -> (pinned host view, device mem)
        self._storage: dict[str, tuple[Any, Any]] = {}  # name -> (pinned uint8 buffer, device mem)
        self._bound_shapes: dict[str, tuple[int, ...]] | None = None
        self._lock = threading.Lock()
        self._record: dict[str, Any] = {}
        self._profile_max_batch: int | None = None
        self.cache_hit: bool | None = None
        self.foreign_meta: Any = None  # ModelMeta from an Ultralytics engine header
        if unknown:
            raise InvalidInputError(
                f"runtime 'tensorrt' got unknown option(s) {sorted(unknown)}; valid: device, "
                "precision, cache_dir, dla_core, max_batch, workspace_mb, timing_cache, "
                "input_size"
            )
        self.model_path = Path(model)
        self._gpu_index, self._dla_core = _parse_device(device, dla_core)
        if precision is not None:
            precision = normalize_precision(
                precision, TENSORRT.precision_option, what="TensorRT precision"
            )
        suffix = self.model_path.suffix.lower()
        if suffix not in (*_ENGINE_SUFFIXES, ".onnx"):
            raise InvalidInputError(
                f"runtime 'tensorrt' reads .onnx, .engine or .plan files, got '{self.model_path}'"
            )
        if not self.model_path.is_file():
            raise ModelLoadError(f"model file not found: {self.model_path}")

        check_trt_version()
        self._target: TrtTarget = current_target(self._gpu_index)
        try:
            cuda.init()
            # The primary context is not made current by retaining it; we push it per call.
            self._cuda_ctx = cuda.primary_context(self._gpu_index)
        except cuda.errors as err:
            raise RuntimeUnavailableError(
                f"runtime 'tensorrt' cannot create a CUDA context on cuda:{self._gpu_index} "
                f"({type(err).__name__}: {err}); check the driver and free GPU memory"
            ) from err

        try:
            with self._active():
                if suffix == ".onnx":

                    def build() -> Any:
                        return cached_engine(
                            self.model_path,
                            cache_dir,
                            precision=precision or "fp16",
                            max_batch=max_batch,
                            dla_core=self._dla_core,
                            workspace_mb=workspace_mb,
                            timing_cache=timing_cache,
                            device_index=self._gpu_index,
                            input_size=input_size,
                        )

                    built = build()
                    try:
                        self._load_engine(built.path)
                    except ModelLoadError as err:
                        if not built.hit:
                            raise
                        # A cached engine that does not load: drop it and rebuild once.
                        log.warning("cached engine %s does not load (%s); rebuilding", built.path, err)
                        for stale in (built.path, sidecar_path(built.path)):
                            stale.unlink(missing_ok=True)
                        built = build()
                        self._load_engine(built.path)
                    self.cache_hit = built.hit
                    self.engine_path = built.path
                    record: dict[str, Any] | None = built.record
                else:
                    self.engine_path = self.model_path
                    record = self._load_engine(self.engine_path)
                self._record = dict(record or {})
                self._precision = str(self._record.get("precision") or "unknown")
                asked = precision
                if suffix != ".onnx" and asked and record is not None and self._precision != asked:
                    raise IncompatibleModelError(
                        f"engine {self.engine_path} was built with precision {self._precision}, "
                        f"but precision={asked!r} was asked; rebuild it from the ONNX model "
                        f"with that precision, or leave precision unset"
                    )
                self._stream = cuda.stream()
                self._context = cast(Any, self._engine).create_execution_context()
                if self._context is None:
                    raise RuntimeUnavailableError(
                        f"TensorRT could not create an execution context for {self.engine_path} "
                        "(out of GPU memory?); close other GPU programs and retry"
                    )
                self.inputs, self.outputs = self._io_specs()
        except BaseException:
            self.close()
            raise

    # -- loading ------------------------------------------------------------------------------

    def _load_engine(self, path: Path) -> dict[str, Any] | None:
        """Deserialise ``path`` after the sidecar check; returns the sidecar's TensorRT record."""
        record = check_engine_sidecar(path, self._target)
        data = path.read_bytes()
        if not data:
            raise ModelLoadError(
                f"engine {path} is empty: the file is truncated; copy it again or {REBUILD_HINT}"
            )
        header, data = split_engine_bytes(data)
        if header is not None:
            # An Ultralytics export: the header is its metadata (names, imgsz, DLA core...).
            self.foreign_meta = engine_header_meta(path)
            dla = str(header.get("dla", "")).strip()
            if record is None and self._dla_core is None and dla.isdigit():
                self._dla_core = int(dla)  # Ultralytics writes the DLA core it built for
            log.info("%s has an Ultralytics metadata header (%d classes)", path,
                     len(header.get("names") or ()))  # fmt: skip
        self._trt_runtime = trt.Runtime(trt_logger())  # trt_logger() registers the plugins
        if self._dla_core is not None:
            self._trt_runtime.DLA_core = int(self._dla_core)
        elif record is not None and record.get("dla_core") is not None:
            self._dla_core = int(record["dla_core"])
            self._trt_runtime.DLA_core = self._dla_core
        mark = trt_error_mark()
        engine = self._trt_runtime.deserialize_cuda_engine(data)
        if engine is None:
            said = trt_errors_since(mark)
            if record is not None:
                # Sidecar matched this machine, size matched: the bytes or a plugin are wrong.
                raise ModelLoadError(
                    f"TensorRT could not deserialise engine {path} although its sidecar matches "
                    f"{self._target.describe()}{said}: the file is corrupt or needs a plugin "
                    f"library that is not loaded; {REBUILD_HINT}"
                )
            raise IncompatibleModelError(
                f"TensorRT could not deserialise engine {path} (it has no edgedet sidecar saying "
                f"what it was built with): it was probably built with another TensorRT version "
                f"or for another GPU than this machine's {self._target.describe()}, needs a "
                f"plugin library that is not loaded, or the file is truncated{said}; "
                f"{REBUILD_HINT}"
            )
        self._engine = engine
        log.info("loaded TensorRT engine %s on %s", path, self._target.describe())
        return record

    def _io_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Input / output specs; a dynamic dimension whose profile min == max (a DLA engine's
        batch) is reported fixed, so the Detector pads batches to it."""
        ins: list[TensorSpec] = []
        outs: list[TensorSpec] = []
        self._profile_max_batch: int | None = None
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims = [int(d) for d in self._engine.get_tensor_shape(name)]
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            mode = self._engine.get_tensor_mode(name)
            if mode == trt.TensorIOMode.INPUT and any(d < 0 for d in dims):
                # get_tensor_profile_shape(name, profile_index) -> [min, opt, max]
                lo, _opt, hi = self._engine.get_tensor_profile_shape(name, 0)
                dims = [int(a) if d < 0 and int(a) == int(b) else d for d, a, b in zip(dims, lo, hi)]
                if dims and dims[0] < 0:
                    top = int(hi[0])
                    prev = self._profile_max_batch
                    self._profile_max_batch = top if prev is None else min(prev, top)
            spec = TensorSpec(name, tuple(None if d < 0 else d for d in dims), dtype)
            if mode == trt.TensorIOMode.INPUT:
                ins.append(spec)
            elif mode == trt.TensorIOMode.OUTPUT:
                outs.append(spec)
        return tuple(ins), self._resolved_outputs(ins, outs)

    def _resolved_outputs(
        self, ins: list[TensorSpec], outs: list[TensorSpec]
    ) -> tuple[TensorSpec, ...]:
        """Output dims that follow from fixed input dims (e.g. 8400 anchors of a dynamic-H/W
        export built for one size) are filled in by setting the inputs' shapes at batch 1 on the
        execution context (``set_input_shape`` / ``get_tensor_shape``); the batch stays dynamic
        when the input's is."""
        if not any(None in s.shape[1:] for s in outs) or any(None in s.shape[1:] for s in ins):
            return tuple(outs)
        for spec in ins:
            first = 1 if spec.shape and spec.shape[0] is None else spec.shape[0]
            if not self._context.set_input_shape(spec.name, (first, *spec.shape[1:])):
                return tuple(outs)
        resolved = []
        for spec in outs:
            got = [int(d) for d in self._context.get_tensor_shape(spec.name)]
            dims = tuple(
                want if want is not None or i == 0 or got[i] < 0 else got[i]
                for i, want in enumerate(spec.shape)
            )
            resolved.append(TensorSpec(spec.name, dims, spec.dtype))
        return tuple(resolved)

    # -- CUDA context -------------------------------------------------------------------------

    @contextmanager
    def _active(self) -> Iterator[None]:
        """Make this runtime's CUDA context current on the calling thread for the block."""
        self._cuda_ctx.push()
        try:
            yield
        finally:
            cuda.pop()

    # -- inference ----------------------------------------------------------------------------

    @property
    def precision(self) -> str:
        """What the engine was built with: 'fp16', 'int8' or 'fp32' ('unknown' w/o sidecar)."""
        return self._precision

    @property
    def max_batch(self) -> int | None:
        """The largest batch a dynamic-batch engine accepts (its profile max); None when the
        batch is fixed (then ``inputs[0].shape[0]`` is it)."""
        return self._profile_max_batch

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set input shapes and bind buffers; no-op when the shapes did not change.

        Buffers only grow: a tensor keeps its page-locked host and device allocation while the
        new shape fits in it (a smaller batch is a view), since pinned allocation is slow."""
        if shapes == self._bound_shapes:
            return
        self._bound_shapes = None  # until every shape below is accepted
        for name, shape in shapes.items():
            if not self._context.set_input_shape(name, shape):
                spec = next(s for s in self.inputs if s.name == name)
                accepted = spec.describe()
                if spec.is_dynamic:
                    # get_tensor_profile_shape(name, profile_index) -> [min, opt, max]
                    lo, _opt, hi = self._engine.get_tensor_profile_shape(name, 0)
                    accepted += f", from {tuple(lo)} to {tuple(hi)}"
                raise InvalidInputError(
                    f"input '{name}' shape {shape} is outside what engine {self.engine_path} "
                    f"accepts ({accepted}); the batch is limited by the max_batch the engine "
                    "was built with: rebuild with a larger max_batch or feed smaller batches"
                )
        for spec in (*self.inputs, *self.outputs):
            shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise IncompatibleModelError(
                    f"output '{spec.name}' of {self.engine_path} has a data-dependent shape "
                    f"{shape}; edgedet's TensorRT runtime needs static output shapes (export "
                    "the model without in-graph NMS, or use runtime='onnxruntime')"
                )
            nbytes = max(int(np.prod(shape, dtype=np.int64)) * spec.dtype.itemsize, 1)
            stored = self._storage.get(spec.name)
            if stored is None or stored[0].nbytes < nbytes:
                if stored is not None:
                    stored[1].free()
                    cuda.free_pinned(stored[0])
                stored = (cuda.pinned_empty((nbytes,), np.uint8), cuda.mem_alloc(nbytes))
                self._storage[spec.name] = stored
            flat, dev = stored
            host = flat[: int(np.prod(shape, dtype=np.int64)) * spec.dtype.itemsize]
            self._buffers[spec.name] = (host.view(spec.dtype).reshape(shape), dev)
            self._context.set_tensor_address(spec.name, dev.ptr)
        self._bound_shapes = dict(shapes)

    def _free_buffers(self) -> None:
        for flat, dev in self._storage.values():
            dev.free()
            cuda.free_pinned(flat)
        self._storage.clear()
        self._buffers.clear()
        self._bound_shapes = None

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        with self._lock, self._active():
            shapes = {s.name: tuple(int(d) for d in feeds[s.name].shape) for s in self.inputs}
            self._bind(shapes)
            for spec in self.inputs:
                host, dev = self._buffers[spec.name]
                arr = np.asarray(feeds[spec.name])
                try:
                    np.copyto(host, arr, casting="same_kind")
                except TypeError as err:
                    raise InvalidInputError(
                        f"input '{spec.name}' must be {spec.dtype.name} (or castable to it), got "
                        f"{arr.dtype.name}"
                    ) from err
                cuda.htod_async(dev, host, self._stream)
            mark = trt_error_mark()
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeUnavailableError(
                    f"TensorRT failed to enqueue {self.engine_path}{trt_errors_since(mark)}"
                )
            for spec in self.outputs:
                host, dev = self._buffers[spec.name]
                cuda.dtoh_async(host, dev, self._stream)
            self._stream.synchronize()
            return {spec.name: np.array(self._buffers[spec.name][0]) for spec in self.outputs}

    # -- reporting ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        device = self._target.gpu_name
        if self._dla_core is not None:
            # GPU_FALLBACK lets TensorRT place layers DLA cannot run on the GPU; edgedet does not
            # inspect the placement (benchmarks/jetson_check.py does, on a device).
            device += f" (DLA core {self._dla_core}, GPU fallback allowed)"
        info = {
            "runtime": "tensorrt",
            "runtime_version": str(trt.__version__),
            "device": device,
            "compute_capability": self._target.compute_capability,
            "precision": self._precision,
            "engine": str(self.engine_path),
            "engine_cache_hit": self.cache_hit,
            "cuda_binding": cuda.name,
        }
        if self._target.board:
            info["board"] = self._target.board
        if self._record.get("float_precision"):
            info["float_precision"] = self._record["float_precision"]
        if self.max_batch is not None:
            info["max_batch"] = self.max_batch
        return info

    @classmethod
    def probe(cls) -> dict[str, Any]:
        """TensorRT version and CUDA device names; ``available: False`` when CUDA cannot start."""
        info: dict[str, Any] = {"version": str(trt.__version__), "devices": []}
        if trt_version_tuple() < MIN_TRT_VERSION:
            info.update(
                available=False,
                reason=f"TensorRT {trt.__version__} is older than 8.6 (JetPack 6.0); upgrade it",
            )
            return info
        try:
            cuda.init()
            info["devices"] = [cuda.device_name(i) for i in range(cuda.device_count())]
            info["cuda_binding"] = cuda.name
        except cuda.errors as err:
            info.update(available=False, reason=f"CUDA cannot start: {type(err).__name__}: {err}")
            return info
        if not info["devices"]:
            info.update(available=False, reason="no CUDA device is visible to this process")
        return info

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Free buffers, drop the engine, detach the CUDA context. Idempotent."""
        self._closed = True
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:  # never free buffers under an infer() running on another thread
            ctx = getattr(self, "_cuda_ctx", None)
            if ctx is None:
                return
            self._cuda_ctx = None
            ctx.push()
            try:
                self._free_buffers()
                self._context = None
                self._engine = None
                self._trt_runtime = None
                if self._stream is not None:
                    self._stream.destroy()
                self._stream = None
            finally:
                cuda.pop()
                ctx.release()  # cuDevicePrimaryCtxRelease
