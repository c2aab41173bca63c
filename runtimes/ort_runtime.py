"""ONNX Runtime: the fallback that runs everywhere (CPU by default; CUDA / TensorRT EPs if present).

Devices: ``cpu`` (default), ``cuda`` / ``cuda:N`` (CUDAExecutionProvider), ``tensorrt`` /
``tensorrt:N`` (TensorrtExecutionProvider, with CUDA then CPU behind it for unsupported nodes).
A device whose provider is not in this onnxruntime build is an error, not a silent CPU run.

Thread safety: one `OnnxRuntime` may be shared by several threads. ``InferenceSession.run`` is
thread-safe (each call has its own inputs and outputs) and releases the GIL, so concurrent
``infer`` calls run in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort

from edgedet.errors import (
    InvalidInputError,
    ModelLoadError,
    RuntimeUnavailableError,
)
from edgedet.hints import arg

from .async_pool import InferPool
from .base import RuntimeBase, TensorSpec
from .capabilities import ONNXRUNTIME, RuntimeCapabilities

#: Requests run at once by ``submit`` (each ``run`` uses the session's own intra-op threads).
_POOL_WORKERS = 4

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_DTYPES.get(arg.type, np.float32)))


def providers_for(device: str | None) -> list[Any]:
    """The provider list for a device string; raises if this build lacks the provider."""
    device = (device or "cpu").lower()
    kind, _, index = device.partition(":")
    if kind not in _PROVIDERS:
        raise InvalidInputError(
            f"onnxruntime device must be cpu, cuda[:N] or tensorrt[:N], got '{device}'"
        )
    available = ort.get_available_providers()
    wanted = _PROVIDERS[kind]
    if wanted not in available:
        raise RuntimeUnavailableError(
            f"onnxruntime device '{device}' needs {wanted}, but this onnxruntime {ort.__version__} "
            f"has only {available}; install onnxruntime-gpu (or use {arg('device', repr('cpu'))})"
        )
    opts = {"device_id": int(index)} if index else {}
    chain: list[Any] = [(wanted, opts)] if opts else [wanted]
    if kind == "tensorrt" and "CUDAExecutionProvider" in available:
        chain.append(("CUDAExecutionProvider", opts) if opts else "CUDAExecutionProvider")
    if kind != "cpu":
        chain.append("CPUExecutionProvider")
    return chain


class OnnxRuntime(RuntimeBase):
    """An ONNX Runtime session. ``threads`` sets intra-op threads (None: ORT decides).

    Safe to share between threads: ``infer`` calls ``session.run``, which is thread-safe."""

    name: ClassVar[str] = "onnxruntime"
    capabilities: ClassVar[RuntimeCapabilities] = ONNXRUNTIME

    def __init__(
        self,
        model: str | Path | bytes,
        *,
        device: str | None = None,
        threads: int | None = None,
        inter_threads: int | None = None,
        optimization: str = "all",
        spin: bool | None = None,
    ):
        if optimization not in _OPT_LEVELS:
            raise InvalidInputError(
                f"optimization must be one of {list(_OPT_LEVELS)}, got '{optimization}'"
            )
        if threads is not None and threads < 0:
            raise InvalidInputError(f"threads must be >= 0, got {threads}")
        so = ort.SessionOptions()
        so.graph_optimization_level = _OPT_LEVELS[optimization]
        so.log_severity_level = 3
        if threads is not None:
            so.intra_op_num_threads = threads
        if inter_threads is not None:
            so.inter_op_num_threads = inter_threads
        if spin is not None:  # spinning threads burn CPU between calls; off helps multi-process
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.device = (device or "cpu").lower()
        providers = providers_for(self.device)
        source: str | bytes
        if isinstance(model, (bytes, bytearray)):
            source = bytes(model)
            self.model_path: Path | None = None
        else:
            self.model_path = Path(model)
            if not self.model_path.is_file():
                raise ModelLoadError(f"model file not found: {self.model_path}")
            source = os.fspath(self.model_path)
        try:
            self.session = ort.InferenceSession(source, sess_options=so, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/InvalidProtobuf types
            raise ModelLoadError(
                f"onnxruntime could not load {self.model_path or 'the model'}: {err}".strip()
            ) from err
        self.threads = threads
        self._pool: InferPool | None = None
        self.optimization = optimization
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self._quantized = self._has_qdq()

    def _has_qdq(self) -> bool:
        if self.model_path is None:
            return False
        from edgedet.meta import is_quantized_onnx

        return is_quantized_onnx(self.model_path)

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        outs = self.session.run(self._output_names, dict(feeds))
        return dict(zip(self._output_names, outs))

    def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        callback: Callable[[dict[str, np.ndarray], Any], None],
        userdata: Any = None,
    ) -> None:
        """Asynchronous run on a pool of Python threads calling ``run`` (thread-safe, releases
        the GIL), not ``run_async``, whose native callbacks can deadlock the session's teardown
        (`edgedet.runtimes.async_pool`)."""
        self._check_feeds(feeds)
        if self._pool is None:
            self._pool = InferPool(self.infer, _POOL_WORKERS)
        self._pool.submit(feeds, callback, userdata)

    def wait_all(self) -> None:
        """Block until every submitted request has finished; raise if any of them failed."""
        if self._pool is not None:
            self._pool.wait_all()

    @property
    def precision(self) -> str:
        if self._quantized:
            return "int8"
        return "fp16" if any(s.dtype == np.float16 for s in self.inputs) else "fp32"

    def describe(self) -> dict[str, Any]:
        so = self.session.get_session_options()
        return {
            "runtime": self.name,
            "runtime_version": ort.__version__,
            "device": self.device,
            "providers": self.session.get_providers(),
            "threads": so.intra_op_num_threads or None,
            "optimization": self.optimization,
            "precision": self.precision,
        }

    @classmethod
    def probe(cls) -> dict[str, Any]:
        devices = ["cpu"] + [
            k for k, p in _PROVIDERS.items() if k != "cpu" and p in ort.get_available_providers()
        ]
        return {"version": ort.__version__, "devices": devices}

    def close(self) -> None:
        if not self._closed:
            if self._pool is not None:  # requests in flight finish before the session goes
                self._pool.close()
                self._pool = None
            self.session = None  # type: ignore[assignment]
        super().close()
