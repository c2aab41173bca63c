"""A small FAKE of ``rclpy`` and of the ROS 2 message packages, for tests only.

ROS 2 cannot be installed on the development machine, so `edgedet.ros2.rclpy_node` is tested
against this test double. It is not ROS: no DDS, no executor, no graph. It imitates only the
documented rclpy calls edgedet makes (ROS 2 Humble, https://docs.ros.org/en/humble/p/rclpy/api.html)
and checks how they are used:

- ``rclpy.init(args=)`` parses ``--ros-args -p name:=value`` into parameter overrides (YAML-typed
  as rcl does: ``0.6`` float, ``3`` int, ``true`` bool, else string); nodes need an init first;
  ``shutdown`` twice raises, as rclpy's does.
- ``Node.declare_parameter(name, value)`` returns the override or the default;
  ``get_parameter`` of an undeclared name raises (``ParameterNotDeclaredException`` in rclpy);
  an override of another type than the default raises (rclpy's
  ``InvalidParameterTypeException``).
- ``create_publisher(msg_type, topic, qos)`` / ``create_subscription(msg_type, topic, callback,
  qos)``: ``qos`` must be a profile or an int depth; ``Publisher.publish`` refuses a message of
  another class with TypeError, as rclpy does. Published messages are recorded in
  ``FakeRos.published[topic]``; ``FakeRos.deliver(topic, msg)`` queues a message that the next
  ``spin_once`` hands to that topic's subscription callbacks; with
  ``FakeRos.interrupt_when_idle`` an idle ``spin_once`` raises KeyboardInterrupt, as a Ctrl-C
  during rclpy's wait does.
- Message classes are generated from the real definitions (rosbags' ROS 2 Humble type store plus
  edgedet's shipped vision_msgs 4.1.1 files), and check their arguments like rosidl's generated
  Python: unknown keyword -> AssertionError; a float field takes only ``float``, an integer field
  only ``int`` in range, a string field only ``str``, a nested field only its class, a
  sequence of messages only a list of that class. Unset fields take their default (0, "", empty,
  nested default).
"""

from __future__ import annotations

import importlib.machinery
import sys
import time
import types
from collections import defaultdict
from typing import Any

import numpy as np

PACKAGES = ("builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs", "vision_msgs")
_INT_RANGES = {
    "int8": (-(2**7), 2**7), "uint8": (0, 2**8), "int16": (-(2**15), 2**15), "uint16": (0, 2**16),
    "int32": (-(2**31), 2**31), "uint32": (0, 2**32), "int64": (-(2**63), 2**63),
    "uint64": (0, 2**64), "byte": (0, 2**8), "char": (0, 2**8),
}  # fmt: skip


