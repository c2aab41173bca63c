"""`CalibrationSpec`: one typed, validated description of an INT8 calibration.

The same spec compiles to ONNX Runtime ``quantize_static`` (`edgedet.calibration.ort_int8`),
NNCF for OpenVINO (`edgedet.calibration.nncf_int8`) and TensorRT (`edgedet.calibration.trt_int8`).
Tool-specific option dictionaries are built from these typed fields in those modules only.

>>> spec = CalibrationSpec(method="percentile", percentile=99.99, exclude_types=("Resize",))
>>> spec.method, spec.per_channel, spec.keep_decode_tail_float
('percentile', True, True)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgedet.errors import InvalidInputError

from .detr_tail import find_detr_decoder
from .tail import COMPUTE_OPS, DecodeTail, ensure_node_names, find_decode_tail, find_input_convs

METHODS = ("minmax", "entropy", "percentile", "mse", "mean_minmax")
HEAD_CONV_POLICIES = ("auto", "quantize", "float")
SCOPES = ("conv_inputs", "all")

#: ``head_convs="auto"``: families whose head prediction convs stay in float, and why.
#: NanoDet's GFL head predicts class logits and box distributions with ONE conv per level (split
#: afterwards), so its weights serve two very different outputs; measured on NanoDet-m it is
#: worth keeping those three small convs in float (see calibration/README.md).
FLOAT_HEAD_CONV_FAMILIES = frozenset({"nanodet"})

#: Fewer calibration images than this draw a warning (logged and written into the record).
MIN_TRUSTED_IMAGES = 100


@dataclass(frozen=True)
class CalibrationSpec:
    """How to calibrate a float model to INT8.

    Attributes:
        method: activation range estimator: ``minmax`` (observed min/max), ``entropy`` (KL
            divergence of the histogram, TensorRT's classic), ``percentile`` (clip at
            ``percentile`` of |x|), ``mse`` (clipping range that minimises the quantization
            mean squared error over the histogram), ``mean_minmax`` (the mean over images of
            each image's min and max: robust to a few images whose activations reach far
            beyond the others', which the pooled estimators follow; the label-free guard tries
            it when ``mse`` misses its bound, see `edgedet.calibration.guard`).
        percentile: the percentile for ``method="percentile"``, in (90, 100].
        num_images: how many calibration images (chosen reproducibly with ``seed``).
        seed: the seed of that choice; None takes the first ``num_images`` in order.
        per_channel: per-output-channel weight scales (almost always needed by depthwise convs).
        symmetric_activations: int8 activations with zero point 0 (TensorRT needs this); else
            asymmetric uint8.
        reduce_range: 7-bit weights (for x86 CPUs without VNNI, against int16 saturation).
        scope: what gets quantized. ``conv_inputs`` (default): the inputs and weights of
            compute layers (Conv, ConvTranspose, Gemm, MatMul) only; their outputs and every
            activation / elementwise / data-movement op between them stay float, as TensorRT's
            explicit quantization and NNCF do. ``all``: ONNX Runtime's default, every op it can
            quantize, outputs re-quantized (Sigmoid, Mul, Add, Concat, Resize...): ORT fuses
            Conv into QLinearConv and runs faster, but SiLU networks (YOLOX, YOLOv8) lose much
            more accuracy (calibration/README.md).
        exclude_names / exclude_types / exclude_patterns: layers kept in float by node name, op
            type, or regular expression on the node name (``re.search``).
        keep_decode_tail_float: keep the decode tail in float (see `edgedet.calibration.tail`);
            for a DETR-style graph also its query selection and score / box heads
            (`edgedet.calibration.detr_tail`).
        keep_stem_float: keep the convs that read the input image in float
            (`edgedet.calibration.tail.find_input_convs`).
        head_convs: the head's last convs: ``auto`` (float for families in
            `FLOAT_HEAD_CONV_FAMILIES`), ``quantize`` or ``float``.
        max_map_drop: accuracy budget, absolute mAP50-95 points (0.5 = 0.005 mAP); None: no
            budget.
        max_class_drop: budget per safety class, absolute AP points; None: no budget.
        safety_classes: class names whose AP ``max_class_drop`` guards.
    """

    method: str = "mse"
    percentile: float = 99.999
    num_images: int = 300
    seed: int | None = 0
    per_channel: bool = True
    symmetric_activations: bool = False
    reduce_range: bool = False
    scope: str = "conv_inputs"
    exclude_names: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    exclude_patterns: tuple[str, ...] = ()
    keep_decode_tail_float: bool = True
    keep_stem_float: bool = True
    head_convs: str = "auto"
    max_map_drop: float | None = None
    max_class_drop: float | None = None
    safety_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        method = str(self.method).lower()
        if method not in METHODS:
            raise InvalidInputError(
                f"calibration method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        object.__setattr__(self, "method", method)
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)):
            raise InvalidInputError(f"percentile must be a number, got {self.percentile!r}")
        if not 90.0 < float(self.percentile) <= 100.0:
            raise InvalidInputError(
                f"percentile must be in (90, 100], got {self.percentile}; typical values are "
                "99.99 or 99.999"
            )
        object.__setattr__(self, "percentile", float(self.percentile))
        if (
            isinstance(self.num_images, bool)
            or not isinstance(self.num_images, int)
            or self.num_images < 1
        ):
            raise InvalidInputError(
                f"num_images must be a positive int, got {self.num_images!r}; a few hundred "
                "images is typical"
            )
        if self.scope not in SCOPES:
            raise InvalidInputError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.head_convs not in HEAD_CONV_POLICIES:
            raise InvalidInputError(
                f"head_convs must be one of {HEAD_CONV_POLICIES}, got {self.head_convs!r}"
            )
        for name in ("exclude_names", "exclude_types", "exclude_patterns", "safety_classes"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise InvalidInputError(
                    f"{name} must be a sequence of strings, got the string {value!r}; "
                    f"write {name}=({value!r},)"
                )
            object.__setattr__(self, name, tuple(str(v) for v in value))
        for pattern in self.exclude_patterns:
            try:
                re.compile(pattern)
            except re.error as err:
                raise InvalidInputError(
                    f"exclude pattern {pattern!r} is not a valid regular expression: {err}"
                ) from err
        for name in ("max_map_drop", "max_class_drop"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidInputError(
                    f"{name} must be a non-negative number of mAP points (e.g. 0.5), got {value!r}"
                )
            object.__setattr__(self, name, float(value))
        if self.max_class_drop is not None and not self.safety_classes:
            raise InvalidInputError(
                "max_class_drop needs the safety classes it guards: pass safety_classes=(...) "
                "(on the command line: --safety-classes person,car)"
            )

    # -- helpers ------------------------------------------------------------------------------

    def replace(self, **changes: Any) -> CalibrationSpec:
        """A copy with fields changed, validated again."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InvalidInputError(
                f"unknown calibration setting(s) {sorted(unknown)}; valid: "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(f"unknown calibration setting(s) {unknown}")
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
        }
        return cls(**kwargs)

    @property
    def has_budget(self) -> bool:
        return self.max_map_drop is not None or self.max_class_drop is not None

    def keeps_head_convs_float(self, family: str | None) -> bool:
        if self.head_convs == "float":
            return True
        if self.head_convs == "quantize":
            return False
        return family in FLOAT_HEAD_CONV_FAMILIES


