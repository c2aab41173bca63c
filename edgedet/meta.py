"""`ModelMeta`: what a model file says about itself.

edgedet stores it as JSON under the key ``edgedet.meta`` in ONNX ``metadata_props``, and in a
sidecar ``<stem>.edgedet.json`` beside files that have no metadata slot (``.engine``, ``.plan``,
OpenVINO ``.xml``). It is parsed with `json` and validated field by field, never evaluated.
Foreign models are read from their own metadata (Ultralytics exports) or described by a family
preset plus overrides; edgedet never guesses a family by trying decoders until one works.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import validate as v
from .errors import IncompatibleModelError, InvalidInputError, ModelLoadError
from .fileio import atomic_write_bytes
from .runtimes.capabilities import PRECISIONS
from .validate import MAX_NAME_CHARS, brief, clip

META_KEY = "edgedet.meta"
SIDECAR_SUFFIX = ".edgedet.json"

COCO80: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

#: Shortcuts accepted wherever class names are: ``names="coco"``.
NAMED_CLASS_LISTS: dict[str, tuple[str, ...]] = {"coco": COCO80, "coco80": COCO80}

_LAYOUTS = ("NCHW", "NHWC")
_COLORS = ("BGR", "RGB")
_LETTERBOX = ("center", "topleft", "stretch")
_PRECISIONS = PRECISIONS  # the one precision type: edgedet.runtimes.capabilities


class _Unset:
    """Marks a ModelMeta field the caller did not give: the family preset fills it."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()

#: Values of the fields that neither the meta nor its family's preset sets.
_GENERIC: dict[str, Any] = {
    "layout": "NCHW",
    "color": "RGB",
    "scale": 1.0 / 255.0,
    "mean": None,
    "std": None,
    "letterbox": "center",
    "pad_value": 114,
    "strides": (8, 16, 32),
    "options": {},
}


def _family_preset(family: str) -> Mapping[str, Any]:
    """The registered family's preset (empty for a family not registered yet)."""
    from .decoders import get_family  # decoders import this module: import when needed

    try:
        return get_family(family).preset
    except InvalidInputError:
        return {}


