"""The detection node: images in, ``vision_msgs/Detection2DArray`` out, over any transport.

One `DetectionNode` holds the detector and the outputs; the transports only move messages:

- `Output` (publish a Detection2DArray): `edgedet.ros2.msgs.BagOutput` (rosbag2 file),
  `edgedet.ros2.dds.DdsOutput` (DDS, no ROS needed), `edgedet.ros2.rclpy_node.RclpyOutput`.
- inputs: ``sensor_msgs/Image`` messages from a bag (`run_messages` over
  `edgedet.ros2.msgs.read_bag_images`), from a topic (`run_topic` over a transport's
  ``images()``: DDS or rclpy), or frames from a camera / video / stream URL (`run_camera`, through
  `edgedet.Detector.stream`).

Bad input never stops the node: an image with an unsupported encoding or an inconsistent size
is counted under ``rejected`` in the `NodeReport` and logged (first occurrence of each reason,
then every 100th), and the next image is processed. A camera that disappears is reported
(``camera_lost``), reopened up to ``reconnect`` times, and the node ends with a non-zero status
only when it stays gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import EdgedetError, InvalidInputError, SourceLostError
from .convert import (
    SUPPORTED_ENCODINGS,
    MessageFactory,
    Stamp,
    image_to_bgr,
    to_detection2d_array,
)

log = logging.getLogger("edgedet.ros2")


class Output(Protocol):
    """Where the node's ``Detection2DArray`` messages go. ``make`` builds messages of this
    transport's kind (`edgedet.ros2.convert.MessageFactory`)."""

    name: str
    make: MessageFactory

    def publish(self, msg: Any, stamp: Stamp) -> None: ...

    def close(self) -> None: ...


@dataclass
class NodeReport:
    """What the node did: counts, rejected inputs by reason, camera losses, how it ended."""

    received: int = 0
    published: int = 0
    detections: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # first few messages, one per reason
    camera_lost: int = 0
    camera_recovered: int = 0
    ended: str = ""
    outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DetectionNode:
    """Runs ``detector`` on each image and publishes one ``Detection2DArray`` per image to every
    output.

    Args:
        detector: an `edgedet.Detector` (or any callable BGR uint8 (H, W, 3) -> `Detections`
            with ``class_names``).
        outputs: where messages go (`Output`).
        frame_id: header frame for camera frames (image messages keep their own header).
        class_id: ``"name"`` or ``"index"`` for ``ObjectHypothesis.class_id``.
        topic: the input topic, for messages.
    """

    def __init__(
        self,
        detector: Any,
        outputs: list[Output],
        *,
        frame_id: str = "camera",
        class_id: str = "name",
        topic: str = "",
    ) -> None:
        if not outputs:
            raise InvalidInputError("the node needs at least one output (a topic or a bag)")
        self.detector = detector
        self.outputs = outputs
        self.frame_id = frame_id
        self.class_id = class_id
        self.topic = topic or "the input"
        self.report = NodeReport(outputs=[o.name for o in outputs])

    def reject(self, reason: str, err: Exception) -> None:
        """Count a bad input under ``reason`` and log it (first time, then every 100th)."""
        n = self.report.rejected.get(reason, 0) + 1
        self.report.rejected[reason] = n
        if n == 1:
            self.report.errors.append(str(err))
        if n == 1 or n % 100 == 0:
            log.warning("skipped input #%d (%s, %d so far): %s", self.report.received, reason, n, err)

    def on_image(self, msg: Any) -> bool:
        """Handle one ``sensor_msgs/Image`` (any transport's object); True when published.
        The output header is the image's header (its stamp and frame_id)."""
        self.report.received += 1
        try:
            bgr = image_to_bgr(msg, self.topic)
            stamp = Stamp(int(msg.header.stamp.sec), int(msg.header.stamp.nanosec))
            frame_id = str(msg.header.frame_id) or self.frame_id
        except InvalidInputError as err:
            encoding = str(getattr(msg, "encoding", "")).lower()
            known = encoding in SUPPORTED_ENCODINGS or not hasattr(msg, "encoding")
            self.reject("bad image" if known else f"encoding {encoding}", err)
            return False
        except (AttributeError, TypeError, ValueError) as err:  # no usable header
            self.reject("bad image", InvalidInputError(f"image on {self.topic} has no header: {err}"))
            return False
        return self._detect_publish(bgr, stamp, frame_id)

    def on_frame(self, bgr: np.ndarray, stamp: Stamp, detections: Any = None) -> bool:
        """Handle one camera frame (BGR uint8 (H, W, 3)) taken at ``stamp``; ``detections``
        given (from `edgedet.Detector.stream`) are published as they are."""
        self.report.received += 1
        return self._detect_publish(bgr, stamp, self.frame_id, detections)

    def _detect_publish(self, bgr: np.ndarray, stamp: Stamp, frame_id: str, dets: Any = None) -> bool:
        try:
            if dets is None:
                dets = self.detector(bgr)
        except EdgedetError as err:
            self.reject("detector error", err)
            return False
        built: dict[int, Any] = {}
        for out in self.outputs:
            key = id(out.make)
            if key not in built:
                built[key] = to_detection2d_array(
                    dets, stamp=stamp, frame_id=frame_id, class_names=self.detector.class_names,
                    make=out.make, class_id=self.class_id,
                )  # fmt: skip
            out.publish(built[key], stamp)
        self.report.published += 1
        self.report.detections += len(dets)
        return True

    def close(self) -> None:
        for out in self.outputs:
            out.close()


