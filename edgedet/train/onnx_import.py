"""A small, explicit ONNX -> torch converter for the graphs of exported detectors.

Why this exists instead of onnx2torch: onnx2torch imports torchvision, and the torchvision wheel
on PyPI does not import beside the torch build edgedet trains with ("operator torchvision::nms
does not exist"). Detectors exported for the edge use a handful of ops, so an explicit converter
is shorter than a dependency and says exactly what it supports.

What it builds: an `OnnxModule` whose every ``Conv`` is a real ``nn.Conv2d`` (weights copied), so
torch-pruning's dependency graph can see and prune the channels, and NNCF can put fake
quantizers on them. Activations that are modules in ONNX terms (``Sigmoid``, ``LeakyRelu``,
``MaxPool``) become modules too; the rest are plain tensor ops in `OnnxModule.forward`, run in
the graph's order.

Supported ops: Conv, Sigmoid, Mul, Add, Sub, Div, Concat, Slice, MaxPool, Reshape, Resize
(nearest / linear), Transpose, LeakyRelu, Relu, Softmax, ReduceSum (the distribution-focal box
integral of edgedet's own exports), Split, Shape, Gather, Unsqueeze, Cast, Constant, Identity.
Anything else is refused with a list of the unsupported ops (`IncompatibleModelError`).
Shape arithmetic (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) is run eagerly, so the
module works for the input size it was exported with and for other batch sizes where the graph
computes shapes. A ``Reshape`` to a constant shape whose first entry is the graph's static batch
size (``[1, 85, -1]``) keeps the batch of its input, so a model exported for batch 1 trains on
batches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.errors import IncompatibleModelError, ModelLoadError

SUPPORTED_OPS: tuple[str, ...] = (
    "Add", "Cast", "Concat", "Constant", "Conv", "Div", "Gather", "Identity", "LeakyRelu",
    "MaxPool", "Mul", "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice",
    "Softmax", "Split", "Sub", "Transpose", "Unsqueeze",
)  # fmt: skip

# ONNX TensorProto data type -> torch dtype (the ones Cast meets in detector graphs)
_DTYPES = {
    1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16,
    11: torch.float64,
}  # fmt: skip


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper, numpy_helper

    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.name == "value" and a.type == a.TENSOR:
            out[a.name] = numpy_helper.to_array(a.t)
        else:
            v = helper.get_attribute_value(a)
            out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _key(name: str, used: set[str]) -> str:
    k = re.sub(r"\W", "_", name).strip("_") or "m"
    if k[0].isdigit():
        k = "n_" + k
    base, i = k, 1
    while k in used:
        i += 1
        k = f"{base}_{i}"
    used.add(k)
    return k


def _symmetric_pads(pads: Sequence[int], node: str) -> tuple[int, int]:
    if not pads:
        return (0, 0)
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise IncompatibleModelError(
            f"node {node}: asymmetric pads {list(pads)} are not supported "
            "(expected [top, left, top, left]); re-export the model with symmetric padding"
        )
    return (int(pads[0]), int(pads[1]))


class OnnxModule(nn.Module):
    """The converted graph. ``forward(*inputs)`` returns one tensor, or a tuple for several
    outputs, in the ONNX graph's output order.

    ``input_names`` / ``output_names`` / ``input_shapes`` keep the ONNX interface so the module
    can be exported back with the same names.
    """

    def __init__(
        self,
        steps: list[tuple[str, str, list[str], list[str], dict[str, Any]]],
        modules: dict[str, nn.Module],
        consts: dict[str, torch.Tensor],
        input_names: list[str],
        output_names: list[str],
        input_shapes: list[tuple[int | None, ...]],
    ):
        super().__init__()
        self.layers = nn.ModuleDict(modules)
        self._const_keys: dict[str, str] = {}
        for i, (name, t) in enumerate(consts.items()):
            key = f"c{i}"
            self.register_buffer(key, t, persistent=True)
            self._const_keys[name] = key
        self.steps = steps
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.input_shapes = list(input_shapes)
        first = input_shapes[0][0] if input_shapes and input_shapes[0] else None
        #: the batch size the graph was exported with (None when dynamic)
        self.static_batch = first if isinstance(first, int) and first > 0 else None

    def output_convs(self) -> list[nn.Conv2d]:
        """Convolutions from which no other convolution is reachable: the head's prediction
        layers (class scores, boxes, objectness), which pruning must keep whole."""
        consumers: dict[str, list[int]] = {}
        for i, (_, _, ins, _, _) in enumerate(self.steps):
            for t in ins:
                consumers.setdefault(t, []).append(i)
        memo: dict[int, bool] = {}

        def reaches_conv(i: int) -> bool:  # does any path from step i's outputs meet a Conv?
            if i in memo:
                return memo[i]
            memo[i] = False
            hit = False
            for t in self.steps[i][3]:
                for j in consumers.get(t, []):
                    if self.steps[j][0] == "Conv" or reaches_conv(j):
                        hit = True
                        break
                if hit:
                    break
            memo[i] = hit
            return hit

        out = []
        for i, (op, key, _, _, _) in enumerate(self.steps):
            if op == "Conv" and not reaches_conv(i):
                m = self.layers[key]
                assert isinstance(m, nn.Conv2d)
                out.append(m)
        return out

    def fixed_channel_convs(self) -> list[nn.Conv2d]:
        """Convolutions whose output reaches a ``Reshape`` to a constant shape through no other
        convolution: their channel count is written into the graph (YOLOv8's box
        distributions, reshaped to [1, 4, 16, N]), so pruning must keep them whole."""
        consumers: dict[str, list[int]] = {}
        for i, (_, _, ins, _, _) in enumerate(self.steps):
            for t in ins:
                consumers.setdefault(t, []).append(i)
        found: list[nn.Conv2d] = []
        for op, key, _, outs, _ in self.steps:
            if op != "Conv":
                continue
            seen: set[int] = set()
            frontier = list(outs)
            hit = False
            while frontier and not hit:
                for j in consumers.get(frontier.pop(), []):
                    if j in seen:
                        continue
                    seen.add(j)
                    jop, _, jins, jouts, _ = self.steps[j]
                    if jop == "Conv":
                        continue
                    if jop == "Reshape" and len(jins) > 1 and jins[1] in self._const_keys:
                        hit = True
                        break
                    frontier.extend(jouts)
            if hit:
                m = self.layers[key]
                assert isinstance(m, nn.Conv2d)
                found.append(m)
        return found

    def forward(self, *inputs: torch.Tensor) -> Any:
        if len(inputs) != len(self.input_names):
            raise IncompatibleModelError(
                f"the converted model takes {len(self.input_names)} input(s) "
                f"{self.input_names}, got {len(inputs)}"
            )
        env: dict[str, Any] = dict(zip(self.input_names, inputs))
        for name, key in self._const_keys.items():
            env[name] = getattr(self, key)
        for op, key, ins, outs, at in self.steps:
            x = [env[n] if n else None for n in ins]
            y = self._run(op, key, x, at)
            if isinstance(y, (list, tuple)):
                for n, v in zip(outs, y):
                    env[n] = v
            else:
                env[outs[0]] = y
        res = [env[n] for n in self.output_names]
        return res[0] if len(res) == 1 else tuple(res)

    def _run(self, op: str, key: str, x: list[Any], at: dict[str, Any]) -> Any:
        if key:
            return self.layers[key](x[0])
        if op == "Mul":
            return x[0] * x[1]
        if op == "Add":
            return x[0] + x[1]
        if op == "Sub":
            return x[0] - x[1]
        if op == "Div":
            return x[0] / x[1]
        if op == "Relu":
            return torch.relu(x[0])
        if op == "Identity":
            return x[0]
        if op == "Concat":
            return torch.cat(x, int(at.get("axis", 0)))
        if op == "Softmax":
            return torch.softmax(x[0], int(at.get("axis", -1)))
        if op == "ReduceSum":  # axes: an input from opset 13, an attribute before
            axes = at.get("axes")
            if axes is None and len(x) > 1 and x[1] is not None:
                axes = [int(v) for v in x[1].tolist()]
            keep = bool(at.get("keepdims", 1))
            if not axes:
                if at.get("noop_with_empty_axes", 0):
                    return x[0]
                axes = list(range(x[0].dim()))
            return x[0].sum([int(a) for a in axes], keepdim=keep)
        if op == "Transpose":
            return x[0].permute(*at["perm"])
        if op == "Constant":
            return torch.from_numpy(np.array(at["value"], copy=True))
        if op == "Shape":
            return torch.tensor(list(x[0].shape), dtype=torch.int64)
        if op == "Cast":
            return x[0].to(_DTYPES[int(at["to"])])
        if op == "Unsqueeze":
            axes = at.get("axes")
            if axes is None:
                axes = [int(v) for v in x[1].tolist()]
            y = x[0]
            for a in sorted(int(a) for a in axes):
                y = y.unsqueeze(a)
            return y
        if op == "Gather":
            axis = int(at.get("axis", 0))
            data, idx = x[0], x[1].to(torch.int64)
            axis = axis % data.dim()
            flat = idx.reshape(-1) % data.shape[axis]
            y = data.index_select(axis, flat)
            return y.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1 :]))
        if op == "Reshape":
            shape = [int(v) for v in x[1].tolist()]
            shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
            if shape and x[0].dim() and shape[0] == self.static_batch != x[0].shape[0]:
                shape[0] = x[0].shape[0]  # a constant leading batch size follows the input's
            return x[0].reshape(shape)
        if op == "Slice":
            return self._slice(x, at)
        if op == "Split":
            axis = int(at.get("axis", 0))
            split = at.get("split")
            if split is None and len(x) > 1 and x[1] is not None:
                split = [int(v) for v in x[1].tolist()]
            if split is None:
                n = len(at["_outputs"])
                return torch.chunk(x[0], n, axis)
            return torch.split(x[0], [int(s) for s in split], axis)
        if op == "Resize":
            return self._resize(x, at)
        raise IncompatibleModelError(f"op {op} reached the interpreter without a handler")

    @staticmethod
    def _slice(x: list[Any], at: dict[str, Any]) -> torch.Tensor:
        data = x[0]
        starts = [int(v) for v in x[1].tolist()]
        ends = [int(v) for v in x[2].tolist()]
        axes = [int(v) for v in x[3].tolist()] if len(x) > 3 and x[3] is not None else None
        steps = [int(v) for v in x[4].tolist()] if len(x) > 4 and x[4] is not None else None
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        idx: list[slice] = [slice(None)] * data.dim()
        for s, e, a, st in zip(starts, ends, axes, steps):
            if st < 1:
                raise IncompatibleModelError(f"Slice with step {st} is not supported (need >= 1)")
            dim = data.shape[a]
            e = min(e, dim) if e >= 0 else e
            idx[a % data.dim()] = slice(s, e, st)
        return data[tuple(idx)]

    @staticmethod
    def _resize(x: list[Any], at: dict[str, Any]) -> torch.Tensor:
        data = x[0]
        mode = at.get("mode", "nearest")
        ctm = at.get("coordinate_transformation_mode", "half_pixel")
        scales = x[2] if len(x) > 2 and x[2] is not None and x[2].numel() else None
        sizes = x[3] if len(x) > 3 and x[3] is not None and x[3].numel() else None
        kw: dict[str, Any] = {}
        if sizes is not None:
            kw["size"] = [int(v) for v in sizes.tolist()[2:]]
        elif scales is not None:
            sc = [float(v) for v in scales.tolist()]
            kw["scale_factor"] = sc[2:]
        else:
            raise IncompatibleModelError("Resize without scales or sizes is not supported")
        if mode == "nearest":
            return F.interpolate(data, mode="nearest", **kw)
        if mode == "linear":
            return F.interpolate(data, mode="bilinear", align_corners=ctm == "align_corners", **kw)
        raise IncompatibleModelError(f"Resize mode {mode!r} is not supported (nearest, linear)")


def convert_onnx(model: str | Path | Any) -> OnnxModule:
    """Convert an ONNX file (or a loaded ``onnx.ModelProto``) to an `OnnxModule`.

    Raises `IncompatibleModelError` listing every unsupported op, and `ModelLoadError` when the
    file cannot be read.
    """
    import onnx
    from onnx import numpy_helper

    if isinstance(model, (str, Path)):
        p = Path(model)
        if not p.is_file():
            raise ModelLoadError(f"ONNX file {p} not found")
        try:
            proto = onnx.load(str(p))
        except Exception as err:  # onnx raises DecodeError and others on a bad file
            raise ModelLoadError(f"{p} is not a readable ONNX file: {err}") from err
    else:
        proto = model
    g = proto.graph
    unknown = sorted({n.op_type for n in g.node if n.op_type not in SUPPORTED_OPS or n.domain})
    if unknown:
        raise IncompatibleModelError(
            f"cannot convert to torch: unsupported ONNX op(s) {unknown}; supported: "
            f"{list(SUPPORTED_OPS)}. Convert the original model in torch instead."
        )
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    init_names = set(inits)
    input_names = [i.name for i in g.input if i.name not in init_names]
    input_shapes: list[tuple[int | None, ...]] = []
    for i in g.input:
        if i.name in init_names:
            continue
        dims = i.type.tensor_type.shape.dim
        input_shapes.append(tuple(d.dim_value if d.HasField("dim_value") else None for d in dims))
    used: set[str] = set()
    modules: dict[str, nn.Module] = {}
    steps: list[tuple[str, str, list[str], list[str], dict[str, Any]]] = []
    consumed_by_conv: set[str] = set()
    for idx, node in enumerate(g.node):
        at = _attrs(node)
        name = node.name or f"{node.op_type}_{idx}"
        ins, outs = list(node.input), list(node.output)
        key = ""
        if node.op_type == "Conv":
            w = inits.get(ins[1])
            if w is None or w.ndim != 4:
                raise IncompatibleModelError(
                    f"Conv {name}: only 2-D convolutions with constant weights are supported"
                )
            if at.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
                raise IncompatibleModelError(
                    f"Conv {name}: auto_pad={at['auto_pad']!r} is not supported (NOTSET only)"
                )
            b = inits.get(ins[2]) if len(ins) > 2 and ins[2] else None
            groups = int(at.get("group", 1))
            conv = nn.Conv2d(
                w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                stride=tuple(at.get("strides", (1, 1))),
                padding=_symmetric_pads(at.get("pads", ()), name),
                dilation=tuple(at.get("dilations", (1, 1))),
                groups=groups, bias=b is not None,
            )  # fmt: skip
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(np.array(w, copy=True)))
                if b is not None and conv.bias is not None:
                    conv.bias.copy_(torch.from_numpy(np.array(b, copy=True)))
            key = _key(name, used)
            modules[key] = conv
            consumed_by_conv.update(ins[1:3])
            ins = ins[:1]
        elif node.op_type == "Sigmoid":
            key = _key(name, used)
            modules[key] = nn.Sigmoid()
        elif node.op_type == "LeakyRelu":
            key = _key(name, used)
            modules[key] = nn.LeakyReLU(float(at.get("alpha", 0.01)))
        elif node.op_type == "MaxPool":
            if at.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
                raise IncompatibleModelError(f"MaxPool {name}: auto_pad is not supported")
            key = _key(name, used)
            k = tuple(at["kernel_shape"])
            modules[key] = nn.MaxPool2d(
                k, tuple(at.get("strides", k)), _symmetric_pads(at.get("pads", ()), name),
                ceil_mode=bool(at.get("ceil_mode", 0)),
            )  # fmt: skip
        elif node.op_type == "Split":
            at["_outputs"] = outs
        steps.append((node.op_type, key, ins, outs, at))
    consts = {
        n: torch.from_numpy(np.array(v)) for n, v in inits.items() if n not in consumed_by_conv
    }
    return OnnxModule(
        steps, modules, consts, input_names, [o.name for o in g.output], input_shapes
    ).eval()
