"""The node under rclpy, tested against a FAKE of rclpy and the ROS 2 message packages
(tests/ros2/fake_rclpy.py; ROS 2 cannot be installed here). The fake's message classes are made
from the real message definitions and check field names and types like rosidl's generated
Python, so the conversion is checked against vision_msgs 4.1.1 as rclpy would see it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the fake's message classes are built from rosbags' type store")

from edgedet.cli import main
from edgedet.ros2.command import pick_transport
from edgedet.ros2.convert import from_detection2d_array, image_to_bgr

from . import fake_rclpy

pytestmark = pytest.mark.fake_rclpy

CAM = "/cam_front/image_raw"


def test_rclpy_node_publishes_one_array_per_image_with_params(
    monkeypatch: pytest.MonkeyPatch, sample: Path, frames: list[np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    """Parameters given as ``--ros-args -p`` override the flags (threshold, classes, topic,
    class_id); images delivered to the subscription come out as Detection2DArray messages of
    the fake's vision_msgs classes with the images' headers and the detector's boxes; a wrong
    encoding is skipped and reported."""
    import edgedet

    ros = fake_rclpy.install(monkeypatch)
    assert pick_transport("auto") == "rclpy"
    sensor = sys.modules["sensor_msgs.msg"]
    stamps = [(1_733_000_000 + i, 5_000 + i) for i in range(4)]
    msgs = [fake_rclpy.image(sensor, f, *stamps[i], ("bgr8", "rgb8", "mono8", "bgr8")[i])
            for i, f in enumerate(frames)]  # fmt: skip
    bad = fake_rclpy.image(sensor, frames[0], 9, 9)
    bad.encoding = "32FC1"
    for m in (msgs[0], msgs[1], bad, msgs[2], msgs[3]):
        ros.deliver(CAM, m)
    rc = main(
        ["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "rclpy",
         "--input-topic", CAM, "--idle-timeout", "0.1", "--give-up", "0.3", "--conf", "0.25",
         "--ros-args", "-p", "score_threshold:=0.5", "-p", "classes:=car,truck",
         "-p", "output_topic:=/perception/detections", "-p", "class_id:=index"]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert rc == 1  # the fake camera stopped: the node reports it and gives up after 0.3 s
    assert report["received"] == 5 and report["published"] == 4
    assert report["rejected"] == {"encoding 32fc1": 1} and report["outputs"] == ["rclpy"]
    assert ros.calls[0] == "init ['edgedet', '--ros-args', '-p', 'score_threshold:=0.5', " \
        "'-p', 'classes:=car,truck', '-p', 'output_topic:=/perception/detections', '-p', 'class_id:=index']"
    assert "create_subscription sensor_msgs/msg/Image " + CAM in ros.calls
    assert "create_publisher vision_msgs/msg/Detection2DArray /perception/detections" in ros.calls
    assert ros.calls[-2:] == ["destroy_node", "shutdown"]
    out = ros.published["/perception/detections"]
    assert len(out) == 4
    vision = sys.modules["vision_msgs.msg"]
    det = edgedet.load(sample, runtime="onnxruntime", score_threshold=0.5)
    det.classes = ["car", "truck"]
    boxes = 0
    for msg, src in zip(out, msgs):
        assert isinstance(msg, vision.Detection2DArray)
        want = det(image_to_bgr(src))
        boxes += len(want)
        back = from_detection2d_array(msg)
        assert (back.stamp.sec, back.stamp.nanosec) == (src.header.stamp.sec, src.header.stamp.nanosec)
        assert back.frame_id == "cam_front"
        assert np.array_equal(back.xyxy.astype(np.float32), want.xyxy)
        assert np.array_equal(back.scores.astype(np.float32), want.scores)
        assert back.class_ids == [str(c) for c in want.class_ids]
        assert all(s >= 0.5 for s in back.scores)
        assert set(back.class_ids) <= {"0", "1"}  # car, truck
    assert boxes >= 2
    det.close()


def test_fake_messages_refuse_wrong_fields_as_rosidl_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake is strict where rosidl's classes are: a misspelt field or a float32 where a
    float64 Python float is required fails, so the conversion's use of them is checked."""
    fake_rclpy.install(monkeypatch)
    vision = sys.modules["vision_msgs.msg"]
    with pytest.raises(AssertionError, match="Invalid arguments"):
        vision.Point2D(x=1.0, z=2.0)
    with pytest.raises(AssertionError, match="must be float"):
        vision.ObjectHypothesis(class_id="car", score=np.float32(0.5))
    with pytest.raises(AssertionError, match="must be vision_msgs/msg/Pose2D"):
        vision.BoundingBox2D(center=vision.Point2D())


def test_without_rclpy_the_rclpy_transport_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "rclpy", None)  # import rclpy -> ImportError
    assert main(["ros2", str(sample), "--transport", "rclpy"]) == 2
    err = capsys.readouterr().err
    assert "source /opt/ros/humble/setup.bash" in err and "--transport dds" in err


def test_ctrl_c_keeps_what_was_published(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path, frames: list[np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Ctrl-C is how a ROS 2 node is stopped: the bag written so far is finished and kept, the
    report printed, exit 0."""
    from edgedet.ros2 import msgs

    ros = fake_rclpy.install(monkeypatch)
    sensor = sys.modules["sensor_msgs.msg"]
    for i in range(2):
        ros.deliver(CAM, fake_rclpy.image(sensor, frames[i], 100 + i, 7))
    ros.interrupt_when_idle = True
    rc = main(["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "rclpy",
               "--input-topic", CAM, "--out-bag", str(tmp_path / "bag")])  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["ended"] == "interrupted (Ctrl-C)" and report["published"] == 2
    assert report["outputs"] == ["rclpy", "bag"]
    got = [from_detection2d_array(m).stamp.sec for _, m in msgs.read_bag(tmp_path / "bag", "/edgedet/detections")]
    assert got == [100, 101] and len(ros.published["/edgedet/detections"]) == 2
    assert ros.calls[-2:] == ["destroy_node", "shutdown"]


def test_ros_args_without_rclpy_is_refused(sample: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["ros2", str(sample), "--transport", "none", "--camera", "0",
               "--out-bag", "x", "--ros-args", "-p", "score_threshold:=0.5"])  # fmt: skip
    assert rc == 2 and "--ros-args needs the rclpy transport" in capsys.readouterr().err
