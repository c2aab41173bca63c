"""edgedet.video: sources, the sequential and pipelined loops, live sources that drop frames or
disappear. Live cameras are played by `FrameSource` subclasses written here (OpenCV cannot open
a camera on CI); everything else (OpenCV files, ONNX Runtime) is real."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet.errors import InvalidInputError, SourceLostError
from edgedet.video import FrameSource, open_source
from tests.tiny_models import make_tiny_yolov5, tiny_meta

SAMPLE = Path(edgedet.__file__).parent / "assets" / "sample_roads.onnx"


@pytest.fixture()
def det(tmp_path: Path) -> edgedet.Detector:
    return edgedet.load(make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta()), score_threshold=0.1)


def frame(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


class FakeCamera(FrameSource):
    """A live source (a test double of a camera): ``n`` frames, one every ``period`` s, then it
    disappears (``read`` returns None, as ``cv2.VideoCapture.read`` does for an unplugged
    camera) or, with ``hang``, blocks as a stalled driver does."""

    live = True

    def __init__(self, n: int, period: float = 0.0, hang: bool = False, frames: list | None = None):
        self.n, self.period, self.hang, self.sent = n, period, hang, 0
        self.frames = frames
        self.name = "fake camera"
        self.closed = False
        self.unblock = threading.Event()

    def read(self) -> np.ndarray | None:
        if self.sent >= self.n:
            if self.hang:
                self.unblock.wait(10)
            return None
        time.sleep(self.period)
        self.sent += 1
        return self.frames[self.sent - 1] if self.frames else frame(self.sent)

    def close(self) -> None:
        self.closed = True


def _folder(tmp_path: Path, n: int) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(n):
        cv2.imwrite(str(d / f"{i:04d}.png"), frame(i))
    return d


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("edgedet-")}


def test_pipelined_stream_matches_sequential(det: edgedet.Detector, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 10)
    seq = list(det.stream(folder))
    pipe = list(det.stream(folder, pipelined=True))
    assert [r.index for r in pipe] == list(range(10))
    for a, b in zip(seq, pipe):
        np.testing.assert_array_equal(a.detections.xyxy, b.detections.xyxy)
        np.testing.assert_array_equal(a.detections.scores, b.detections.scores)
        np.testing.assert_array_equal(a.frame, b.frame)
    for results in (seq, pipe):
        assert all(r.latency > 0 and r.tracks is None for r in results)
        stamps = [r.timestamp for r in results]
        assert stamps == sorted(stamps) and abs(stamps[0] - time.time()) < 60
    assert not _threads()


def test_closing_a_pipelined_stream_early_stops_its_threads(
    det: edgedet.Detector, tmp_path: Path
) -> None:
    it = det.stream(_folder(tmp_path, 12), pipelined=True)
    next(it)
    assert _threads()  # the stages are running
    it.close()
    assert not _threads()


@pytest.mark.parametrize("pipelined", [False, True])
def test_corrupt_frame_is_reported_not_skipped(
    det: edgedet.Detector, tmp_path: Path, pipelined: bool
) -> None:
    folder = _folder(tmp_path, 4)
    (folder / "0002.png").write_bytes(b"not a png")
    got = []
    with pytest.raises(InvalidInputError, match=r"0002\.png cannot be read"):
        for r in det.stream(folder, pipelined=pipelined):
            got.append(r.index)
    assert got == [0, 1]
    assert not _threads()


@pytest.mark.parametrize("pipelined", [False, True])
def test_camera_that_disappears_raises_after_its_frames(
    det: edgedet.Detector, pipelined: bool
) -> None:
    cam = FakeCamera(n=5)
    got = []
    with pytest.raises(SourceLostError, match="fake camera stopped delivering frames after 5"):
        for r in det.stream(cam, pipelined=pipelined, drop="never"):
            got.append(r.index)
    assert got == [0, 1, 2, 3, 4] and cam.closed


@pytest.mark.parametrize("pipelined", [False, True])
def test_stalled_camera_times_out(det: edgedet.Detector, pipelined: bool) -> None:
    cam = FakeCamera(n=2, hang=True)
    t0 = time.monotonic()
    with pytest.raises(SourceLostError, match=r"no frame for 0\.3 s"):
        list(det.stream(cam, pipelined=pipelined, stall_timeout=0.3))
    assert time.monotonic() - t0 < 8
    assert not cam.closed  # its reader is still blocked in read(): not released under it
    cam.unblock.set()


@pytest.mark.parametrize("pipelined", [False, True])
def test_live_source_drops_oldest_and_counts_it(det: edgedet.Detector, pipelined: bool) -> None:
    cam = FakeCamera(n=40)
    got, dropped = [], 0
    with pytest.raises(SourceLostError):
        for r in det.stream(cam, pipelined=pipelined, queue_size=2):
            time.sleep(0.01)  # a slow consumer: the camera outruns it
            got.append(r.index)
            dropped += r.dropped
    assert dropped > 0
    assert got == sorted(got) and len(got) + dropped <= 40
    # every frame is either processed, dropped (counted), or still in flight at the end
    assert 40 - len(got) - dropped <= 2 + (6 if pipelined else 1)


def test_bad_stream_options(det: edgedet.Detector, tmp_path: Path) -> None:
    folder = _folder(tmp_path, 1)
    with pytest.raises(InvalidInputError, match="drop must be"):
        list(det.stream(folder, drop="newest"))
    with pytest.raises(InvalidInputError, match="queue_size"):
        list(det.stream(folder, queue_size=0))
    with pytest.raises(InvalidInputError, match="video source must be"):
        open_source(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no frames"):
        open_source(tmp_path / "frames" / ".." / "frames" / "..")


# -- tracking through a lost camera ----------------------------------------------------------------


def test_tracker_survives_a_lost_camera(tmp_path: Path) -> None:
    pytest.importorskip("supervision", reason="the 'track' extra is not installed")
    from edgedet.data.synthetic import make_sequence
    from edgedet.tracking import Tracker

    frames = [f.image for f in make_sequence(16, seed=1, objects=10)]
    det = edgedet.load(SAMPLE)
    trk = Tracker(frame_rate=10)
    first = []
    with pytest.raises(SourceLostError, match="after 8 frame"):
        for r in det.track(FakeCamera(8, frames=frames[:8]), tracker=trk, drop="never"):
            first.append(r)
    assert len(first) == 8
    # the camera comes back: the same tracker goes on, the objects keep their ids
    second = []
    with pytest.raises(SourceLostError):
        for r in det.track(
            FakeCamera(8, frames=frames[8:]), tracker=trk, pipelined=True, drop="never"
        ):
            second.append(r)
    assert first[-1].tracks is not None and second[0].tracks is not None
    before = set(first[-1].tracks.ids.tolist())
    after = set(second[0].tracks.ids.tolist())
    assert len(before & after) >= 2 and trk.frames == 16


def test_track_command_saves_what_it_had_when_the_camera_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("supervision", reason="the 'track' extra is not installed")
    import edgedet.video
    from edgedet.cli import main
    from edgedet.data.synthetic import make_sequence

    frames = [f.image for f in make_sequence(6, seed=2)]
    monkeypatch.setattr(edgedet.video, "open_source", lambda source: FakeCamera(6, 0.02, frames=frames))
    out = tmp_path / "out"
    assert main(["track", "0", "--save", str(out)]) == 2
    assert "stopped delivering frames after 6" in capsys.readouterr().err
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["frames"] + doc["dropped_frames"] == 6 and "after 6 frame" in doc["source_lost"]
    assert doc["tracks"] and (out / "camera0_track.mp4").is_file()


def test_predict_keeps_what_a_lost_camera_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import edgedet.video
    from edgedet.cli import main

    monkeypatch.setattr(edgedet.video, "open_source", lambda source: FakeCamera(5, 0.01))
    out = tmp_path / "out"
    tiny = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    assert main(["predict", str(tiny), "0", "--save", str(out), "--conf", "0.1"]) == 0
    assert "stopped delivering frames after 5" in caplog.text
    doc = json.loads((out / "detections.json").read_text())
    assert {d["file_name"] for d in doc["detections"]} <= {f"frame_{i:06d}" for i in range(5)}
    assert (out / "camera0_pred.mp4").is_file()
