"""Outputs are published only on success and output paths are checked: an interrupted
``predict VIDEO`` publishes no partial video, a failed ``import`` keeps the good file at --out,
an unwritable --out is an edgedet error naming it (calibrate, bench, predict, import, data
convert), and ``data convert``'s folder follows the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgedet.cli import main
from edgedet.detector import Detector
from edgedet.errors import InferenceError
from tests.tiny_models import make_tiny_yolov5, tiny_meta


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())


@pytest.fixture()
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(8):
        writer.write(np.full((48, 64, 3), i * 30, np.uint8))
    writer.release()
    return path


@pytest.mark.parametrize(
    ("fault", "rc"), [(KeyboardInterrupt("Ctrl-C"), 130), (InferenceError("device lost"), 2)]
)
def test_interrupted_video_publishes_nothing(
    tiny: Path, video: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    fault: BaseException, rc: int,
) -> None:  # fmt: skip
    real = Detector.stream

    def stream(self: Detector, source: Any, **kw: Any) -> Iterator[Any]:
        for k, res in enumerate(real(self, source, **kw)):
            if k == 4:
                raise fault
            yield res

    monkeypatch.setattr(Detector, "stream", stream)
    out = tmp_path / "out"
    assert main(["predict", str(tiny), str(video), "--save", str(out), "--conf", "0.1"]) == rc
    assert sorted(p.name for p in out.iterdir()) == []  # no clip_pred.mp4, no .part file
    monkeypatch.undo()
    assert main(["predict", str(tiny), str(video), "--save", str(out), "--conf", "0.1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip_pred.mp4", "detections.json"]


def test_failed_import_keeps_the_good_file(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "imported.onnx"
    assert main(["import", str(tiny), "--family", "yolov5", "--out", str(out)]) == 0
    good = out.read_bytes()
    # the same model as a YOLOX: its outputs do not fit, the check-load fails
    assert main(["import", str(tiny), "--family", "yolox", "--out", str(out)]) == 2
    assert out.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imported.onnx", "tiny.onnx"]


def _images(folder: Path) -> Path:
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / f"{i}.jpg"), np.full((40, 60, 3), 50 * i, np.uint8))
    return folder


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    from edgedet.data.synthetic import generate

    return generate(tmp_path / "ds", 2, seed=1, imgsz=(64, 64))


def _commands(tiny: Path, imgs: Path, data: Path, out: Path) -> dict[str, list[str]]:
    return {
        "calibrate": ["calibrate", str(tiny), "--images", str(imgs), "--out", str(out / "q.onnx")],
        "bench": ["bench", "--model", str(tiny), "--data", str(data), "--out", str(out / "b"),
                  "--no-plot", "--no-progress"],
        "predict": ["predict", str(tiny), str(imgs), "--save", str(out / "p")],
        "import": ["import", str(tiny), "--family", "yolov5", "--out", str(out / "i.onnx")],
        "data convert": ["data", "convert", str(data), "--to", "yolo", "--out", str(out / "c")],
    }  # fmt: skip


def test_unwritable_out_is_an_error_naming_it(
    tiny: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    imgs = _images(tmp_path / "imgs")
    blocker = tmp_path / "a_file"  # a file where a folder must be: no command can write under it
    blocker.write_text("x")
    bad = []
    for name, argv in _commands(tiny, imgs, dataset, blocker).items():
        try:
            rc = main(argv)
        except Exception as raw:  # the defect: a traceback instead of an edgedet error
            bad.append(f"{name}: raw {type(raw).__name__}")
            continue
        err = capsys.readouterr().err
        if not (rc == 2 and "cannot" in err and str(blocker) in err):
            bad.append(f"{name}: rc {rc}: {err[-300:]}")
    assert not bad
    assert blocker.read_text() == "x"


def test_bench_out_that_is_a_file(
    tiny: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    out.write_text("x")
    argv = ["bench", "--model", str(tiny), "--data", str(dataset), "--out", str(out)]
    assert main(argv) == 2
    assert f"--out {out} is an existing file; give a folder" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only-mode folders")
def test_read_only_folder(tiny: Path, dataset: Path, tmp_path: Path) -> None:
    imgs = _images(tmp_path / "imgs")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        for name, argv in _commands(tiny, imgs, dataset, ro).items():
            assert main(argv) == 2, name
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_data_convert_follows_the_umask(dataset: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert main(["data", "convert", str(dataset), "--to", "yolo", "--out",
                     str(tmp_path / "c")]) == 0  # fmt: skip
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c").stat().st_mode) == 0o755
