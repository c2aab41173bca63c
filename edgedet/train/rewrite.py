"""Graph rewrites that let channel pruning follow a converted model, keeping its function.

torch-pruning's dependency graph does not follow a channel ``Split`` (``chunk`` / ``split`` in
torch): pruning the convolution before it would shift channels from one part into the other.
YOLOv8 / YOLO11's C2f block is built on exactly that: ``cv1`` (a Conv + SiLU) is split in two
halves, one goes straight to the block's Concat, the other into the bottlenecks.

`split_convs` rewrites, in an `OnnxModule`, every

    Conv -> (element-wise chain: Sigmoid, Mul, Add, Relu, LeakyRelu, Identity) -> Split(axis=1)

into one Conv (with the matching slice of output channels, weights and bias copied) and one copy
of the element-wise chain per part. Each part is then an ordinary Conv with its own channels, so
pruning one part no longer moves the channels of the other. The arithmetic is the same per
channel, so the outputs are identical (a test compares them on YOLOv8n).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch import nn

from .onnx_import import OnnxModule

#: ops that act channel by channel (or element by element), so they commute with a channel split
ELEMENTWISE: frozenset[str] = frozenset({"Sigmoid", "Mul", "Add", "Relu", "LeakyRelu", "Identity"})

Step = tuple[str, str, list[str], list[str], dict[str, Any]]


def _split_sizes(m: OnnxModule, steps: list[Step], step: Step, channels: int) -> list[int] | None:
    _, _, ins, outs, at = step
    sizes = at.get("split")
    if sizes is None and len(ins) > 1 and ins[1]:
        key = m._const_keys.get(ins[1])
        const = [s for s in steps if s[0] == "Constant" and s[3] == [ins[1]]]
        if key is not None:
            sizes = [int(v) for v in getattr(m, key).tolist()]
        elif const:
            sizes = [int(v) for v in np.asarray(const[0][4]["value"]).reshape(-1)]
        else:
            return None  # computed at run time: leave it
    if sizes is None:
        n = len(outs)
        if channels % n:
            return None
        sizes = [channels // n] * n
    sizes = [int(v) for v in sizes]
    return sizes if sum(sizes) == channels and len(sizes) == len(outs) else None


def _chain(
    m: OnnxModule, steps: list[Step], split_idx: int, consumers: dict[str, list[int]]
) -> tuple[int, list[int]] | None:
    """(conv step index, element-wise step indices in order) feeding the split, or None.

    Every tensor the chain reads is the conv's output or produced inside the chain, and every
    tensor it produces is read only inside the chain or by the split (so nothing else sees the
    unsplit tensor)."""
    producer = {o: i for i, s in enumerate(steps) for o in s[3]}
    start = steps[split_idx][2][0]
    chain: set[int] = set()
    frontier = [start]
    conv_idx: int | None = None
    while frontier:
        t = frontier.pop()
        i = producer.get(t)
        if i is None:
            return None  # a graph input or a constant: not a conv output
        op = steps[i][0]
        if op == "Conv":
            if conv_idx not in (None, i):
                return None  # two convolutions meet: not one channel space
            conv_idx = i
            continue
        if i in chain:
            continue
        if op not in ELEMENTWISE:
            return None
        chain.add(i)
        frontier.extend(n for n in steps[i][2] if n)
    if conv_idx is None:
        return None
    inside = chain | {split_idx}
    for i in (conv_idx, *chain):
        for o in steps[i][3]:
            if any(j not in inside for j in consumers.get(o, [])) or o in m.output_names:
                return None
    conv = m.layers[steps[conv_idx][1]]
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        return None
    return conv_idx, sorted(chain)


def _conv_part(conv: nn.Conv2d, lo: int, hi: int) -> nn.Conv2d:
    """A copy of ``conv`` keeping output channels ``lo:hi`` (weights and bias sliced)."""
    part = copy.deepcopy(conv)
    part.out_channels = hi - lo
    part.weight = nn.Parameter(conv.weight.detach()[lo:hi].clone())
    if conv.bias is not None:
        part.bias = nn.Parameter(conv.bias.detach()[lo:hi].clone())
    return part


def split_convs(m: OnnxModule) -> list[str]:
    """Rewrite ``m`` in place (see the module docstring); returns the Split outputs rewritten.

    Splits that do not fit the pattern (not on axis 1, sizes computed at run time, a tensor of
    the chain used elsewhere) are left as they are; `edgedet.train.prune.check_prunable` still
    refuses a model that keeps any.
    """
    done: list[str] = []
    while True:
        steps: list[Step] = list(m.steps)
        consumers: dict[str, list[int]] = {}
        for i, s in enumerate(steps):
            for t in s[2]:
                consumers.setdefault(t, []).append(i)
        for si, step in enumerate(steps):
            if step[0] != "Split" or int(step[4].get("axis", 0)) not in (1, -3):
                continue
            found = _chain(m, steps, si, consumers)
            if found is None:
                continue
            conv_idx, chain = found
            conv = m.layers[steps[conv_idx][1]]
            assert isinstance(conv, nn.Conv2d)
            sizes = _split_sizes(m, steps, step, conv.out_channels)
            if sizes is None:
                continue
            conv_out = steps[conv_idx][3][0]
            new: list[Step] = []
            lo = 0
            for p, (size, final) in enumerate(zip(sizes, step[3])):
                rename = {conv_out: f"{conv_out}__part{p}"}
                for i in chain:
                    for o in steps[i][3]:
                        rename[o] = f"{o}__part{p}"
                rename[step[2][0]] = final  # the chain's last tensor is this part's output
                key = f"{steps[conv_idx][1]}__part{p}"
                m.layers[key] = _conv_part(conv, lo, lo + size)
                lo += size
                new.append(("Conv", key, list(steps[conv_idx][2]), [rename[conv_out]], {}))
                for i in chain:
                    op, k, ins, outs, at = steps[i]
                    if k:  # an activation module: give each part its own (same parameters)
                        k2 = f"{k}__part{p}"
                        m.layers[k2] = m.layers[k]
                        k = k2
                    new.append(
                        (op, k, [rename.get(t, t) for t in ins], [rename[o] for o in outs], at)
                    )
            drop = {conv_idx, si, *chain}
            m.steps = [s for i, s in enumerate(steps) if i not in drop and i < si]
            m.steps += new + [s for i, s in enumerate(steps) if i > si]
            del m.layers[steps[conv_idx][1]]
            for i in chain:
                if steps[i][1] and steps[i][1] in m.layers:
                    del m.layers[steps[i][1]]
            done.extend(step[3])
            break
        else:
            return done