def _module(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
    mod.__doc__ = "FAKE module for tests (tests/ros2/fake_rclpy.py), not ROS 2"
    return mod


class FakeMessage:
    """Base of the generated fake message classes."""

    _fields: tuple[tuple[str, Any], ...] = ()
    _typename = ""

    def __init__(self, **kwargs: Any) -> None:
        names = [f for f, _ in self._fields]
        assert all(k in names for k in kwargs), (
            f"Invalid arguments passed to constructor: {sorted(set(kwargs) - set(names))}"
        )
        for f, node in self._fields:
            setattr(self, f, kwargs[f] if f in kwargs else _default(node))

    def __setattr__(self, name: str, value: Any) -> None:
        node = dict(self._fields).get(name)
        assert node is not None, f"{self._typename} has no field {name!r}"
        _check(self._typename, name, node, value)
        object.__setattr__(self, name, value)


_CLASSES: dict[str, type] = {}


def _default(node: tuple[int, Any]) -> Any:
    kind, spec = node
    if kind == 1:
        name = spec[0]
        return "" if name == "string" else False if name == "bool" else 0.0 if name.startswith("float") else 0
    if kind == 2:
        return _CLASSES[spec]()
    if kind == 3:
        sub, n = spec
        return np.zeros(n, np.float64) if sub[0] == 1 else [_default(sub) for _ in range(n)]
    return []


def _check(typename: str, field: str, node: tuple[int, Any], value: Any) -> None:
    kind, spec = node
    where = f"{typename}.{field}"
    if kind == 1:
        name = spec[0]
        if name == "string":
            assert isinstance(value, str), f"{where} must be str, got {type(value).__name__}"
        elif name.startswith("float"):
            assert isinstance(value, float), f"{where} must be float, got {type(value).__name__}"
        elif name == "bool":
            assert isinstance(value, bool), f"{where} must be bool"
        else:
            lo, hi = _INT_RANGES[name]
            assert isinstance(value, int) and not isinstance(value, bool) and lo <= value < hi, (
                f"{where} must be an int in [{lo}, {hi}), got {value!r}"
            )
    elif kind == 2:
        assert isinstance(value, _CLASSES[spec]), f"{where} must be {spec}, got {type(value).__name__}"
    else:
        sub, n = spec
        if kind == 3:
            assert len(value) == n, f"{where} must have {n} elements, got {len(value)}"
        if sub[0] == 2:
            assert isinstance(value, list), f"{where} must be a list of {sub[1]}"
            for v in value:
                assert isinstance(v, _CLASSES[sub[1]]), f"{where} holds {type(v).__name__}, not {sub[1]}"


def _make_classes() -> dict[str, types.ModuleType]:
    from edgedet.ros2.msgs import typestore

    store = typestore()
    modules = {}
    for pkg in PACKAGES:
        top = _module(pkg)
        msg = _module(f"{pkg}.msg")
        top.msg = msg  # type: ignore[attr-defined]
        modules[pkg], modules[f"{pkg}.msg"] = top, msg
    for typename, (_, fields) in store.fielddefs.items():
        pkg, kind, name = typename.split("/")
        if pkg not in PACKAGES or kind != "msg":
            continue
        cls = type(name, (FakeMessage,), {"_fields": tuple(fields), "_typename": typename})
        _CLASSES[typename] = cls
        setattr(modules[f"{pkg}.msg"], name, cls)
    return modules


class QoSProfile:
    def __init__(self, *, depth: int = 10, best_effort: bool = False) -> None:
        self.depth, self.best_effort = depth, best_effort


class FakeRos:
    """The shared state of one fake ROS 2 session: parameters, topics, traffic."""

    def __init__(self) -> None:
        self.initialised = False
        self.overrides: dict[str, Any] = {}
        self.published: dict[str, list[Any]] = defaultdict(list)
        self.pending: list[tuple[str, Any]] = []
        self.subscriptions: dict[str, list[tuple[type, Any, Any]]] = defaultdict(list)
        self.publishers: dict[str, list[type]] = defaultdict(list)
        self.calls: list[str] = []
        self.nodes: list[FakeNode] = []
        self.interrupt_when_idle = False  # True: spin_once raises KeyboardInterrupt (Ctrl-C)

    def deliver(self, topic: str, msg: Any) -> None:
        self.pending.append((topic, msg))


class FakePublisher:
    def __init__(self, ros: FakeRos, msg_type: type, topic: str) -> None:
        self.ros, self.msg_type, self.topic = ros, msg_type, topic

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"Expected {self.msg_type}, got {type(msg)}")  # as rclpy's
        self.ros.published[self.topic].append(msg)


class FakeParameter:
    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


class FakeNode:
    def __init__(self, ros: FakeRos, name: str) -> None:
        if not ros.initialised:
            raise RuntimeError("rclpy.init() has not been called")  # rclpy: NotInitializedException
        self.ros, self.name = ros, name
        self.params: dict[str, FakeParameter] = {}
        self.destroyed = False

    def declare_parameter(self, name: str, value: Any = None, descriptor: Any = None) -> FakeParameter:
        self.ros.calls.append(f"declare_parameter {name}")
        if name in self.params:
            raise RuntimeError(f"parameter {name} already declared")
        v = self.ros.overrides.get(name, value)
        if value is not None and type(v) is not type(value):
            raise TypeError(f"parameter {name}: override {v!r} is not a {type(value).__name__}")
        self.params[name] = FakeParameter(name, v)
        return self.params[name]

    def get_parameter(self, name: str) -> FakeParameter:
        if name not in self.params:
            raise KeyError(f"parameter {name} not declared")
        return self.params[name]

    def _qos(self, qos: Any) -> None:
        assert isinstance(qos, (int, QoSProfile)), f"qos_profile must be a QoSProfile or int, got {qos!r}"

    def create_publisher(self, msg_type: type, topic: str, qos_profile: Any) -> FakePublisher:
        self._qos(qos_profile)
        self.ros.calls.append(f"create_publisher {msg_type._typename} {topic}")
        self.ros.publishers[topic].append(msg_type)
        return FakePublisher(self.ros, msg_type, topic)

    def create_subscription(self, msg_type: type, topic: str, callback: Any, qos_profile: Any) -> object:
        self._qos(qos_profile)
        self.ros.calls.append(f"create_subscription {msg_type._typename} {topic}")
        self.ros.subscriptions[topic].append((msg_type, callback, qos_profile))
        return object()

    def count_publishers(self, topic: str) -> int:
        return 1 if any(t == topic for t, _ in self.ros.pending) else 0

    def destroy_publisher(self, publisher: FakePublisher) -> bool:
        self.ros.calls.append(f"destroy_publisher {publisher.topic}")
        return True

    def destroy_node(self) -> None:
        self.ros.calls.append("destroy_node")
        self.destroyed = True

    def get_logger(self) -> Any:
        import logging

        return logging.getLogger(f"fake_rclpy.{self.name}")


