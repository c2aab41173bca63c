"""ROS 2 without rclpy, over DDS (cyclonedds, real, on loopback): the node publishes
Detection2DArray on ``rt/<topic>`` with type ``vision_msgs::msg::dds_::Detection2DArray_`` and a
separate subscriber process receives it; the subscriber decodes the exact wire bytes with rosbags
(the vision_msgs 4.1.1 definitions), so the wire format is checked by a second CDR
implementation. The node also reads sensor_msgs/Image from a DDS topic whose camera disappears
and comes back."""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="the 'ros' extra (rosbags) is not installed")
pytest.importorskip("cyclonedds", reason="the 'ros' extra (cyclonedds) is not installed")

from edgedet.cli import main
from edgedet.ros2 import msgs
from edgedet.ros2.convert import DETECTION_ARRAY, IMAGE, Stamp, image_to_bgr, to_detection2d_array
from edgedet.ros2.dds import DdsOutput, DdsReader, dds_topic, dds_type_name, to_idl

from .helpers import STAMPS, image_msg, write_image_bag

OUT = "/edgedet/detections"
CAM = "/cam_front/image_raw"


#: cyclonedds configuration for the tests: loopback only, unicast discovery (no multicast, so it
#: works on machines without a multicast interface and sends nothing to the network)
LOOPBACK = (
    '<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface address="127.0.0.1"/>'
    "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
    "<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>30</MaxAutoParticipantIndex>"
    '<Peers><Peer Address="127.0.0.1"/></Peers></Discovery></Domain></CycloneDDS>'
)