def run_messages(node: DetectionNode, messages: Iterable[Any], max_frames: int | None = None) -> None:
    """Feed ``sensor_msgs/Image`` messages (a bag's, in order) to the node until they end."""
    for msg in messages:
        node.on_image(msg)
        if max_frames and node.report.received >= max_frames:
            node.report.ended = f"max frames ({max_frames})"
            return
    node.report.ended = "end of input"


def run_topic(
    node: DetectionNode,
    images: Iterator[list[Any]],
    *,
    idle_timeout: float = 2.0,
    give_up: float | None = None,
    max_frames: int | None = None,
    duration: float | None = None,
    matched: Callable[[], int] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Process images as a topic delivers them.

    ``images`` yields, at least every poll period, the list of messages that arrived (empty when
    none did). No image for ``idle_timeout`` s after images came counts as a lost camera (reported
    once per loss, with ``matched()`` publishers); images coming back count as recovered. The run
    ends after ``max_frames`` images, after ``duration`` s, or when no image came for ``give_up``
    s (then ``ended`` says so and the command exits non-zero).
    """
    start = last = clock()
    lost = False
    for batch in images:
        now = clock()
        for msg in batch:
            if lost:
                lost = False
                node.report.camera_recovered += 1
                log.warning("camera on %s is back after %.1f s", node.topic, now - last)
            node.on_image(msg)
            last = now
            if max_frames and node.report.received >= max_frames:
                node.report.ended = f"max frames ({max_frames})"
                return
        if not batch:
            silent = now - last
            if node.report.received and not lost and silent >= idle_timeout:
                lost = True
                node.report.camera_lost += 1
                pubs = f"; {matched()} publisher(s) matched" if matched else ""
                log.warning("camera lost: no image on %s for %.1f s%s", node.topic, silent, pubs)
            if give_up is not None and silent >= give_up:
                what = "camera lost" if node.report.received else "no image arrived"
                node.report.ended = f"{what}: nothing on {node.topic} for {silent:.1f} s"
                return
        if duration is not None and now - start >= duration:
            node.report.ended = f"duration ({duration:g} s)"
            return
    node.report.ended = "input closed"


def run_camera(
    node: DetectionNode,
    source: int | str | Path,
    *,
    reconnect: int = 5,
    reconnect_delay: float = 1.0,
    max_frames: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Detect on a camera index, video file or stream URL through `edgedet.Detector.stream`.

    A video file ends normally at its last frame. A live source (camera index or URL) that stops
    delivering frames or cannot be opened counts as lost: reported, then reopened up to
    ``reconnect`` times ``reconnect_delay`` s apart; it resumes on success and the run ends with
    ``ended = "camera lost ..."`` (non-zero exit) when every attempt failed. Frames are stamped
    with their capture time (`edgedet.video.StreamResult.timestamp`, wall clock).
    """
    from ..video import is_live

    live = is_live(source)
    attempts = 0
    lost = False
    while True:
        try:
            for result in node.detector.stream(source):
                if lost:
                    lost = False
                    node.report.camera_recovered += 1
                    log.warning("camera %s is back", source)
                attempts = 0
                stamp = Stamp.from_ns(round(result.timestamp * 1e9))
                node.on_frame(result.frame, stamp, result.detections)
                if max_frames and node.report.received >= max_frames:
                    node.report.ended = f"max frames ({max_frames})"
                    return
        except SourceLostError as err:  # it stopped or stalled; the frames it gave were yielded
            log.info("%s", err)
        except InvalidInputError as err:  # could not open: unplugged, wrong index, bad URL
            if not live or (not lost and node.report.received == 0):
                raise  # never opened: a setup error, not a lost camera
            log.info("reopening %s failed: %s", source, err)
        if not live:
            node.report.ended = "end of video"
            return
        if not lost:
            lost = True
            node.report.camera_lost += 1
            log.warning(
                "camera lost: %s stopped after %d frame(s); reopening (up to %d tries)",
                source, node.report.received, reconnect,
            )  # fmt: skip
        if attempts >= reconnect:
            node.report.ended = f"camera lost: {source} did not come back after {reconnect} tries"
            return
        attempts += 1
        sleep(reconnect_delay)
