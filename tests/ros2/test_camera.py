"""A camera that disappears mid-stream (--camera): the node reports it, reopens it, survives.

No camera exists on the test machine, so OpenCV's ``cv2.VideoCapture`` is replaced by a FAKE
camera for these tests (`FakeCamera`): a device that delivers a few frames, then "is unplugged"
(``read`` fails), refuses to open for a while, then comes back. Everything else is real:
``Detector.stream`` with its reader thread, the node, the rosbag2 output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the 'ros' extra (rosbags) is not installed")

from edgedet.cli import main
from edgedet.ros2 import msgs
from edgedet.ros2.convert import from_detection2d_array


class FakeCamera:
    """FAKE ``cv2.VideoCapture`` of camera index 0. ``plan`` lists, per open attempt, how many
    frames the device delivers before it is unplugged (None: the open fails)."""

    plan: ClassVar[list[int | None]] = []
    frames: ClassVar[list[np.ndarray]] = []
    opened: ClassVar[int] = 0

    def __init__(self, source: object) -> None:
        assert source == 0
        cls = type(self)
        self.n = cls.plan[cls.opened] if cls.opened < len(cls.plan) else None
        cls.opened += 1
        self.i = 0

    def isOpened(self) -> bool:  # OpenCV's name
        return self.n is not None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.n is None or self.i >= self.n:
            return False, None  # unplugged
        self.i += 1
        return True, self.frames[self.i % len(self.frames)].copy()

    def get(self, prop: int) -> float:  # OpenCV's name; 0.0 is its answer for "unknown"
        return 0.0

    def release(self) -> None:
        pass


def test_camera_unplugged_twice_is_reported_and_reopened(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path, frames: list[np.ndarray],
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import cv2

    FakeCamera.plan = [3, None, None, 2]  # 3 frames, unplugged, 2 failed reopens, back for 2
    FakeCamera.frames, FakeCamera.opened = frames, 0
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    rc = main(
        ["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "none", "--camera", "0",
         "--frame-id", "front_cam", "--reconnect", "3", "--reconnect-delay", "0.01",
         "--out-bag", str(tmp_path / "out")]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert rc == 1  # stayed lost after the last 3 tries: a supervisor (launch respawn) sees it
    assert report["received"] == 5 and report["published"] == 5
    assert report["camera_lost"] == 2 and report["camera_recovered"] == 1
    assert report["ended"] == "camera lost: 0 did not come back after 3 tries"
    assert FakeCamera.opened == 4 + 3
    assert "camera lost: 0 stopped after 3 frame(s)" in caplog.text and "camera 0 is back" in caplog.text
    got = [from_detection2d_array(m) for _, m in msgs.read_bag(tmp_path / "out", "/edgedet/detections")]
    assert len(got) == 5 and {g.frame_id for g in got} == {"front_cam"}
    stamps = [g.stamp.ns for g in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5  # wall-clock stamps, in order


def test_camera_that_never_opens_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import cv2

    FakeCamera.plan, FakeCamera.opened = [None], 0
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    rc = main(["ros2", str(sample), "--transport", "none", "--camera", "0",
               "--out-bag", str(tmp_path / "out")])  # fmt: skip
    assert rc == 2
    assert "could not open video source 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
