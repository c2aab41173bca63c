"""Drawing detections on images (OpenCV), for `edgedet predict` and quick looks."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .detections import Detections


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per class id (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 255]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def draw_detections(
    image: np.ndarray,
    detections: Detections,
    class_names: Sequence[str],
    track_ids: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Return a copy of a BGR uint8 image with boxes, class names and scores drawn. With
    ``track_ids`` (one per box) each label starts with ``#id`` and the colour follows the id."""
    out = image.copy()
    thickness = max(1, round(min(out.shape[:2]) / 400))
    ids = [None] * len(detections) if track_ids is None else [int(i) for i in track_ids]
    for box, score, cid, tid in zip(detections.xyxy, detections.scores, detections.class_ids, ids):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        color = class_color(int(cid) if tid is None else tid)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        name = class_names[int(cid)] if 0 <= int(cid) < len(class_names) else str(int(cid))
        label = f"{name} {score:.2f}" if tid is None else f"#{tid} {name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + base + 2)
        cv2.rectangle(out, (x1, ty - th - base - 2), (x1 + tw + 2, ty), color, -1)
        cv2.putText(
            out,
            label,
            (x1 + 1, ty - base),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return out