@dataclass(frozen=True)
class ModelMeta:
    """How to feed a model and how to read what it returns.

    Preprocessing, in this order: convert the BGR uint8 image to ``color``; resize into
    ``input_size`` (h, w) by ``letterbox`` (``center`` / ``topleft`` keep aspect ratio and pad
    with ``pad_value``; ``stretch`` does not); ``x = (pixel * scale - mean) / std`` per channel
    (``mean``/``std`` in the model's channel order, in the scaled units; None skips); transpose
    to ``layout``; cast to float32.

    Decoding: ``family`` names the decoder (see `edgedet.decoders`); ``strides`` and
    ``options`` are family-specific (e.g. ``reg_max`` for NanoDet, output-name roles).

    Precedence of values: a field given (as an argument, or present in a meta JSON or
    sidecar) wins; a field left out takes the family's preset (`edgedet.decoders.Family.preset`:
    ``ModelMeta(family="yolox")`` is fed as YOLOX expects, BGR 0-255 top-left letterbox);
    fields the preset does not set take the generic defaults (NCHW, RGB, 1/255, no mean/std,
    centre letterbox, pad 114, strides 8/16/32). ``class_names`` never come from the preset
    here (a partial meta with no names gets ``class_0..``); `meta_from_family` adds them.

    Every field is validated on construction (`InvalidInputError`): strides positive
    integers, ``mean``/``std``/``scale`` finite (``std``, ``scale`` > 0), strings bounded.
    """

    family: str
    class_names: tuple[str, ...] = ()
    input_name: str | None = None
    input_size: tuple[int, int] | None = None
    layout: str = _UNSET
    color: str = _UNSET
    scale: float = _UNSET
    mean: tuple[float, float, float] | None = _UNSET
    std: tuple[float, float, float] | None = _UNSET
    letterbox: str = _UNSET
    pad_value: int = _UNSET
    strides: tuple[int, ...] = _UNSET
    precision: str = "fp32"
    options: Mapping[str, Any] = _UNSET
    calibration: Mapping[str, Any] | None = None
    source: str = "edgedet"
    edgedet_version: str = ""
    #: Optional `edgedet.protocol.EvalProtocol` as a dict: how this model is scored for mAP
    #: (overrides its family's default). Left out of the JSON when None, so files without it
    #: stay readable by edgedet versions that predate the field.
    eval_protocol: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family:
            raise InvalidInputError(
                f"ModelMeta.family must be a non-empty string, got {brief(self.family)}"
            )
        if len(self.family) > MAX_NAME_CHARS:
            raise InvalidInputError(
                f"ModelMeta.family is {len(self.family)} characters long: {brief(self.family)}"
            )
        unset = [name for name in _GENERIC if getattr(self, name) is _UNSET]
        if unset:
            preset = _family_preset(self.family)
            for name in unset:
                object.__setattr__(self, name, preset.get(name, _GENERIC[name]))
        try:
            self._validate()
        except InvalidInputError:
            raise
        except (TypeError, ValueError, OverflowError) as err:
            raise InvalidInputError(clip(str(err))) from err

    def _validate(self) -> None:
        """Check and normalise every field (ValueError / InvalidInputError on a bad one)."""
        _check_choice("layout", self.layout, _LAYOUTS)
        _check_choice("color", self.color, _COLORS)
        _check_choice("letterbox", self.letterbox, _LETTERBOX)
        _check_choice("precision", self.precision, _PRECISIONS)
        if self.input_size is not None:
            try:
                size = v.positive_ints(self.input_size, "ModelMeta.input_size", 2)
            except ValueError as err:
                raise InvalidInputError(
                    f"ModelMeta.input_size must be (height, width) > 0, got "
                    f"{brief(self.input_size)}"
                ) from err
            object.__setattr__(self, "input_size", size)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                vec = v.finite_floats(value, f"ModelMeta.{name}", 3, positive=name == "std")
                object.__setattr__(self, name, vec)
        object.__setattr__(
            self, "pad_value", v.int_value(self.pad_value, "ModelMeta.pad_value", low=0, high=255)
        )
        object.__setattr__(
            self, "scale", v.finite_float(self.scale, "ModelMeta.scale", positive=True)
        )
        object.__setattr__(self, "class_names", resolve_class_names(self.class_names))
        object.__setattr__(self, "strides", v.positive_ints(self.strides, "ModelMeta.strides"))
        object.__setattr__(self, "options", v.mapping(self.options, "ModelMeta.options"))
        if self.calibration is not None:
            object.__setattr__(
                self, "calibration", v.mapping(self.calibration, "ModelMeta.calibration")
            )
        if self.input_name is not None:
            v.short_string(self.input_name, "ModelMeta.input_name", 4096)
        v.short_string(self.source, "ModelMeta.source", 4096)
        v.short_string(self.edgedet_version, "ModelMeta.edgedet_version")
        if self.eval_protocol is not None:
            from .protocol import EvalProtocol

            proto = EvalProtocol.from_dict(self.eval_protocol, where="ModelMeta.eval_protocol")
            object.__setattr__(self, "eval_protocol", proto.to_dict())

    # -- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["options"] = dict(self.options)
        out["calibration"] = dict(self.calibration) if self.calibration is not None else None
        if self.eval_protocol is None:
            del out["eval_protocol"]
        else:
            out["eval_protocol"] = dict(self.eval_protocol)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "metadata") -> ModelMeta:
        """Validate a mapping read from a file into a ModelMeta.

        Unknown keys, wrong types and out-of-range values raise `IncompatibleModelError`
        naming ``where``. Fields left out take the family preset (see the class docstring).
        ``class_names`` must be a list or an ``{id: name}`` mapping: a string is never read
        as a path.
        """
        if not isinstance(data, Mapping):
            raise IncompatibleModelError(f"{where}: edgedet meta must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(data) - known)
        if unknown:
            raise IncompatibleModelError(
                f"{where}: edgedet meta has unknown fields {brief(unknown)} (written by edgedet "
                f"{clip(str(data.get('edgedet_version', '?')), 40)}); upgrade edgedet to read this "
                "model"
            )
        if "family" not in data:
            raise IncompatibleModelError(f"{where}: edgedet meta has no 'family'")
        kwargs = dict(data)
        try:
            if kwargs.get("class_names") is not None:
                kwargs["class_names"] = v.class_names_from_file(
                    kwargs["class_names"], "ModelMeta.class_names"
                )
            return cls(**kwargs)
        except (TypeError, ValueError, RecursionError, MemoryError, OverflowError) as err:
            raise IncompatibleModelError(
                f"{where}: invalid edgedet meta: {clip(str(err))}"
            ) from err

    @classmethod
    def from_json(cls, text: str, *, where: str = "metadata") -> ModelMeta:
        try:
            data = v.parse_json(text, "edgedet meta")
        except ValueError as err:
            raise IncompatibleModelError(f"{where}: {err}") from err
        return cls.from_dict(data, where=where)

    def replace(self, **changes: Any) -> ModelMeta:
        """A copy with fields changed (validated again). ``class_names="coco"`` is accepted."""
        if "class_names" in changes:
            changes["class_names"] = resolve_class_names(changes["class_names"])
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise InvalidInputError(
                f"unknown model setting(s) {sorted(unknown)}; valid: "
                f"{', '.join(f.name for f in dataclasses.fields(self))}"
            )
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise InvalidInputError(f"ModelMeta.{name} must be one of {choices}, got {brief(value)}")


def resolve_class_names(names: Any, *, allow_file: bool = False) -> tuple[str, ...]:
    """Accept a sequence of names, a ``{id: name}`` mapping, or a shortcut such as ``"coco"``.

    A string is a shortcut (``"coco"``) or a comma-separated list; with ``allow_file=True``
    (only for names the user gives: ``names=``, ``--names``, ``class_names=`` of
    `load_dataset`) it may also name a text file with one name per line. Names read from model
    or dataset files are resolved with ``allow_file=False``: a path there is refused, never read.
    """
    if isinstance(names, str):
        key = names.strip().lower()
        if key in NAMED_CLASS_LISTS:
            return NAMED_CLASS_LISTS[key]
        if "," in names:
            return _names_list([n.strip() for n in names.split(",")])
        if allow_file:
            path = Path(names)
            if path.is_file():
                try:
                    text = v.read_text(path)
                except ValueError as err:
                    raise InvalidInputError(f"class names file {path}: {err}") from err
                return _names_list([line.strip() for line in text.splitlines() if line.strip()])
        raise InvalidInputError(
            f"class names {brief(names, 80)}: expected a list, 'coco', a comma-separated list"
            + (" or a file with one name per line" if allow_file else " (a names file can be given only by the user: names=... / --names)")
        )
    return _names_list(names)


def _names_list(names: Any) -> tuple[str, ...]:
    try:
        return v.class_names_from_file(names, "class names")
    except ValueError as err:
        raise InvalidInputError(str(err)) from err


# -- reading and writing ---------------------------------------------------------------------


def sidecar_path(model_path: str | Path) -> Path:
    """``model.engine`` -> ``model.edgedet.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def write_sidecar(
    model_path: str | Path, meta: ModelMeta, extra: Mapping[str, Any] | None = None
) -> Path:
    """Write the JSON sidecar beside a model; ``extra`` adds keys (e.g. engine compatibility)."""
    payload: dict[str, Any] = {"meta": meta.to_dict()}
    if extra:
        payload.update(extra)
    path = sidecar_path(model_path)
    atomic_write_bytes(path, json.dumps(payload, indent=2, sort_keys=True).encode())
    return path


def read_sidecar(model_path: str | Path) -> dict[str, Any] | None:
    """The sidecar's JSON object, or None when there is none.

    Unreadable, non-UTF-8, malformed or too deeply nested JSON raises `IncompatibleModelError`
    naming the sidecar.
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = v.parse_json(path.read_bytes(), "the sidecar")
    except OSError as err:
        raise IncompatibleModelError(f"{path}: unreadable edgedet sidecar: {err}") from err
    except ValueError as err:
        raise IncompatibleModelError(f"{path}: unreadable edgedet sidecar: {err}") from err
    if not isinstance(data, dict):
        raise IncompatibleModelError(f"{path}: edgedet sidecar must be a JSON object")
    return data


def _load_onnx(path: Path) -> Any:
    try:
        import onnx
    except ImportError as err:  # pragma: no cover - onnx is a base dependency
        raise ModelLoadError(
            "reading ONNX metadata needs the onnx package: pip install onnx"
        ) from err
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, ValueError, google.protobuf errors...
        raise ModelLoadError(
            f"{path} is not a readable ONNX model ({type(err).__name__}: {err}); "
            "the file may be truncated or not an ONNX file"
        ) from err
    if not model.graph.node and not model.graph.output:
        # protobuf parses b"" (and some junk) as an empty ModelProto: no graph is no model.
        raise ModelLoadError(
            f"{path} is not a readable ONNX model: it holds no graph (empty, truncated, or not "
            "an ONNX file)"
        )
    return model


def load_onnx_model(path: str | Path) -> Any:
    """The ONNX ``ModelProto`` without external data; `ModelLoadError` naming the file when it
    is missing, truncated, or not ONNX."""
    return _load_onnx(Path(path))


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """All ``metadata_props`` of an ONNX file as a dict (raises ModelLoadError if unreadable)."""
    model = _load_onnx(Path(path))
    return {p.key: p.value for p in model.metadata_props}


def write_onnx_meta(src: str | Path, dst: str | Path, meta: ModelMeta) -> Path:
    """Copy ONNX model ``src`` to ``dst`` with ``meta`` in its metadata, atomically."""
    model = _load_onnx(Path(src))
    props = [p for p in model.metadata_props if p.key != META_KEY]
    del model.metadata_props[:]
    for p in props:
        model.metadata_props.add(key=p.key, value=p.value)
    model.metadata_props.add(key=META_KEY, value=meta.to_json())
    atomic_write_bytes(dst, model.SerializeToString())
    return Path(dst)


def ultralytics_meta(props: Mapping[str, str], where: str) -> ModelMeta | None:
    """ModelMeta from an Ultralytics export's own metadata, or None if it is not one.

    Ultralytics writes ``names`` as a Python dict literal, parsed with `ast.literal_eval`
    (literals only, no code runs) through `edgedet.validate.parse_literal`; ``names`` must
    then be a dict or a list (a string is refused, never read as a path), ``imgsz`` an int or
    two ints, ``stride`` a positive int.
    """
    if "names" not in props or props.get("task", "detect") != "detect":
        return None
    try:
        names = v.class_names_from_file(v.parse_literal(props["names"], "names"), "names")
        imgsz = v.parse_literal(props["imgsz"], "imgsz") if "imgsz" in props else None
        stride = v.int_value(v.parse_literal(str(props.get("stride", "32")), "stride"), "stride", low=1)
        size = None
        if isinstance(imgsz, (list, tuple)):
            h, w = v.positive_ints(imgsz, "imgsz", 2)
            size = (h, w)
        elif imgsz is not None:
            side = v.int_value(imgsz, "imgsz", low=1)
            size = (side, side)
        end2end = str(props.get("end2end", "False")).lower() == "true"
        strides = tuple(s for s in (8, 16, 32, 64) if s <= stride)
        if _is_ultralytics_rtdetr(props):
            return _ultralytics_rtdetr_meta(props, names, size)
        return ModelMeta(
            family="end2end" if end2end else "yolov8",
            class_names=names,
            input_size=size,
            color="RGB",
            scale=1 / 255,
            letterbox="center",
            pad_value=114,
            strides=strides or (stride,),
            source=f"ultralytics {clip(str(props.get('version', '')), 40)}".strip(),
        )
    except ValueError as err:  # InvalidInputError is a ValueError too
        raise IncompatibleModelError(
            f"{where}: unreadable Ultralytics metadata: {clip(str(err))}"
        ) from err


def _is_ultralytics_rtdetr(props: Mapping[str, str]) -> bool:
    """An Ultralytics RT-DETR export: ``head: RTDETRDecoder`` (8.3+), or its description names an
    rtdetr model (older exports, whose metadata has no ``head``)."""
    head = props.get("head")
    if head is not None:
        return head == "RTDETRDecoder"
    return "rtdetr" in props.get("description", "").lower().replace("-", "")


def _ultralytics_rtdetr_meta(
    props: Mapping[str, str], names: tuple[str, ...], size: tuple[int, int] | None
) -> ModelMeta:
    """Family ``detr``: Ultralytics resizes RT-DETR inputs without keeping the aspect ratio
    (``LetterBox(scale_fill=True)``); boxes are normalised cx, cy, w, h; scores are sigmoids. The
    output is ``[B, 300, 6]`` (top-k in the graph, newer exports) or ``[B, 300, 4 + nc]``, told
    apart by its shape (`edgedet.decoders.detr`)."""
    from .protocol import ULTRALYTICS_RTDETR

    return ModelMeta(
        family="detr",
        class_names=names,
        input_size=size,
        color="RGB",
        scale=1 / 255,
        letterbox="stretch",
        pad_value=114,
        options={
            "box_format": "cxcywh",
            "box_units": "normalized",
            "scores": "probs",
            "topk_in_graph": "auto",
        },
        source=f"ultralytics {clip(str(props.get('version', '')), 40)}".strip(),
        eval_protocol=ULTRALYTICS_RTDETR.to_dict(),
    )


def read_meta(path: str | Path) -> ModelMeta | None:
    """The meta a model file carries (edgedet's own first, then a foreign format's), or None.

    ONNX files are read for ``edgedet.meta`` and Ultralytics keys; other files for a sidecar.
    """
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        props = read_onnx_metadata(p)
        if META_KEY in props:
            return ModelMeta.from_json(props[META_KEY], where=str(p))
        foreign = ultralytics_meta(props, str(p))
        if foreign is not None:
            return foreign
    side = read_sidecar(p)
    if side is not None and "meta" in side:
        return ModelMeta.from_dict(side["meta"], where=str(sidecar_path(p)))
    if p.suffix.lower() in (".engine", ".plan") and p.is_file():
        from edgedet.runtimes.trt_file import engine_header_meta  # Ultralytics engine header

        return engine_header_meta(p)  # type: ignore[no-any-return]
    return None


def is_quantized_onnx(path: str | Path) -> bool:
    """True if an ONNX graph holds INT8 quantization (QDQ pairs or integer convolutions)."""
    model = _load_onnx(Path(path))
    quant_ops = {
        "QuantizeLinear",
        "DequantizeLinear",
        "QLinearConv",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeLinear",
    }
    return any(node.op_type in quant_ops for node in model.graph.node)
