"""ROS 2 messages without ROS: CDR types and rosbag2 files through ``rosbags`` (the one module
that imports it).

``rosbags`` (pure Python, Apache-2.0) carries the ROS 2 Humble type store (``std_msgs``,
``sensor_msgs``, ``geometry_msgs``, ``builtin_interfaces``) and serialises messages to CDR, the
bytes ROS 2 puts on DDS and in bags. ``vision_msgs`` is not in it: `typestore` registers the
vision_msgs 4.1.1 ``.msg`` files shipped in ``edgedet/ros2/msg/`` with
``rosbags.typesys.get_types_from_msg``, so the CDR follows those exact definitions.

rosbag2 files are written with ``rosbags.rosbag2.Writer`` (format version 8, storage ``sqlite3``
or ``mcap``) and read with ``rosbags.rosbag2.Reader``.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, missing_extra
from .convert import DETECTION_ARRAY, IMAGE, MessageFactory, Stamp

#: vision_msgs types edgedet publishes, in dependency order (files in edgedet/ros2/msg/).
VISION_MSGS = (
    "Point2D",
    "Pose2D",
    "BoundingBox2D",
    "ObjectHypothesis",
    "ObjectHypothesisWithPose",
    "Detection2D",
    "Detection2DArray",
)

_WHAT = "ROS 2 output without rclpy (rosbag2 files and CDR messages)"


def _require() -> None:
    try:
        import rosbags  # noqa: F401
    except ImportError as err:
        raise missing_extra("rosbags", "ros", _WHAT) from err


def msg_text(name: str) -> str:
    """The shipped ``vision_msgs/msg/<name>.msg`` definition text."""
    return resources.files("edgedet.ros2").joinpath("msg", f"{name}.msg").read_text("utf-8")


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """rosbags' ROS 2 Humble type store plus vision_msgs 4.1.1 (one per process)."""
    _require()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    types: dict[str, Any] = {}
    for name in VISION_MSGS:
        types.update(get_types_from_msg(msg_text(name), f"vision_msgs/msg/{name}"))
    store.register(types)
    return store


@functools.lru_cache(maxsize=1)
def factory() -> MessageFactory:
    """``make(typename, **fields)`` building rosbags message objects (dataclasses); one per
    process, so outputs sharing it share each converted message."""
    types = typestore().types

    def make(typename: str, **fields: Any) -> Any:
        return types[typename](**fields)

    return make


def serialize(msg: Any) -> bytes:
    """CDR bytes (little endian, with the 4-byte encapsulation header) of a rosbags message."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(raw: bytes | memoryview, typename: str) -> Any:
    """A rosbags message object from CDR bytes of type ``typename`` (``pkg/msg/Name``)."""
    return typestore().deserialize_cdr(raw, typename)


class BagOutput:
    """Writes ``Detection2DArray`` messages to a new rosbag2 folder at ``path``.

    The bag is built in ``<path>.partial`` and renamed to ``path`` on `close`, so a crash never
    leaves a half-written bag under the final name. Each message is stored at its header stamp.
    """

    name = "bag"

    def __init__(self, path: str | Path, topic: str, storage: str = "sqlite3") -> None:
        _require()
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise InvalidInputError(f"{self.path} exists; rosbag2 output must be a new folder")
        plugins = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
        if storage not in plugins:
            raise InvalidInputError(f"bag storage must be sqlite3 or mcap, got {storage!r}")
        self._partial = self.path.with_name(self.path.name + ".partial")
        if self._partial.exists():
            shutil.rmtree(self._partial)  # leftover of a crashed run under the temporary name
        self.topic = topic
        self.make = factory()
        self._writer: Any = Writer(self._partial, version=8, storage_plugin=plugins[storage])
        self._writer.open()
        self._conn = self._writer.add_connection(topic, DETECTION_ARRAY, typestore=typestore())
        self.count = 0

    def publish(self, msg: Any, stamp: Stamp) -> None:
        self._writer.write(self._conn, stamp.ns, serialize(msg))
        self.count += 1

    def close(self) -> None:
        """Finish the bag and give it its final name; a bag with no message is not kept."""
        if self._writer is None:
            return
        if self.count == 0:
            self.abort()
            return
        self._writer.close()
        self._writer = None
        self._partial.rename(self.path)

    def abort(self) -> None:
        """Drop the bag being written (after an error): nothing is left under either name."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        shutil.rmtree(self._partial, ignore_errors=True)


def bag_topics(path: str | Path) -> dict[str, str]:
    """``topic -> message type`` of the rosbag2 at ``path``."""
    _require()
    from rosbags.rosbag2 import Reader

    with Reader(Path(path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_bag(path: str | Path, topic: str, msgtype: str | None = None) -> Iterator[tuple[int, Any]]:
    """``(timestamp_ns, message)`` for every message on ``topic`` of the rosbag2 at ``path``,
    deserialised with this module's type store. ``msgtype`` given: the topic must carry it."""
    _require()
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not (path / "metadata.yaml").is_file():
        raise InvalidInputError(f"{path} is not a rosbag2 folder (no metadata.yaml)")
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            have = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
            raise InvalidInputError(f"bag {path} has no topic {topic}; its topics: {have}")
        for c in conns:
            if msgtype is not None and c.msgtype != msgtype:
                raise InvalidInputError(
                    f"topic {topic} in bag {path} carries {c.msgtype}, expected {msgtype}"
                )
        for conn, timestamp, raw in reader.messages(connections=conns):
            yield timestamp, deserialize(raw, conn.msgtype)


def read_bag_images(path: str | Path, topic: str) -> Iterator[Any]:
    """The ``sensor_msgs/Image`` messages of ``topic`` in the bag at ``path``, in order."""
    for _, msg in read_bag(path, topic, IMAGE):
        yield msg


def write_bag(path: str | Path, topic: str, msgtype: str, messages: list[tuple[int, Any]]) -> None:
    """Write ``(timestamp_ns, rosbags message)`` pairs as one topic of a new rosbag2 (a tool for
    making input bags, e.g. ``sensor_msgs/Image`` for tests)."""
    _require()
    from rosbags.rosbag2 import Writer

    with Writer(Path(path), version=8) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=typestore())
        for timestamp, msg in messages:
            writer.write(conn, timestamp, serialize(msg))