def _parse_ros_args(args: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    if "--ros-args" not in args:
        return out
    rest = args[args.index("--ros-args") + 1 :]
    for flag, value in zip(rest[::2], rest[1::2]):
        assert flag == "-p", f"fake rclpy understands only -p name:=value, got {flag}"
        name, _, text = value.partition(":=")
        out[name] = yaml.safe_load(text)
    return out


def install(monkeypatch: Any) -> FakeRos:
    """Put the fake ``rclpy`` and message packages into ``sys.modules`` for one test."""
    ros = FakeRos()
    rclpy = _module("rclpy")
    qos = _module("rclpy.qos")
    qos.QoSProfile = QoSProfile  # type: ignore[attr-defined]
    qos.qos_profile_sensor_data = QoSProfile(depth=5, best_effort=True)  # type: ignore[attr-defined]
    rclpy.qos = qos  # type: ignore[attr-defined]

    def init(*, args: list[str] | None = None, context: Any = None) -> None:
        ros.calls.append(f"init {args}")
        ros.initialised = True
        ros.overrides = _parse_ros_args(list(args or []))

    def shutdown(*, context: Any = None) -> None:
        if not ros.initialised:
            raise RuntimeError("rclpy.shutdown() called twice")
        ros.calls.append("shutdown")
        ros.initialised = False

    def ok(*, context: Any = None) -> bool:
        return ros.initialised

    def create_node(node_name: str, **kwargs: Any) -> FakeNode:
        node = FakeNode(ros, node_name)
        ros.nodes.append(node)
        return node

    def spin_once(node: FakeNode, *, executor: Any = None, timeout_sec: float | None = None) -> None:
        assert not node.destroyed
        if not ros.pending:
            if ros.interrupt_when_idle:
                raise KeyboardInterrupt  # Ctrl-C: rclpy's spin_once raises it from the wait
            time.sleep(min(timeout_sec or 0.0, 0.02))
            return
        topic, msg = ros.pending.pop(0)
        for msg_type, callback, _ in ros.subscriptions.get(topic, []):
            assert isinstance(msg, msg_type), f"{topic}: {type(msg).__name__} is not {msg_type._typename}"
            callback(msg)

    rclpy.init, rclpy.shutdown, rclpy.ok = init, shutdown, ok  # type: ignore[attr-defined]
    rclpy.create_node, rclpy.spin_once = create_node, spin_once  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rclpy", rclpy)
    monkeypatch.setitem(sys.modules, "rclpy.qos", qos)
    for name, mod in _make_classes().items():
        monkeypatch.setitem(sys.modules, name, mod)
    return ros


def image(ros_msg_module: Any, bgr: np.ndarray, sec: int, nanosec: int, encoding: str = "bgr8",
          frame_id: str = "cam_front") -> Any:  # fmt: skip
    """A fake ``sensor_msgs.msg.Image`` holding ``bgr`` (``data`` as ``array.array('B')``, the
    type rclpy gives uint8[] fields)."""
    import array

    from edgedet.ros2.convert import image_fields

    f = image_fields(bgr, encoding)
    f["data"] = array.array("B", f["data"].tobytes())
    f["height"], f["width"], f["step"], f["is_bigendian"] = (
        int(f["height"]), int(f["width"]), int(f["step"]), int(f["is_bigendian"])
    )
    builtin = sys.modules["builtin_interfaces.msg"]
    std = sys.modules["std_msgs.msg"]
    header = std.Header(stamp=builtin.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    return ros_msg_module.Image(header=header, **f)
