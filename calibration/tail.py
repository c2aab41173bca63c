"""Find a detector's decode tail in its ONNX graph, so calibration can keep it in float.

The *decode tail* is everything between the last learned convolution of each output branch and
the graph outputs: sigmoids on scores, the concatenation of box regressions with probabilities,
the box-distribution softmax and its expectation, grid/anchor arithmetic, reshapes and
transposes. Quantizing it puts pixels and probabilities under one per-tensor scale, which rounds
the scores away: the classic INT8 mAP collapse.

The rule is graph analysis, not a list of node names:

1. Start at the graph outputs and walk producers backwards.
2. Every node that is not a *compute* op (Conv, ConvTranspose, Gemm, MatMul) belongs to the tail
   and the walk goes on through its *data* inputs (for Reshape, Slice, Resize, Expand, Tile, Pad,
   Gather... only input 0; shape-computing inputs are never followed, and a ``Shape`` node ends
   the walk, since it only reads a tensor's size).
3. A Conv whose input comes (through Reshape / Transpose / Flatten / Squeeze / Unsqueeze /
   Identity) from a Softmax is a distribution expectation (YOLOv8's DFL ``conv`` with fixed
   weights 0..reg_max): it belongs to the tail and the walk goes on through it.
4. Any other compute op is the last learned layer of its branch (the head's prediction conv):
   the walk stops there. It is reported as a *head conv*; the spec's ``head_convs`` policy says
   whether it is also kept in float (its output feeds the tail in float either way, because the
   tail's inputs are not quantized).

What it keeps, on the three families edgedet ships presets for:

- YOLOX: per level the sigmoids on objectness and class logits and the Concat of box / obj /
  cls; then the per-level Reshapes, the final Concat and the Transpose. Head convs:
  ``reg_preds``, ``obj_preds``, ``cls_preds`` of each level.
- NanoDet (GFL head): per level the Split of the shared ``gfl_cls`` conv into scores and box
  distributions, the score Sigmoid, the Reshapes and Transposes. Head convs: ``gfl_cls``.
- YOLOv8 / YOLO11: per level the Reshapes and the Concats of box distributions and of class
  logits, the score Sigmoid, the DFL Reshape / Transpose / Softmax / Conv, the box decode
  (Slice, Sub, Add, Div, Mul with the anchor grid and strides) and the final Concat of boxes
  and scores. Head convs: ``cv2.*.2`` (box) and ``cv3.*.2`` (class) of each level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Ops that hold learned weights: a walk back from the outputs stops at these.
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv"})

#: Ops whose only data input is input 0 (the rest are shapes, indices, scales, pads...).
_DATA_INPUT0 = frozenset(
    {
        "Reshape",
        "Slice",
        "Split",
        "Resize",
        "Upsample",
        "Expand",
        "Tile",
        "Pad",
        "Gather",
        "GatherElements",
        "Squeeze",
        "Unsqueeze",
        "TopK",
        "ReduceMax",
        "ReduceSum",
        "ReduceMean",
        "CumSum",
    }
)

#: Pure layout ops a DFL expectation conv may sit behind.
_LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

#: Ops that never carry data forward: the walk does not include them nor go above them.
_SHAPE_ONLY = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})


@dataclass(frozen=True)
class DecodeTail:
    """The result of `find_decode_tail`.

    ``nodes``: names of the tail nodes (always kept in float); ``head_convs``: names of the last
    learned convs per branch (kept in float only if the spec asks); ``op_counts``: how many tail
    nodes of each op type, for the report.
    """

    nodes: tuple[str, ...]
    head_convs: tuple[str, ...]
    op_counts: dict[str, int]

    def describe(self) -> str:
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(self.op_counts.items()))
        return f"decode tail: {len(self.nodes)} nodes ({ops}); {len(self.head_convs)} head convs"


def ensure_node_names(model: Any) -> int:
    """Give every unnamed node of an ``onnx.ModelProto`` a unique name (``<op>_edgedet_<i>``).

    Quantizers select nodes by name; returns how many were named.
    """
    used = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_edgedet_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
            named += 1
    return named


def _is_dfl_conv(node: Any, producer: dict[str, Any]) -> bool:
    """A Conv fed (through layout ops) by a Softmax: an expectation over a distribution."""
    if node.op_type != "Conv" or not node.input:
        return False
    tensor = node.input[0]
    for _ in range(8):
        src = producer.get(tensor)
        if src is None:
            return False
        if src.op_type == "Softmax":
            return True
        if src.op_type not in _LAYOUT_OPS or not src.input:
            return False
        tensor = src.input[0]
    return False


def _data_inputs(node: Any) -> Iterable[str]:
    if node.op_type in _DATA_INPUT0:
        return node.input[:1]
    return [t for t in node.input if t]


def find_decode_tail(model: Any) -> DecodeTail:
    """Walk back from the outputs of an ``onnx.ModelProto`` and return its `DecodeTail`.

    Unnamed nodes must have been named first (`ensure_node_names`); they are skipped otherwise.
    """
    nodes = list(model.graph.node)
    producer: dict[str, Any] = {}
    for node in nodes:
        for out in node.output:
            if out:
                producer[out] = node
    tail: dict[str, Any] = {}
    heads: dict[str, Any] = {}
    stack = [o.name for o in model.graph.output]
    seen_tensors: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen_tensors:
            continue
        seen_tensors.add(tensor)
        node = producer.get(tensor)
        if node is None or node.op_type in _SHAPE_ONLY:
            continue
        if node.op_type in COMPUTE_OPS and not _is_dfl_conv(node, producer):
            heads[node.name] = node
            continue
        tail[node.name] = node
        stack.extend(_data_inputs(node))
    counts: dict[str, int] = {}
    for node in tail.values():
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    order = {n.name: i for i, n in enumerate(nodes)}
    return DecodeTail(
        nodes=tuple(sorted((n for n in tail if n), key=order.__getitem__)),
        head_convs=tuple(sorted((n for n in heads if n), key=order.__getitem__)),
        op_counts=counts,
    )


def find_input_convs(model: Any) -> tuple[str, ...]:
    """Names of the compute nodes that read the graph inputs directly or through non-compute
    ops only (YOLOX's Focus slices + concat, a layout transpose): the *stem*.

    The stem sees raw pixels (0..255 or 0..1): one uint8 scale per tensor over the whole pixel
    range, and on x86 CPUs without VNNI the u8×s8 multiply-add of a full-range input saturates
    (OpenVINO on YOLOv8n: 88.7% of float mAP with the stem in INT8, 100.8% without;
    calibration/README.md). It costs about 1% of the FLOPs to keep it float.
    """
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for t in node.input:
            consumers.setdefault(t, []).append(node)
    initializers = {i.name for i in model.graph.initializer}
    stack = [i.name for i in model.graph.input if i.name not in initializers]
    seen: set[str] = set()
    found: dict[str, None] = {}
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node in consumers.get(tensor, []):
            if node.op_type in COMPUTE_OPS:
                found[node.name] = None
            elif node.op_type not in _SHAPE_ONLY:
                stack.extend(node.output)
    return tuple(n for n in found if n)
