"""`ModelMeta`: what a model file says about itself.

edgedet stores it as JSON under the key ``edgedet.meta`` in ONNX ``metadata_props``, and in a
sidecar ``<stem>.edgedet.json`` beside files that have no metadata slot (``.engine``, ``.plan``,
OpenVINO ``.xml``). It is parsed with `json` and validated field by field, never evaluated.
Foreign models are read from their own metadata (Ultralytics exports) or described by a family
preset plus overrides; edgedet never guesses a family by trying decoders until one works.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IncompatibleModelError, InvalidInputError, ModelLoadError
from .runtimes.capabilities import PRECISIONS

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
    """

    family: str
    class_names: tuple[str, ...] = ()
    input_name: str | None = None
    input_size: tuple[int, int] | None = None
    layout: str = "NCHW"
    color: str = "RGB"
    scale: float = 1.0 / 255.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    letterbox: str = "center"
    pad_value: int = 114
    strides: tuple[int, ...] = (8, 16, 32)
    precision: str = "fp32"
    options: Mapping[str, Any] = field(default_factory=dict)
    calibration: Mapping[str, Any] | None = None
    source: str = "edgedet"
    edgedet_version: str = ""

    def __post_init__(self) -> None:
        _check_choice("layout", self.layout, _LAYOUTS)
        _check_choice("color", self.color, _COLORS)
        _check_choice("letterbox", self.letterbox, _LETTERBOX)
        _check_choice("precision", self.precision, _PRECISIONS)
        if not isinstance(self.family, str) or not self.family:
            raise InvalidInputError(
                f"ModelMeta.family must be a non-empty string, got {self.family!r}"
            )
        if self.input_size is not None:
            size = tuple(int(v) for v in self.input_size)
            if len(size) != 2 or min(size) <= 0:
                raise InvalidInputError(
                    f"ModelMeta.input_size must be (height, width) > 0, got {self.input_size!r}"
                )
            object.__setattr__(self, "input_size", size)
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                vec = tuple(float(v) for v in value)
                if len(vec) != 3:
                    raise InvalidInputError(f"ModelMeta.{name} must have 3 values, got {value!r}")
                if name == "std" and min(vec) <= 0:
                    raise InvalidInputError(f"ModelMeta.std must be positive, got {value!r}")
                object.__setattr__(self, name, vec)
        if not 0 <= int(self.pad_value) <= 255:
            raise InvalidInputError(f"ModelMeta.pad_value must be in 0..255, got {self.pad_value}")
        if not float(self.scale) > 0:
            raise InvalidInputError(f"ModelMeta.scale must be positive, got {self.scale}")
        object.__setattr__(self, "class_names", resolve_class_names(self.class_names))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "options", dict(self.options))

    # -- (de)serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["options"] = dict(self.options)
        out["calibration"] = dict(self.calibration) if self.calibration is not None else None
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "metadata") -> ModelMeta:
        """Validate a mapping into a ModelMeta; unknown keys and wrong types raise."""
        if not isinstance(data, Mapping):
            raise IncompatibleModelError(f"{where}: edgedet meta must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise IncompatibleModelError(
                f"{where}: edgedet meta has unknown fields {unknown} (written by edgedet "
                f"{data.get('edgedet_version', '?')}); upgrade edgedet to read this model"
            )
        if "family" not in data:
            raise IncompatibleModelError(f"{where}: edgedet meta has no 'family'")
        kwargs = dict(data)
        for key in ("strides", "input_size", "mean", "std"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise IncompatibleModelError(f"{where}: invalid edgedet meta: {err}") from err

    @classmethod
    def from_json(cls, text: str, *, where: str = "metadata") -> ModelMeta:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise IncompatibleModelError(f"{where}: edgedet meta is not valid JSON: {err}") from err
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
    if value not in choices:
        raise InvalidInputError(f"ModelMeta.{name} must be one of {choices}, got {value!r}")


def resolve_class_names(names: Any) -> tuple[str, ...]:
    """Accept a sequence of names, a ``{id: name}`` mapping, or a shortcut such as ``"coco"``."""
    if isinstance(names, str):
        key = names.strip().lower()
        if key in NAMED_CLASS_LISTS:
            return NAMED_CLASS_LISTS[key]
        if "," in names:
            return tuple(n.strip() for n in names.split(","))
        path = Path(names)
        if path.is_file():
            return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
        raise InvalidInputError(
            f"class names {names!r}: expected a list, 'coco', a comma-separated list or a file "
            "with one name per line"
        )
    if isinstance(names, Mapping):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError) as err:
            raise InvalidInputError(
                f"class-name mapping must have integer ids as keys, got {list(names)[:5]}"
            ) from err
        if ids != list(range(len(ids))):
            raise InvalidInputError(f"class-name mapping must have ids 0..N-1, got {ids[:10]}...")
        return tuple(str(names[k] if k in names else names[str(k)]) for k in ids)
    return tuple(str(n) for n in names)


# -- reading and writing ---------------------------------------------------------------------


def sidecar_path(model_path: str | Path) -> Path:
    """``model.engine`` -> ``model.edgedet.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask both reads and
    sets, which would briefly widen the mode of files other threads create)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass  # not Linux: fall back to the set-and-restore below
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    Writes a temporary file in the same directory, fsyncs it, then renames it over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the final file the mode a plain open() would (umask).
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    """The sidecar's JSON object, or None when there is none."""
    path = sidecar_path(model_path)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
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
    (literals only, no code runs).
    """
    if "names" not in props or props.get("task", "detect") != "detect":
        return None
    try:
        names = ast.literal_eval(props["names"])
        imgsz = ast.literal_eval(props["imgsz"]) if "imgsz" in props else None
        stride = int(props.get("stride", "32"))
    except (ValueError, SyntaxError) as err:
        raise IncompatibleModelError(f"{where}: unreadable Ultralytics metadata: {err}") from err
    end2end = str(props.get("end2end", "False")).lower() == "true"
    size = None
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2:
        size = (int(imgsz[0]), int(imgsz[1]))
    elif isinstance(imgsz, int):
        size = (imgsz, imgsz)
    strides = tuple(s for s in (8, 16, 32, 64) if s <= stride)
    return ModelMeta(
        family="end2end" if end2end else "yolov8",
        class_names=resolve_class_names(names),
        input_size=size,
        color="RGB",
        scale=1 / 255,
        letterbox="center",
        pad_value=114,
        strides=strides,
        source=f"ultralytics {props.get('version', '')}".strip(),
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
