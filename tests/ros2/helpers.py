"""Helpers of the ROS 2 tests: input bags of sensor_msgs/Image made with rosbags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedet.ros2.convert import IMAGE, Stamp, header, image_fields

#: stamps of the input images: distinct seconds and nanoseconds, as a camera driver sets them
STAMPS = [Stamp(1_733_000_000 + i, 123_456_789 + 1000 * i) for i in range(8)]


def image_msg(make: Any, bgr: np.ndarray, stamp: Stamp, encoding: str = "bgr8", frame_id: str = "cam_front") -> Any:
    return make(IMAGE, header=header(make, stamp, frame_id), **image_fields(bgr, encoding))


def write_image_bag(path: Path, topic: str, images: list[tuple[Stamp, Any]]) -> None:
    """``images``: (stamp, rosbags Image message) pairs, written at their stamps."""
    from edgedet.ros2 import msgs

    msgs.write_bag(path, topic, IMAGE, [(s.ns, m) for s, m in images])
