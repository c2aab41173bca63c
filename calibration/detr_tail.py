"""Find a DETR decoder's precision-critical part in its ONNX graph, so INT8 keeps it in float.

A DETR-style detector (RT-DETR, D-FINE, DEIM) has no dense decode tail: its outputs come from a
few small heads applied to a fixed set of object queries. What breaks under INT8 is the part
that *chooses* and *places* those queries:

- **query selection**: an encoder score head (Linear) rates every feature cell, ``TopK`` keeps
  the best Q, ``Gather``/``GatherElements`` pick their features and reference boxes. A quantized
  score head re-ranks near-ties, so a different set of queries is decoded;
- **the box heads**: MLPs (Linear, ReLU, Linear, ReLU, Linear) whose output is added to the
  reference box in inverse-sigmoid space and squashed by a sigmoid, once per decoder layer; the
  refined box of one layer is the reference of the next, so rounding compounds;
- **the score sigmoid and the final top-k** over queries x classes (in the graph for
  post-processed exports).

The rule is graph analysis, on top of `edgedet.calibration.tail.find_decode_tail` (which already
walks from the outputs through the sigmoids, the inverse-sigmoid arithmetic and the final top-k,
and stops at the heads' last Linear layers):

1. A graph is a DETR decoder when a ``TopK`` node's indices (output 1) reach, through index
   arithmetic only, the index input of a ``Gather`` / ``GatherElements`` / ``GatherND``: queries
   (or detections) selected by score. A YOLO graph has no such node.
2. Query selection: every TopK's score input is walked back through non-compute ops to the
   compute ops that made it (the score heads, kept float); the index ops and the gathers are
   kept; each gather's data input is walked back the same way (reference boxes and query
   features: the ops on the way are kept and the compute ops that end the walk are heads).
3. Heads: every head found by (2) or by the decode tail is extended backwards through its MLP:
   a compute op whose data input comes through ``Relu`` (and a bias ``Add``, layout ops) from
   another compute op belongs to the same MLP, up to `MLP_DEPTH` layers.

What it keeps is reported per reason: ``detr query selection`` (TopK, index ops, gathers and the
ops between them and their heads) and ``detr head`` (the score and box head layers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .tail import _SHAPE_ONLY, COMPUTE_OPS, _data_inputs, find_decode_tail

#: Layers of a box-head MLP kept float behind its last layer (RT-DETR / D-FINE: 3).
MLP_DEPTH = 3
_GATHERS = frozenset({"Gather", "GatherElements", "GatherND"})
#: Ops that carry TopK indices to a gather (unsqueeze/expand them, split query from class).
_INDEX_OPS = frozenset(
    {"Unsqueeze", "Squeeze", "Expand", "Tile", "Reshape", "Cast", "Div", "Mul", "Sub", "Add",
     "Floor", "Mod", "Concat", "Identity", "Flatten", "Slice", "Transpose"}
)  # fmt: skip
_LINEAR = frozenset({"MatMul", "Gemm"})
#: Ops between two Linear layers of an MLP.
_MLP_LINKS = frozenset({"Relu", "Add", "Reshape", "Transpose", "Identity", "Flatten"})


@dataclass(frozen=True)
class DetrDecoderTail:
    """The result of `find_detr_decoder`: names of nodes kept float, by role.

    ``selection``: TopK, index arithmetic, gathers and the non-compute ops between them and the
    heads; ``heads``: the score / box head layers (Linear/MatMul/Gemm); ``topk``: the TopK nodes.
    """

    selection: tuple[str, ...]
    heads: tuple[str, ...]
    topk: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"DETR decoder: {len(self.topk)} TopK, {len(self.selection)} query-selection nodes, "
            f"{len(self.heads)} head layers kept float"
        )


def _graph(model: Any) -> tuple[dict[str, Any], dict[str, list[Any]], set[str]]:
    producer: dict[str, Any] = {}
    consumers: dict[str, list[Any]] = {}
    for node in model.graph.node:
        for out in node.output:
            if out:
                producer[out] = node
        for inp in node.input:
            if inp:
                consumers.setdefault(inp, []).append(node)
    initializers = {i.name for i in model.graph.initializer}
    return producer, consumers, initializers


def _index_gathers(topk: Any, consumers: dict[str, list[Any]]) -> tuple[list[Any], list[Any]]:
    """Gathers reached from a TopK's indices through index ops, and those index ops."""
    if len(topk.output) < 2:
        return [], []
    gathers: dict[str, Any] = {}
    path: dict[str, Any] = {}
    stack, seen = [topk.output[1]], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for node in consumers.get(tensor, []):
            if node.op_type in _GATHERS and len(node.input) > 1 and node.input[1] == tensor:
                gathers[node.name] = node
            elif node.op_type in _INDEX_OPS:
                path[node.name] = node
                stack.extend(node.output)
    return list(gathers.values()), list(path.values())


