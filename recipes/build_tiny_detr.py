"""Train the tiny DETR-layout test model (`tests/detr_models.py`) on synthetic road scenes.

Writes ``tests/assets/tiny_detr_state.npz`` (float16 weights), from which the tests export
each DETR output layout to ONNX in seconds. Run from the repository root, niced and under the
shared lock on a shared machine (190 s on 2 CPU cores; 12 epochs of 1,200 scenes, 900 steps):

    flock /tmp/edgedet-heavy.lock nice -n 15 python recipes/build_tiny_detr.py

Training mirrors a DETR's: the query-selection heads (every cell) are trained one-to-many
(every cell whose centre lies in an object, quality focal loss against the IoU of its box), the
refined heads one-to-one (per object the single cell with the best score^0.5 x IoU^6, the
matching cost of YOLOv10's one-to-one head; DETR's Hungarian matching plays that role), so the
decoded queries need no NMS; boxes by L1 + GIoU. Mean loss per epoch is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TRAIN_SEED = 1
TRAIN_N = 1200


def labels(scenes: list, imgsz: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per scene: boxes cxcywh in 0..1 [M, 4] and class ids [M]."""
    out = []
    for sc in scenes:
        b = sc.xyxy.astype(np.float32) / imgsz
        cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                           b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)  # fmt: skip
        out.append((cxcywh, sc.class_ids.astype(np.int64)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--n", type=int, default=TRAIN_N)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from edgedet.data.synthetic import make_scenes
    from tests import detr_models as dm

    torch.manual_seed(0)
    torch.set_num_threads(2)
    scenes = make_scenes(args.n, TRAIN_SEED, (dm.IMGSZ, dm.IMGSZ))
    images = np.stack([sc.image[..., ::-1] for sc in scenes]).astype(np.float32) / 255  # RGB 0..1
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    gts = labels(scenes, dm.IMGSZ)

    model = dm.build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = args.epochs * (args.n // 16)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)

    def cxcywh_xyxy(b: torch.Tensor) -> torch.Tensor:
        return torch.cat([b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2], -1)

    def giou_iou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # written out: torchvision (generalized_box_iou_loss) is not an edgedet dependency
        a, b = cxcywh_xyxy(a), cxcywh_xyxy(b)
        lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        area = lambda t: (t[:, 2:] - t[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
        union = area(a) + area(b) - inter
        hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).prod(-1)
        iou = inter / union.clamp(min=1e-7)
        return iou - (hull - union) / hull.clamp(min=1e-7), iou

    def quality_focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # GFL's quality focal loss: BCE against a soft (IoU) target, scaled by |p - target|^2
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return (ce * (p - target).abs().pow(2)).sum()

    centers = model.anchors.sigmoid()[0, :, :2]  # (N, 2) cell centres in 0..1

    def pair_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """IoU of every box of a [N, 4] with every box of b [M, 4] (cxcywh) -> [M, N]."""
        a, b = cxcywh_xyxy(a), cxcywh_xyxy(b)
        lt = torch.max(a[None, :, :2], b[:, None, :2])
        rb = torch.min(a[None, :, 2:], b[:, None, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)
        area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
        area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
        return inter / (area_a[None] + area_b[:, None] - inter).clamp(min=1e-7)

    def assign_and_loss(score, enc_box, logits, boxes, batch) -> torch.Tensor:
        """One-to-many for the query-selection heads (every cell whose centre lies in an object,
        soft IoU targets), one-to-one for the refined heads (per object the one cell with the best
        score^0.5 * IoU^6 among those, as YOLOv10's one-to-one head / DETR matching)."""
        t_enc = torch.zeros_like(score)
        t_dec = torch.zeros_like(logits)
        enc_pred, enc_gt, enc_w, dec_pred, dec_gt = [], [], [], [], []
        g = dm.IMGSZ // dm.STRIDE
        for i, (gb, gc) in enumerate(batch):
            if len(gc) == 0:
                continue
            gb_t, gc_t = torch.from_numpy(gb), torch.from_numpy(gc)
            xyxy = cxcywh_xyxy(gb_t)
            cx, cy = centers[None, :, 0], centers[None, :, 1]
            inside = (cx > xyxy[:, None, 0]) & (cx < xyxy[:, None, 2]) & (cy > xyxy[:, None, 1]) & (cy < xyxy[:, None, 3])
            cell = (gb_t[:, 1] * g).long().clamp(0, g - 1) * g + (gb_t[:, 0] * g).long().clamp(0, g - 1)
            m = torch.arange(len(gc))
            inside[m, cell] = True  # the centre cell always counts
            with torch.no_grad():
                iou_enc = pair_iou(enc_box[i], gb_t) * inside  # [M, N]
                iou_dec = pair_iou(boxes[i], gb_t) * inside
                p = torch.sigmoid(logits[i][:, gc_t]).T  # [M, N]
                metric = p.sqrt() * iou_dec.pow(6) + 1e-9 * inside
                best = metric.argmax(1)  # [M]
            t_enc[i].index_put_((torch.arange(g * g)[None].expand_as(inside)[inside], gc_t[:, None].expand_as(inside)[inside]),
                                iou_enc[inside], accumulate=False)
            t_dec[i, best, gc_t] = iou_dec[m, best].clamp(min=0.2)
            gm, cells = inside.nonzero(as_tuple=True)
            enc_pred.append(enc_box[i, cells])
            enc_gt.append(gb_t[gm])
            enc_w.append(1.0 / inside.sum(1)[gm])
            dec_pred.append(boxes[i, best])
            dec_gt.append(gb_t)
        npos = max(sum(len(t) for t in dec_gt), 1)
        loss = (quality_focal(score, t_enc) + quality_focal(logits, t_dec)) / npos
        if dec_gt:
            w = torch.cat(enc_w)
            for pred, gt, wt in ((torch.cat(enc_pred), torch.cat(enc_gt), w),
                                 (torch.cat(dec_pred), torch.cat(dec_gt), None)):  # fmt: skip
                gi, _ = giou_iou(pred, gt)
                per = 5 * (pred - gt).abs().sum(-1) + 2 * (1 - gi)
                loss = loss + (per * wt if wt is not None else per).sum() / npos
        return loss

    t0 = time.time()
    model.train()
    step = 0
    for epoch in range(args.epochs):
        perm = torch.randperm(args.n)
        total = 0.0
        for k in range(0, args.n - 15, 16):
            idx = perm[k : k + 16]
            x = x_all[idx]
            batch = [gts[int(i)] for i in idx]
            if torch.rand(()) < 0.5:  # horizontal flip
                x = x.flip(-1)
                batch = [(np.concatenate([1 - b[:, :1], b[:, 1:]], 1), c) for b, c in batch]
            f, score, box_logit = model.dense(x)
            logits, boxes = model.heads(f, box_logit)
            loss = assign_and_loss(score, torch.sigmoid(box_logit), logits, boxes, batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += float(loss)
        print(f"epoch {epoch + 1}/{args.epochs} loss {total / (args.n // 16):.3f} "
              f"{time.time() - t0:.0f}s", flush=True)  # fmt: skip
    model.eval()
    out = dm.save_state(model, args.out or dm.STATE)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KB) in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
