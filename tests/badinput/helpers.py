"""Shared builders of the bad-input catalogue: tiny models, metadata, small images.

Every table in ``tests/badinput`` runs real ONNX Runtime / OpenVINO on tiny models built here
(nothing downloaded); each row states the edgedet error class and a fragment of its message, or
the correct result, so a regression shows as the row that changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest

from edgedet.meta import META_KEY

#: Longest error message accepted from a hostile value (a 20 MB string must not be echoed).
MAX_MESSAGE = 2000


@dataclass(frozen=True)
class Fails:
    """Expected outcome: ``error`` raised, its message containing ``fragment``."""

    error: type[BaseException]
    fragment: str


def expect_error(outcome: Fails, call: Any, *args: Any, **kwargs: Any) -> BaseException:
    """Run ``call``; check it raises exactly the class (or a subclass) and the fragment, and
    that the message stays short."""
    with pytest.raises(outcome.error) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert outcome.fragment in message, message[:500]
    assert len(message) < MAX_MESSAGE, f"message of {len(message)} chars"
    return info.value


def with_props(src: Path, dst: Path, props: dict[str, str]) -> Path:
    """Copy ONNX model ``src`` to ``dst`` with these metadata_props (others removed)."""
    model = onnx.load(str(src))
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    dst.write_bytes(model.SerializeToString())
    return dst


def with_meta_json(src: Path, dst: Path, meta_json: str) -> Path:
    return with_props(src, dst, {META_KEY: meta_json})


def nested(depth: int, kind: str = "list") -> str:
    """A JSON text nested ``depth`` levels deep."""
    if kind == "list":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A random BGR uint8 image."""
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def write_jpeg(path: Path, h: int = 48, w: int = 64, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".jpg", image(h, w, seed))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def truncated_jpeg(path: Path, h: int = 96, w: int = 128) -> Path:
    """A JPEG with a valid header cut before its end-of-image marker."""
    write_jpeg(path, h, w)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def canary(tmp: Path) -> Path:
    """A local file that must never be read through a model or dataset file."""
    path = tmp / "canary_secret.txt"
    path.write_text("TOP-SECRET-CANARY-LINE\nsecond\n")
    return path
