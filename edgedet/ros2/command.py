"""``edgedet ros2`` / ``python -m edgedet.ros2``: the detection node from the command line.

Imports nothing heavy at parse time: rosbags, cyclonedds and rclpy load only for the transport
and input that are used.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from ..errors import EdgedetError, InvalidInputError
from ..hints import install_command

log = logging.getLogger("edgedet.ros2")

TRANSPORTS = ("auto", "rclpy", "dds", "none")


def add_ros2_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_model_arguments

    p.description = (
        "Detect objects in ROS 2 images and publish vision_msgs/Detection2DArray (one per image, "
        "boxes in image pixels, header = the image's). Input: a topic (default), a rosbag2 "
        "(--input-bag) or a camera/video (--camera). Output: the --output-topic over rclpy "
        "(where ROS 2 is installed) or over DDS without ROS (cyclonedds, the 'ros' extra), "
        "and/or a rosbag2 file (--out-bag). Bad images are skipped and counted; a camera that "
        "disappears is reported and reopened. Prints a JSON report at the end."
    )
    p.add_argument("model", help="detector model (.onnx, .xml, .engine)")
    add_model_arguments(p)
    p.add_argument(
        "--classes", default=None,
        help="only these classes: comma-separated names or ids (default: all)",
    )  # fmt: skip
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--camera", default=None, metavar="SRC",
        help="read a camera index (0), video file or stream URL instead of a topic",
    )  # fmt: skip
    src.add_argument(
        "--input-bag", default=None, metavar="BAG",
        help="read sensor_msgs/Image messages of --input-topic from this rosbag2 folder",
    )  # fmt: skip
    p.add_argument("--input-topic", default="/image_raw", help="sensor_msgs/Image topic (bgr8, rgb8, mono8)")
    p.add_argument("--output-topic", default="/edgedet/detections", help="Detection2DArray topic")
    p.add_argument(
        "--transport", choices=TRANSPORTS, default="auto",
        help="topics over rclpy, over DDS without ROS (cyclonedds), or none (bag only); "
        "auto: rclpy if importable, else dds if cyclonedds is installed, else none",
    )  # fmt: skip
    p.add_argument(
        "--out-bag", default=None, metavar="BAG",
        help="also write the Detection2DArray messages to this new rosbag2 folder",
    )  # fmt: skip
    p.add_argument("--bag-storage", choices=["sqlite3", "mcap"], default="sqlite3")
    p.add_argument(
        "--domain-id", type=int, default=None,
        help="DDS domain (default: $ROS_DOMAIN_ID or 0)",
    )  # fmt: skip
    p.add_argument("--frame-id", default="camera", help="header frame_id of --camera frames")
    p.add_argument(
        "--class-id", choices=["name", "index"], default="name",
        help="ObjectHypothesis.class_id: the class name or its index as a string",
    )  # fmt: skip
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many images")
    p.add_argument("--duration", type=float, default=None, help="topic input: stop after this many seconds")
    p.add_argument(
        "--idle-timeout", type=float, default=2.0,
        help="topic input: no image for this long after images came = camera lost (reported)",
    )  # fmt: skip
    p.add_argument(
        "--give-up", type=float, default=None,
        help="topic input: end (exit 1) after this many seconds without an image (default: wait on)",
    )  # fmt: skip
    p.add_argument("--reconnect", type=int, default=5, help="--camera: reopen tries after it disappears")
    p.add_argument("--reconnect-delay", type=float, default=1.0, help="--camera: seconds between tries")
    p.add_argument(
        "--wait-subscribers", type=float, default=0.0,
        help="dds: wait up to this many seconds for a subscriber before the first image",
    )  # fmt: skip
    p.add_argument(
        "--input-qos", choices=["sensor_data", "reliable"], default="sensor_data",
        help="topic input: best effort (ROS 2's sensor-data profile; matches any camera driver) "
        "or reliable (no image dropped by the transport)",
    )  # fmt: skip
    p.add_argument("--report", default=None, metavar="FILE", help="also write the JSON report here")
    p.add_argument(
        "--ros-args", nargs=argparse.REMAINDER, default=None,
        help="rclpy: the rest is passed to rclpy.init (e.g. --ros-args -p score_threshold:=0.4)",
    )  # fmt: skip


@dataclass
class NodeConfig:
    """The node's parameters (CLI flags; under rclpy also ROS parameters of the same names)."""

    model: str = ""
    score_threshold: float = -1.0  # < 0: the model family's default
    classes: str = ""
    input_topic: str = "/image_raw"
    output_topic: str = "/edgedet/detections"
    frame_id: str = "camera"
    class_id: str = "name"

    def as_parameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _parse_classes(text: str) -> list[int | str] | None:
    items = [c.strip() for c in text.split(",") if c.strip()]
    return [int(c) if c.isdigit() else c for c in items] or None


def pick_transport(name: str) -> str:
    """The transport ``name`` resolves to here (``auto`` -> rclpy, dds or none)."""
    if name != "auto":
        return name
    for module, transport in (("rclpy", "rclpy"), ("cyclonedds", "dds")):
        if importlib.util.find_spec(module) is not None:
            return transport
    return "none"