def _walk_back(
    tensors: Iterable[str], producer: dict[str, Any], stop: set[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Non-compute nodes from ``tensors`` back to the compute ops that end each branch."""
    ops: dict[str, Any] = {}
    heads: dict[str, Any] = {}
    stack, seen = list(tensors), set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None or node.op_type in _SHAPE_ONLY or node.name in stop:
            continue
        if node.op_type in COMPUTE_OPS:
            heads[node.name] = node
            continue
        ops[node.name] = node
        stack.extend(_data_inputs(node))
    return ops, heads


def _mlp_layers(head: Any, producer: dict[str, Any], initializers: set[str]) -> list[Any]:
    """``head`` and the Linear layers before it in its MLP (through ReLU / bias Add)."""
    layers = [head]
    node = head
    for _ in range(MLP_DEPTH - 1):
        tensor = node.input[0] if node.input else ""
        prev = None
        saw_relu = False
        for _hop in range(4):
            src = producer.get(tensor)
            if src is None:
                break
            if src.op_type in COMPUTE_OPS:
                prev = src if src.op_type in _LINEAR else None  # a conv is the encoder's
                break
            if src.op_type not in _MLP_LINKS:
                break
            if src.op_type == "Relu":
                saw_relu = True
            if src.op_type == "Add":  # only a bias add: one input is a weight
                data = [t for t in src.input if t not in initializers]
                if len(data) != 1:
                    break
                tensor = data[0]
            else:
                tensor = src.input[0]
        if prev is None or not saw_relu:
            break
        layers.append(prev)
        node = prev
    return layers


def find_detr_decoder(model: Any) -> DetrDecoderTail | None:
    """The DETR decoder nodes of an ``onnx.ModelProto`` (named first: `ensure_node_names`), or
    None when the graph has no score-selected gather (not a DETR)."""
    producer, consumers, initializers = _graph(model)
    topks = [n for n in model.graph.node if n.op_type == "TopK"]
    selection: dict[str, Any] = {}
    heads: dict[str, Any] = {}
    used_topk: list[str] = []
    for topk in topks:
        gathers, index_ops = _index_gathers(topk, consumers)
        if not gathers:
            continue
        used_topk.append(topk.name)
        selection[topk.name] = topk
        selection.update({n.name: n for n in (*gathers, *index_ops)})
        starts = [topk.input[0], *(g.input[0] for g in gathers)]
        ops, found = _walk_back(starts, producer, stop=set(selection))
        selection.update(ops)
        heads.update(found)
    if not used_topk:
        return None
    tail = find_decode_tail(model)
    by_name = {n.name: n for n in model.graph.node}
    for name in tail.head_convs:
        heads[name] = by_name[name]
    layers: dict[str, Any] = {}
    for head in heads.values():
        if head.op_type in _LINEAR:  # Linear heads; a conv head is a dense tail's
            for layer in _mlp_layers(head, producer, initializers):
                layers[layer.name] = layer
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    return DetrDecoderTail(
        selection=tuple(sorted((n for n in selection if n), key=order.__getitem__)),
        heads=tuple(sorted((n for n in layers if n), key=order.__getitem__)),
        topk=tuple(used_topk),
    )