@dataclass(frozen=True)
class Exclusion:
    """Which nodes stay float, and why (``reasons[name]`` is a short string)."""

    names: tuple[str, ...]
    reasons: Mapping[str, str]
    tail: DecodeTail | None

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for why in self.reasons.values():
            counts[why] = counts.get(why, 0) + 1
        return counts


def resolve_exclusions(
    model: Any, spec: CalibrationSpec, family: str | None = None, *, extra: Sequence[str] = ()
) -> Exclusion:
    """The node names of ``model`` (an ``onnx.ModelProto``; unnamed nodes get names) kept in
    float by ``spec``: explicit names (unknown ones raise), op types, patterns, the decode tail
    and head convs, plus ``extra`` (e.g. layers the sensitivity analysis keeps float)."""
    ensure_node_names(model)
    by_name = {n.name: n for n in model.graph.node}
    reasons: dict[str, str] = {}
    missing = [n for n in spec.exclude_names if n not in by_name]
    if missing:
        sample = ", ".join(list(by_name)[:5])
        raise InvalidInputError(
            f"excluded node(s) {missing} are not in the model; node names look like: {sample} "
            "(use exclude_patterns for regular expressions)"
        )
    for name in spec.exclude_names:
        reasons[name] = "name"
    types = {t.lower() for t in spec.exclude_types}
    patterns = [re.compile(p) for p in spec.exclude_patterns]
    for node in model.graph.node:
        if node.op_type.lower() in types:
            reasons.setdefault(node.name, "type")
        elif any(p.search(node.name) for p in patterns):
            reasons.setdefault(node.name, "pattern")
    tail = None
    if spec.keep_decode_tail_float:
        tail = find_decode_tail(model)
        for name in tail.nodes:
            reasons.setdefault(name, "decode tail")
        if spec.keeps_head_convs_float(family):
            for name in tail.head_convs:
                reasons.setdefault(name, "head conv")
        detr = find_detr_decoder(model)  # query selection + box/score heads of a DETR
        if detr is not None:
            for name in detr.selection:
                reasons.setdefault(name, "detr query selection")
            for name in detr.heads:
                reasons.setdefault(name, "detr head")
    if spec.keep_stem_float:
        for name in find_input_convs(model):
            reasons.setdefault(name, "stem")
    for name in extra:
        if name not in by_name:
            raise InvalidInputError(f"node {name!r} kept in float is not in the model")
        reasons.setdefault(name, "sensitive")
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    names = tuple(sorted(reasons, key=order.__getitem__))
    return Exclusion(names=names, reasons=reasons, tail=tail)


def quantizable_layers(model: Any, exclusion: Exclusion | None = None) -> list[str]:
    """Names of compute nodes (Conv, Gemm, MatMul...) not excluded: the candidates for
    per-layer sensitivity analysis."""
    ensure_node_names(model)
    skip = set(exclusion.names) if exclusion else set()
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS and n.name not in skip]
