"""EdgeDet: edgedet's own anchor-free one-stage detector, in plain torch.

Backbone of strided convolutions and CSP blocks with an SPPF at the end, a PAN neck (top-down
then bottom-up) over P3-P5 (and P2 with ``p2=True``), and a decoupled head per level: a box branch
predicting, for each of the 4 sides, a distribution over ``reg_max`` bins (distance in stride
units, DFL) and a class branch predicting logits.

Built for the edge and for pruning:
- no ``chunk`` / ``split`` / slicing anywhere in `forward`: the CSP block feeds two separate 1x1
  convolutions instead of splitting one tensor, so torch-pruning's dependency graph sees plain
  conv -> concat -> conv chains;
- activation chosen per model (``silu``, or ``relu`` / ``relu6`` for INT8-friendly deployment);
- `EdgeDet.forward` returns the raw per-level head maps (for losses); `DecodeTail` turns them into
  one ``[B, N, 4 + nc]`` tensor (boxes xyxy in input pixels, class scores after sigmoid). The
  decode tail has no slicing either: ``xyxy = anchors + dist * sign * stride``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from edgedet.errors import InvalidInputError

#: size -> (channels of the stem and of strides 4, 8, 16, 32; CSP depth at strides 4..32)
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "n": ((16, 32, 64, 96, 128), (1, 1, 1, 1)),
    "s": ((32, 64, 128, 256, 384), (1, 2, 2, 1)),
    "m": ((48, 96, 192, 384, 576), (2, 4, 4, 2)),
}
ACTIVATIONS = ("silu", "relu", "relu6")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an `EdgeDet` (stored in checkpoints)."""

    num_classes: int
    size: str = "n"
    p2: bool = False
    activation: str = "silu"
    reg_max: int = 16
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise InvalidInputError(f"model size must be one of {sorted(SIZES)}, got {self.size!r}")
        if self.activation not in ACTIVATIONS:
            raise InvalidInputError(
                f"activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        if self.num_classes < 1:
            raise InvalidInputError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise InvalidInputError(
                f"{len(self.class_names)} class names given for num_classes={self.num_classes}"
            )
        if self.reg_max < 2:
            raise InvalidInputError(f"reg_max must be >= 2, got {self.reg_max}")

    @property
    def strides(self) -> tuple[int, ...]:
        return (4, 8, 16, 32) if self.p2 else (8, 16, 32)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)


def _act(name: str) -> nn.Module:
    if name == "silu":
        return nn.SiLU(inplace=True)
    if name == "relu":
        return nn.ReLU(inplace=True)
    return nn.ReLU6(inplace=True)


class ConvBNAct(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: str = "silu"):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.03)
        self.act = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool, act: str):
        super().__init__()
        self.cv1 = ConvBNAct(c, c, 3, 1, act)
        self.cv2 = ConvBNAct(c, c, 3, 1, act)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class CSPBlock(nn.Module):
    """CSP block without channel splitting: two 1x1 convs feed the two paths."""

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool, act: str):
        super().__init__()
        c_mid = max(c_out // 2, 8)
        self.main = ConvBNAct(c_in, c_mid, 1, 1, act)
        self.skip = ConvBNAct(c_in, c_mid, 1, 1, act)
        self.blocks = nn.Sequential(*(Bottleneck(c_mid, shortcut, act) for _ in range(n)))
        self.fuse = ConvBNAct(2 * c_mid, c_out, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.blocks(self.main(x)), self.skip(x)], 1))


