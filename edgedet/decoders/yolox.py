"""YOLOX exported with ``decode_in_inference=False``: output ``[B, N, 5 + nc]`` holding, per grid
cell of strides 8/16/32 (row-major, level by level), raw (dx, dy, log w, log h), then objectness
and class scores after sigmoid. Box: centre = (cell + d) × stride, size = exp(log wh) × stride."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgedet import protocol
from edgedet.meta import COCO80, ModelMeta

from .base import Family, OutputSpecLike, grid_centers, output_mismatch
from .yolov5 import ObjectnessDecoder, check_objectness_output


class YoloxDecoder(ObjectnessDecoder):
    def __init__(
        self, output_name: str, num_classes: int, input_hw: tuple[int, int], strides: Sequence[int]
    ):
        super().__init__(output_name, num_classes)
        self.grid, self.stride = grid_centers(input_hw, strides, offset=0.0)

    def boxes(self, pred: np.ndarray, rows: np.ndarray) -> np.ndarray:
        raw = pred[rows, :4].astype(np.float32)  # fp16 outputs: exp() would overflow to inf
        s = self.stride[rows, None]
        center = (raw[:, :2] * s) + self.grid[rows]
        half = np.exp(np.clip(raw[:, 2:4], -20.0, 20.0)) * s / 2  # clip: exp overflow on junk
        return np.concatenate([center - half, center + half], axis=1).astype(np.float32)


def make_yolox_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> ObjectnessDecoder:
    name, n, nc = check_objectness_output("yolox", meta, specs)
    if meta.options.get("decoded", False):  # exported with decode_in_inference=True
        return ObjectnessDecoder(name, nc)
    expected = sum(-(-input_hw[0] // s) * -(-input_hw[1] // s) for s in meta.strides)
    if n != expected:
        raise output_mismatch(
            "yolox",
            f"{n} predictions, but a {input_hw[1]}x{input_hw[0]} input with strides "
            f"{list(meta.strides)} has {expected} grid cells",
            specs,
        )
    return YoloxDecoder(name, nc, input_hw, meta.strides)


FAMILY = Family(
    name="yolox",
    make_decoder=make_yolox_decoder,
    preset={
        "color": "BGR",
        "scale": 1.0,
        "letterbox": "topleft",
        "pad_value": 114,
        "strides": (8, 16, 32),
        "class_names": COCO80,
    },
    protocol=protocol.YOLOX,
    description="YOLOX (Megvii) exports with raw grid outputs [B, N, 5+nc]",
)
