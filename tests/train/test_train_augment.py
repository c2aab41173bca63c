"""Augmentations keep boxes right: boxes drawn as filled rectangles, transformed with the image,
must equal the transformed boxes (property tests)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgedet.train.augment import (  # noqa: E402
    AugmentConfig,
    Augmenter,
    fliplr,
    flipud,
    letterbox,
    mosaic4,
    random_affine,
)

CELL = 16


@st.composite
def scenes(draw: st.DrawFn, base_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 64x64 id image with up to 16 non-overlapping filled boxes (one per 16 px cell)."""
    img = np.zeros((64, 64, 3), np.uint8)
    boxes, cls = [], []
    for k in range(16):
        if not draw(st.booleans()):
            continue
        cy, cx = divmod(k, 4)
        x0 = draw(st.integers(0, CELL - 6))
        y0 = draw(st.integers(0, CELL - 6))
        x1 = draw(st.integers(x0 + 5, CELL))
        y1 = draw(st.integers(y0 + 5, CELL))
        box = (cx * CELL + x0, cy * CELL + y0, cx * CELL + x1, cy * CELL + y1)
        ident = 4 * (base_id + len(boxes)) + 1  # 1..253, never 114 (the pad value)
        img[box[1] : box[3], box[0] : box[2]] = ident
        boxes.append(box)
        cls.append(ident)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(cls, np.int64)


def _check(img: np.ndarray, boxes: np.ndarray, cls: np.ndarray, tol: float) -> None:
    """Each box equals the extent of its pixels; a box touching the border (clipped after a
    rotation) may be larger than what shows, never smaller."""
    h, w = img.shape[:2]
    for b, ident in zip(boxes, cls):
        ys, xs = np.nonzero(img[:, :, 0] == ident)
        assert len(xs), f"box {b} of id {ident} has no pixels left"
        pix = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        clipped = b[0] <= 0 or b[1] <= 0 or b[2] >= w or b[3] >= h
        if clipped:
            assert (pix[:2] >= b[:2] - tol).all() and (pix[2:] <= b[2:] + tol).all(), (pix, b)
        else:
            np.testing.assert_allclose(pix, b, atol=tol, err_msg=f"id {ident}")


@settings(max_examples=25, deadline=None)
@given(scenes(), st.integers(0, 2**31 - 1), st.floats(0, 30), st.floats(0, 0.4), st.floats(0, 0.2))
def test_random_affine_keeps_boxes(scene, seed, degrees, scale, translate) -> None:
    img, boxes, cls = scene
    cfg = AugmentConfig(degrees=degrees, scale=scale, translate=translate)
    out, b, c = random_affine(
        np.random.default_rng(seed), img, boxes, cls, (64, 64), cfg, cv2.INTER_NEAREST
    )
    # rounding of pixel centres vs edges: half a pixel per unit of zoom, plus one for nearest
    _check(out, b, c, tol=1.0 + 0.5 * (1 + scale) * 1.5)


@settings(max_examples=20, deadline=None)
@given(scenes())
def test_flips_and_letterbox_keep_boxes(scene) -> None:
    img, boxes, cls = scene
    _check(*fliplr(img, boxes), cls, tol=0)
    _check(*flipud(img, boxes), cls, tol=0)
    out, b, _, _ = letterbox(img[:, :48], boxes[boxes[:, 2] <= 48], (64, 96))
    assert out.shape == (64, 96, 3)
    _check(out, b, cls[boxes[:, 2] <= 48], tol=0)


@settings(max_examples=15, deadline=None)
@given(scenes(0), scenes(16), scenes(32), scenes(48), st.integers(0, 2**31 - 1))
def test_mosaic_keeps_boxes(a, b, c, d, seed) -> None:
    cfg = AugmentConfig(scale=0.3, translate=0.1)
    out, boxes, cls = mosaic4(np.random.default_rng(seed), [a, b, c, d], 64, cfg, cv2.INTER_NEAREST)
    assert out.shape == (64, 64, 3)
    # a box cut by the mosaic's quadrant border is clipped to what shows; allow the zoom rounding
    _check(out, boxes, cls, tol=2.5)


def test_augmenter_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(0)
    imgs = [
        (
            rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),
            np.array([[4, 4, 30, 30]], np.float32),
            np.array([1]),
        )
    ]
    aug = Augmenter(
        lambda i: imgs[0],
        1,
        64,
        AugmentConfig(mixup=0.5, copy_paste=1.0),
        patches=[(imgs[0][0][:8, :8], 2)],
    )
    x1 = aug(np.random.default_rng(5), 0)
    x2 = aug(np.random.default_rng(5), 0)
    assert all(np.array_equal(p, q) for p, q in zip(x1, x2))
    assert x1[0].shape == (64, 64, 3) and x1[1].shape[1] == 4
