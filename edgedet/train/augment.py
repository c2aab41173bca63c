"""Training augmentation that keeps boxes right: mosaic, mixup, copy-paste, affine, HSV, flips.

Everything works on numpy: ``img`` BGR uint8 (H, W, 3), ``boxes`` float32 (N, 4) xyxy in pixels,
``cls`` int64 (N,). Each transform takes an explicit ``numpy.random.Generator`` so a training run
is reproducible from its seed (and resumable: the generator state is checkpointed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

PAD = 114

Labelled = tuple[np.ndarray, np.ndarray, np.ndarray]  # img, boxes, cls


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges. ``scale`` is the +- range of the zoom (0.5 -> 0.5x..1.5x)."""

    mosaic: float = 1.0
    mixup: float = 0.0
    copy_paste: float = 0.0
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    fliplr: float = 0.5
    flipud: float = 0.0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def epoch_order(n: int, seed: int, epoch: int, repeat: np.ndarray | None = None) -> np.ndarray:
    """The sample order of one epoch, shared by the trainer and the distiller: a permutation of
    ``n`` indices from ``(seed, epoch)``; with ``repeat`` (per-sample factors), images holding
    rare classes repeated."""
    rng = np.random.Generator(np.random.PCG64([seed, epoch, 7]))
    if repeat is None:
        return rng.permutation(n)
    # repeat factor r: floor(r) copies plus one more with probability frac(r)
    base = np.floor(repeat).astype(np.int64)
    extra = rng.random(n) < (repeat - base)
    idx = np.repeat(np.arange(n), base + extra)
    return rng.permutation(idx)


def sample_rng(seed: int, epoch: int, pos: int) -> np.random.Generator:
    """The generator of the sample at position ``pos`` of epoch ``epoch``: augmentation is a
    function of (seed, epoch, position), so a resumed run sees the same batches."""
    return np.random.Generator(np.random.PCG64([seed, epoch, pos, 11]))


