"""The node under ROS 2 proper: ``rclpy`` (the one module that imports it).

Used where ROS 2 is installed (a Jetson with JetPack and ROS 2 Humble: ``source
/opt/ros/humble/setup.bash`` before ``edgedet ros2``, with ``vision_msgs`` installed, e.g.
``apt install ros-humble-vision-msgs``). Messages are rclpy's generated classes, built through
the same conversion code as the other transports (`edgedet.ros2.convert`).

Every rclpy call is the documented API of ROS 2 Humble's rclpy
(https://docs.ros.org/en/humble/p/rclpy/api.html):

- ``rclpy.init(args=...)``, ``rclpy.create_node(name)``, ``rclpy.spin_once(node, timeout_sec=)``,
  ``rclpy.ok()``, ``rclpy.shutdown()``: api/init_shutdown.html (``ok``: api/utilities.html)
- ``Node.declare_parameter(name, value)``, ``Node.get_parameter(name).value``,
  ``Node.create_publisher(msg_type, topic, qos_profile)``,
  ``Node.create_subscription(msg_type, topic, callback, qos_profile)``,
  ``Node.count_publishers(topic)``, ``Node.destroy_node()``: api/node.html
- ``Publisher.publish(msg)``: api/topics.html
- ``rclpy.qos.qos_profile_sensor_data`` (best effort, keep last 5: matches reliable and
  best-effort camera drivers) and ``QoSProfile(depth=10)``: api/qos.html

Parameters (``--ros-args -p name:=value`` overrides the flag of the same meaning): ``model``,
``score_threshold`` (< 0: the model family's default), ``classes`` (comma-separated),
``input_topic``, ``output_topic``, ``frame_id``, ``class_id``.

Tested here only against a fake of rclpy (tests/ros2/fake_rclpy.py, labelled as a fake): ROS 2
cannot be installed on the development machine.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import fields
from typing import Any

from ..errors import RuntimeUnavailableError
from .convert import DETECTION_ARRAY, IMAGE, MessageFactory, Stamp

log = logging.getLogger("edgedet.ros2")

NODE_NAME = "edgedet"


def _require() -> Any:
    try:
        import rclpy
    except ImportError as err:
        raise RuntimeUnavailableError(
            "--transport rclpy needs ROS 2's rclpy: source your ROS 2 setup first (e.g. "
            "'source /opt/ros/humble/setup.bash') and install vision_msgs "
            "('apt install ros-humble-vision-msgs'); without ROS 2 use --transport dds or "
            "--out-bag"
        ) from err
    return rclpy


def message_class(typename: str) -> Any:
    """rclpy's generated class of ``pkg/msg/Name`` (``vision_msgs.msg.Detection2DArray``)."""
    pkg, kind, name = typename.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as err:
        raise RuntimeUnavailableError(
            f"ROS 2 message {typename} is not installed here: install the {pkg} package "
            f"(e.g. 'apt install ros-humble-{pkg.replace('_', '-')}') and source its setup"
        ) from err


def factory() -> MessageFactory:
    """``make(typename, **fields)`` building rclpy messages (keyword constructors)."""
    classes: dict[str, Any] = {}

    def make(typename: str, **values: Any) -> Any:
        cls = classes.get(typename)
        if cls is None:
            cls = classes[typename] = message_class(typename)
        return cls(**values)

    return make


class RclpyOutput:
    """Publishes ``Detection2DArray`` on ``topic`` through an rclpy publisher (depth 10)."""

    name = "rclpy"

    def __init__(self, ros_node: Any, topic: str) -> None:
        self.node = ros_node
        self.make = factory()
        # Node.create_publisher(msg_type, topic, qos_profile): humble/p/rclpy/api/node.html
        self.publisher = ros_node.create_publisher(message_class(DETECTION_ARRAY), topic, 10)
        self.count = 0

    def publish(self, msg: Any, stamp: Stamp) -> None:
        self.publisher.publish(msg)  # Publisher.publish(msg): api/topics.html
        self.count += 1

    def close(self) -> None:
        self.node.destroy_publisher(self.publisher)  # Node.destroy_publisher: api/node.html


def run_rclpy(
    args: argparse.Namespace,
    config: Any,
    load_detector: Callable[[argparse.Namespace, Any], Any],
    serve: Callable[..., Any],
) -> Any:
    """Run the node as ROS 2 node ``edgedet``; returns its `edgedet.ros2.node.NodeReport`.

    ``config`` is the command's `edgedet.ros2.command.NodeConfig` (its fields are the node's
    parameters); ``load_detector`` and ``serve`` are the command's, shared with the other
    transports (passed in so this module does not import the command)."""
    rclpy = _require()

    # rclpy.init(*, args=None, context=None), rclpy.create_node(node_name): api/init_shutdown.html
    rclpy.init(args=["edgedet", "--ros-args", *args.ros_args] if args.ros_args else None)
    ros = rclpy.create_node(NODE_NAME)
    det = None
    try:
        # the flags are the parameters' defaults; --ros-args -p name:=value overrides them
        # Node.declare_parameter(name, value), Node.get_parameter(name).value: api/node.html
        for name, default in config.as_parameters().items():
            ros.declare_parameter(name, default)
        cfg = type(config)(**{f.name: ros.get_parameter(f.name).value for f in fields(config)})
        det = load_detector(args, cfg)
        inbox: list[Any] = []

        def images(topic: str) -> Iterator[list[Any]]:
            from rclpy import qos as rqos

            qos = rqos.QoSProfile(depth=10) if args.input_qos == "reliable" else rqos.qos_profile_sensor_data
            # QoSProfile / qos_profile_sensor_data: api/qos.html; Node.create_subscription(
            # msg_type, topic, callback, qos_profile): api/node.html; rclpy.ok(): api/utilities
            # .html; rclpy.spin_once(node, *, executor=None, timeout_sec=None): init_shutdown
            ros.create_subscription(message_class(IMAGE), topic, inbox.append, qos)
            while rclpy.ok():
                rclpy.spin_once(ros, timeout_sec=0.2)
                batch = inbox[:]
                inbox.clear()
                yield batch

        outputs = [RclpyOutput(ros, cfg.output_topic)]
        return serve(
            args, cfg, det, outputs, images, lambda: int(ros.count_publishers(cfg.input_topic))
        )  # Node.count_publishers(topic_name): api/node.html
    finally:
        if det is not None:
            det.close()
        ros.destroy_node()  # Node.destroy_node(): api/node.html
        rclpy.shutdown()  # rclpy.shutdown(*, context=None): api/init_shutdown.html
