"""Catalogue, entry point: image files and folders given to ``edgedet predict`` (L4).

Float TIFFs are converted (0..1 and 0..255) or refused with the reason, never turned black;
files with the same stem get distinct outputs; detections.json records each image's path
relative to the input folder; unreadable files are skipped and listed; a truncated JPEG is
predicted with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgedet.cli import main
from tests.badinput.helpers import image, truncated_jpeg, write_jpeg
from tests.tiny_models import make_tiny_yolov5, tiny_meta

BASE = image(48, 64, seed=5)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_yolov5(tmp_path_factory.mktemp("files") / "tiny.onnx", meta=tiny_meta())


def _png(name: str, img: np.ndarray) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        assert cv2.imwrite(str(d / name), img)

    return make


def _tiff(name: str, img: np.ndarray) -> Callable[[Path], None]:
    return _png(name, img)


def _raw(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


# (case, builder, expected: "same" = same detections as BASE as PNG, "skip: <reason>",
#  "warn: <text>")
ROWS: list[tuple[str, Callable[[Path], None], str]] = [
    ("png", _png("x.png", BASE), "same"),
    ("16-bit png", _png("x.png", BASE.astype(np.uint16) * 257), "same"),
    ("float32 tiff 0..255", _tiff("x.tiff", BASE.astype(np.float32)), "same"),
    ("float32 tiff 0..1", _tiff("x.tiff", BASE.astype(np.float32) / 255), "same"),
    ("float32 tiff 0..1000", _tiff("x.tiff", BASE.astype(np.float32) * 4), "skip: float32 image with values 0..1016"),
    ("float32 tiff NaN", _tiff("x.tiff", np.full((8, 8, 3), np.nan, np.float32)), "skip: NaN/inf pixels"),
    ("float32 tiff negative", _tiff("x.tiff", BASE.astype(np.float32) - 300), "skip: convert it to 8-bit first"),
    ("empty .jpg", _raw("x.jpg", b""), "skip: OpenCV cannot read it"),
    ("text named .jpg", _raw("x.jpg", b"not an image\n" * 10), "skip: OpenCV cannot read it"),
    ("truncated jpeg", lambda d: truncated_jpeg(d / "x.jpg"), "warn: truncated JPEG"),
]  # fmt: skip


def _dets(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "detections.json").read_text())["detections"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("case", "make", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_predict_file(
    model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, make: Callable[[Path], None], expected: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    make(src)
    out = tmp_path / "out"
    rc = main(["predict", str(model), str(src), "--save", str(out), "--conf", "0.1"])
    text = " ".join(capsys.readouterr().out.split())
    # a folder whose only image is skipped measured nothing: exit 2, no detections.json
    assert rc == (2 if expected.startswith("skip: ") else 0)
    if expected == "same":
        ref_dir = tmp_path / "ref"
        ref_dir.mkdir()
        cv2.imwrite(str(ref_dir / "x.png"), BASE)
        main(["predict", str(model), str(ref_dir), "--save", str(tmp_path / "ref_out"), "--conf", "0.1"])
        got = [d["xyxy"] for d in _dets(out)]
        assert got and got == [d["xyxy"] for d in _dets(tmp_path / "ref_out")]
    elif expected.startswith("skip: "):
        assert "skipped" in text and expected[6:] in text, text
        assert not (out / "detections.json").exists()
    else:
        assert "warning" in text and expected[6:] in text, text
        assert len(_dets(out)) > 0


def test_same_stems_get_distinct_outputs(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_jpeg(src / "s1" / "x.jpg", seed=1)
    write_jpeg(src / "s2" / "x.jpg", seed=2)
    write_jpeg(src / "y.jpg", seed=3)
    assert cv2.imwrite(str(src / "y.tiff"), image(48, 64, seed=4))
    out = tmp_path / "out"
    assert main(["predict", str(model), str(src), "--save", str(out), "--conf", "0.1"]) == 0
    drawn = sorted(
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "detections.json"
    )
    assert drawn == ["s1/x.jpg", "s2/x.jpg", "y.jpg", "y.tiff.jpg"]
    recorded = {d["file_name"] for d in _dets(out)}
    assert recorded == {"s1/x.jpg", "s2/x.jpg", "y.jpg", "y.tiff"}
    # each record belongs to its own image: different inputs, different detections
    by_file: dict[str, list[Any]] = {}
    for d in _dets(out):
        by_file.setdefault(d["file_name"], []).append(d["xyxy"])
    assert by_file["s1/x.jpg"] != by_file["s2/x.jpg"]


def test_glob_source_records_paths_relative_to_common_folder(model: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_jpeg(src / "a" / "x.jpg", seed=1)
    write_jpeg(src / "b" / "x.jpg", seed=2)
    out = tmp_path / "out"
    assert main(["predict", str(model), str(src / "*" / "x.jpg"), "--save", str(out), "--conf", "0.1"]) == 0
    assert {d["file_name"] for d in _dets(out)} == {"a/x.jpg", "b/x.jpg"}
    assert (out / "a" / "x.jpg").is_file() and (out / "b" / "x.jpg").is_file()
