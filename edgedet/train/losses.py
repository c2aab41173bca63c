"""Detection losses: quality / varifocal classification, CIoU / GIoU boxes, distribution focal loss.

`DetectionLoss` ties them to the `TaskAlignedAssigner`: from the raw head maps of `EdgeDet` and the
padded ground truth of a batch it returns the total loss (scaled by batch size, the way the
gains below were tuned) and its parts for logging.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .assigner import TaskAlignedAssigner
from .models.net import dfl_expectation, flatten_outputs, make_anchors


def bbox_iou(
    a: torch.Tensor, b: torch.Tensor, kind: str = "ciou", eps: float = 1e-7
) -> torch.Tensor:
    """IoU / GIoU / CIoU of matching boxes ``a [..., 4]``, ``b [..., 4]`` (xyxy)."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    w1, h1 = (ax2 - ax1).clamp(min=eps), (ay2 - ay1).clamp(min=eps)
    w2, h2 = (bx2 - bx1).clamp(min=eps), (by2 - by1).clamp(min=eps)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(min=0) * (
        torch.minimum(ay2, by2) - torch.maximum(ay1, by1)
    ).clamp(min=0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if kind == "iou":
        return iou
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    if kind == "giou":
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw**2 + ch**2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def varifocal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.75, gamma: float = 2.0
) -> torch.Tensor:
    """Varifocal loss per element: positives weighted by their IoU-aware target, negatives by
    ``alpha * p^gamma``."""
    p = logits.sigmoid()
    weight = torch.where(target > 0, target, alpha * p.detach().pow(gamma))
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight


def quality_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, beta: float = 2.0
) -> torch.Tensor:
    """Quality focal loss (GFL) per element: BCE against a soft target, weighted by |p - t|^beta."""
    p = logits.sigmoid()
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none") * (
        p.detach() - target
    ).abs().pow(beta)


def dfl_loss(pred: torch.Tensor, target: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss: ``pred [K, 4, reg_max]`` logits, ``target [K, 4]`` in bins -> ``[K]``."""
    target = target.clamp(0, reg_max - 1 - 0.01)
    tl = target.long()
    tr = tl + 1
    wl = tr.float() - target
    wr = 1 - wl
    logp = pred.log_softmax(-1)
    loss = -(
        logp.gather(-1, tl[..., None]).squeeze(-1) * wl
        + logp.gather(-1, tr[..., None]).squeeze(-1) * wr
    )
    return loss.mean(-1)


class DetectionLoss:
    """Loss of `EdgeDet` outputs against padded ground truth.

    ``cls_loss``: ``"bce"`` (BCE against the assigner's quality targets), ``"vfl"`` (varifocal) or
    ``"qfl"`` (quality focal). ``box_loss``: ``"ciou"`` or ``"giou"``. ``class_weights`` (C,)
    multiply each class's classification term (and the box terms of its positives).
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        reg_max: int = 16,
        *,
        cls_loss: str = "bce",
        box_loss: str = "ciou",
        gains: tuple[float, float, float] = (7.5, 0.5, 1.5),
        class_weights: torch.Tensor | None = None,
        assigner: TaskAlignedAssigner | None = None,
    ):
        if cls_loss not in ("bce", "vfl", "qfl"):
            raise ValueError(f"cls_loss must be 'bce', 'vfl' or 'qfl', got {cls_loss!r}")
        if box_loss not in ("ciou", "giou"):
            raise ValueError(f"box_loss must be 'ciou' or 'giou', got {box_loss!r}")
        self.nc, self.strides, self.reg_max = num_classes, tuple(strides), reg_max
        self.cls_kind, self.box_kind = cls_loss, box_loss
        self.gains = gains
        self.class_weights = class_weights
        self.assigner = assigner or TaskAlignedAssigner()

    def __call__(
        self,
        levels: Sequence[tuple[torch.Tensor, torch.Tensor]],
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``levels`` from `EdgeDet.forward`; ``gt_* [B, M, ...]`` padded, boxes xyxy in input px.

        Returns ``(loss, parts)``; ``loss`` is summed over the batch (multiply-free: the gains
        include the batch scaling convention of YOLOv8, loss = mean * batch)."""
        box_raw, cls_raw = flatten_outputs(levels)
        b, n, _ = cls_raw.shape
        hw = [(int(bx.shape[2]), int(bx.shape[3])) for bx, _ in levels]
        anchors, stride = make_anchors(hw, self.strides, cls_raw.device)
        box_raw, cls_raw = box_raw.float(), cls_raw.float()
        dist = dfl_expectation(box_raw, self.reg_max)  # stride units
        pd_boxes = torch.cat(
            [anchors - dist[..., :2] * stride, anchors + dist[..., 2:] * stride], -1
        )
        a = self.assigner(
            cls_raw.detach().sigmoid(), pd_boxes.detach(), anchors, gt_labels, gt_boxes, gt_mask
        )
        t_scores = a.scores
        norm = max(float(t_scores.sum()), 1.0)
        if self.cls_kind == "bce":
            lc = F.binary_cross_entropy_with_logits(cls_raw, t_scores, reduction="none")
        elif self.cls_kind == "vfl":
            lc = varifocal_loss(cls_raw, t_scores)
        else:
            lc = quality_focal_loss(cls_raw, t_scores)
        cw = self.class_weights
        if cw is not None:
            lc = lc * cw.to(lc.device)
        loss_cls = lc.sum() / norm
        fg = a.fg
        if bool(fg.any()):
            weight = t_scores.sum(-1)[fg]
            if cw is not None:
                weight = weight * cw.to(weight.device)[a.labels[fg]]
            iou = bbox_iou(pd_boxes[fg], a.boxes[fg], self.box_kind)
            loss_box = ((1.0 - iou) * weight).sum() / norm
            st = stride.expand(b, n, 1)[fg]  # [K, 1]
            anc = anchors[None].expand(b, n, 2)[fg]
            tb = a.boxes[fg]
            target = torch.cat([anc - tb[:, :2], tb[:, 2:] - anc], -1) / st
            lf = dfl_loss(box_raw[fg].view(-1, 4, self.reg_max), target, self.reg_max)
            loss_dfl = (lf * weight).sum() / norm
        else:
            loss_box = box_raw.sum() * 0.0
            loss_dfl = box_raw.sum() * 0.0
        gb, gc, gd = self.gains
        total = (gb * loss_box + gc * loss_cls + gd * loss_dfl) * b
        parts = {"box": loss_box.item(), "cls": loss_cls.item(), "dfl": loss_dfl.item()}
        return total, parts
