"""OpenVINO: CPU / GPU / NPU / AUTO, reading ONNX (including QDQ INT8) and IR (.xml + .bin).

Precision is explicit. OpenVINO's CPU plugin runs f32 models in bf16 on CPUs with bf16 units
(AMX / AVX512-BF16) unless told otherwise, which changes accuracy and speed silently. edgedet
sets ``INFERENCE_PRECISION_HINT`` from ``precision`` (default: what the model says, i.e. f32 for
a float model) and reports what the compiled model actually runs: ``int8`` when quantized
layers run in i8/u8, else the precision the plugin reports back.

Thread safety: one `OpenVinoRuntime` may be shared by several threads (one detector for several
camera threads). An ``InferRequest`` owns its input and output tensors, so two threads on one
request read each other's results; ``infer`` therefore gives each calling thread its own request
(``threading.local``, created on the thread's first call), while the ``CompiledModel`` they come
from is thread-safe in OpenVINO. ``submit`` runs ``infer`` on a pool of Python threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import openvino as ov

from edgedet.errors import InvalidInputError, ModelLoadError, RuntimeUnavailableError

from .async_pool import InferPool
from .base import RuntimeBase, TensorSpec
from .capabilities import OPENVINO, RuntimeCapabilities, normalize_precision

if TYPE_CHECKING:
    from edgedet.preprocess import PixelTransform

_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # edgedet -> INFERENCE_PRECISION_HINT
_HINTS = {
    "latency": "LATENCY",
    "throughput": "THROUGHPUT",
    "cumulative_throughput": "CUMULATIVE_THROUGHPUT",
}
_REPORTED = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


def _spec(port: Any, fallback: str) -> TensorSpec:
    pshape = port.get_partial_shape()
    shape = tuple(int(d.get_length()) if d.is_static else None for d in pshape)
    names = port.get_names()
    # A port may carry several tensor names once OpenVINO folds a no-op (an ONNX input feeding an
    # Expand: {'orig_target_sizes', '/Expand_1_output_0'}); get_any_name() picks any of them.
    # Prefer the graph's own names over torch-export internals ('/module/Op_output_0').
    name = min(names, key=lambda n: (n.startswith("/"), n)) if names else fallback
    return TensorSpec(name, shape, np.dtype(port.get_element_type().to_dtype()))


#: CPU plugin layer types whose runtime precision is the model's arithmetic precision
_COMPUTE_LAYERS = frozenset(
    {"Convolution", "Deconvolution", "FullyConnected", "MatMul", "GroupConvolution", "Gemm"}
)


def _is_compute(rt_info: Any) -> bool:
    return "layerType" not in rt_info or rt_info["layerType"].astype(str) in _COMPUTE_LAYERS


def _image_input(model: Any, layout: str) -> str | None:
    """Name of the model's one image input (rank 4, 3 channels where ``layout`` puts them)."""
    axis = layout.index("C")
    found = []
    for port in model.inputs:
        pshape = port.get_partial_shape()
        if pshape.rank.is_static and pshape.rank.get_length() == 4:
            dim = pshape[axis]
            if dim.is_dynamic or dim.get_length() == 3:
                found.append(port.get_any_name())
    return found[0] if len(found) == 1 else None


def _embed_pixel_transform(model: Any, t: PixelTransform) -> tuple[Any, PixelTransform | None]:
    """``model`` with its image input taking uint8 N×H×W×3 BGR and ``t`` run in the graph.

    OpenVINO's preprocessing API (docs.openvino.ai, "Optimize Preprocessing" ->
    "Preprocessing API - details"): the tensor is declared u8 NHWC, the model keeps its layout,
    and the steps convert_element_type(f32), reverse_channels (BGR -> RGB), mean, scale become
    graph operations the CPU plugin fuses into the first layers. ``(x - mean) / scale`` with
    ``mean = -bias / gain`` and ``scale = 1 / gain`` is ``x * gain + bias``.
    """
    from openvino.preprocess import PrePostProcessor

    name = _image_input(model, t.layout)
    if name is None or any(g == 0.0 for g in t.gain):
        return model, None
    ppp = PrePostProcessor(model)
    port = ppp.input(name)
    port.tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
    port.model().set_layout(ov.Layout(t.layout))
    steps = port.preprocess().convert_element_type(ov.Type.f32)
    if t.swap_rb:
        steps.reverse_channels()
    if not t.identity:
        steps.mean([-b / g for b, g in zip(t.bias, t.gain)]).scale([1.0 / g for g in t.gain])
    return ppp.build(), t


