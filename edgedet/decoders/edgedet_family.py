"""edgedet's own models (``edgedet.train.models.EdgeDet`` exported by ``edgedet export``).

The exported graph ends in a decode tail (ONNX nodes named ``/decode/...``), so the model has one
output ``output [B, N, 4 + nc]``: columns 0-3 are boxes (x1, y1, x2, y2) in network-input pixels,
columns 4.. per-class scores after sigmoid. ``N`` is the number of grid cells over ``strides``
(e.g. 1344 for 256x256 on strides 8/16/32). Decoding is a threshold and an argmax; no NMS in the
graph. Preprocessing: RGB, 0-1, centred letterbox padded with 114.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgedet import protocol
from edgedet.meta import ModelMeta

from .base import Family, OutputSpecLike, output_mismatch
from .yolov8 import YoloV8Decoder

OUTPUT_NAME = "output"


class EdgeDetDecoder(YoloV8Decoder):
    """The decoder of edgedet's own models: YOLOv8's dense decoder on ``[B, N, 4 + nc]`` with
    xyxy boxes (same threshold-and-argmax; only the box columns differ)."""

    def __init__(self, output_name: str, num_classes: int):
        super().__init__(output_name, num_classes, transposed=True, box_format="xyxy")


def num_cells(input_hw: tuple[int, int], strides: Sequence[int]) -> int:
    h, w = input_hw
    return sum((-(-h // s)) * (-(-w // s)) for s in strides)


def make_edgedet_decoder(
    meta: ModelMeta, specs: Sequence[OutputSpecLike], input_hw: tuple[int, int]
) -> EdgeDetDecoder:
    named = [s for s in specs if s.name == meta.options.get("output", OUTPUT_NAME)]
    spec = named[0] if named else (specs[0] if len(specs) == 1 else None)
    if spec is None:
        raise output_mismatch("edgedet", "expected one output 'output' [B, N, 4 + classes]", specs)
    shape = tuple(spec.shape)
    if len(shape) == 2:
        shape = (1, *shape)
    nc = len(meta.class_names)
    if len(shape) != 3 or (shape[2] is None and not nc):
        raise output_mismatch("edgedet", "expected an output of rank 3 [B, N, 4 + classes]", specs)
    width = int(shape[2]) if shape[2] is not None else 4 + nc
    if nc and width != 4 + nc:
        raise output_mismatch(
            "edgedet",
            f"last axis is {width} but the meta names {nc} classes (expected {4 + nc})",
            specs,
        )
    if width <= 4:
        raise output_mismatch("edgedet", f"last axis must be 4 + classes, got {width}", specs)
    if shape[1] is not None and input_hw is not None and meta.strides:
        expect = num_cells(input_hw, meta.strides)
        if int(shape[1]) != expect:
            raise output_mismatch(
                "edgedet",
                f"{shape[1]} boxes but input {input_hw[0]}x{input_hw[1]} with strides "
                f"{list(meta.strides)} gives {expect}",
                specs,
            )
    return EdgeDetDecoder(spec.name, width - 4)


FAMILY = Family(
    name="edgedet",
    make_decoder=make_edgedet_decoder,
    preset={
        "color": "RGB",
        "scale": 1 / 255,
        "letterbox": "center",
        "pad_value": 114,
        "strides": (8, 16, 32),
    },
    protocol=protocol.EDGEDET,
    description="edgedet's own anchor-free detector: one output [B, N, 4 + nc], xyxy px + sigmoid scores",
)
