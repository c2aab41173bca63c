"""Task-aligned assigner (TOOD): which cells learn which ground-truth box.

For every ground-truth box, candidate cells are those whose centre lies inside it; each candidate
is scored by ``score^alpha * IoU^beta`` (``score`` = the predicted probability of the box's class,
``IoU`` = predicted box vs ground truth). The ``topk`` best candidates become positives; a cell
claimed by several boxes keeps the one it overlaps most. Class targets are the one-hot class
scaled by the normalised alignment metric (so better-localised cells get higher targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def box_iou_pairwise(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of boxes ``a [..., 4]`` and ``b [..., 4]`` (xyxy), broadcast elementwise."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter + eps)


@dataclass
class Assignment:
    """Targets per cell: ``labels [B, N]``, ``boxes [B, N, 4]`` (input pixels), ``scores [B, N, C]``
    (soft class targets), ``fg [B, N]`` bool."""

    labels: torch.Tensor
    boxes: torch.Tensor
    scores: torch.Tensor
    fg: torch.Tensor


class TaskAlignedAssigner:
    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def __call__(
        self,
        pd_scores: torch.Tensor,
        pd_boxes: torch.Tensor,
        anchors: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_boxes: torch.Tensor,
        gt_mask: torch.Tensor,
    ) -> Assignment:
        """``pd_scores [B, N, C]`` probabilities, ``pd_boxes [B, N, 4]`` xyxy px, ``anchors [N, 2]``
        cell centres px, ``gt_labels [B, M]`` long, ``gt_boxes [B, M, 4]`` xyxy px, ``gt_mask [B, M]``
        bool (padding is False)."""
        b, n, c = pd_scores.shape
        m = gt_boxes.shape[1]
        dev = pd_scores.device
        if m == 0:
            return Assignment(
                torch.zeros(b, n, dtype=torch.long, device=dev),
                torch.zeros(b, n, 4, device=dev),
                torch.zeros(b, n, c, device=dev),
                torch.zeros(b, n, dtype=torch.bool, device=dev),
            )
        # centres inside gt boxes: [B, M, N]
        x, y = anchors[:, 0], anchors[:, 1]
        gb = gt_boxes[:, :, None, :]
        inside = (
            (x > gb[..., 0] + self.eps)
            & (y > gb[..., 1] + self.eps)
            & (x < gb[..., 2] - self.eps)
            & (y < gb[..., 3] - self.eps)
        )
        valid = inside & gt_mask[:, :, None]
        # alignment metric
        overlaps = box_iou_pairwise(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp(
            min=0
        )  # [B, M, N]
        lab = gt_labels.clamp(min=0).long()
        cls_scores = torch.gather(
            pd_scores.transpose(1, 2), 1, lab[:, :, None].expand(b, m, n)
        )  # [B, M, N]
        overlaps = overlaps * valid
        align = cls_scores.pow(self.alpha) * overlaps.pow(self.beta) * valid
        # top-k candidates per gt
        k = min(self.topk, n)
        topv, topi = align.topk(k, dim=2)
        topk_mask = torch.zeros_like(align, dtype=torch.bool)
        topk_mask.scatter_(2, topi, topv > self.eps)
        # a candidate with zero metric (e.g. tiny box, random init) still counts if it is inside:
        # fall back to the nearest-centre cells so that every gt gets at least one positive
        none = topk_mask.sum(2) == 0  # [B, M]
        if bool((none & gt_mask).any()):
            cx = (gt_boxes[..., 0] + gt_boxes[..., 2]) / 2
            cy = (gt_boxes[..., 1] + gt_boxes[..., 3]) / 2
            d = (x - cx[..., None]) ** 2 + (y - cy[..., None]) ** 2  # [B, M, N]
            d = d.masked_fill(~inside, float("inf"))
            near = d.argmin(2, keepdim=True)
            fallback = torch.zeros_like(topk_mask)
            fallback.scatter_(2, near, True)
            fallback &= inside
            topk_mask = torch.where((none & gt_mask)[..., None], fallback, topk_mask)
        pos = topk_mask & valid  # [B, M, N]
        # a cell claimed by several gts keeps the one with the highest IoU
        multi = pos.sum(1, keepdim=True) > 1  # [B, 1, N]
        if bool(multi.any()):
            best = overlaps.argmax(1)  # [B, N]
            one = torch.zeros_like(pos)
            one.scatter_(1, best[:, None, :], True)
            pos = torch.where(multi, one & valid, pos)
        fg = pos.any(1)  # [B, N]
        gt_idx = pos.float().argmax(1)  # [B, N]
        batch = torch.arange(b, device=dev)[:, None]
        labels = lab[batch, gt_idx]  # [B, N]
        boxes = gt_boxes[batch, gt_idx]  # [B, N, 4]
        scores = torch.zeros(b, n, c, device=dev)
        scores.scatter_(2, labels[..., None], 1.0)
        scores = scores * fg[..., None]
        # normalise alignment: per gt, best metric -> best IoU
        align = align * pos
        pos_align = align.amax(2, keepdim=True)
        pos_iou = (overlaps * pos).amax(2, keepdim=True)
        norm = (align * pos_iou / (pos_align + self.eps)).amax(1)  # [B, N]
        # positives from the fallback have metric 0: give them a small positive target
        norm = torch.where(fg & (norm <= self.eps), torch.full_like(norm, 0.1), norm)
        scores = scores * norm[..., None]
        return Assignment(labels, boxes, scores, fg)