class SPPF(nn.Module):
    def __init__(self, c_in: int, c_out: int, act: str):
        super().__init__()
        c_mid = c_in // 2
        self.cv1 = ConvBNAct(c_in, c_mid, 1, 1, act)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv2 = ConvBNAct(4 * c_mid, c_out, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.cv2(torch.cat([x, y1, y2, y3], 1))


class Head(nn.Module):
    """Decoupled head: per level a box branch (4 x reg_max) and a class branch (nc)."""

    def __init__(
        self, chans: Sequence[int], num_classes: int, reg_max: int, strides: Sequence[int], act: str
    ):
        super().__init__()
        self.num_classes, self.reg_max = num_classes, reg_max
        self.strides = tuple(strides)
        c_box = max(32, chans[0] // 2)
        c_cls = max(32, chans[0] // 2, min(num_classes, 128))
        self.box_stem = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_box, 3, 1, act), ConvBNAct(c_box, c_box, 3, 1, act))
            for c in chans
        )
        self.cls_stem = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, c_cls, 3, 1, act), ConvBNAct(c_cls, c_cls, 3, 1, act))
            for c in chans
        )
        self.box_pred = nn.ModuleList(nn.Conv2d(c_box, 4 * reg_max, 1) for _ in chans)
        self.cls_pred = nn.ModuleList(nn.Conv2d(c_cls, num_classes, 1) for _ in chans)
        self.init_bias()

    def init_bias(self, image_size: int = 640) -> None:
        for conv, s in zip(self.cls_pred, self.strides):
            nn.init.constant_(conv.bias, math.log(5 / self.num_classes / (image_size / s) ** 2))  # type: ignore[arg-type]
        for conv in self.box_pred:
            nn.init.constant_(conv.bias, 1.0)  # type: ignore[arg-type]

    def forward(self, feats: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out = []
        for i, f in enumerate(feats):
            out.append(
                (self.box_pred[i](self.box_stem[i](f)), self.cls_pred[i](self.cls_stem[i](f)))
            )
        return out


class EdgeDet(nn.Module):
    """The detector. ``forward(x)`` -> list per level of ``(box [B, 4*reg_max, H, W], cls [B, nc, H, W])``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        w, d = SIZES[cfg.size]
        a = cfg.activation
        self.stem = ConvBNAct(3, w[0], 3, 2, a)  # /2
        self.stage2 = nn.Sequential(
            ConvBNAct(w[0], w[1], 3, 2, a), CSPBlock(w[1], w[1], d[0], True, a)
        )  # /4
        self.stage3 = nn.Sequential(
            ConvBNAct(w[1], w[2], 3, 2, a), CSPBlock(w[2], w[2], d[1], True, a)
        )  # /8
        self.stage4 = nn.Sequential(
            ConvBNAct(w[2], w[3], 3, 2, a), CSPBlock(w[3], w[3], d[2], True, a)
        )  # /16
        self.stage5 = nn.Sequential(
            ConvBNAct(w[3], w[4], 3, 2, a), CSPBlock(w[4], w[4], d[3], True, a), SPPF(w[4], w[4], a)
        )  # /32
        n = d[0]
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        # top-down
        self.td4 = CSPBlock(w[4] + w[3], w[3], n, False, a)
        self.td3 = CSPBlock(w[3] + w[2], w[2], n, False, a)
        if cfg.p2:
            self.td2 = CSPBlock(w[2] + w[1], w[1], n, False, a)
            self.down2 = ConvBNAct(w[1], w[1], 3, 2, a)
            self.bu3 = CSPBlock(w[1] + w[2], w[2], n, False, a)
        # bottom-up
        self.down3 = ConvBNAct(w[2], w[2], 3, 2, a)
        self.bu4 = CSPBlock(w[2] + w[3], w[3], n, False, a)
        self.down4 = ConvBNAct(w[3], w[3], 3, 2, a)
        self.bu5 = CSPBlock(w[3] + w[4], w[4], n, False, a)
        chans = ([w[1]] if cfg.p2 else []) + [w[2], w[3], w[4]]
        self.head = Head(chans, cfg.num_classes, cfg.reg_max, cfg.strides, a)

    @property
    def strides(self) -> tuple[int, ...]:
        return self.cfg.strides

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        p2 = self.stage2(self.stem(x))
        p3 = self.stage3(p2)
        p4 = self.stage4(p3)
        p5 = self.stage5(p4)
        t4 = self.td4(torch.cat([self.up(p5), p4], 1))
        t3 = self.td3(torch.cat([self.up(t4), p3], 1))
        outs: list[torch.Tensor] = []
        if self.cfg.p2:
            t2 = self.td2(torch.cat([self.up(t3), p2], 1))
            outs.append(t2)
            t3 = self.bu3(torch.cat([self.down2(t2), t3], 1))
        o4 = self.bu4(torch.cat([self.down3(t3), t4], 1))
        o5 = self.bu5(torch.cat([self.down4(o4), p5], 1))
        outs += [t3, o4, o5]
        return self.head(outs)


def flatten_outputs(
    levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level maps -> ``(box [B, N, 4*reg_max], cls [B, N, nc])``, levels in order, row-major."""
    box = torch.cat([b.flatten(2) for b, _ in levels], 2).transpose(1, 2)
    cls = torch.cat([c.flatten(2) for _, c in levels], 2).transpose(1, 2)
    return box, cls


def make_anchors(
    hw: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``[N, 2]`` (x, y) in input pixels and the stride of each ``[N, 1]``."""
    pts, sts = [], []
    for (h, w), s in zip(hw, strides):
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=device),
            torch.arange(w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        pts.append(torch.stack([(xs.reshape(-1) + 0.5) * s, (ys.reshape(-1) + 0.5) * s], 1))
        sts.append(torch.full((h * w, 1), float(s), device=device))
    return torch.cat(pts), torch.cat(sts)


def dfl_expectation(box: torch.Tensor, reg_max: int) -> torch.Tensor:
    """``[B, N, 4*reg_max]`` logits -> expected distances ``[B, N, 4]`` in stride units."""
    b, n, _ = box.shape
    prob = box.view(b, n, 4, reg_max).softmax(3)
    proj = torch.arange(reg_max, dtype=prob.dtype, device=prob.device)
    return (prob * proj).sum(3)


class DecodeTail(nn.Module):
    """Raw head maps -> ``[B, N, 4 + nc]``: xyxy in input pixels, then sigmoid class scores.

    Anchors are constants for a fixed input size (``input_hw``). In ONNX every node of this
    module is named ``/decode/...``: keep them in float when quantizing.
    """

    anchors: torch.Tensor
    scale: torch.Tensor
    proj: torch.Tensor

    def __init__(self, reg_max: int, strides: Sequence[int], input_hw: tuple[int, int]):
        super().__init__()
        self.reg_max = reg_max
        h, w = input_hw
        hw = [(-(-h // s), -(-w // s)) for s in strides]
        pts, sts = make_anchors(hw, strides)
        self.register_buffer("anchors", torch.cat([pts, pts], 1), persistent=False)  # [N, 4]
        sign = torch.tensor([-1.0, -1.0, 1.0, 1.0])
        self.register_buffer("scale", sts * sign, persistent=False)  # [N, 4]
        self.register_buffer("proj", torch.arange(reg_max, dtype=torch.float32), persistent=False)

    def forward(self, box: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        b, n, _ = box.shape
        prob = box.reshape(b, n, 4, self.reg_max).softmax(3)
        dist = (prob * self.proj).sum(3)  # [B, N, 4] l, t, r, b
        xyxy = self.anchors + dist * self.scale
        return torch.cat([xyxy, cls.sigmoid()], 2)


class ExportModel(nn.Module):
    """`EdgeDet` plus `DecodeTail`: ``images [B, 3, H, W]`` -> ``output [B, N, 4 + nc]``."""

    def __init__(self, model: EdgeDet, input_hw: tuple[int, int]):
        super().__init__()
        self.model = model
        self.decode = DecodeTail(model.cfg.reg_max, model.strides, input_hw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        box, cls = flatten_outputs(self.model(x))
        return self.decode(box, cls)


def build_model(
    num_classes: int,
    size: str = "n",
    *,
    p2: bool = False,
    activation: str = "silu",
    reg_max: int = 16,
    class_names: Sequence[str] = (),
) -> EdgeDet:
    """An untrained `EdgeDet` of the given size (``n`` / ``s`` / ``m``)."""
    return EdgeDet(ModelConfig(num_classes, size, p2, activation, reg_max, tuple(class_names)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
