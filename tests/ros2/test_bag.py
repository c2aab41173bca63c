"""ROS 2 without rclpy, through rosbag2 files: the node reads sensor_msgs/Image from a bag and
writes vision_msgs/Detection2DArray to a bag, which is read back here with rosbags against the
vision_msgs 4.1.1 definitions; boxes, classes, scores and header stamps must be identical to
what the detector returns for the same images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the 'ros' extra (rosbags) is not installed")

from edgedet.cli import main
from edgedet.detections import Detections
from edgedet.ros2 import msgs
from edgedet.ros2.convert import (
    DETECTION_ARRAY,
    Stamp,
    from_detection2d_array,
    image_to_bgr,
    to_detection2d_array,
)

from .helpers import STAMPS, image_msg, write_image_bag

TOPIC = "/cam_front/image_raw"
OUT = "/edgedet/detections"


def test_vision_msgs_definitions_are_the_shipped_4_1_1_files() -> None:
    """The registered types have exactly the fields of vision_msgs 4.1.1 (Pose2D with a Point2D
    position: the 4.x layout, not 3.x's x/y/theta)."""
    store = msgs.typestore()
    names = {n: [f for f, _ in store.fielddefs[f"vision_msgs/msg/{n}"][1]] for n in msgs.VISION_MSGS}
    assert names == {
        "Point2D": ["x", "y"],
        "Pose2D": ["position", "theta"],
        "BoundingBox2D": ["center", "size_x", "size_y"],
        "ObjectHypothesis": ["class_id", "score"],
        "ObjectHypothesisWithPose": ["hypothesis", "pose"],
        "Detection2D": ["header", "results", "bbox", "id"],
        "Detection2DArray": ["header", "detections"],
    }
    assert store.fielddefs["vision_msgs/msg/ObjectHypothesisWithPose"][1][1][1][1] == (
        "geometry_msgs/msg/PoseWithCovariance"
    )


def test_conversion_round_trips_through_cdr_exactly() -> None:
    dets = Detections(
        np.array([[10.5, 20.25, 100.125, 200.75], [0.1, 0.2, 5.3, 7.7]], np.float32),
        np.array([0.9, 0.3], np.float32),
        np.array([0, 2]),
    )
    make = msgs.factory()
    msg = to_detection2d_array(
        dets, stamp=Stamp(7, 999_999_999), frame_id="cam", class_names=["a", "b", "c"], make=make
    )
    raw = msgs.serialize(msg)
    assert raw[:4] == b"\x00\x01\x00\x00"  # CDR little endian encapsulation, as ROS 2 writes
    back = from_detection2d_array(msgs.deserialize(raw, DETECTION_ARRAY))
    assert np.array_equal(back.xyxy.astype(np.float32), dets.xyxy)
    assert np.array_equal(back.scores.astype(np.float32), dets.scores)
    assert back.class_ids == ["a", "c"]
    assert back.ids == ["", ""]
    assert back.stamp == Stamp(7, 999_999_999) and back.frame_id == "cam"
    d0 = msgs.deserialize(raw, DETECTION_ARRAY).detections[0]
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == (55.3125, 110.5)
    assert (d0.bbox.size_x, d0.bbox.size_y, d0.bbox.center.theta) == (89.625, 180.5, 0.0)
    assert d0.header.stamp.sec == 7 and d0.header.frame_id == "cam"
    index = to_detection2d_array(
        dets, stamp=Stamp(0, 0), frame_id="", class_names=["a", "b", "c"], make=make,
        class_id="index",
    )  # fmt: skip
    assert [d.results[0].hypothesis.class_id for d in index.detections] == ["0", "2"]


def test_track_ids_fill_detection_id_when_present() -> None:
    """A tracker's ``tracker_id`` (or ``track_ids``) goes into Detection2D.id; -1 = no track."""

    class Tracked(Detections):
        pass

    dets = Tracked(np.tile(np.float32([0, 0, 1, 1]), (3, 1)), np.ones(3, np.float32), [0, 0, 0])
    object.__setattr__(dets, "tracker_id", np.array([4, -1, 17]))
    msg = to_detection2d_array(
        dets, stamp=Stamp(1, 2), frame_id="f", class_names=["x"], make=msgs.factory()
    )
    assert [d.id for d in msg.detections] == ["4", "", "17"]
    object.__delattr__(dets, "tracker_id")
    object.__setattr__(dets, "track_ids", [None, 3, 5])
    msg = to_detection2d_array(
        dets, stamp=Stamp(1, 2), frame_id="f", class_names=["x"], make=msgs.factory()
    )
    assert [d.id for d in msg.detections] == ["", "3", "5"]


@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8"])
def test_image_encodings_decode_to_the_same_bgr(frames: list[np.ndarray], encoding: str) -> None:
    import cv2

    bgr = frames[0]
    got = image_to_bgr(image_msg(msgs.factory(), bgr, STAMPS[0], encoding))
    want = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if encoding == "mono8" else bgr
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_row_padding_is_skipped(frames: list[np.ndarray]) -> None:
    make = msgs.factory()
    bgr = frames[1]
    msg = image_msg(make, bgr, STAMPS[0])
    h, w, _ = bgr.shape
    padded = np.zeros((h, w * 3 + 8), np.uint8)
    padded[:, : w * 3] = bgr.reshape(h, w * 3)
    msg.step, msg.data = w * 3 + 8, padded.reshape(-1)
    assert np.array_equal(image_to_bgr(msg), bgr)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    rc = main(args)
    out = capsys.readouterr().out
    return rc, json.loads(out[out.index("{") :])


def test_bag_in_bag_out_identical_boxes_classes_stamps(
    tmp_path: Path, sample: Path, frames: list[np.ndarray], detector, capsys
) -> None:
    """edgedet ros2 --input-bag/--out-bag: one Detection2DArray per image, read back from the
    bag: boxes, scores, classes and header stamps/frame ids equal the detector's own output on
    the same images and the input images' headers."""
    make = msgs.factory()
    encodings = ["bgr8", "rgb8", "mono8", "bgr8"]
    images = [(STAMPS[i], image_msg(make, f, STAMPS[i], encodings[i])) for i, f in enumerate(frames)]
    write_image_bag(tmp_path / "in", TOPIC, images)
    rc, report = _run(
        ["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "none",
         "--input-bag", str(tmp_path / "in"), "--input-topic", TOPIC,
         "--out-bag", str(tmp_path / "out"), "--output-topic", OUT],
        capsys,
    )  # fmt: skip
    assert rc == 0 and report["published"] == 4 and report["rejected"] == {}
    assert msgs.bag_topics(tmp_path / "out") == {OUT: DETECTION_ARRAY}
    got = list(msgs.read_bag(tmp_path / "out", OUT, DETECTION_ARRAY))
    assert len(got) == 4
    total = 0
    for (timestamp, msg), (stamp, image) in zip(got, images):
        want = detector(image_to_bgr(image))
        back = from_detection2d_array(msg)
        total += len(want)
        assert np.array_equal(back.xyxy.astype(np.float32), want.xyxy)
        assert np.array_equal(back.scores.astype(np.float32), want.scores)
        assert back.class_ids == [detector.class_names[c] for c in want.class_ids]
        assert back.stamp == stamp and timestamp == stamp.ns
        assert back.frame_id == "cam_front"
        assert all(d.header.stamp.nanosec == stamp.nanosec for d in msg.detections)
    assert total >= 4  # the sample model finds the cars: the comparison covers real boxes
    assert report["detections"] == total


def test_bad_encodings_are_skipped_and_reported(
    tmp_path: Path, sample: Path, frames: list[np.ndarray], capsys
) -> None:
    """A topic with a wrong encoding (yuv422, 16UC1) or a truncated image: the node skips those,
    reports them by reason, and publishes the good ones."""
    make = msgs.factory()
    good = image_msg(make, frames[0], STAMPS[0])
    yuv = image_msg(make, frames[1], STAMPS[1])
    yuv.encoding = "yuv422"
    depth = image_msg(make, frames[2], STAMPS[2])
    depth.encoding, depth.step = "16UC1", frames[2].shape[1] * 2
    short = image_msg(make, frames[3], STAMPS[3])
    short.data = short.data[:-5]
    images = [(STAMPS[0], good), (STAMPS[1], yuv), (STAMPS[2], depth), (STAMPS[3], short)]
    images.append((STAMPS[4], image_msg(make, frames[1], STAMPS[4])))
    write_image_bag(tmp_path / "in", TOPIC, images)
    rc, report = _run(
        ["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "none",
         "--input-bag", str(tmp_path / "in"), "--input-topic", TOPIC,
         "--out-bag", str(tmp_path / "out")],
        capsys,
    )  # fmt: skip
    assert rc == 0
    assert report["received"] == 5 and report["published"] == 2
    assert report["rejected"] == {"encoding yuv422": 1, "encoding 16uc1": 1, "bad image": 1}
    assert any("encoding 'yuv422'" in e and "bgr8, rgb8, mono8" in e for e in report["errors"])
    stamps = [from_detection2d_array(m).stamp for _, m in msgs.read_bag(tmp_path / "out", OUT)]
    assert stamps == [STAMPS[0], STAMPS[4]]


def test_nothing_published_is_an_error_and_bag_errors_name_topics(
    tmp_path: Path, sample: Path, frames: list[np.ndarray], capsys
) -> None:
    make = msgs.factory()
    bad = image_msg(make, frames[0], STAMPS[0])
    bad.encoding = "bayer_rggb8"
    write_image_bag(tmp_path / "in", TOPIC, [(STAMPS[0], bad)])
    args = ["ros2", str(sample), "--transport", "none", "--input-bag", str(tmp_path / "in"),
            "--input-topic", TOPIC, "--out-bag", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no Detection2DArray was published" in err and "bayer_rggb8" in err
    assert main([*args[:-1], str(tmp_path / "out2"), "--input-topic", "/nope"]) == 2
    assert f"has no topic /nope; its topics: {TOPIC} (sensor_msgs/msg/Image)" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists() and not (tmp_path / "out2.partial").exists()
    assert not (tmp_path / "out").exists()  # nothing published: no bag is left behind
    (tmp_path / "taken").mkdir()
    assert main([*args[:-1], str(tmp_path / "taken")]) == 2  # never overwritten
    assert "exists; rosbag2 output must be a new folder" in capsys.readouterr().err


def test_missing_ros_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rosbags", None)  # import rosbags -> ImportError
    rc = main(["ros2", str(sample), "--transport", "none", "--input-bag", str(tmp_path),
               "--out-bag", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "needs the rosbags package (the 'ros' extra): pip install" in err


def test_the_parser_imports_no_ros_library() -> None:
    """``edgedet --help`` and every other command build the ros2 parser: no ROS library loads."""
    import subprocess
    import sys

    code = ("import sys; from edgedet.cli import build_parser; build_parser(); "
            "print(sorted({'rosbags', 'cyclonedds', 'rclpy'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_node_survives_messages_that_are_not_images(
    tmp_path: Path, frames: list[np.ndarray], detector
) -> None:
    """Whatever arrives on the topic, the node counts it and goes on with the next image."""
    from types import SimpleNamespace

    from edgedet.ros2.convert import image_fields
    from edgedet.ros2.node import DetectionNode

    out = msgs.BagOutput(tmp_path / "bag", OUT)
    node = DetectionNode(detector, [out], topic=TOPIC)
    no_header = SimpleNamespace(**image_fields(frames[0]))
    assert node.on_image(no_header) is False
    assert node.on_image(SimpleNamespace(header=None)) is False  # not an Image at all
    assert node.on_image(image_msg(msgs.factory(), frames[0], STAMPS[0])) is True
    node.close()
    assert node.report.rejected == {"bad image": 2} and node.report.published == 1
    assert "has no header" in node.report.errors[0]
    assert [t for t, _ in msgs.read_bag(tmp_path / "bag", OUT)] == [STAMPS[0].ns]
