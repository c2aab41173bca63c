"""ROS 2 topics without ROS: DDS through the ``cyclonedds`` Python binding (the one module that
imports it).

A ROS 2 node on rmw_cyclonedds (or any DDS-based RMW) publishes topic ``/a/b`` as the DDS topic
``rt/a/b`` with type ``pkg::msg::dds_::Name_`` in plain CDR (XCDR1), reliable, keep-last 10,
volatile by default (ROS 2 design article "Topic and Service name mapping to DDS" and
rmw_cyclonedds). This module builds the DDS types from the same rosbags type store as
`edgedet.ros2.msgs` (so from the shipped vision_msgs 4.1.1 ``.msg`` files and ROS 2 Humble's
sensor_msgs/std_msgs), publishes ``Detection2DArray`` and subscribes to ``sensor_msgs/Image``.

What is not done here: no ROS graph (a ``ros2 topic list`` on a ROS 2 machine shows the topics,
since it reads DDS discovery, but there is no node name or parameter service), no type hash
(Iron+ ``RIHS01`` USER_DATA) and no shared-memory transport.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

from ..errors import InvalidInputError, missing_extra
from .convert import DETECTION_ARRAY, IMAGE, Stamp
from .msgs import typestore

_WHAT = "ROS 2 topics without rclpy (DDS through cyclonedds)"


def _require() -> None:
    try:
        import cyclonedds.domain  # noqa: F401
    except ImportError as err:
        raise missing_extra("cyclonedds", "ros", _WHAT) from err


def dds_topic(topic: str) -> str:
    """ROS 2 topic name -> DDS topic name: ``/camera/image_raw`` -> ``rt/camera/image_raw``."""
    if not topic or any(c.isspace() for c in topic):
        raise InvalidInputError(f"not a ROS 2 topic name: {topic!r}")
    return "rt/" + topic.lstrip("/")


def dds_type_name(typename: str) -> str:
    """``vision_msgs/msg/Detection2DArray`` -> ``vision_msgs::msg::dds_::Detection2DArray_``."""
    pkg, kind, name = typename.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


@functools.cache
def idl_type(typename: str) -> Any:
    """The cyclonedds ``IdlStruct`` class of ROS 2 message ``typename`` (``pkg/msg/Name``),
    generated from the rosbags type store's field definitions (nested types too)."""
    _require()
    from cyclonedds.idl import make_idl_struct
    from cyclonedds.idl import types as t

    base = {
        "bool": bool, "byte": t.uint8, "char": t.uint8, "int8": t.int8, "uint8": t.uint8,
        "int16": t.int16, "uint16": t.uint16, "int32": t.int32, "uint32": t.uint32,
        "int64": t.int64, "uint64": t.uint64, "float32": t.float32, "float64": t.float64,
    }  # fmt: skip
    # rosidl's mapping of .msg primitives to IDL (design article "Interface definition and
    # language mapping"): byte -> octet, char -> uint8; the wire size and alignment is what counts.

    def resolve(node: tuple[int, Any]) -> Any:
        kind, spec = node
        if kind == 1:  # BASE: (name, string bound)
            name, bound = spec
            if name == "string":
                return t.bounded_str[bound] if bound else str  # type: ignore[misc]
            if name not in base:
                raise InvalidInputError(f"message type {typename}: unsupported field type {name}")
            return base[name]
        if kind == 2:  # NAME: nested message
            return idl_type(spec)
        sub, length = spec
        if kind == 3:  # ARRAY
            return t.array[resolve(sub), length]  # type: ignore[misc]
        # uint8[] stays a sequence of uint8: cyclonedds' faster ``bytes`` field has no XTypes
        # type object, so the topic could not be created (about 80 ms to write and 25 ms to read
        # a 640x480 bgr8 image in pure Python: see docs/ros2.md)
        return t.sequence[resolve(sub), length] if length else t.sequence[resolve(sub)]  # type: ignore[misc]

    _, fields = typestore().fielddefs[typename]
    pkg, _, name = typename.split("/")
    return make_idl_struct(
        f"{pkg}_{name}", dds_type_name(typename), {f: resolve(node) for f, node in fields}
    )


