"""What ``edgedet predict`` writes: ``detections.json`` and the optional COCO results file.

``detections.json`` follows ``edgedet/assets/detections.schema.json`` (JSON Schema 2020-12; the
README's "detections.json" section says the same in words):

    {"schema": "edgedet.detections", "version": 2,
     "model": str, "runtime": {...}, "class_names": [str, ...],
     "box_format": "xyxy", "coordinates": "pixels of the original image",
     "detections": [{"image_id": int, "file_name": str, "class_id": int, "class_name": str,
                     "xyxy": [x1, y1, x2, y2], "score": float}, ...]}

Boxes are corners in original-image pixels, like `Detections.xyxy`; ``class_id`` indexes
``class_names`` (0-based, the model's own order). The COCO results export (``--coco-results``)
is the other convention: ``bbox`` is [x, y, width, height] and ``category_id`` is COCO's id
(1-90 with gaps) when the model's classes are the 80 COCO classes, else ``class_id + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .meta import COCO80

SCHEMA_NAME = "edgedet.detections"
SCHEMA_VERSION = 2

#: COCO 2017's category id of each of the 80 classes, in `COCO80` order (ids 12, 26, 29, 30,
#: 45, 66, 68, 69, 71, 83 are unused in the detection task).
COCO80_CATEGORY_IDS: tuple[int, ...] = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70,
    *range(72, 83), *range(84, 91),
)  # fmt: skip


def detection_records(
    image_id: int, file_name: str, dets: Any, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One record per box of ``dets`` (`Detections`: xyxy float32 (N, 4) pixels, scores (N,),
    class_ids (N,) into ``class_names``), rounded to 0.01 px and 1e-5 in score."""
    return [
        {
            "image_id": image_id,
            "file_name": file_name,
            "class_id": int(cid),
            "class_name": class_names[int(cid)],
            "xyxy": [round(float(v), 2) for v in box],
            "score": round(float(score), 5),
        }
        for box, score, cid in zip(dets.xyxy, dets.scores, dets.class_ids)
    ]


def detections_document(
    model: str, runtime: dict[str, Any], class_names: Sequence[str], records: list[dict[str, Any]]
) -> dict[str, Any]:
    """The whole ``detections.json`` object (see the module docstring)."""
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "model": model,
        "runtime": runtime,
        "class_names": list(class_names),
        "box_format": "xyxy",
        "coordinates": "pixels of the original image",
        "detections": records,
    }


def coco_results(records: list[dict[str, Any]], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """The records as a COCO results list (``loadRes`` input): ``bbox`` [x, y, w, h] in pixels,
    ``category_id`` COCO's when the classes are COCO's 80, else ``class_id + 1``."""
    coco = tuple(class_names) == tuple(COCO80)
    out = []
    for r in records:
        x1, y1, x2, y2 = r["xyxy"]
        cid = r["class_id"]
        out.append(
            {
                "image_id": r["image_id"],
                "file_name": r["file_name"],
                "category_id": COCO80_CATEGORY_IDS[cid] if coco else cid + 1,
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "score": r["score"],
            }
        )
    return out


#: Frame rate of a saved video when the source does not report one.
FALLBACK_FPS = 30.0


def source_fps(source: Any) -> tuple[float, str | None]:
    """The frame rate to write an annotated copy of ``source`` at, and a note when it is a guess.

    Video files report theirs (``cv2.CAP_PROP_FPS``, read by a short capture opened and closed
    here). Cameras and stream URLs are not opened a second time (a camera may refuse a second
    open; a URL would connect twice): they, and files that report none, get `FALLBACK_FPS`.
    """
    import math

    import cv2

    if isinstance(source, int) or "://" in str(source):
        return FALLBACK_FPS, (
            f"a live source's frame rate is not probed; the saved video plays at {FALLBACK_FPS:g} fps"
        )
    cap = cv2.VideoCapture(str(source))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        return FALLBACK_FPS, (
            f"{source} reports no frame rate; the saved video plays at {FALLBACK_FPS:g} fps"
        )
    return fps, None