@pytest.fixture()
def domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A DDS domain of this test alone (0 is ROS 2's default; concurrent runs must not mix),
    on loopback (``CYCLONEDDS_URI``, read when a domain is created; subprocesses inherit it)."""
    monkeypatch.setenv("CYCLONEDDS_URI", LOOPBACK)
    return random.randint(30, 200)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_names_follow_ros2_dds_mapping() -> None:
    assert dds_topic("/edgedet/detections") == "rt/edgedet/detections"
    assert dds_type_name(DETECTION_ARRAY) == "vision_msgs::msg::dds_::Detection2DArray_"
    assert dds_type_name(IMAGE) == "sensor_msgs::msg::dds_::Image_"


def test_cyclonedds_bytes_equal_rosbags_cdr(frames: list[np.ndarray], detector) -> None:
    """The sample cyclonedds puts on the wire (XCDR1, as ROS 2 nodes use) is byte for byte the
    ROS 2 CDR that rosbags writes to bags, for a detection array and for an image."""
    make = msgs.factory()
    msg = to_detection2d_array(
        detector(frames[0]), stamp=STAMPS[0], frame_id="cam", class_names=detector.class_names,
        make=make,
    )  # fmt: skip
    assert len(msg.detections) >= 1
    assert to_idl(msg).serialize(use_version_2=False) == msgs.serialize(msg)
    image = image_msg(make, frames[0], STAMPS[0], "rgb8")
    assert to_idl(image).serialize(use_version_2=False) == msgs.serialize(image)


def _wait_ready(proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "ready" in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"{what} did not start: {proc.stderr.read()}")


def test_published_detections_reach_a_separate_subscriber_process(
    tmp_path: Path, sample: Path, frames: list[np.ndarray], detector, domain: int, capsys
) -> None:
    """edgedet ros2 --transport dds publishes; ``python -m edgedet.ros2.echo`` in another process
    receives identical boxes, scores, classes, frame ids and header stamps."""
    make = msgs.factory()
    images = [(STAMPS[i], image_msg(make, f, STAMPS[i])) for i, f in enumerate(frames)]
    write_image_bag(tmp_path / "in", CAM, images)
    echo = subprocess.Popen(
        [sys.executable, "-m", "edgedet.ros2.echo", OUT, "--count", "4", "--timeout", "60",
         "--domain-id", str(domain)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        _wait_ready(echo, "the subscriber")
        rc = main(
            ["ros2", str(sample), "--runtime", "onnxruntime", "--transport", "dds",
             "--domain-id", str(domain), "--input-bag", str(tmp_path / "in"),
             "--input-topic", CAM, "--output-topic", OUT, "--wait-subscribers", "30"]
        )  # fmt: skip
        report = json.loads(capsys.readouterr().out)
        assert rc == 0 and report["published"] == 4 and report["outputs"] == ["dds"]
        out, err = echo.communicate(timeout=60)
    finally:
        echo.kill()
    assert echo.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert len(got) == 4
    boxes = 0
    for rec, (stamp, image) in zip(got, images):
        want = detector(image_to_bgr(image))
        boxes += len(want)
        assert rec["decoders_agree"] is True
        assert Stamp(*rec["stamp"]) == stamp and rec["frame_id"] == "cam_front"
        assert np.array_equal(np.float32(rec["xyxy"]).reshape(-1, 4), want.xyxy)
        assert np.array_equal(np.float32(rec["scores"]), want.scores)
        assert rec["class_ids"] == [detector.class_names[c] for c in want.class_ids]
        assert rec["ids"] == [""] * len(want)
    assert boxes >= 4


@pytest.mark.slow
def test_camera_topic_that_disappears_is_reported_and_survived(
    tmp_path: Path, sample: Path, frames: list[np.ndarray], domain: int
) -> None:
    """The node subscribes to a DDS image topic. The camera publishes two good images and one in
    yuv422, then goes away (its DDS participant deleted) for 2 s, then a new camera publishes two
    more. The node (a separate process) skips the yuv422 image, reports the camera lost and back,
    publishes a Detection2DArray for each good image with the image's stamp, and after 5 s of
    silence ends with exit status 1 and the report saying so."""
    make = msgs.factory()
    report_path = tmp_path / "report.json"
    node = subprocess.Popen(
        [sys.executable, "-m", "edgedet.ros2", str(sample), "--runtime", "onnxruntime",
         "--transport", "dds", "--domain-id", str(domain), "--input-topic", CAM,
         "--output-topic", OUT, "--idle-timeout", "1", "--give-up", "5", "--input-qos", "reliable",
         "--report", str(report_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    received: list = []
    try:
        detections = DdsReader(OUT, DETECTION_ARRAY, domain_id=domain, raw=True)

        def camera_run(images: list[tuple[Stamp, object]]) -> None:
            cam = DdsOutput(CAM, domain_id=domain, typename=IMAGE)
            assert cam.wait_for_subscribers(60) == 1, "the node never subscribed"
            for stamp, msg in images:
                cam.publish(msg, stamp)
                time.sleep(0.05)
            cam.close()
            del cam  # the camera driver exits: its DDS entities are deleted with the objects
            gc.collect()

        bad = image_msg(make, frames[2], STAMPS[2])
        bad.encoding = "yuv422"
        camera_run([(STAMPS[0], image_msg(make, frames[0], STAMPS[0])),
                    (STAMPS[1], image_msg(make, frames[1], STAMPS[1], "rgb8")),
                    (STAMPS[2], bad)])  # fmt: skip
        time.sleep(2.0)
        camera_run([(STAMPS[3], image_msg(make, frames[3], STAMPS[3], "mono8")),
                    (STAMPS[4], image_msg(make, frames[0], STAMPS[4]))])  # fmt: skip
        deadline = time.monotonic() + 30
        while len(received) < 4 and time.monotonic() < deadline:
            received += detections.take(0.5)
        out, err = node.communicate(timeout=60)
    finally:
        node.kill()
    assert node.returncode == 1, err
    report = json.loads(out)
    assert report == json.loads(report_path.read_text())
    assert report["received"] == 5 and report["published"] == 4
    assert report["rejected"] == {"encoding yuv422": 1}
    assert report["camera_lost"] == 2 and report["camera_recovered"] == 1
    assert report["ended"].startswith("camera lost: nothing on /cam_front/image_raw for")
    assert "camera lost: no image on /cam_front/image_raw" in err
    assert "is back after" in err and "edgedet ros2: camera lost" in err
    stamps = [Stamp(s.header.stamp.sec, s.header.stamp.nanosec) for s in received]
    assert stamps == [STAMPS[0], STAMPS[1], STAMPS[3], STAMPS[4]]
    wire = [msgs.deserialize(s.raw_cdr, DETECTION_ARRAY) for s in received]
    assert [w.header.frame_id for w in wire] == ["cam_front"] * 4
