"""Reading ``.engine`` files that carry a metadata header (Ultralytics exports); no TensorRT needed.

``yolo export format=engine`` writes: the JSON metadata's length as 4 bytes little-endian, the
JSON (``names``, ``imgsz``, ``stride``, ``task``, ``batch``, ``dla``...), then the serialized
plan. Ultralytics' own loader (``ultralytics/nn/autobackend.py``, TensorRT branch) reads it the
same way and falls back to a plain plan when the header is not JSON. edgedet strips the header
before ``deserialize_cuda_engine`` and turns the JSON into `ModelMeta` with
`edgedet.meta.ultralytics_meta`, the reader it uses for Ultralytics ONNX metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Keys an Ultralytics header has (any two of them make the JSON an Ultralytics header).
_ULTRALYTICS_KEYS = frozenset({"names", "imgsz", "stride", "task", "batch", "author", "version"})


def split_engine_bytes(data: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """(Ultralytics metadata or None, the plan bytes) for an engine file's contents."""
    if len(data) < 6:
        return None, data
    length = int.from_bytes(data[:4], "little")
    if not 0 < length < len(data) - 4 or data[4:5] != b"{":
        return None, data
    try:
        meta = json.loads(data[4 : 4 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None, data
    if not isinstance(meta, dict) or len(_ULTRALYTICS_KEYS & set(meta)) < 2:
        return None, data
    return meta, data[4 + length :]


def engine_header_meta(path: str | Path) -> Any:
    """The `ModelMeta` from an Ultralytics engine header, or None when the file has none."""
    from edgedet.meta import ultralytics_meta

    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(4)
            length = int.from_bytes(head, "little") if len(head) == 4 else 0
            if not 0 < length < (1 << 24):
                return None
            data = head + f.read(length)
    except OSError:
        return None
    header, _plan = split_engine_bytes(data + b"\0")
    if header is None:
        return None
    # ultralytics_meta reads the string-valued ONNX metadata_props; give it the same form.
    props = {k: v if isinstance(v, str) else repr(v) for k, v in header.items()}
    return ultralytics_meta(props, str(p))