def load_detector(args: argparse.Namespace, config: NodeConfig) -> Any:
    """The detector for ``config`` (model, threshold, classes), other flags from ``args``."""
    from ..cli import load_from_args

    if config.score_threshold >= 0:
        args.conf = config.score_threshold
    det = load_from_args(args, config.model)
    if config.classes:
        det.classes = _parse_classes(config.classes)
    return det


def run_ros2(args: argparse.Namespace) -> int:
    transport = pick_transport(args.transport)
    if transport == "none" and not args.out_bag:
        raise InvalidInputError(
            "nothing to publish to: ROS 2 (rclpy) is not importable and cyclonedds is not "
            "installed; pass --out-bag BAG, or install the 'ros' extra for DDS topics: "
            f"{install_command('ros')}"
        )
    if transport == "none" and not (args.camera or args.input_bag):
        raise InvalidInputError(
            "--transport none reads no topic: pass --camera SRC or --input-bag BAG"
        )
    if args.ros_args and transport != "rclpy":
        raise InvalidInputError(
            f"--ros-args needs the rclpy transport (here: {transport}); use the flags instead"
        )
    config = NodeConfig(
        model=str(args.model),
        score_threshold=-1.0 if args.conf is None else float(args.conf),
        classes=args.classes or "",
        input_topic=args.input_topic,
        output_topic=args.output_topic,
        frame_id=args.frame_id,
        class_id=args.class_id,
    )
    if transport == "rclpy":
        from .rclpy_node import run_rclpy

        report = run_rclpy(args, config, load_detector, serve)
    else:
        report = _run_plain(args, config, transport)
    return finish(report, args.report)


def _run_plain(args: argparse.Namespace, config: NodeConfig, transport: str) -> Any:
    from .node import Output

    det = load_detector(args, config)
    try:
        outputs: list[Output] = []
        if transport != "dds":
            return serve(args, config, det, outputs)
        from .dds import DdsTransport

        domain = args.domain_id
        if domain is None:
            domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
        dds = DdsTransport(domain, reliable_input=args.input_qos == "reliable")
        out = dds.output(config.output_topic)
        outputs.append(out)
        if args.wait_subscribers > 0:
            n = out.wait_for_subscribers(args.wait_subscribers)
            log.info("%d subscriber(s) matched on %s", n, config.output_topic)
        return serve(args, config, det, outputs, dds.images, dds.matched)
    finally:
        det.close()


def serve(
    args: argparse.Namespace,
    config: NodeConfig,
    detector: Any,
    outputs: list[Any],
    topic_images: Callable[[str], Iterator[list[Any]]] | None = None,
    matched: Callable[[], int] | None = None,
) -> Any:
    """Run the node on the input ``args`` name (``--camera``, ``--input-bag``, else the topic
    through ``topic_images(topic)``), publishing to ``outputs`` and to ``--out-bag``. Shared by
    every transport; the outputs are closed at the end (an unfinished bag is removed).
    Returns the `edgedet.ros2.node.NodeReport`."""
    from .node import DetectionNode, run_camera, run_messages, run_topic

    try:
        if args.out_bag:
            from .msgs import BagOutput

            outputs.append(BagOutput(args.out_bag, config.output_topic, args.bag_storage))
        node = DetectionNode(
            detector, outputs, frame_id=config.frame_id, class_id=config.class_id,
            topic=args.camera or config.input_topic,
        )  # fmt: skip
        try:
            if args.camera is not None:
                source: int | str = int(args.camera) if args.camera.isdigit() else args.camera
                run_camera(
                    node, source, reconnect=args.reconnect, reconnect_delay=args.reconnect_delay,
                    max_frames=args.max_frames,
                )  # fmt: skip
            elif args.input_bag:
                from .msgs import read_bag_images

                images = read_bag_images(args.input_bag, config.input_topic)
                run_messages(node, images, args.max_frames)
            else:
                if topic_images is None:
                    raise InvalidInputError(
                        "--transport none reads no topic: pass --camera or --input-bag"
                    )
                run_topic(
                    node, topic_images(config.input_topic), idle_timeout=args.idle_timeout,
                    give_up=args.give_up, max_frames=args.max_frames, duration=args.duration,
                    matched=matched,
                )  # fmt: skip
        except KeyboardInterrupt:  # Ctrl-C is how a node is stopped: keep what was published
            node.report.ended = "interrupted (Ctrl-C)"
            log.warning("interrupted: finishing the outputs")
    except BaseException:
        for o in outputs:
            getattr(o, "abort", o.close)()
        raise
    for o in outputs:
        o.close()
    return node.report


def finish(report: Any, path: str | None) -> int:
    """Print the report as JSON (and write it to ``path``); the exit status: 1 when the camera
    stayed lost, an error when nothing was published, else 0."""
    text = json.dumps(report.to_dict(), indent=2)
    print(text)
    if path:
        from ..fileio import atomic_write_bytes

        atomic_write_bytes(path, (text + "\n").encode())
    if report.published == 0:
        raise EdgedetError(
            f"no Detection2DArray was published ({report.ended or 'no input'}; "
            f"{report.received} image(s) received, rejected: {report.rejected or 'none'})"
        )
    if report.ended.startswith(("camera lost", "no image")):
        print(f"edgedet ros2: {report.ended}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m edgedet.ros2``: the same as ``edgedet ros2``."""
    from ..cli import main as cli_main

    return cli_main(["ros2", *(sys.argv[1:] if argv is None else argv)])
