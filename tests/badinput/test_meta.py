"""Catalogue, entry point: metadata inside an ONNX file (``edgedet.meta`` JSON, Ultralytics
keys), read by ``edgedet.load`` on real ONNX Runtime, shown by ``edgedet info``, written by
``edgedet import``.

Every malformed shape must become `IncompatibleModelError` naming the file with a short
message; nothing in the metadata may name a file that edgedet then reads; partial meta takes
the family preset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgedet
from edgedet.cli import main
from edgedet.errors import IncompatibleModelError, InvalidInputError
from edgedet.meta import ModelMeta, read_meta
from tests.badinput.helpers import (
    Fails,
    canary,
    expect_error,
    image,
    nested,
    with_meta_json,
    with_props,
)
from tests.tiny_models import make_tiny_yolov5

BIG = "x" * 20_000_000


def meta_json(**fields: Any) -> str:
    base: dict[str, Any] = {"family": "yolov5", "class_names": ["a", "b"]}
    base.update(fields)
    return json.dumps(base)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_yolov5(tmp_path_factory.mktemp("meta") / "plain.onnx")


@pytest.fixture(scope="module")
def yolox_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_yolov5(tmp_path_factory.mktemp("metax") / "yolox_like.onnx", anchors=1)


# (case, meta JSON text or a function of the canary path, load kwargs, expected)
META_ROWS: list[tuple[str, Any, dict[str, Any], Any]] = [
    # -- accepted --------------------------------------------------------------------------------
    ("full meta", meta_json(color="BGR", scale=1.0), {}, "ok"),
    ("class names as {id: name}", meta_json(class_names={"0": "a", "1": "b"}), {}, "ok"),
    ("names override by the user", meta_json(), {"names": "p,q"}, "ok"),
    # -- not JSON / not an object ----------------------------------------------------------------
    ("garbage", "{not json", {}, Fails(IncompatibleModelError, "edgedet meta is not valid JSON")),
    ("a JSON list", "[1, 2]", {}, Fails(IncompatibleModelError, "must be a JSON object")),
    ("unknown field __class__", meta_json(__class__="x"), {}, Fails(IncompatibleModelError, "unknown fields ['__class__']")),
    ("no family", json.dumps({"class_names": ["a", "b"]}), {}, Fails(IncompatibleModelError, "has no 'family'")),
    ("nested list 200k deep", nested(200_000), {}, Fails(IncompatibleModelError, "nested too deeply")),
    ("nested object 200k deep", nested(200_000, "object"), {}, Fails(IncompatibleModelError, "nested too deeply")),
    ("nested, family given", nested(200_000), {"family": "yolov5"}, Fails(IncompatibleModelError, "nested too deeply")),
    # -- wrong shapes ----------------------------------------------------------------------------
    ("strides 5", meta_json(strides=5), {}, Fails(IncompatibleModelError, "ModelMeta.strides must be a list, got 5")),
    ("input_size 416", meta_json(input_size=416), {}, Fails(IncompatibleModelError, "ModelMeta.input_size must be (height, width) > 0")),
    ("strides zero", meta_json(strides=[0, 16, 32]), {}, Fails(IncompatibleModelError, "ModelMeta.strides entries must be in 1..")),
    ("strides negative", meta_json(strides=[-8, 16, 32]), {}, Fails(IncompatibleModelError, "ModelMeta.strides entries must be in 1..")),
    ("strides fractional", meta_json(strides=[8.5, 16, 32]), {}, Fails(IncompatibleModelError, "must be an integer, got 8.5")),
    ("strides empty", meta_json(strides=[]), {}, Fails(IncompatibleModelError, "ModelMeta.strides must not be empty")),
    ("strides nested", meta_json(strides=[[8]]), {}, Fails(IncompatibleModelError, "must be an integer, got [8]")),
    ("input_size strings", meta_json(input_size=["32", "32"]), {}, Fails(IncompatibleModelError, "input_size must be (height, width)")),
    ("pad_value 300", meta_json(pad_value=300), {}, Fails(IncompatibleModelError, "pad_value must be in 0..255, got 300")),
    ("calibration 'oops'", meta_json(calibration="oops"), {}, Fails(IncompatibleModelError, "ModelMeta.calibration must be a JSON object")),
    ("options 5", meta_json(options=5), {}, Fails(IncompatibleModelError, "ModelMeta.options must be a JSON object")),
    ("layout CHW", meta_json(layout="CHW"), {}, Fails(IncompatibleModelError, "ModelMeta.layout must be one of")),
    ("color a list", meta_json(color=["BGR"]), {}, Fails(IncompatibleModelError, "ModelMeta.color must be one of")),
    # -- non-finite numbers (L6) -----------------------------------------------------------------
    ("mean NaN", meta_json(mean=[float("nan"), 0, 0], std=[1, 1, 1]), {}, Fails(IncompatibleModelError, "ModelMeta.mean must be finite, got nan")),
    ("scale Infinity", meta_json(scale=float("inf")), {}, Fails(IncompatibleModelError, "ModelMeta.scale must be finite, got inf")),
    ("std Infinity", meta_json(std=[float("inf")] * 3), {}, Fails(IncompatibleModelError, "ModelMeta.std must be finite, got inf")),
    ("std zero", meta_json(std=[1, 0, 1]), {}, Fails(IncompatibleModelError, "ModelMeta.std must be positive")),
    ("scale a string", meta_json(scale="1"), {}, Fails(IncompatibleModelError, "ModelMeta.scale must be a number")),
    # -- class names never name a file (M1a) -----------------------------------------------------
    ("class_names = a local file", lambda c: meta_json(class_names=str(c)), {}, Fails(IncompatibleModelError, "a names file can be given only by the user")),
    ("class_names = 'coco' string", meta_json(class_names="coco"), {}, Fails(IncompatibleModelError, "must be a list of names")),
    ("class_names nested", meta_json(class_names=[["a"], ["b"]]), {}, Fails(IncompatibleModelError, "must be a string")),
    ("class_names 200k", meta_json(class_names=["n"] * 200_000), {}, Fails(IncompatibleModelError, "at most 100000")),
    ("class_names bad mapping", meta_json(class_names={"0": "a", "2": "b"}), {}, Fails(IncompatibleModelError, "ids 0..N-1")),
    # -- huge strings: errors stay short (L7) ----------------------------------------------------
    ("family 20 MB", meta_json(family=BIG), {}, Fails(IncompatibleModelError, "characters long")),
    ("color 20 MB", meta_json(color=BIG), {}, Fails(IncompatibleModelError, "(20000002 chars)")),
    ("source 20 MB", meta_json(source=BIG), {}, Fails(IncompatibleModelError, "ModelMeta.source is 20000000 characters long")),
    ("class name 20 MB", meta_json(class_names=["a", BIG]), {}, Fails(IncompatibleModelError, "characters long")),
    # -- resolved later --------------------------------------------------------------------------
    ("unknown family", meta_json(family="yolo99"), {}, Fails(InvalidInputError, "unknown model family 'yolo99'")),
    ("input_name missing", meta_json(input_name="nope"), {}, Fails(IncompatibleModelError, "names input 'nope'")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "kwargs", "expected"), META_ROWS, ids=[r[0] for r in META_ROWS])
def test_meta(
    plain: Path, tmp_path: Path, case: str, text: Any, kwargs: dict[str, Any], expected: Any
) -> None:
    secret = canary(tmp_path)
    path = with_meta_json(plain, tmp_path / "m.onnx", text(secret) if callable(text) else text)
    if isinstance(expected, Fails):
        err = expect_error(expected, edgedet.load, path, runtime="onnxruntime", **kwargs)
        assert "TOP-SECRET" not in str(err)
        if expected.error is IncompatibleModelError and case != "input_name missing":
            assert "m.onnx" in str(err)  # the file is named
        return
    with edgedet.load(path, runtime="onnxruntime", **kwargs) as det:
        det(image())


def test_partial_meta_takes_the_family_preset(yolox_like: Path, tmp_path: Path) -> None:
    """M4: {"family": "yolox"} is fed as YOLOX (BGR, 0-255, top-left), like family="yolox"."""
    path = with_meta_json(yolox_like, tmp_path / "x.onnx", json.dumps({"family": "yolox"}))
    with edgedet.load(path) as det, edgedet.load(yolox_like, family="yolox", names="a,b") as ref:
        m, r = det.meta, ref.meta
        assert (m.color, m.scale, m.letterbox, m.pad_value) == ("BGR", 1.0, "topleft", 114)
        assert (m.color, m.scale, m.letterbox, m.strides) == (r.color, r.scale, r.letterbox, r.strides)
        assert m.class_names == ("class_0", "class_1")  # names never come from the preset
        img = image(64, 80)
        np.testing.assert_array_equal(det(img).xyxy, ref(img).xyxy)
    # a field the file gives wins over the preset
    path2 = with_meta_json(yolox_like, tmp_path / "y.onnx", json.dumps({"family": "yolox", "color": "RGB"}))
    assert read_meta(path2).color == "RGB"  # type: ignore[union-attr]


@pytest.mark.testdata
def test_partial_meta_real_yolox(models_dir: Path, datasets_dir: Path, tmp_path: Path) -> None:
    """The probe's case: YOLOX-nano with {"family": "yolox"} finds what family="yolox" finds."""
    import cv2

    src = models_dir / "yolox_nano_416.onnx"
    img = cv2.imread(str(next((datasets_dir / "coco_person_val2017" / "val2017").glob("*.jpg"))))
    path = with_meta_json(src, tmp_path / "partial.onnx", json.dumps({"family": "yolox"}))
    with edgedet.load(path) as det, edgedet.load(src, family="yolox") as ref:
        got, want = det(img), ref(img)
    assert len(want) > 0
    np.testing.assert_array_equal(got.xyxy, want.xyxy)