def to_idl(msg: Any, typename: str | None = None) -> Any:
    """A rosbags message object -> the cyclonedds object of the same type (recursive copy)."""
    typename = typename or msg.__msgtype__
    _, fields = typestore().fielddefs[typename]
    values = {}
    for f, (kind, spec) in fields:
        v = getattr(msg, f)
        if kind == 2:
            v = to_idl(v, spec)
        elif kind in (3, 4) and spec[0][0] == 2:
            v = [to_idl(x, spec[0][1]) for x in v]
        elif kind == 4 and spec[0][0] == 1 and spec[0][1][0] in ("uint8", "byte", "char"):
            v = bytes(memoryview(v).cast("B"))
        elif kind in (3, 4):
            v = [x.item() if hasattr(x, "item") else x for x in v]
        values[f] = v
    return idl_type(typename)(**values)


def ros_qos(depth: int = 10, reliable: bool = True) -> Any:
    """ROS 2's topic QoS as cyclonedds QoS: reliable (the default profile) or best effort (the
    sensor-data profile, which also matches reliable writers), keep last ``depth``, volatile,
    and plain CDR (XCDR1) data representation as ROS 2 nodes use."""
    from cyclonedds.core import Policy, Qos
    from cyclonedds.util import duration

    return Qos(
        Policy.Reliability.Reliable(duration(seconds=1))
        if reliable
        else Policy.Reliability.BestEffort,
        Policy.History.KeepLast(depth),
        Policy.Durability.Volatile,
        Policy.DataRepresentation(use_cdrv0_representation=True),
    )


class DdsOutput:
    """Publishes rosbags messages of ``typename`` (default ``Detection2DArray``) on ROS 2 topic
    ``topic`` (DDS ``rt/<topic>``)."""

    name = "dds"

    def __init__(
        self, topic: str, domain_id: int = 0, participant: Any = None,
        typename: str = DETECTION_ARRAY,
    ) -> None:  # fmt: skip
        _require()
        from cyclonedds.domain import DomainParticipant
        from cyclonedds.pub import DataWriter
        from cyclonedds.topic import Topic

        from .msgs import factory

        self.topic = topic
        self.make = factory()
        self.participant = participant or DomainParticipant(domain_id)
        self.typename = typename
        self._topic = Topic(self.participant, dds_topic(topic), idl_type(typename))
        self.writer = DataWriter(self.participant, self._topic, qos=ros_qos())
        self.count = 0

    def wait_for_subscribers(self, timeout_s: float, count: int = 1) -> int:
        """Wait until ``count`` readers matched this writer or ``timeout_s`` passed; the number
        matched. (Discovery takes a moment: a message written before the match is lost to that
        reader, as in ROS 2 with volatile durability.)"""
        deadline = time.monotonic() + timeout_s
        while True:
            n = len(self.writer.get_matched_subscriptions())
            if n >= count or time.monotonic() >= deadline:
                return n
            time.sleep(0.02)

    def publish(self, msg: Any, stamp: Stamp) -> None:
        self.writer.write(to_idl(msg, self.typename), timestamp=stamp.ns)
        self.count += 1

    def close(self) -> None:
        # let reliable readers acknowledge what was written before the participant goes
        from cyclonedds.util import duration

        with contextlib.suppress(Exception):  # best effort at shutdown
            self.writer.wait_for_acks(duration(seconds=2))


