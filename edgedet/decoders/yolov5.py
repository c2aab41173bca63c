"""YOLOv5 / YOLOv7-style output ``[B, N, 5 + nc]``: (cx, cy, w, h) in input pixels, objectness,
then per-class probabilities (both after sigmoid). Score = objectness × class probability."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edgedet import protocol
from edgedet.boxes import cxcywh_to_xyxy
from edgedet.hints import arg
from edgedet.meta import COCO80, ModelMeta

from .base import Candidates, Family, OutputSpecLike, output_mismatch, select_scores


class ObjectnessDecoder:
    """Shared by YOLOv5 (boxes decoded in-graph) and YOLOX (raw grid, see yolox.py)."""

    def __init__(self, output_name: str, num_classes: int):
        self.output_name = output_name
        self.num_classes = num_classes

    def boxes(self, pred: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(cx, cy, w, h) of the chosen rows -> xyxy input pixels."""
        return cxcywh_to_xyxy(pred[rows, :4].astype(np.float32))  # float32 first (fp16 outputs)

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        out = outputs[self.output_name]
        if out.ndim == 2:
            out = out[None]
        results = []
        for pred in out:
            obj = pred[:, 4]
            # Cheap pre-filter: a row whose objectness is below the threshold cannot pass.
            live = np.nonzero(obj > score_threshold)[0]
            scores = pred[live, 5:] * obj[live, None]
            sel, cls, conf = select_scores(scores, score_threshold, multi_label, max_candidates)
            rows = live[sel]
            results.append(Candidates(self.boxes(pred, rows), conf, cls))
        return results


def check_objectness_output(
    family: str, meta: ModelMeta, specs: Sequence[OutputSpecLike]
) -> tuple[str, int, int]:
    """Validate a single ``[B, N, 5+nc]`` output; returns (name, N, nc)."""
    if len(specs) != 1:
        raise output_mismatch(family, "expected exactly one output [B, N, 5+nc]", specs)
    spec = specs[0]
    shape = spec.shape[1:] if len(spec.shape) == 3 else spec.shape
    if len(shape) != 2 or shape[1] is None or int(shape[1]) <= 5:
        raise output_mismatch(family, "expected an output of shape [B, N, 5+nc]", specs)
    nc = int(shape[1]) - 5
    if meta.class_names and len(meta.class_names) != nc:
        raise output_mismatch(
            family,
            f"the last axis holds {nc} classes but the model has {len(meta.class_names)} class "
            f"names (pass {arg('names')} matching the model)",
            specs,
        )
    return spec.name, int(shape[0]) if shape[0] is not None else -1, nc


def make_yolov5_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> ObjectnessDecoder:
    name, n, nc = check_objectness_output("yolov5", meta, specs)
    check_anchor_rows(n, meta, input_hw, specs)
    return ObjectnessDecoder(name, nc)


def check_anchor_rows(
    n: int, meta: ModelMeta, input_hw: tuple[int, int], specs: Sequence[OutputSpecLike]
) -> None:
    """Refuse a ``[B, N, 5+nc]`` output whose N is not ``k × cells`` for the meta's strides.

    YOLOv5 / YOLOv7 predict ``k`` anchors per grid cell (``options["anchors_per_cell"]``,
    default 3). N equal to the cell count itself is what an anchor-free YOLOX export with raw
    grid outputs gives: decoding it as YOLOv5 would read raw offsets as pixels and find nothing,
    so it is refused naming ``yolox``. A dynamic N (-1) is not checked.
    """
    if n < 0:
        return
    cells = sum(-(-input_hw[0] // s) * -(-input_hw[1] // s) for s in meta.strides)
    k = meta.options.get("anchors_per_cell", 3)
    if n == k * cells:
        return
    hint = (
        "; N equals the number of grid cells, which is what a YOLOX export (raw grid, "
        "anchor-free) gives: load it with family='yolox'"
        if n == cells
        else "; set options['anchors_per_cell'] if the model has another anchor count"
        if cells and n % cells == 0
        else ""
    )
    raise output_mismatch(
        "yolov5",
        f"{n} predictions, but a {input_hw[1]}x{input_hw[0]} input with strides "
        f"{list(meta.strides)} and {k} anchors per cell has {k * cells}{hint}",
        specs,
    )


FAMILY = Family(
    name="yolov5",
    make_decoder=make_yolov5_decoder,
    preset={
        "color": "RGB",
        "scale": 1 / 255,
        "letterbox": "center",
        "pad_value": 114,
        "strides": (8, 16, 32),
        "class_names": COCO80,
    },
    protocol=protocol.YOLOV5,
    description="YOLOv5 / YOLOv7 exports, output [B, N, 5+nc] with objectness",
)
