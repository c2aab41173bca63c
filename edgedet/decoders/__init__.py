"""Decoders: raw model outputs -> candidate boxes, one module per model family.

Built-in families: ``yolov8`` (alias ``yolo11``), ``yolov5``, ``yolox``, ``nanodet``,
``end2end``, ``detr`` (RT-DETR, D-FINE, DEIM) and ``edgedet`` (edgedet's own models). Add your own with `register_family`.
"""

from __future__ import annotations

import dataclasses

from . import detr, edgedet_family, end2end, nanodet, yolov5, yolov8, yolox
from .base import (
    Candidates,
    Decoder,
    Family,
    family_names,
    get_family,
    meta_from_family,
    register_family,
)

for _module in (yolov8, yolov5, yolox, nanodet, end2end, detr, edgedet_family):
    register_family(_module.FAMILY)
register_family(dataclasses.replace(yolov8.FAMILY, name="yolo11"))

__all__ = [
    "Candidates",
    "Decoder",
    "Family",
    "family_names",
    "get_family",
    "meta_from_family",
    "register_family",
]
