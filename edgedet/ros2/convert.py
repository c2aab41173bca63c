"""Detections <-> ROS 2 messages, shared by every transport (rclpy, DDS, rosbag2).

Nothing here imports a ROS library: messages are built through a *factory*
``make(typename, **fields)`` that each transport supplies (rosbags' type store, rclpy's generated
classes, or a test double), and incoming ``sensor_msgs/Image`` messages are read by attribute,
so the same code runs under rclpy and without it.

Message definitions followed (vision_msgs 4.1.1, ROS 2 Humble/Jazzy; copied in
``edgedet/ros2/msg/``, see PROVENANCE.md there):

- ``Detection2DArray{std_msgs/Header header, Detection2D[] detections}``
- ``Detection2D{Header header, ObjectHypothesisWithPose[] results, BoundingBox2D bbox, string id}``
- ``BoundingBox2D{vision_msgs/Pose2D center, float64 size_x, float64 size_y}``;
  ``Pose2D{Point2D position, float64 theta}``; ``Point2D{float64 x, float64 y}``
  ("XY matches the sensor_msgs/Image convention: X is positive right and Y is positive down")
- ``ObjectHypothesisWithPose{ObjectHypothesis hypothesis, geometry_msgs/PoseWithCovariance pose}``;
  ``ObjectHypothesis{string class_id, float64 score}``
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..detections import Detections
from ..errors import InvalidInputError

#: ``make(typename, **fields) -> message``; typename in ROS 2 form, e.g. ``vision_msgs/msg/Point2D``.
MessageFactory = Callable[..., Any]

DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
IMAGE = "sensor_msgs/msg/Image"

#: Encodings of ``sensor_msgs/Image`` the node accepts -> channels (all 8-bit).
SUPPORTED_ENCODINGS = {"bgr8": 3, "rgb8": 3, "mono8": 1}


@dataclass(frozen=True)
class Stamp:
    """A ROS 2 time (``builtin_interfaces/Time``): whole seconds and nanoseconds, both >= 0."""

    sec: int
    nanosec: int

    @classmethod
    def from_ns(cls, ns: int) -> Stamp:
        """From nanoseconds since the epoch (``time.time_ns()``)."""
        return cls(int(ns) // 1_000_000_000, int(ns) % 1_000_000_000)

    @property
    def ns(self) -> int:
        return self.sec * 1_000_000_000 + self.nanosec


def track_ids_of(dets: Detections) -> list[str] | None:
    """Track ids of ``dets`` as strings (one per box), or None when the detections are untracked.

    A tracker may attach ``tracker_id`` or ``track_ids`` (int array-like, length N; a negative
    id or None means "no track yet" and gives ``""``). Absent attribute -> None.
    """
    ids = getattr(dets, "tracker_id", None)
    if ids is None:
        ids = getattr(dets, "track_ids", None)
    if ids is None:
        return None
    ids = list(ids)
    if len(ids) != len(dets):
        raise InvalidInputError(
            f"Detections carry {len(ids)} track ids for {len(dets)} boxes; they must match"
        )
    out = []
    for t in ids:
        if t is None or (isinstance(t, (int, np.integer, float, np.floating)) and t < 0):
            out.append("")
        else:
            out.append(str(int(t)) if isinstance(t, (int, np.integer)) else str(t))
    return out


def class_id_strings(
    class_ids: np.ndarray, class_names: Sequence[str], mode: str = "name"
) -> list[str]:
    """``ObjectHypothesis.class_id`` for each box: the class name (``mode="name"``) or the
    class index as a decimal string (``mode="index"``, what a VisionInfo lookup database uses)."""
    if mode == "index":
        return [str(int(c)) for c in class_ids]
    if mode != "name":
        raise InvalidInputError(f"class_id mode must be 'name' or 'index', got {mode!r}")
    out = []
    for c in class_ids:
        c = int(c)
        out.append(class_names[c] if 0 <= c < len(class_names) else str(c))
    return out


def header(make: MessageFactory, stamp: Stamp, frame_id: str) -> Any:
    """``std_msgs/Header`` with ``builtin_interfaces/Time`` stamp."""
    t = make("builtin_interfaces/msg/Time", sec=int(stamp.sec), nanosec=int(stamp.nanosec))
    return make("std_msgs/msg/Header", stamp=t, frame_id=str(frame_id))


def to_detection2d_array(
    dets: Detections,
    *,
    stamp: Stamp,
    frame_id: str,
    class_names: Sequence[str],
    make: MessageFactory,
    class_id: str = "name",
) -> Any:
    """One ``vision_msgs/Detection2DArray`` for the detections of one image.

    Boxes stay in original-image pixels (``dets.xyxy``, float32 corners) and become
    ``bbox.center.position`` = box centre (float64, x right, y down), ``size_x`` = width,
    ``size_y`` = height, ``theta`` = 0 (axis-aligned). Each detection has one result: its class
    (`class_id_strings`) and score (float32 -> float64, exact). ``pose`` is the identity pose with
    zero covariance (a 2D detector estimates no 6D pose). ``id`` is the track id when the
    detections carry one (`track_ids_of`), else empty. Every ``Detection2D.header`` repeats the
    array's header, which should be the source image's header (vision_msgs' convention).
    """
    xyxy = dets.xyxy.astype(np.float64)
    centers = (xyxy[:, :2] + xyxy[:, 2:]) / 2.0
    sizes = xyxy[:, 2:] - xyxy[:, :2]
    classes = class_id_strings(dets.class_ids, class_names, class_id)
    tracks = track_ids_of(dets)
    detections = []
    for i in range(len(dets)):
        pose = make(
            "geometry_msgs/msg/PoseWithCovariance",
            pose=make(
                "geometry_msgs/msg/Pose",
                position=make("geometry_msgs/msg/Point", x=0.0, y=0.0, z=0.0),
                orientation=make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.zeros(36, np.float64),
        )
        hypothesis = make(
            "vision_msgs/msg/ObjectHypothesis", class_id=classes[i], score=float(dets.scores[i])
        )
        bbox = make(
            "vision_msgs/msg/BoundingBox2D",
            center=make(
                "vision_msgs/msg/Pose2D",
                position=make(
                    "vision_msgs/msg/Point2D", x=float(centers[i, 0]), y=float(centers[i, 1])
                ),
                theta=0.0,
            ),
            size_x=float(sizes[i, 0]),
            size_y=float(sizes[i, 1]),
        )
        detections.append(
            make(
                "vision_msgs/msg/Detection2D",
                header=header(make, stamp, frame_id),
                results=[
                    make("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis, pose=pose)
                ],
                bbox=bbox,
                id=tracks[i] if tracks is not None else "",
            )
        )
    return make(DETECTION_ARRAY, header=header(make, stamp, frame_id), detections=detections)


@dataclass(frozen=True)
class DecodedArray:
    """A ``Detection2DArray`` read back: boxes (float64 (N, 4) xyxy pixels), scores (float64
    (N,)), class ids (str), track ids (str, "" = none), stamp and frame id."""

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: list[str]
    ids: list[str]
    stamp: Stamp
    frame_id: str


def from_detection2d_array(msg: Any) -> DecodedArray:
    """Read a ``Detection2DArray`` (any transport's message object) back into arrays; the first
    result of each detection gives its class and score."""
    n = len(msg.detections)
    xyxy = np.zeros((n, 4), np.float64)
    scores = np.zeros((n,), np.float64)
    classes, ids = [], []
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        w, h = d.bbox.size_x, d.bbox.size_y
        xyxy[i] = (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
        hyp = d.results[0].hypothesis if len(d.results) else None
        scores[i] = hyp.score if hyp is not None else float("nan")
        classes.append(hyp.class_id if hyp is not None else "")
        ids.append(d.id)
    st = msg.header.stamp
    return DecodedArray(xyxy, scores, classes, ids, Stamp(st.sec, st.nanosec), msg.header.frame_id)


def image_to_bgr(msg: Any, topic: str = "the image topic") -> np.ndarray:
    """A ``sensor_msgs/Image`` (any transport's object) -> BGR uint8 (H, W, 3), a copy.

    Accepts encodings ``bgr8``, ``rgb8`` and ``mono8`` with rows of ``step`` bytes (padding
    after ``width * channels`` is skipped). Anything else raises `InvalidInputError` saying what
    came and what is accepted; the caller reports it and keeps running.
    """
    import cv2

    try:
        encoding = str(msg.encoding)
        h, w, step, payload = int(msg.height), int(msg.width), int(msg.step), msg.data
    except (AttributeError, TypeError, ValueError) as err:
        raise InvalidInputError(f"message on {topic} is not a sensor_msgs/Image: {err}") from err
    channels = SUPPORTED_ENCODINGS.get(encoding.lower())
    if channels is None:
        raise InvalidInputError(
            f"image on {topic} has encoding '{encoding}'; edgedet takes "
            f"{', '.join(SUPPORTED_ENCODINGS)} (convert it first, e.g. with image_proc's "
            "debayer/resize nodes or cv_bridge)"
        )
    if h <= 0 or w <= 0:
        raise InvalidInputError(f"image on {topic} is empty ({w}x{h})")
    if step < w * channels:
        raise InvalidInputError(
            f"image on {topic}: step {step} is less than width {w} x {channels} channel(s)"
        )
    try:  # bytes, array.array (rclpy), numpy (rosbags)
        data = np.frombuffer(memoryview(payload).cast("B"), np.uint8)
    except TypeError:  # a list of ints (cyclonedds' decoding of uint8[])
        data = np.asarray(payload, np.uint8)
    if data.size < step * h:
        raise InvalidInputError(
            f"image on {topic}: {data.size} data bytes for {h} rows of step {step} "
            f"(expected {step * h})"
        )
    rows = data[: step * h].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if encoding.lower() == "rgb8":
        return cv2.cvtColor(rows, cv2.COLOR_RGB2BGR)
    if channels == 1:
        return cv2.cvtColor(rows[:, :, 0], cv2.COLOR_GRAY2BGR)
    return rows.copy()


def image_fields(bgr: np.ndarray, encoding: str = "bgr8") -> dict[str, Any]:
    """Fields of a ``sensor_msgs/Image`` holding BGR uint8 (H, W, 3) ``bgr`` in ``encoding``
    (bgr8/rgb8/mono8), without the header (build it with `header`). For tests and tools that
    write camera frames to a bag or a topic."""
    import cv2

    if encoding == "rgb8":
        px = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif encoding == "mono8":
        px = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    elif encoding == "bgr8":
        px = bgr
    else:
        raise InvalidInputError(f"image_fields writes bgr8, rgb8 or mono8, not {encoding!r}")
    h, w, c = px.shape
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * c,
        "data": np.ascontiguousarray(px, np.uint8).reshape(-1),
    }
