"""`ModelMeta`: validation, JSON round trip, class names, ONNX metadata and sidecars."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedet import fileio
from edgedet.errors import IncompatibleModelError, InvalidInputError, ModelLoadError
from edgedet.fileio import atomic_write_bytes
from edgedet.meta import (
    COCO80,
    META_KEY,
    ModelMeta,
    is_quantized_onnx,
    read_meta,
    read_onnx_metadata,
    read_sidecar,
    resolve_class_names,
    sidecar_path,
    ultralytics_meta,
    write_onnx_meta,
    write_sidecar,
)


def tiny_onnx(path: Path, props: dict[str, str] | None = None, quantized: bool = False) -> Path:
    """A one-node ONNX model (Identity, or a Quantize/Dequantize pair), written to ``path``."""
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3, 8, 8])
    if quantized:
        inits = [
            numpy_helper.from_array(np.array(0.1, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes = [
            helper.make_node("QuantizeLinear", ["images", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["output0"]),
        ]
    else:
        inits = []
        nodes = [helper.make_node("Identity", ["images"], ["output0"])]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def full_meta() -> ModelMeta:
    return ModelMeta(
        family="nanodet",
        class_names=("person", "car"),
        input_name="data",
        input_size=(320, 416),
        layout="NHWC",
        color="BGR",
        scale=1.0,
        mean=(103.53, 116.28, 123.675),
        std=(57.375, 57.12, 58.395),
        letterbox="topleft",
        pad_value=0,
        strides=(8, 16, 32, 64),
        precision="int8",
        options={"reg_max": 7, "outputs": {"boxes": "b"}},
        calibration={"method": "entropy", "images": 300},
        source="test",
        edgedet_version="0.1.0",
    )


# -- validation and JSON ---------------------------------------------------------------------


def test_json_round_trip() -> None:
    m = full_meta()
    text = m.to_json()
    assert json.loads(text)["family"] == "nanodet"
    back = ModelMeta.from_json(text)
    assert back == m
    assert back.input_size == (320, 416) and back.class_names == ("person", "car")
    assert back.mean == (103.53, 116.28, 123.675)
    assert ModelMeta.from_json(ModelMeta(family="yolov8").to_json()) == ModelMeta(family="yolov8")


def test_defaults_and_normalisation() -> None:
    m = ModelMeta(family="yolov8", class_names=["a", 1], strides=[8.0, 16], input_size=[640, 480])  # type: ignore[arg-type]
    assert m.class_names == ("a", "1") and m.strides == (8, 16) and m.input_size == (640, 480)
    assert (m.layout, m.color, m.letterbox, m.precision) == ("NCHW", "RGB", "center", "fp32")


def test_unknown_field_rejected() -> None:
    data = json.loads(ModelMeta(family="yolov8").to_json())
    data["anchors"] = [1, 2]
    data["edgedet_version"] = "9.9"
    with pytest.raises(
        IncompatibleModelError,
        match=r"model\.onnx: edgedet meta has unknown fields \['anchors'\] \(written by edgedet "
        r"9\.9\); upgrade edgedet",
    ):
        ModelMeta.from_dict(data, where="model.onnx")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", r"m\.onnx: edgedet meta is not valid JSON"),
        ("[1, 2]", r"m\.onnx: edgedet meta must be a JSON object"),
        ('{"layout": "NCHW"}', r"m\.onnx: edgedet meta has no 'family'"),
        ('{"family": "yolov8", "layout": "CHW"}', r"invalid edgedet meta: ModelMeta\.layout must"),
        ('{"family": "yolov8", "std": [1, 0, 1]}', r"invalid edgedet meta: ModelMeta\.std must be"),
        ('{"family": "yolov8", "mean": [1, 2]}', r"ModelMeta\.mean must have 3 values"),
    ],
)
def test_from_json_errors(text: str, match: str) -> None:
    with pytest.raises(IncompatibleModelError, match=match):
        ModelMeta.from_json(text, where="m.onnx")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layout": "NCWH"}, r"ModelMeta\.layout must be one of \('NCHW', 'NHWC'\), got 'NCWH'"),
        ({"color": "YUV"}, r"ModelMeta\.color must be one of \('BGR', 'RGB'\), got 'YUV'"),
        ({"letterbox": "centre"}, r"ModelMeta\.letterbox must be one of .*got 'centre'"),
        ({"precision": "int4"}, r"ModelMeta\.precision must be one of .*got 'int4'"),
        ({"std": (1.0, 0.0, 1.0)}, r"ModelMeta\.std must be positive"),
        ({"std": (1.0, -2.0, 1.0)}, r"ModelMeta\.std must be positive"),
        ({"std": (1.0, 1.0)}, r"ModelMeta\.std must have 3 values"),
        ({"input_size": (640, 0)}, r"ModelMeta\.input_size must be \(height, width\) > 0"),
        ({"input_size": (640,)}, r"ModelMeta\.input_size must be \(height, width\) > 0"),
        ({"pad_value": 300}, r"ModelMeta\.pad_value must be in 0\.\.255, got 300"),
        ({"scale": 0.0}, r"ModelMeta\.scale must be positive"),
    ],
)
def test_bad_fields_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        ModelMeta(family="yolov8", **kwargs)  # type: ignore[arg-type]


def test_bad_family_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"ModelMeta\.family must be a non-empty string"):
        ModelMeta(family="")


def test_replace() -> None:
    m = ModelMeta(family="yolov8")
    r = m.replace(class_names="coco", input_size=(320, 320))
    assert r.class_names == COCO80 and len(r.class_names) == 80
    assert r.input_size == (320, 320) and m.class_names == ()
    with pytest.raises(InvalidInputError, match=r"unknown model setting\(s\) \['colour'\]; valid:"):
        m.replace(colour="BGR")
    with pytest.raises(InvalidInputError, match=r"ModelMeta\.color must be one of"):
        m.replace(color="bgr")


# -- class names -----------------------------------------------------------------------------


def test_resolve_class_names(tmp_path: Path) -> None:
    assert resolve_class_names(["a", "b"]) == ("a", "b")
    assert resolve_class_names(("a",)) == ("a",)
    assert resolve_class_names({1: "car", 0: "person"}) == ("person", "car")
    assert resolve_class_names({"0": "person", "1": "car"}) == ("person", "car")
    assert resolve_class_names("coco") == COCO80
    assert resolve_class_names(" COCO80 ") == COCO80
    assert resolve_class_names("person, car ,bike") == ("person", "car", "bike")
    names = tmp_path / "names.txt"
    names.write_text("person\n\ncar\n  bike  \n")
    assert resolve_class_names(str(names), allow_file=True) == ("person", "car", "bike")


def test_resolve_class_names_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"class-name mapping must have ids 0\.\.N-1"):
        resolve_class_names({0: "a", 2: "b"})
    with pytest.raises(
        InvalidInputError, match=r"class names 'no-such-file\.txt': expected a list, 'coco'"
    ):
        resolve_class_names("no-such-file.txt")


# -- ONNX metadata ---------------------------------------------------------------------------


def test_write_onnx_meta_then_read_meta(tmp_path: Path) -> None:
    src = tiny_onnx(tmp_path / "plain.onnx", props={"author": "me", META_KEY: "{stale"})
    dst = tmp_path / "out" / "with_meta.onnx"
    m = full_meta()
    assert write_onnx_meta(src, dst, m) == dst
    assert read_meta(dst) == m
    props = read_onnx_metadata(dst)
    assert props["author"] == "me"  # other metadata kept
    assert json.loads(props[META_KEY])["family"] == "nanodet"  # stale entry replaced
    assert list(props).count(META_KEY) == 1
    # the model itself is unchanged and still valid
    onnx.checker.check_model(onnx.load(str(dst)))
    # writing twice over the same file keeps one entry
    write_onnx_meta(dst, dst, m.replace(precision="fp16"))
    assert read_meta(dst).precision == "fp16"  # type: ignore[union-attr]
    assert not [p for p in dst.parent.iterdir() if p.name.endswith(".tmp")]


def test_read_meta_none_without_metadata(tmp_path: Path) -> None:
    assert read_meta(tiny_onnx(tmp_path / "m.onnx")) is None
    assert read_meta(tmp_path / "model.engine") is None  # no sidecar


def test_read_meta_bad_edgedet_meta_names_the_file(tmp_path: Path) -> None:
    bad = json.loads(ModelMeta(family="yolov8").to_json())
    bad["layout"] = "HWC"
    path = tiny_onnx(tmp_path / "bad.onnx", props={META_KEY: json.dumps(bad)})
    with pytest.raises(IncompatibleModelError, match=r"bad\.onnx: invalid edgedet meta"):
        read_meta(path)


def test_truncated_onnx_is_model_load_error(tmp_path: Path) -> None:
    good = tiny_onnx(tmp_path / "good.onnx")
    data = good.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.onnx is not a readable ONNX model"):
        read_meta(cut)
    with pytest.raises(ModelLoadError, match="the file may be truncated or not an ONNX file"):
        read_onnx_metadata(cut)


def test_text_file_is_model_load_error(tmp_path: Path) -> None:
    txt = tmp_path / "notes.onnx"
    txt.write_text("this is not an ONNX model, just some notes\n")
    with pytest.raises(ModelLoadError, match=r"notes\.onnx is not a readable ONNX model"):
        read_meta(txt)


def test_missing_onnx_is_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model file not found: .*absent\.onnx"):
        read_meta(tmp_path / "absent.onnx")


@pytest.mark.parametrize("content", [b"", b"hi"])
def test_empty_or_graphless_onnx_is_model_load_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        read_meta(path)


def test_is_quantized_onnx(tmp_path: Path) -> None:
    assert not is_quantized_onnx(tiny_onnx(tmp_path / "f.onnx"))
    assert is_quantized_onnx(tiny_onnx(tmp_path / "q.onnx", quantized=True))


# -- Ultralytics metadata --------------------------------------------------------------------


def ultralytics_props(**changes: str) -> dict[str, str]:
    props = {
        "description": "Ultralytics YOLOv8n model trained on coco.yaml",
        "author": "Ultralytics",
        "version": "8.3.0",
        "task": "detect",
        "batch": "1",
        "stride": "32",
        "imgsz": "[480, 640]",
        "names": "{0: 'person', 1: 'car'}",
    }
    props.update(changes)
    return props


def test_ultralytics_metadata(tmp_path: Path) -> None:
    m = read_meta(tiny_onnx(tmp_path / "yolov8n.onnx", props=ultralytics_props()))
    assert m is not None
    assert m.family == "yolov8"
    assert m.class_names == ("person", "car")
    assert m.input_size == (480, 640)
    assert m.strides == (8, 16, 32)
    assert (m.color, m.letterbox, m.pad_value) == ("RGB", "center", 114)
    assert m.scale == pytest.approx(1 / 255)
    assert m.source == "ultralytics 8.3.0"


def test_ultralytics_variants() -> None:
    m = ultralytics_meta(ultralytics_props(end2end="True", imgsz="320", stride="64"), "x")
    assert m is not None
    assert m.family == "end2end" and m.input_size == (320, 320)
    assert m.strides == (8, 16, 32, 64)
    assert ultralytics_meta(ultralytics_props(task="segment"), "x") is None
    assert ultralytics_meta({"author": "someone"}, "x") is None
    with pytest.raises(IncompatibleModelError, match=r"x\.onnx: unreadable Ultralytics metadata"):
        ultralytics_meta(ultralytics_props(names="{0: person}"), "x.onnx")


def test_edgedet_meta_wins_over_ultralytics(tmp_path: Path) -> None:
    props = ultralytics_props()
    props[META_KEY] = ModelMeta(family="yolox", class_names=("a",)).to_json()
    m = read_meta(tiny_onnx(tmp_path / "both.onnx", props=props))
    assert m is not None and m.family == "yolox" and m.class_names == ("a",)


def test_ultralytics_names_are_not_evaluated(tmp_path: Path) -> None:
    # literal_eval only: an expression that would run code is refused, not executed
    props = ultralytics_props(names="__import__('os').getcwd()")
    with pytest.raises(IncompatibleModelError, match="unreadable Ultralytics metadata"):
        read_meta(tiny_onnx(tmp_path / "evil.onnx", props=props))


# -- sidecars --------------------------------------------------------------------------------


def test_sidecar_write_read(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00engine")
    assert sidecar_path(engine) == tmp_path / "model.edgedet.json"
    m = full_meta()
    path = write_sidecar(engine, m, extra={"engine": {"trt": "10.3", "gpu": "Orin"}})
    assert path == sidecar_path(engine) and path.is_file()
    side = read_sidecar(engine)
    assert side is not None and side["engine"] == {"trt": "10.3", "gpu": "Orin"}
    assert read_meta(engine) == m
    assert read_sidecar(tmp_path / "other.engine") is None


def test_sidecar_errors(tmp_path: Path) -> None:
    engine = tmp_path / "model.xml"
    sidecar_path(engine).write_text("{broken")
    with pytest.raises(IncompatibleModelError, match=r"model\.edgedet\.json: unreadable edgedet"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("[1]")
    with pytest.raises(IncompatibleModelError, match=r"sidecar must be a JSON object"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"meta": {"family": "yolov8", "bogus": 1}}))
    with pytest.raises(IncompatibleModelError, match=r"model\.edgedet\.json: .*unknown fields"):
        read_meta(engine)


# -- atomic writes ---------------------------------------------------------------------------


def test_atomic_write_bytes(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "file.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_atomic_write_keeps_old_file_when_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        atomic_write_bytes(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]  # no temp file left


def test_atomic_write_cleans_up_on_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


# -- regressions: class names on construction, mapping keys, file mode of atomic writes --------


def test_constructor_accepts_named_class_list() -> None:
    assert ModelMeta(family="yolov8", class_names="coco").class_names == COCO80  # type: ignore[arg-type]


def test_from_dict_accepts_class_name_mapping() -> None:
    m = ModelMeta.from_dict({"family": "yolov8", "class_names": {"0": "person", "1": "car"}})
    assert m.class_names == ("person", "car")


def test_resolve_class_names_non_integer_keys() -> None:
    with pytest.raises(InvalidInputError, match="class-name mapping"):
        resolve_class_names({"a": "person"})


def test_atomic_write_uses_normal_file_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        target = tmp_path / "model.onnx"
        atomic_write_bytes(target, b"x")
        assert target.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