class DdsReader:
    """Takes messages of ``typename`` from ROS 2 topic ``topic`` (DDS ``rt/<topic>``).

    `take` returns the cyclonedds objects (fields as in the .msg). With ``raw=True`` each
    returned object also carries ``raw_cdr``: the exact bytes that came over the wire, so a
    caller can decode them with another CDR implementation (rosbags) to check the wire format.
    With ``decode_with_rosbags=True`` the objects are rosbags messages decoded from those bytes
    (fast for images).
    """

    def __init__(
        self, topic: str, typename: str = IMAGE, domain_id: int = 0, raw: bool = False,
        participant: Any = None, depth: int = 10, reliable: bool = True,
        decode_with_rosbags: bool = False,
    ) -> None:  # fmt: skip
        _require()
        from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
        from cyclonedds.domain import DomainParticipant
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic

        self.topic = topic
        self.participant = participant or DomainParticipant(domain_id)
        self._topic = Topic(self.participant, dds_topic(topic), idl_type(typename))
        self.reader = DataReader(self.participant, self._topic, qos=ros_qos(depth, reliable))
        if raw or decode_with_rosbags:
            # cyclonedds' DataReader.take passes the bytes it received (encapsulation header
            # included) to ``topic.data_type.deserialize`` (cyclonedds/sub.py); wrapping that one
            # call keeps them. A subclass of the IDL type cannot be used: cyclonedds derives a
            # new XTypes type object for it and refuses the topic.
            self._topic.data_type = _RawCapture(  # type: ignore[assignment]
                self._topic.data_type, typename if decode_with_rosbags else None
            )
        self._cond = ReadCondition(self.reader, SampleState.Any | ViewState.Any | InstanceState.Any)
        self._waitset = WaitSet(self.participant)
        self._waitset.attach(self._cond)

    def matched_publishers(self) -> int:
        """How many writers (publishers) of this topic are matched now."""
        return len(self.reader.get_matched_publications())

    def take(self, timeout_s: float) -> list[Any]:
        """The valid samples that arrived, waiting up to ``timeout_s`` for the first one."""
        from cyclonedds.util import duration

        self._waitset.wait(duration(seconds=timeout_s))
        # a writer that goes away sends "invalid samples" (unregister/dispose): no data, skipped
        return [s for s in self.reader.take(N=64) if s.sample_info.valid_data]


class _RawCapture:
    """Stands in for an IDL class at deserialisation: the decoded object gets ``raw_cdr``.
    With ``rosbags_type`` the bytes are decoded by rosbags instead of cyclonedds (a rosbags
    message object): for images, cyclonedds' pure-Python decoding of ``uint8[]`` into a list of
    ints costs about 11 ms for 640x480 bgr8 and 30 ms more to make an array of it, rosbags'
    about 0.2 ms (docs/ros2.md)."""

    def __init__(self, cls: Any, rosbags_type: str | None = None) -> None:
        self.cls = cls
        self.rosbags_type = rosbags_type

    def deserialize(self, data: bytes, has_header: bool = True) -> Any:
        if self.rosbags_type is not None:
            from .msgs import deserialize

            obj = deserialize(data, self.rosbags_type)
        else:
            obj = self.cls.deserialize(data, has_header=has_header)
        obj.raw_cdr = bytes(data)
        return obj

    def deserialize_key(self, data: bytes, has_header: bool = True) -> Any:
        return self.cls.deserialize_key(data, has_header=has_header)


class DdsTransport:
    """ROS 2 topics over DDS in domain ``domain_id``: `output` publishes ``Detection2DArray``,
    `images` subscribes to ``sensor_msgs/Image`` (shared by the node's two ends)."""

    name = "dds"

    def __init__(self, domain_id: int = 0, reliable_input: bool = False) -> None:
        _require()
        from cyclonedds.domain import DomainParticipant

        self.participant = DomainParticipant(domain_id)
        self.reader: DdsReader | None = None
        self.reliable_input = reliable_input

    def output(self, topic: str) -> DdsOutput:
        return DdsOutput(topic, participant=self.participant)

    def images(self, topic: str, poll_s: float = 0.2) -> Iterator[list[Any]]:
        """Lists of ``sensor_msgs/Image`` samples as they arrive (empty after ``poll_s`` s
        without one); endless."""
        depth = 10 if self.reliable_input else 5  # sensor-data profile: keep last 5
        self.reader = DdsReader(
            topic, IMAGE, participant=self.participant, depth=depth, reliable=self.reliable_input,
            decode_with_rosbags=True,
        )  # fmt: skip
        while True:
            yield self.reader.take(poll_s)

    def matched(self) -> int:
        return self.reader.matched_publishers() if self.reader is not None else 0

    def close(self) -> None:
        pass  # cyclonedds deletes entities with the participant when it is collected
