"""``python -m edgedet.ros2.echo TOPIC``: print the ``Detection2DArray`` messages on a ROS 2 topic,
without ROS (DDS through cyclonedds), like ``ros2 topic echo``.

Each message is decoded from the exact CDR bytes that came over the wire with rosbags (the
vision_msgs 4.1.1 definitions), independently of cyclonedds' own decoder, and printed as one JSON
line: ``stamp`` [sec, nanosec], ``frame_id``, ``xyxy`` (pixels), ``scores``, ``class_ids``,
``ids`` (track ids), ``cdr_bytes`` and ``decoders_agree`` (rosbags and cyclonedds read the same
fields). ``ready`` is printed to stderr once the subscription exists. Exit status 1 when fewer
than ``--count`` messages came within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from .convert import DETECTION_ARRAY, from_detection2d_array


def _record(sample: Any) -> dict[str, Any]:
    from .msgs import deserialize

    wire = from_detection2d_array(deserialize(sample.raw_cdr, DETECTION_ARRAY))
    own = from_detection2d_array(sample)  # cyclonedds' decoding of the same bytes
    agree = (
        (wire.xyxy == own.xyxy).all() and (wire.scores == own.scores).all()
        and wire.class_ids == own.class_ids and wire.ids == own.ids
        and wire.stamp == own.stamp and wire.frame_id == own.frame_id
    )  # fmt: skip
    return {
        "stamp": [wire.stamp.sec, wire.stamp.nanosec],
        "frame_id": wire.frame_id,
        "xyxy": wire.xyxy.tolist(),
        "scores": wire.scores.tolist(),
        "class_ids": wire.class_ids,
        "ids": wire.ids,
        "cdr_bytes": len(sample.raw_cdr),
        "decoders_agree": bool(agree),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgedet.ros2.echo", description=__doc__)
    p.add_argument("topic", help="ROS 2 topic of vision_msgs/Detection2DArray")
    p.add_argument("--count", type=int, default=0, help="exit after this many messages (0: never)")
    p.add_argument("--timeout", type=float, default=0.0, help="give up after this many seconds")
    p.add_argument("--domain-id", type=int, default=0)
    args = p.parse_args(argv)

    from .dds import DdsReader

    reader = DdsReader(args.topic, DETECTION_ARRAY, domain_id=args.domain_id, raw=True)
    print("ready", file=sys.stderr, flush=True)
    got = 0
    start = time.monotonic()
    while not args.count or got < args.count:
        left = args.timeout - (time.monotonic() - start) if args.timeout else 1.0
        if left <= 0:
            print(f"echo: {got} of {args.count} message(s) within {args.timeout} s", file=sys.stderr)
            return 1
        for sample in reader.take(min(left, 1.0)):
            print(json.dumps(_record(sample)), flush=True)
            got += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
