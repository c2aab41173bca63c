"""Ultralytics YOLOv8 / YOLO11 detect head: one output ``[B, 4 + nc, N]``.

Rows 0-3 are (cx, cy, w, h) in input pixels, rows 4.. are per-class scores after sigmoid.
Exports made with ``[B, N, 4 + nc]`` (transposed) are read too; which axis is which is decided
from the class count, never by trying.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgedet import protocol
from edgedet.boxes import cxcywh_to_xyxy
from edgedet.meta import ModelMeta

from .base import (
    Candidates,
    Family,
    OutputSpecLike,
    output_mismatch,
    select_scores,
    select_scores_by_class,
)


class YoloV8Decoder:
    """Dense ``[B, 4 + nc, N]`` (or transposed ``[B, N, 4 + nc]``) outputs: four box columns
    (``cxcywh``, Ultralytics, or ``xyxy``, edgedet's own models) then per-class scores."""

    def __init__(
        self, output_name: str, num_classes: int, transposed: bool, box_format: str = "cxcywh"
    ):
        self.output_name = output_name
        self.num_classes = num_classes
        self.transposed = transposed  # True: [B, N, 4+nc]
        self.box_format = box_format

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        out = np.asarray(outputs[self.output_name])
        if out.ndim == 2:
            out = out[None]
        results = []
        for pred in out:
            if self.transposed:  # (N, 4+nc)
                rows, cls, conf = select_scores(
                    pred[:, 4:], score_threshold, multi_label, max_candidates
                )
                boxes = pred[rows, :4].astype(np.float32)
            else:  # (4+nc, N): select on the class-first layout, no transposed copy
                rows, cls, conf = select_scores_by_class(
                    pred[4:], score_threshold, multi_label, max_candidates
                )
                boxes = pred[:4, rows].T.astype(np.float32)
            xyxy = (
                cxcywh_to_xyxy(boxes)
                if self.box_format == "cxcywh"
                else np.ascontiguousarray(boxes)
            )
            results.append(Candidates(xyxy.astype(np.float32, copy=False), conf, cls))
        return results


def make_yolov8_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> YoloV8Decoder:
    if len(specs) != 1:
        raise output_mismatch("yolov8", "expected exactly one output [B, 4+nc, N]", specs)
    spec = specs[0]
    shape = spec.shape[1:] if len(spec.shape) == 3 else spec.shape
    if len(shape) != 2 or any(d is None for d in shape):
        raise output_mismatch("yolov8", "expected a static output of rank 3 [B, 4+nc, N]", specs)
    a, b = int(shape[0]), int(shape[1])  # type: ignore[arg-type]
    nc = len(meta.class_names)
    hint = _query_output_hint(a, b, meta, input_hw)
    if nc:
        if a == 4 + nc:
            return YoloV8Decoder(spec.name, nc, transposed=False)
        if b == 4 + nc and not (b == 6 and hint):
            return YoloV8Decoder(spec.name, nc, transposed=True)
        raise output_mismatch(
            "yolov8",
            f"neither axis equals 4 + {nc} classes (the model's class names){hint}",
            specs,
        )
    # No names: Ultralytics' own layout is [B, 4+nc, N] with far fewer channels than anchors.
    if a >= b or a <= 4:
        raise output_mismatch(
            "yolov8", f"cannot tell classes from anchors; pass class names{hint}", specs
        )
    return YoloV8Decoder(spec.name, a - 4, transposed=False)


def _query_output_hint(a: int, b: int, meta: ModelMeta, input_hw: tuple[int, int]) -> str:
    """A pointer to the right family when ``[B, a, b]`` looks like K rows of a one-to-one
    (``[B, K, 6]``) or DETR (``[B, Q, 4 + C]``) output: rows that are not the anchor grid of
    the input size (sum over strides of ceil(h/s) * ceil(w/s)) and fewer columns than rows."""
    h, w = input_hw
    cells = sum(-(-h // s) * -(-w // s) for s in meta.strides)
    if a == cells or b == cells or b >= a:
        return ""
    if b == 6:
        return (
            f" (a [B, {a}, 6] output holds {a} finished detections, not {cells} grid cells: "
            "a one-to-one YOLOv10/YOLO26 export is family 'end2end', an RT-DETR export family "
            "'detr')"
        )
    return (
        f" ([B, {a}, {b}] is not the {cells}-cell grid of a {w}x{h} input: a DETR-style output "
        f"of {a} queries is family 'detr')"
    )


FAMILY = Family(
    name="yolov8",
    make_decoder=make_yolov8_decoder,
    preset={
        "color": "RGB",
        "scale": 1 / 255,
        "letterbox": "center",
        "pad_value": 114,
        "strides": (8, 16, 32),
    },
    protocol=protocol.ULTRALYTICS,
    description="Ultralytics YOLOv8 / YOLO11 detect exports, output [B, 4+nc, N]",
)
