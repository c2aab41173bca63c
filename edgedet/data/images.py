"""Image files: size from the header (cheap), full decode with corruption checks."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# JPEG start-of-frame markers carrying the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(root: Path) -> list[Path]:
    """Image files (by `IMAGE_SUFFIXES`, any case) under folder ``root``, recursively, sorted
    by path. Callers say what a missing folder or an empty result means for them."""
    return sorted(p for p in Path(root).rglob("*") if is_image(p) and p.is_file())


def _jpeg_size(f) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # markers without a length
        raw = f.read(2)
        if len(raw) != 2:
            return None
        (length,) = struct.unpack(">H", raw)
        if marker in _SOF:
            data = f.read(5)
            if len(data) != 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        if length < 2:
            return None
        f.seek(length - 2, 1)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image, from the JPEG/PNG header when possible, else by decoding.

    Raises `DatasetError` naming the file when it is missing or unreadable. The size is that of
    the stored pixel grid (EXIF orientation is not applied).
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:2] == b"\xff\xd8":
                size = _jpeg_size(f)
                if size is not None and min(size) > 0:
                    return size
            elif head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                if w > 0 and h > 0:
                    return int(w), int(h)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image file not found") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read image file: {err}") from err
    image = decode_image(path)
    return int(image.shape[1]), int(image.shape[0])


def _looks_truncated(data: bytes) -> str | None:
    if data[:2] == b"\xff\xd8":
        tail = data[-4096:].rstrip(b"\x00\r\n \t")
        if not tail.endswith(b"\xff\xd9") and b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in data[-64:]:
        return "truncated PNG (no IEND chunk)"
    return None


def decode_image(path: Path) -> np.ndarray:
    """Decode to BGR uint8 (H, W, 3); grayscale and alpha images are converted.

    Raises `DatasetError` naming the file when it is missing, empty, truncated or undecodable.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image file not found") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot read image file: {err}") from err
    if not data:
        raise DatasetError(f"{path}: image file is empty (0 bytes); replace or remove it")
    why = _looks_truncated(data)
    if why is not None:
        raise DatasetError(f"{path}: corrupt image: {why}; replace or remove it")
    image = cv2.imdecode(
        np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    if image is None or image.size == 0:
        raise DatasetError(
            f"{path}: corrupt image: OpenCV cannot decode it ({len(data)} bytes); replace or "
            "remove it"
        )
    return image