class OpenVinoRuntime(RuntimeBase):
    """A compiled OpenVINO model.

    Args:
        model: ``.onnx`` or ``.xml`` path.
        device: ``CPU`` (default), ``GPU``, ``GPU.1``, ``NPU``, ``AUTO``...
        precision: ``fp32`` / ``bf16`` / ``fp16`` inference precision for float layers
            (None: ``fp32``, what a float model says; INT8 layers of a quantized model stay INT8).
        hint: ``latency`` (default) or ``throughput``.
        streams, threads: ``NUM_STREAMS`` / ``INFERENCE_NUM_THREADS`` (None: plugin default).
        cache_dir: compiled-blob cache (speeds up the next load).
        requests: size of the async infer queue (None: the plugin's optimal number).
        pixel_transform: an `edgedet.preprocess.PixelTransform`: the image input then takes the
            letterboxed uint8 N×H×W×3 BGR batch and OpenVINO's PrePostProcessor converts it
            inside the compiled graph (where the plugin fuses it with the first layers) instead
            of numpy doing it before every call. `edgedet.load` passes the model's own; None
            (default here) keeps the model's float input. `pixel_transform` says what was
            embedded (None when the model has no single N×3×H×W / N×H×W×3 image input).

    Safe to share between threads: ``infer`` runs on one ``InferRequest`` per calling thread
    (see the module docstring); ``submit`` / ``wait_all`` share one thread pool.
    """

    name: ClassVar[str] = "openvino"
    capabilities: ClassVar[RuntimeCapabilities] = OPENVINO

    def __init__(
        self,
        model: str | Path,
        *,
        device: str | None = None,
        precision: str | None = None,
        hint: str = "latency",
        streams: int | None = None,
        threads: int | None = None,
        cache_dir: str | Path | None = None,
        requests: int | None = None,
        pixel_transform: PixelTransform | None = None,
    ):
        self.device = (device or "CPU").upper()
        precision = normalize_precision(
            precision or "fp32", OPENVINO.precision_option, what="openvino precision"
        )
        if hint not in _HINTS:
            raise InvalidInputError(f"openvino hint must be one of {list(_HINTS)}, got '{hint}'")
        self.core = ov.Core()
        base = self.device.split(".")[0].split(":")[0]
        if base not in ("AUTO", "MULTI", "HETERO") and not any(
            d.split(".")[0] == base for d in self.core.available_devices
        ):
            raise RuntimeUnavailableError(
                f"openvino device '{self.device}' is not available here; available: "
                f"{self.core.available_devices}"
            )
        path = Path(model)
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self.core.set_property({"CACHE_DIR": str(cache_dir)})
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": _HINTS[hint],
            "INFERENCE_PRECISION_HINT": _PRECISIONS[precision],
        }
        if streams is not None:
            config["NUM_STREAMS"] = int(streams)
        if threads is not None and base == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if base in ("AUTO", "MULTI"):
            config.pop("INFERENCE_PRECISION_HINT")  # set per device by the AUTO plugin
        try:
            ov_model = self.core.read_model(str(path))
        except RuntimeError as err:
            raise ModelLoadError(f"openvino could not read {path}: {err}") from err
        self.pixel_transform = None
        if pixel_transform is not None:
            ov_model, self.pixel_transform = _embed_pixel_transform(ov_model, pixel_transform)
        try:
            self.compiled = self.core.compile_model(ov_model, self.device, config)
        except RuntimeError as err:
            raise ModelLoadError(
                f"openvino could not compile {path} for {self.device}: {err}"
            ) from err
        self.model_path = path
        self.requested_precision = precision
        self.hint = hint
        self.inputs = tuple(_spec(p, f"input{i}") for i, p in enumerate(self.compiled.inputs))
        self.outputs = tuple(_spec(p, f"output{i}") for i, p in enumerate(self.compiled.outputs))
        # one InferRequest per calling thread: a shared one mixes threads' tensors
        self._local = threading.local()
        self._submit_lock = threading.Lock()
        self._requests = requests
        self._pool: InferPool | None = None
        self._precision = self._actual_precision()

    def _actual_precision(self) -> str:
        try:
            runtime_model = self.compiled.get_runtime_model()
            kinds = set()
            for op in runtime_model.get_ops():
                info = op.get_rt_info()
                # compute layers only: a uint8 pixel input (pixel_transform) moves u8 data
                # through Input/Transpose/Subgraph layers of a float model
                if "runtimePrecision" in info and _is_compute(info):
                    kinds.add(info["runtimePrecision"].astype(str))
            if kinds & {"i8", "u8"}:
                return "int8"
        except RuntimeError:
            pass  # some plugins (GPU/NPU) expose no runtime model; fall back to the hint
        try:
            reported = str(self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string())
        except RuntimeError:
            return self.requested_precision
        return _REPORTED.get(reported, reported)

    @property
    def precision(self) -> str:
        return self._precision

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        result = self._thread_request().infer({s.name: feeds[s.name] for s in self.inputs})
        return {
            spec.name: np.array(result[port])
            for spec, port in zip(self.outputs, self.compiled.outputs)
        }

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        if self.pixel_transform is not None:
            for spec in self.inputs:
                arr = feeds.get(spec.name)
                if spec.dtype == np.uint8 and arr is not None and arr.dtype != np.uint8:
                    raise InvalidInputError(
                        f"input '{spec.name}' of this OpenVINO runtime takes letterboxed uint8 "
                        f"N×H×W×3 BGR pixels (it converts them in its graph: pixel_transform), "
                        f"got {arr.dtype} {tuple(arr.shape)}; feed Detector.preprocess's output, "
                        "or load with runtime_options={'pixel_transform': None} to feed the "
                        "model's float input (Detector.model_feeds)"
                    )
        super()._check_feeds(feeds)

    def _thread_request(self) -> Any:
        """The calling thread's ``InferRequest`` (freed with the thread)."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        callback: Callable[[dict[str, np.ndarray], Any], None],
        userdata: Any = None,
    ) -> None:
        """Run a request on a pool of Python threads (``requests`` of them, default the
        plugin's optimal number), each on its own ``InferRequest``. Not ``AsyncInferQueue``:
        its native callbacks can deadlock the compiled model's teardown
        (`edgedet.runtimes.async_pool`)."""
        self._check_feeds(feeds)
        with self._submit_lock:
            if self._pool is None:
                self._pool = InferPool(self.infer, self._requests or self._optimal_requests())
        self._pool.submit(feeds, callback, userdata)

    def _optimal_requests(self) -> int:
        try:
            return max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except (RuntimeError, TypeError, ValueError):
            return 1

    def wait_all(self) -> None:
        if self._pool is not None:
            self._pool.wait_all()

    def describe(self) -> dict[str, Any]:
        def prop(key: str) -> Any:
            try:
                value = self.compiled.get_property(key)
            except RuntimeError:
                return None
            return value if isinstance(value, (int, float, str)) else str(value)

        return {
            "runtime": self.name,
            "runtime_version": ov.__version__,
            "device": self.device,
            "device_name": self._device_name(),
            "threads": prop("INFERENCE_NUM_THREADS"),
            "streams": prop("NUM_STREAMS"),
            "hint": self.hint,
            "precision": self.precision,
            "precision_requested": self.requested_precision,
            "preprocessing": "in graph (OpenVINO PrePostProcessor)"
            if self.pixel_transform is not None
            else "numpy/OpenCV",
        }

    def _device_name(self) -> str:
        try:
            return str(self.core.get_property(self.device.split(":")[0], "FULL_DEVICE_NAME"))
        except RuntimeError:
            return self.device

    @classmethod
    def probe(cls) -> dict[str, Any]:
        core = ov.Core()
        return {"version": ov.__version__, "devices": list(core.available_devices)}

    def close(self) -> None:
        if not self._closed:
            if self._pool is not None:  # requests in flight finish before the model goes
                self._pool.close()
                self._pool = None
            self._local = threading.local()  # this thread's request; others go with their thread
            self.compiled = None  # type: ignore[assignment]
        super().close()
