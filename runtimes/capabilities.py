"""What each runtime supports, declared once: `RuntimeCapabilities`, and the one precision type.

Light on purpose (no inference library imported): the detector, ``edgedet bench`` and
``edgedet calibrate`` read a runtime's declaration through
`edgedet.runtimes.registry.runtime_capabilities` even where its library is not installed
(``edgedet calibrate --runtime tensorrt`` writes a TensorRT-ready INT8 model on a machine
without TensorRT). Each built-in runtime class carries its declaration as
``capabilities`` (a class attribute); tests check each declaration against what the runtime
really accepts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, cast

from edgedet.errors import InvalidInputError

#: A numeric precision. ``mixed``: a model mixing precisions (meta only, e.g. INT8 with float
#: layers described as such).
Precision = Literal["fp32", "fp16", "bf16", "int8", "mixed"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "int8", "mixed")

_ALIASES: dict[str, Precision] = {
    "f32": "fp32", "float32": "fp32", "float": "fp32",
    "f16": "fp16", "float16": "fp16", "half": "fp16",
    "bfloat16": "bf16",
    "i8": "int8", "u8": "int8",
}  # fmt: skip

#: An INT8 model format: ``qdq_onnx`` (ONNX with QuantizeLinear/DequantizeLinear pairs, built
#: by ONNX Runtime's quantizer) or ``openvino_ir`` (OpenVINO IR with FakeQuantize, built by NNCF).
Int8Format = Literal["qdq_onnx", "openvino_ir"]
INT8_FORMATS: tuple[Int8Format, ...] = ("qdq_onnx", "openvino_ir")


def normalize_precision(
    value: object, allowed: Iterable[str] | None = None, *, what: str = "precision"
) -> Precision:
    """``value`` as a `Precision` (case-insensitive; ``f32`` / ``float16`` / ``half``...
    accepted). Raises `InvalidInputError` naming ``what`` and the allowed values when it is not
    a precision or not in ``allowed``."""
    choices = tuple(allowed) if allowed is not None else PRECISIONS
    text = str(value).strip().lower() if isinstance(value, str) else None
    p = _ALIASES.get(text, text) if text is not None else None
    if p not in PRECISIONS or p not in choices:
        raise InvalidInputError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return cast(Precision, p)


@dataclass(frozen=True)
class RuntimeCapabilities:
    """What one runtime supports.

    Attributes:
        devices: device kinds its ``device`` argument takes, lower case, without an index
            (``cuda`` stands for ``cuda:N``).
        precisions: precisions it can run.
        precision_option: values of its ``precision`` option (for a float model); empty when it
            has no such option (it runs what the model is).
        threads: takes a ``threads`` option (inference threads).
        int8_formats: INT8 model formats it runs; the first is what ``edgedet calibrate
            --runtime NAME`` builds for it.
        int8_symmetric: its INT8 activations must be symmetric (zero point 0).
        async_infer: offers ``submit`` / ``wait_all`` (`edgedet.runtimes.base.AsyncInfer`).
        precision_from_meta: when no ``precision`` option is given, a model whose meta declares
            a reduced float precision (fp16 / bf16) is run at that precision.
        builds_engine: builds a fixed engine from an ONNX model at load, so it takes
            ``input_size`` (fixes a dynamic H/W) and ``max_batch`` (the dynamic-batch profile's
            largest batch) options.
        int8_fused_scope: a ``calibrate --scope`` whose QDQ file this runtime fuses into
            integer kernels, when its accurate default scope runs slower than float (ONNX
            Runtime's CPU provider fuses DQ->Conv->Q only when the conv output is quantized too:
            docs/optimize.md); ``edgedet optimize`` adds that variant as a candidate.
        model_formats: model files it runs: ``onnx``, ``openvino_ir``, ``engine`` (a serialized
            TensorRT engine), ``torchscript``; ``edgedet optimize`` builds its candidates from an
            ONNX model, so it considers the runtimes that run ``onnx``.
        pixel_input: takes a ``pixel_transform`` option (`edgedet.preprocess.PixelTransform`):
            its image input then takes letterboxed uint8 BGR pixels and the conversion to the
            model's float input runs inside its graph; `edgedet.load` passes the model's own.
    """

    devices: tuple[str, ...]
    precisions: tuple[Precision, ...]
    precision_option: tuple[Precision, ...] = ()
    threads: bool = False
    int8_formats: tuple[Int8Format, ...] = ()
    int8_symmetric: bool = False
    async_infer: bool = False
    precision_from_meta: bool = False
    builds_engine: bool = False
    int8_fused_scope: str | None = None
    pixel_input: bool = False
    model_formats: tuple[str, ...] = ("onnx",)

    def __post_init__(self) -> None:
        for p in (*self.precisions, *self.precision_option):
            normalize_precision(p, what="declared precision")
        bad = [f for f in self.int8_formats if f not in INT8_FORMATS]
        if bad:
            raise InvalidInputError(f"unknown INT8 format(s) {bad}; known: {INT8_FORMATS}")
        if "int8" in self.precisions and not self.int8_formats:
            raise InvalidInputError("a runtime that runs int8 must declare its INT8 formats")

    @property
    def int8_format(self) -> Int8Format | None:
        """The INT8 format ``edgedet calibrate`` builds for this runtime (None: no INT8)."""
        return self.int8_formats[0] if self.int8_formats else None

    def to_dict(self) -> dict[str, object]:
        return {
            "devices": list(self.devices),
            "precisions": list(self.precisions),
            "precision_option": list(self.precision_option),
            "threads": self.threads,
            "int8_formats": list(self.int8_formats),
            "int8_symmetric": self.int8_symmetric,
            "async_infer": self.async_infer,
            "precision_from_meta": self.precision_from_meta,
            "builds_engine": self.builds_engine,
            "int8_fused_scope": self.int8_fused_scope,
            "pixel_input": self.pixel_input,
            "model_formats": list(self.model_formats),
        }


ONNXRUNTIME = RuntimeCapabilities(
    devices=("cpu", "cuda", "tensorrt"),
    precisions=("fp32", "fp16", "int8"),
    threads=True,
    int8_formats=("qdq_onnx",),
    async_infer=True,
    int8_fused_scope="all",
)
OPENVINO = RuntimeCapabilities(
    devices=("cpu", "gpu", "npu", "auto"),
    precisions=("fp32", "fp16", "bf16", "int8"),
    precision_option=("fp32", "fp16", "bf16"),
    threads=True,
    int8_formats=("openvino_ir", "qdq_onnx"),
    async_infer=True,
    precision_from_meta=True,
    pixel_input=True,
    model_formats=("onnx", "openvino_ir"),
)
TENSORRT = RuntimeCapabilities(
    devices=("cuda", "dla"),
    precisions=("fp32", "fp16", "int8"),
    precision_option=("fp32", "fp16", "int8"),
    int8_formats=("qdq_onnx",),
    int8_symmetric=True,
    builds_engine=True,
    model_formats=("onnx", "engine"),
)
TORCH = RuntimeCapabilities(
    devices=("cpu", "cuda"), precisions=("fp32",), threads=True, model_formats=("torchscript",)
)
