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

Device memory, streams and the CUDA context come from pycuda (``pycuda.driver``, never
``pycuda.autoinit``: no import-time side effects): ``cuda.init()``,
``cuda.Device(i).make_context()``, ``Context.push()`` / ``cuda.Context.pop()`` / ``detach()``,
``cuda.Stream()``, ``cuda.mem_alloc``, ``cuda.pagelocked_empty``, ``cuda.memcpy_htod_async`` /
``memcpy_dtoh_async``, ``stream.synchronize()``. The runtime owns its context and pushes it around
every call, so it can be used from any thread (calls are serialised by a lock).

Buffers (pinned host + device, one pair per I/O tensor) are allocated once per set of input
shapes and reallocated only when an input shape changes.
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
import pycuda.driver as cuda
import tensorrt as trt

from edgedet.errors import (
    IncompatibleModelError,
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)

from .base import RuntimeBase, TensorSpec
from .capabilities import TENSORRT, RuntimeCapabilities, normalize_precision
from .trt_engine import (
    REBUILD_HINT,
    TrtTarget,
    cached_engine,
    check_engine_sidecar,
    current_target,
    trt_logger,
)

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
        precision: when building from ONNX, ``"fp16"`` (default) or ``"fp32"``; a Q/DQ model is
            always INT8 (``"int8"`` requires one). For an engine file it is a check: an engine
            built with another precision is refused. None: fp16 for builds, any for engines.
        cache_dir: engine cache folder (default ``~/.cache/edgedet/engines``).
        dla_core: DLA core (same as ``device="dla:N"``).
        max_batch: largest batch a dynamic-batch engine accepts (profile max).
        workspace_mb: builder workspace limit.
        timing_cache: timing-cache file shared between builds (default: one in ``cache_dir``).
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
        max_batch: int = 1,
        workspace_mb: int = 1024,
        timing_cache: str | Path | None = None,
        **unknown: Any,
    ) -> None:
        # Everything close() touches exists before anything can fail.
        self._closed = False
        self._cuda_ctx: Any = None
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._trt_runtime: Any = None
        self._buffers: dict[str, tuple[Any, Any]] = {}  # name -> (pinned host array, device mem)
        self._bound_shapes: dict[str, tuple[int, ...]] | None = None
        self._lock = threading.Lock()
        self.cache_hit: bool | None = None
        if unknown:
            raise InvalidInputError(
                f"runtime 'tensorrt' got unknown option(s) {sorted(unknown)}; valid: device, "
                "precision, cache_dir, dla_core, max_batch, workspace_mb, timing_cache"
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

        self._target: TrtTarget = current_target(self._gpu_index)
        try:
            cuda.init()
            self._cuda_ctx = cuda.Device(self._gpu_index).make_context()
            cuda.Context.pop()  # make_context() leaves it current; we push it per call instead
        except cuda.Error as err:
            raise RuntimeUnavailableError(
                f"runtime 'tensorrt' cannot create a CUDA context on cuda:{self._gpu_index} "
                f"({type(err).__name__}: {err}); check the driver and free GPU memory"
            ) from err

        try:
            with self._active():
                if suffix == ".onnx":
                    built = cached_engine(
                        self.model_path,
                        cache_dir,
                        precision=(precision or "fp16").lower(),
                        max_batch=max_batch,
                        dla_core=self._dla_core,
                        workspace_mb=workspace_mb,
                        timing_cache=timing_cache,
                        device_index=self._gpu_index,
                    )
                    self.cache_hit = built.hit
                    self.engine_path = built.path
                    record: dict[str, Any] | None = built.record
                    self._load_engine(self.engine_path)
                else:
                    self.engine_path = self.model_path
                    record = self._load_engine(self.engine_path)
                self._precision = str((record or {}).get("precision") or "unknown")
                asked = None if precision is None else str(precision).lower()
                if suffix != ".onnx" and asked and record is not None and self._precision != asked:
                    raise IncompatibleModelError(
                        f"engine {self.engine_path} was built with precision {self._precision}, "
                        f"but precision={asked!r} was asked; rebuild it from the ONNX model "
                        f"with that precision, or leave precision unset"
                    )
                self._stream = cuda.Stream()
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
        self._trt_runtime = trt.Runtime(trt_logger())
        if self._dla_core is not None:
            self._trt_runtime.DLA_core = int(self._dla_core)
        elif record is not None and record.get("dla_core") is not None:
            self._dla_core = int(record["dla_core"])
            self._trt_runtime.DLA_core = self._dla_core
        engine = self._trt_runtime.deserialize_cuda_engine(data)
        if engine is None:
            if record is not None:
                # Sidecar matched this machine, size matched: the bytes themselves are bad.
                raise ModelLoadError(
                    f"TensorRT could not deserialise engine {path} although its sidecar matches "
                    f"{self._target.describe()}: the file is corrupt; {REBUILD_HINT}"
                )
            raise IncompatibleModelError(
                f"TensorRT could not deserialise engine {path} (it has no edgedet sidecar saying "
                f"what it was built with): it was probably built with another TensorRT version "
                f"or for another GPU than this machine's {self._target.describe()}, or the file "
                f"is truncated; {REBUILD_HINT}"
            )
        self._engine = engine
        log.info("loaded TensorRT engine %s on %s", path, self._target.describe())
        return record

    def _io_specs(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        ins: list[TensorSpec] = []
        outs: list[TensorSpec] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(
                None if int(d) < 0 else int(d) for d in self._engine.get_tensor_shape(name)
            )
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            spec = TensorSpec(name, shape, dtype)
            mode = self._engine.get_tensor_mode(name)
            if mode == trt.TensorIOMode.INPUT:
                ins.append(spec)
            elif mode == trt.TensorIOMode.OUTPUT:
                outs.append(spec)
        return tuple(ins), tuple(outs)

    # -- CUDA context -------------------------------------------------------------------------

    @contextmanager
    def _active(self) -> Iterator[None]:
        """Make this runtime's CUDA context current on the calling thread for the block."""
        self._cuda_ctx.push()
        try:
            yield
        finally:
            cuda.Context.pop()

    # -- inference ----------------------------------------------------------------------------

    @property
    def precision(self) -> str:
        """What the engine was built with: 'fp16', 'int8' or 'fp32' ('unknown' w/o sidecar)."""
        return self._precision

    def _bind(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set input shapes and (re)allocate buffers; no-op when the shapes did not change."""
        if shapes == self._bound_shapes:
            return
        self._free_buffers()
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
            host = cuda.pagelocked_empty(shape, spec.dtype)
            dev = cuda.mem_alloc(max(int(host.nbytes), 1))
            self._buffers[spec.name] = (host, dev)
            self._context.set_tensor_address(spec.name, int(dev))
        self._bound_shapes = dict(shapes)

    def _free_buffers(self) -> None:
        for _host, dev in self._buffers.values():
            dev.free()
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
                cuda.memcpy_htod_async(dev, host, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeUnavailableError(
                    f"TensorRT failed to enqueue {self.engine_path} (see the TensorRT log above)"
                )
            for spec in self.outputs:
                host, dev = self._buffers[spec.name]
                cuda.memcpy_dtoh_async(host, dev, self._stream)
            self._stream.synchronize()
            return {spec.name: np.array(self._buffers[spec.name][0]) for spec in self.outputs}

    # -- reporting ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        device = self._target.gpu_name
        if self._dla_core is not None:
            device += f" (DLA core {self._dla_core})"
        return {
            "runtime": "tensorrt",
            "runtime_version": str(trt.__version__),
            "device": device,
            "compute_capability": self._target.compute_capability,
            "precision": self._precision,
            "engine": str(self.engine_path),
            "engine_cache_hit": self.cache_hit,
        }

    @classmethod
    def probe(cls) -> dict[str, Any]:
        """TensorRT version and CUDA device names; ``available: False`` when CUDA cannot start."""
        info: dict[str, Any] = {"version": str(trt.__version__), "devices": []}
        try:
            cuda.init()
            info["devices"] = [str(cuda.Device(i).name()) for i in range(cuda.Device.count())]
        except cuda.Error as err:
            info.update(available=False, reason=f"CUDA cannot start: {type(err).__name__}: {err}")
            return info
        if not info["devices"]:
            info.update(available=False, reason="no CUDA device is visible to this process")
        return info

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Free buffers, drop the engine, detach the CUDA context. Idempotent."""
        self._closed = True
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
            self._stream = None
        finally:
            cuda.Context.pop()
            ctx.detach()
