"""The edgedet command: predict, info, runtimes, import, errors with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet.cli import main
from edgedet.meta import read_meta
from tests.tiny_models import make_tiny_yolov5, tiny_meta


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())


def _images(folder: Path, n: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"img{i}.jpg"), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_predict_folder(tiny: Path, tmp_path: Path) -> None:
    src = _images(tmp_path / "imgs")
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(src), "--save", str(out), "--conf", "0.1"]) == 0
    data = json.loads((out / "detections.json").read_text())
    assert data["class_names"] == ["thing0", "thing1"]
    assert data["runtime"]["runtime"] == "onnxruntime"
    assert {d["file_name"] for d in data["detections"]} <= {"img0.jpg", "img1.jpg", "img2.jpg"}
    assert all(len(d["xyxy"]) == 4 for d in data["detections"])
    assert sorted(p.name for p in out.glob("*.jpg")) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert not list(out.glob(".*"))  # no temp files left behind


def test_predict_video(tiny: Path, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(video), "--save", str(out), "--conf", "0.1"]) == 0
    data = json.loads((out / "detections.json").read_text())
    assert {d["image_id"] for d in data["detections"]} <= set(range(5))
    assert (out / "clip_pred.mp4").is_file()


def test_errors_exit_2_with_message(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path / "missing.onnx"), str(tmp_path)]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["predict", str(tiny), str(tmp_path / "nothing-here")]) == 2
    assert "source not found" in capsys.readouterr().err
    assert main(["predict", str(tiny), str(tmp_path), "--runtime", "tflite"]) == 2
    assert "unknown runtime 'tflite'" in capsys.readouterr().err


def test_info_and_runtimes(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["meta"]["family"] == "yolov5"
    assert info["inputs"][0]["name"] == "images"
    assert info["runtimes"]["onnxruntime"]["available"] is True
    assert info["runtimes"]["tensorrt"]["available"] is False
    assert "[tensorrt]" in info["runtimes"]["tensorrt"]["reason"]
    assert main(["runtimes", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["onnxruntime"]["available"] and rows["openvino"]["available"]


def test_import_writes_meta_then_loads_without_flags(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx", nc=2)
    out = tmp_path / "with_meta.onnx"
    assert (
        main(
            [
                "import",
                str(plain),
                "--family",
                "yolov5",
                "--names",
                "cone,sign",
                "--color",
                "BGR",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    meta = read_meta(out)
    assert meta is not None and meta.family == "yolov5" and meta.class_names == ("cone", "sign")
    assert meta.color == "BGR" and meta.edgedet_version == edgedet.__version__
    det = edgedet.load(out)
    assert det.class_names == ("cone", "sign")


def test_import_refuses_a_family_that_does_not_fit(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx", nc=2)
    out = tmp_path / "bad.onnx"
    assert (
        main(["import", str(plain), "--family", "yolox", "--names", "a,b", "--out", str(out)]) == 2
    )
    assert not out.exists()


@pytest.mark.testdata
def test_import_real_yolox(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolox.onnx"
    assert (
        main(
            [
                "import",
                str(models_dir / "yolox_nano_416.onnx"),
                "--family",
                "yolox",
                "--names",
                "coco",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    det = edgedet.load(out)
    assert (
        det.meta.letterbox == "topleft" and det.meta.color == "BGR" and len(det.class_names) == 80
    )