# -- Ultralytics metadata ----------------------------------------------------------------------

GOOD_ULTRA = {"task": "detect", "stride": "32", "imgsz": "[32, 32]", "names": "{0: 'a', 1: 'b'}"}

ULTRA_ROWS: list[tuple[str, dict[str, Any], Any]] = [
    ("good", {}, "ok"),
    ("names as a list", {"names": "['a', 'b']"}, "ok"),
    ("imgsz an int", {"imgsz": "32"}, "ok"),
    ("names '123'", {"names": "123"}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("imgsz [[1], [2]]", {"imgsz": "[[1], [2]]"}, Fails(IncompatibleModelError, "imgsz entries must be an integer")),
    ("imgsz [0, 0]", {"imgsz": "[0, 0]"}, Fails(IncompatibleModelError, "imgsz entries must be in 1..")),
    ("stride -32", {"stride": "-32"}, Fails(IncompatibleModelError, "stride must be in 1..")),
    ("names '-' * 200000 + '1'", {"names": "-" * 200_000 + "1"}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("names nested 100k", {"names": "[" * 100_000 + "]" * 100_000}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("names 5000-digit int", {"names": "9" * 5000}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("names a file path", lambda c: {"names": repr(str(c))}, Fails(IncompatibleModelError, "a names file can be given only by the user")),
    ("names call payload", {"names": "__import__('os').system('touch /tmp/pwned_edgedet_valid')"}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("imgsz call payload", {"imgsz": "__import__('os').getcwd()"}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
    ("names 9**9**9", {"names": "9**9**9"}, Fails(IncompatibleModelError, "unreadable Ultralytics metadata")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "changes", "expected"), ULTRA_ROWS, ids=[r[0] for r in ULTRA_ROWS])
def test_ultralytics(plain: Path, tmp_path: Path, case: str, changes: Any, expected: Any) -> None:
    secret = canary(tmp_path)
    props = {**GOOD_ULTRA, **(changes(secret) if callable(changes) else changes)}
    path = with_props(plain, tmp_path / "u.onnx", props)
    if isinstance(expected, Fails):
        err = expect_error(expected, read_meta, path)
        assert "u.onnx" in str(err) and "TOP-SECRET" not in str(err)
        assert not Path("/tmp/pwned_edgedet_valid").exists()
        return
    meta = read_meta(path)
    assert meta is not None and meta.class_names == ("a", "b") and meta.input_size == (32, 32)


# -- edgedet info prints untrusted strings safely (M3) -----------------------------------------

INFO_ROWS: list[tuple[str, str, str, list[str]]] = [
    # (case, meta JSON, text that must be in the output, texts that must not)
    ("rich markup in source", meta_json(source="evil [/bold] [red]x"), "evil [/bold] [red]x", []),
    ("escape sequences in source", meta_json(source="\x1b]0;title\x07\x1b[2J\x1b[31mRED"), "RED", ["\x1b", "\x07"]),
    ("control chars in family", meta_json(family="yolov5\x1b[2J"), "family yolov5[2J", ["\x1b"]),
    ("calibration 'oops'", meta_json(calibration="oops"), "ModelMeta.calibration must be a JSON object", []),
    ("nested meta", nested(200_000), "nested too deeply", []),
    ("markup in class name", meta_json(class_names=["[bold]a", "b"]), "family yolov5", []),
    ("20 MB source", meta_json(source=BIG), "characters long", [BIG[:5000]]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "text", "present", "absent"), INFO_ROWS, ids=[r[0] for r in INFO_ROWS])
def test_info(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, text: str, present: str, absent: list[str]
) -> None:
    path = with_meta_json(plain, tmp_path / "m.onnx", text)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr()
    shown = " ".join((out.out + out.err).split())  # rich wraps long lines
    assert present in shown
    for bad in absent:
        assert bad not in out.out + out.err
    assert "Traceback" not in out.err


def test_info_json_escapes_control_characters(plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = with_meta_json(plain, tmp_path / "m.onnx", meta_json(source="\x1b[2Jx"))
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and json.loads(out)["meta"]["source"] == "\x1b[2Jx"


# -- edgedet import validates values before writing (M4) --------------------------------------

IMPORT_ROWS: list[tuple[str, list[str], Any]] = [
    ("good", ["--family", "yolov5", "--names", "a,b"], "ok"),
    ("names from a file (user's own)", ["--family", "yolov5", "--names", "@names"], "ok"),
    ("strides -8", ["--family", "yolov5", "--names", "a,b", "--strides", "-8", "16", "32"], "ModelMeta.strides entries must be in 1.."),
    ("strides 0", ["--family", "yolov5", "--names", "a,b", "--strides", "0", "16", "32"], "ModelMeta.strides entries must be in 1.."),
    ("std inf", ["--family", "yolov5", "--names", "a,b", "--std", "inf", "inf", "inf"], "ModelMeta.std must be finite"),
    ("mean nan", ["--family", "yolov5", "--names", "a,b", "--mean", "nan", "0", "0"], "ModelMeta.mean must be finite"),
    ("scale 0", ["--family", "yolov5", "--names", "a,b", "--scale", "0"], "ModelMeta.scale must be positive"),
    ("input size 0", ["--family", "yolov5", "--names", "a,b", "--input-size", "0", "32"], "input_size must be (height, width) > 0"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "args", "expected"), IMPORT_ROWS, ids=[r[0] for r in IMPORT_ROWS])
def test_import(
    plain: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, args: list[str], expected: str
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    args = [str(names) if a == "@names" else a for a in args]
    out = tmp_path / "out.onnx"
    rc = main(["import", str(plain), "--out", str(out), *args])
    err = capsys.readouterr().err
    if expected == "ok":
        assert rc == 0 and read_meta(out) is not None
        assert read_meta(out).class_names == ("a", "b")  # type: ignore[union-attr]
        return
    assert rc == 2 and expected in err and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


def test_user_names_file_still_works(plain: Path, tmp_path: Path) -> None:
    """Only the user's own names= may name a file (M1a keeps this working)."""
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    with edgedet.load(plain, family="yolov5", names=str(names)) as det:
        assert det.class_names == ("cat", "dog")
    with pytest.raises(InvalidInputError, match="a names file can be given only by the user"):
        ModelMeta(family="yolov5", class_names=str(names))