def resize_keep_ratio(
    img: np.ndarray, boxes: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the long side is ``size`` (aspect kept), boxes scaled with it."""
    h, w = img.shape[:2]
    r = size / max(h, w)
    if r != 1:
        interp = cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA
        img = cv2.resize(img, (max(1, round(w * r)), max(1, round(h * r))), interpolation=interp)
        boxes = boxes * np.float32(r)
    return img, boxes.astype(np.float32)


def letterbox(
    img: np.ndarray, boxes: np.ndarray, out_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, float, tuple[float, float]]:
    """Centred letterbox to ``out_hw`` with pad 114 (the sample's ModelMeta): img, boxes, scale, (dx, dy)."""
    h, w = img.shape[:2]
    oh, ow = out_hw
    r = min(oh / h, ow / w)
    nh, nw = round(h * r), round(w * r)
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dx, dy = (ow - nw) / 2, (oh - nh) / 2
    top, left = round(dy - 0.1), round(dx - 0.1)
    out = np.full((oh, ow, 3), PAD, np.uint8)
    out[top : top + nh, left : left + nw] = img
    b = boxes * np.float32(r) + np.array([left, top, left, top], np.float32)
    return out, b.astype(np.float32), r, (float(left), float(top))


def affine_matrix(
    rng: np.random.Generator,
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    cfg: AugmentConfig,
    border: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """A random 2x3 affine: centre, rotate+scale, shear, translate into ``out_hw``."""
    h, w = in_hw
    oh, ow = out_hw
    c = np.eye(3)
    c[0, 2], c[1, 2] = -w / 2, -h / 2
    r = np.eye(3)
    a = rng.uniform(-cfg.degrees, cfg.degrees)
    s = rng.uniform(1 - cfg.scale, 1 + cfg.scale)
    r[:2] = cv2.getRotationMatrix2D((0, 0), a, s)
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    sh[1, 0] = math.tan(math.radians(rng.uniform(-cfg.shear, cfg.shear)))
    t = np.eye(3)
    t[0, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * ow
    t[1, 2] = rng.uniform(0.5 - cfg.translate, 0.5 + cfg.translate) * oh
    m = t @ sh @ r @ c
    return m[:2]


def transform_boxes(boxes: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Boxes through an affine ``m`` (2x3): the box around the 4 transformed corners."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([x1, y1, x2, y1, x2, y2, x1, y2], 1).reshape(-1, 4, 2)
    pts = corners @ m[:, :2].T + m[:, 2]
    return np.concatenate([pts.min(1), pts.max(1)], 1).astype(np.float32)


def filter_boxes(
    old: np.ndarray,
    new: np.ndarray,
    out_hw: tuple[int, int],
    area_ratio: float = 0.2,
    min_side: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clip ``new`` to the image; keep those with sides >= ``min_side`` px that keep at least
    ``area_ratio`` of their (scaled) area. Returns (clipped boxes, keep mask)."""
    h, w = out_hw
    clipped = new.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    nw, nh = new[:, 2] - new[:, 0], new[:, 3] - new[:, 1]
    keep = (bw >= min_side) & (bh >= min_side) & (bw * bh >= area_ratio * np.maximum(nw * nh, 1e-6))
    return clipped.astype(np.float32), keep


def random_affine(
    rng: np.random.Generator,
    img: np.ndarray,
    boxes: np.ndarray,
    cls: np.ndarray,
    out_hw: tuple[int, int],
    cfg: AugmentConfig,
    interp: int = cv2.INTER_LINEAR,
) -> Labelled:
    m = affine_matrix(rng, img.shape[:2], out_hw, cfg)
    out = cv2.warpAffine(img, m, (out_hw[1], out_hw[0]), flags=interp, borderValue=(PAD, PAD, PAD))
    nb = transform_boxes(boxes, m)
    nb, keep = filter_boxes(nb, nb, out_hw)
    return out, nb[keep], cls[keep]


def hsv(
    rng: np.random.Generator, img: np.ndarray, hgain: float, sgain: float, vgain: float
) -> np.ndarray:
    if not (hgain or sgain or vgain):
        return img
    r = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * r[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * r[2], 0, 255).astype(np.uint8)
    out = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(out, cv2.COLOR_HSV2BGR)


def fliplr(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    b = boxes.copy()
    b[:, 0], b[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
    return np.ascontiguousarray(img[:, ::-1]), b


def flipud(img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = img.shape[0]
    b = boxes.copy()
    b[:, 1], b[:, 3] = h - boxes[:, 3], h - boxes[:, 1]
    return np.ascontiguousarray(img[::-1]), b


def mosaic4(
    rng: np.random.Generator,
    items: Sequence[Labelled],
    size: int,
    cfg: AugmentConfig,
    interp: int = cv2.INTER_LINEAR,
) -> Labelled:
    """Four images (each long side ``size``) around a random centre of a 2s x 2s canvas, then a
    random affine crop back to ``size`` x ``size``."""
    s = size
    canvas = np.full((2 * s, 2 * s, 3), PAD, np.uint8)
    xc, yc = (int(rng.uniform(0.5 * s, 1.5 * s)) for _ in range(2))
    all_b, all_c = [], []
    for i, (img, boxes, cls) in enumerate(items):
        h, w = img.shape[:2]
        if i == 0:
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif i == 1:
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif i == 2:
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        off = np.array([x1a - x1b, y1a - y1b] * 2, np.float32)
        b = boxes + off
        # clip to the placed region (parts of the image outside it are not visible)
        b[:, [0, 2]] = b[:, [0, 2]].clip(x1a, x2a)
        b[:, [1, 3]] = b[:, [1, 3]].clip(y1a, y2a)
        orig = boxes[:, 2:] - boxes[:, :2]
        vis = (b[:, 2:] - b[:, :2]).clip(0)
        keep = (vis.prod(1) >= 0.2 * orig.prod(1).clip(1e-6)) & (vis.min(1) >= 2)
        all_b.append(b[keep])
        all_c.append(cls[keep])
    boxes = np.concatenate(all_b).reshape(-1, 4).astype(np.float32)
    cls = np.concatenate(all_c).astype(np.int64)
    return random_affine(rng, canvas, boxes, cls, (s, s), cfg, interp)


def random_zoom(img: np.ndarray, rng: np.random.Generator, pad: int = 114) -> np.ndarray:
    """Zoom in (a random crop of 35-100% of each side) or out (the image on a canvas up to 2x
    larger, ``pad`` grey), with equal odds. BGR uint8 HxWx3 in and out; no labels to move,
    because the teacher labels the result."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        ch, cw = (max(8, int(d * rng.uniform(0.35, 1.0))) for d in (h, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        return img[y : y + ch, x : x + cw].copy()
    f = rng.uniform(1.0, 2.0)
    canvas = np.full((int(h * f), int(w * f), 3), pad, np.uint8)
    y, x = (
        int(rng.integers(0, canvas.shape[0] - h + 1)),
        int(rng.integers(0, canvas.shape[1] - w + 1)),
    )
    canvas[y : y + h, x : x + w] = img
    return canvas


def mosaic_unlabelled(
    imgs: Sequence[np.ndarray], rng: np.random.Generator, side: int = 640
) -> np.ndarray:
    """Distillation's mosaic (no labels to keep, so no padding and no box filtering; the
    teacher labels the result), where `mosaic4` is the trainer's labelled one. Four BGR images in a ``side`` x ``side`` 2x2 grid around a random centre, each resized to
    cover its cell and centre-cropped. More objects, at smaller scales, per training image."""
    cy, cx = (int(side * rng.uniform(0.3, 0.7)) for _ in range(2))
    out = np.empty((side, side, 3), np.uint8)
    cells = [(0, cy, 0, cx), (0, cy, cx, side), (cy, side, 0, cx), (cy, side, cx, side)]
    for img, (y0, y1, x0, x1) in zip(imgs, cells):
        ch, cw = y1 - y0, x1 - x0
        h, w = img.shape[:2]
        s = max(ch / h, cw / w)
        r = cv2.resize(img, (max(cw, round(w * s)), max(ch, round(h * s))))
        oy, ox = (r.shape[0] - ch) // 2, (r.shape[1] - cw) // 2
        out[y0:y1, x0:x1] = r[oy : oy + ch, ox : ox + cw]
    return out


def mixup(rng: np.random.Generator, a: Labelled, b: Labelled) -> Labelled:
    r = rng.beta(32.0, 32.0)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).astype(np.uint8)
    return img, np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def copy_paste(
    rng: np.random.Generator,
    img: np.ndarray,
    boxes: np.ndarray,
    cls: np.ndarray,
    patches: Sequence[tuple[np.ndarray, int]],
    max_paste: int = 3,
) -> Labelled:
    """Paste up to ``max_paste`` object crops (rare classes) where they do not cover a box by
    more than 30%; the pasted crop's box is its full extent."""
    h, w = img.shape[:2]
    img = img.copy()
    blist: list[np.ndarray] = list(boxes)
    clist: list[int] = [int(c) for c in cls]
    for _ in range(int(rng.integers(1, max_paste + 1))):
        if not patches:
            break
        patch, c = patches[int(rng.integers(len(patches)))]
        ph, pw = patch.shape[:2]
        if ph >= h or pw >= w or ph < 2 or pw < 2:
            continue
        x0, y0 = int(rng.integers(0, w - pw)), int(rng.integers(0, h - ph))
        nb = np.array([x0, y0, x0 + pw, y0 + ph], np.float32)
        ok = True
        for b in blist:
            iw = min(b[2], nb[2]) - max(b[0], nb[0])
            ih = min(b[3], nb[3]) - max(b[1], nb[1])
            if iw > 0 and ih > 0 and iw * ih > 0.3 * max((b[2] - b[0]) * (b[3] - b[1]), 1e-6):
                ok = False
                break
        if not ok:
            continue
        img[y0 : y0 + ph, x0 : x0 + pw] = patch
        blist.append(nb)
        clist.append(c)
    return img, np.array(blist, np.float32).reshape(-1, 4), np.array(clist, np.int64)


class Augmenter:
    """Builds one training example: mosaic or a single letterboxed image, optional mixup, copy-paste
    of rare classes, HSV, flips. ``load(i)`` returns image i resized to long side ``size``."""

    def __init__(
        self,
        load: Callable[[int], Labelled],
        n: int,
        size: int,
        cfg: AugmentConfig,
        patches: Sequence[tuple[np.ndarray, int]] = (),
    ):
        self.load, self.n, self.size, self.cfg, self.patches = load, n, size, cfg, list(patches)

    def __call__(self, rng: np.random.Generator, index: int, mosaic_on: bool = True) -> Labelled:
        cfg = self.cfg
        s = self.size
        if mosaic_on and rng.random() < cfg.mosaic:
            idx = [index] + [int(i) for i in rng.integers(0, self.n, 3)]
            img, boxes, cls = mosaic4(rng, [self.load(i) for i in idx], s, cfg)
            if rng.random() < cfg.mixup:
                idx = [int(i) for i in rng.integers(0, self.n, 4)]
                img, boxes, cls = mixup(
                    rng, (img, boxes, cls), mosaic4(rng, [self.load(i) for i in idx], s, cfg)
                )
        else:
            img, boxes, cls = self.load(index)
            img, boxes, _, _ = letterbox(img, boxes, (s, s))
            if cfg.scale or cfg.translate or cfg.degrees or cfg.shear:
                img, boxes, cls = random_affine(rng, img, boxes, cls, (s, s), cfg)
        if self.patches and rng.random() < cfg.copy_paste:
            img, boxes, cls = copy_paste(rng, img, boxes, cls, self.patches)
        img = hsv(rng, img, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
        if rng.random() < cfg.fliplr:
            img, boxes = fliplr(img, boxes)
        if rng.random() < cfg.flipud:
            img, boxes = flipud(img, boxes)
        return img, boxes.astype(np.float32).reshape(-1, 4), cls.astype(np.int64)
