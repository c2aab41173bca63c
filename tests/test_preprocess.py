"""Letterbox geometry, the input/original coordinate round trip, `Preprocessor` values and
`as_bgr_image` validation."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedet.errors import InvalidInputError
from edgedet.meta import ModelMeta
from edgedet.preprocess import MAX_SIDE, LetterboxMeta, Preprocessor, as_bgr_image, letterbox

STYLES = ("center", "topleft", "stretch")


# -- letterbox shapes and padding ------------------------------------------------------------


def test_letterbox_center_pads_both_sides_equally() -> None:
    img = np.full((480, 640, 3), 7, np.uint8)
    out, lb = letterbox(img, (640, 640), "center", pad_value=114)
    assert out.shape == (640, 640, 3) and out.dtype == np.uint8
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (1.0, 1.0, 0.0, 80.0)
    assert lb.original_hw == (480, 640) and lb.input_hw == (640, 640)
    assert np.all(out[:80] == 114) and np.all(out[560:] == 114)
    assert np.all(out[80:560] == 7)


def test_letterbox_center_odd_padding_uses_ultralytics_rounding() -> None:
    # 100×200 into 64×64: resized 32×64, 32 rows of padding -> 16 top, 16 bottom.
    # 100×190 into 64×64: r = 64/190, resized 34×64 (33.68 rounds up), 30 rows -> 15 / 15.
    # 100×210 into 64×64: resized 30×64, 34 rows -> 17 / 17.  And 3 rows of padding: 1 / 2.
    for (h, w), top, nh in [((100, 200), 16, 32), ((100, 190), 15, 34), ((100, 210), 17, 30)]:
        out, lb = letterbox(np.full((h, w, 3), 9, np.uint8), (64, 64), "center", pad_value=0)
        assert lb.pad_y == top and lb.pad_x == 0
        rows = np.nonzero(out[:, 32, 0])[0]
        assert rows[0] == top and len(rows) == nh
    out, lb = letterbox(np.full((61, 64, 3), 9, np.uint8), (64, 64), "center", pad_value=0)
    assert lb.pad_y == 1  # round(1.5 - 0.1) = 1: the extra row goes to the bottom
    assert out[0, 0, 0] == 0 and out[1, 0, 0] == 9 and out[61, 0, 0] == 9 and out[62, 0, 0] == 0


def test_letterbox_topleft_pads_right_and_bottom() -> None:
    img = np.full((300, 600, 3), 5, np.uint8)
    out, lb = letterbox(img, (416, 416), "topleft", pad_value=114)
    assert out.shape == (416, 416, 3)
    assert (lb.pad_x, lb.pad_y) == (0.0, 0.0)
    assert lb.scale_x == pytest.approx(416 / 600) and lb.scale_y == pytest.approx(208 / 300)
    assert np.all(out[:208] == 5) and np.all(out[208:] == 114)


def test_letterbox_stretch_has_no_padding() -> None:
    img = np.full((100, 300, 3), 200, np.uint8)
    out, lb = letterbox(img, (320, 160), "stretch")
    assert out.shape == (320, 160, 3) and np.all(out == 200)
    assert (lb.pad_x, lb.pad_y) == (0.0, 0.0)
    assert lb.scale_x == pytest.approx(160 / 300) and lb.scale_y == pytest.approx(320 / 100)


def test_letterbox_same_size_is_a_copy() -> None:
    img = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    out, lb = letterbox(img, (32, 48))
    np.testing.assert_array_equal(out, img)
    assert out is not img
    assert (lb.scale_x, lb.scale_y, lb.pad_x, lb.pad_y) == (1.0, 1.0, 0.0, 0.0)


def test_letterbox_tiny_image_does_not_collapse() -> None:
    out, lb = letterbox(np.zeros((1, 500, 3), np.uint8), (64, 64), "topleft")
    assert out.shape == (64, 64, 3) and lb.scale_y > 0


def test_letterbox_rejects_unknown_style() -> None:
    with pytest.raises(InvalidInputError, match="letterbox style must be one of"):
        letterbox(np.zeros((8, 8, 3), np.uint8), (16, 16), "centre")


# -- coordinate round trips ------------------------------------------------------------------

sizes = st.integers(1, 1200)
in_sizes = st.sampled_from([32, 64, 96, 320, 416, 480, 640])


@settings(max_examples=80, deadline=None)
@given(
    h=sizes,
    w=sizes,
    th=in_sizes,
    tw=in_sizes,
    style=st.sampled_from(STYLES),
    frac=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_to_input_to_original_round_trip(
    h: int, w: int, th: int, tw: int, style: str, frac: list[float]
) -> None:
    _, lb = letterbox(np.zeros((h, w, 3), np.uint8), (th, tw), style)
    x1, x2 = sorted((frac[0] * w, frac[1] * w))
    y1, y2 = sorted((frac[2] * h, frac[3] * h))
    box = np.array([[x1, y1, x2, y2]], np.float32)
    inp = lb.to_input(box)
    # the box lands inside the input image
    assert inp[0, 0] >= -1e-3 and inp[0, 2] <= tw + 1e-3
    assert inp[0, 1] >= -1e-3 and inp[0, 3] <= th + 1e-3
    back = lb.to_original(inp)
    tol = 1e-5 * max(h, w, 1) + 1e-3
    np.testing.assert_allclose(back, box, atol=tol)
    # the whole image maps onto the unpadded region
    full = lb.to_input(np.array([[0, 0, w, h]], np.float32))[0]
    assert full[0] == pytest.approx(lb.pad_x) and full[1] == pytest.approx(lb.pad_y)
    if style == "stretch":
        np.testing.assert_allclose(full, [0, 0, tw, th], atol=1e-3)


def test_to_original_clips_to_image() -> None:
    lb = LetterboxMeta(0.5, 0.5, 10.0, 20.0, (100, 200), (64, 128))
    out = lb.to_original(np.array([[0, 0, 200, 200]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 200, 100]])
    assert out.dtype == np.float32
    assert lb.to_original(np.zeros((0, 4), np.float32)).shape == (0, 4)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(40, 700),
    w=st.integers(40, 700),
    th=st.sampled_from([160, 256, 320]),
    tw=st.sampled_from([160, 256, 320]),
    style=st.sampled_from(STYLES),
    frac=st.lists(st.floats(0.05, 0.95), min_size=4, max_size=4),
)
def test_drawn_rectangle_lands_at_to_input(
    h: int, w: int, th: int, tw: int, style: str, frac: list[float]
) -> None:
    x1, x2 = sorted(round(f * w) for f in frac[:2])
    y1, y2 = sorted(round(f * h) for f in frac[2:])
    # make the rectangle at least 5 input pixels big on each axis, so it survives downscaling
    r = min(th / h, tw / w)
    rx, ry = (tw / w, th / h) if style == "stretch" else (r, r)
    min_w, min_h = min(w, math.ceil(5 / rx) + 1), min(h, math.ceil(5 / ry) + 1)
    x1, y1 = min(x1, w - min_w), min(y1, h - min_h)
    x2, y2 = max(x2, x1 + min_w), max(y2, y1 + min_h)
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    img = np.zeros((h, w, 3), np.uint8)
    img[y1:y2, x1:x2] = 255  # covers the continuous box [x1, x2] × [y1, y2]
    out, lb = letterbox(img, (th, tw), style, pad_value=0)
    expected = lb.to_input(np.array([[x1, y1, x2, y2]], np.float32))[0]
    ys, xs = np.nonzero(out[:, :, 0] >= 128)
    assert xs.size > 0
    got = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(got, expected, atol=1.5)


# -- Preprocessor ----------------------------------------------------------------------------


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def test_preprocessor_rgb_scale_nchw_by_hand() -> None:
    img = _image()
    meta = ModelMeta(family="yolov8", color="RGB", scale=1 / 255, layout="NCHW")
    batch, metas = Preprocessor(meta, (24, 32))([img])
    assert batch.shape == (1, 3, 24, 32) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"]
    assert len(metas) == 1 and metas[0].original_hw == (24, 32)
    b, g, r = (int(v) for v in img[5, 7])
    np.testing.assert_allclose(batch[0, :, 5, 7], [r / 255, g / 255, b / 255], rtol=1e-6)
    np.testing.assert_allclose(batch[0], img[:, :, ::-1].transpose(2, 0, 1) / 255, rtol=1e-6)


def test_preprocessor_bgr_mean_std_nhwc_by_hand() -> None:
    img = _image()
    mean, std = (103.53, 116.28, 123.675), (57.375, 57.12, 58.395)
    meta = ModelMeta(family="nanodet", color="BGR", scale=1.0, mean=mean, std=std, layout="NHWC")
    batch, _ = Preprocessor(meta, (24, 32))([img, img])
    assert batch.shape == (2, 24, 32, 3) and batch.dtype == np.float32
    px = img[10, 20].astype(np.float64)
    expected = (px - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(batch[0, 10, 20], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(batch[0], batch[1])
    full = (img.astype(np.float64) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(batch[0], full, rtol=1e-5, atol=1e-5)


def test_preprocessor_mean_std_in_model_channel_order() -> None:
    # A pure blue BGR pixel; the model wants RGB with per-channel mean/std given in RGB order.
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, :, 0] = 255  # blue in BGR
    meta = ModelMeta(
        family="yolov8", color="RGB", scale=1 / 255, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0)
    )
    batch, _ = Preprocessor(meta, (8, 8))([img])
    # R = 0, G = 0, B = 1
    np.testing.assert_allclose(
        batch[0, :, 0, 0], [(0 - 0.1) / 0.5, (0 - 0.2) / 0.25, (1 - 0.3) / 2.0], rtol=1e-6
    )


def test_preprocessor_padding_value_and_letterbox_meta() -> None:
    img = np.full((20, 40, 3), 255, np.uint8)
    meta = ModelMeta(family="yolov8", letterbox="center", pad_value=114, scale=1 / 255)
    batch, metas = Preprocessor(meta, (40, 40))([img])
    assert metas[0].pad_y == 10 and metas[0].scale_x == 1.0
    np.testing.assert_allclose(batch[0, :, 0, 0], [114 / 255] * 3, rtol=1e-6)
    np.testing.assert_allclose(batch[0, :, 20, 20], [1.0] * 3, rtol=1e-6)
    meta_tl = meta.replace(letterbox="topleft", pad_value=0, color="BGR", scale=1.0)
    batch, metas = Preprocessor(meta_tl, (40, 40))([img])
    assert metas[0].pad_y == 0
    assert batch[0, 0, 0, 0] == 255 and batch[0, 0, 39, 0] == 0


def test_preprocessor_accepts_grayscale_and_bgra() -> None:
    meta = ModelMeta(family="yolov8", color="BGR", scale=1.0)
    gray = np.full((16, 16), 77, np.uint8)
    bgra = np.dstack([np.full((16, 16, 3), 50, np.uint8), np.zeros((16, 16), np.uint8)])
    batch, metas = Preprocessor(meta, (16, 16))([gray, bgra])
    assert np.all(batch[0] == 77) and np.all(batch[1] == 50)
    assert len(metas) == 2


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_preprocessor_batch_equals_single_images(layout: str) -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (64, 20, 3), dtype=np.uint8)
    meta = ModelMeta(family="yolov8", layout=layout, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    pre = Preprocessor(meta, (32, 32))
    batch, metas = pre([a, b])
    single_a, (meta_a,) = pre([a])
    single_b, (meta_b,) = pre([b])
    np.testing.assert_allclose(batch[0], single_a[0], rtol=1e-6)
    np.testing.assert_allclose(batch[1], single_b[0], rtol=1e-6)
    assert metas == [meta_a, meta_b] and meta_a != meta_b
    # and both equal the letterboxed, colour-swapped image normalised by hand
    boxed, _ = pre.fit(b)
    by_hand = (boxed / 255.0 - np.array(meta.mean)) / np.array(meta.std)
    if layout == "NCHW":
        by_hand = by_hand.transpose(2, 0, 1)
    np.testing.assert_allclose(batch[1], by_hand, rtol=1e-5, atol=1e-5)


def test_preprocessor_rejects_no_images() -> None:
    meta = ModelMeta(family="yolov8")
    with pytest.raises(InvalidInputError, match="no images to preprocess"):
        Preprocessor(meta, (32, 32))([])


def test_preprocessor_fit_returns_model_colour_order() -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 200  # red in BGR
    meta = ModelMeta(family="yolov8", color="RGB")
    boxed, lb = Preprocessor(meta, (8, 8)).fit(img)
    assert boxed.dtype == np.uint8 and np.all(boxed[..., 0] == 200) and np.all(boxed[..., 2] == 0)
    assert isinstance(lb, LetterboxMeta)


# -- as_bgr_image ----------------------------------------------------------------------------


def test_as_bgr_image_grayscale_to_three_channels() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for img in (gray, gray[:, :, None]):
        out = as_bgr_image(img)
        assert out.shape == (3, 4, 3) and out.dtype == np.uint8
        for c in range(3):
            np.testing.assert_array_equal(out[:, :, c], gray)


def test_as_bgr_image_drops_alpha() -> None:
    rng = np.random.default_rng(4)
    bgra = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    out = as_bgr_image(bgra)
    assert out.shape == (5, 6, 3)
    np.testing.assert_array_equal(out, bgra[:, :, :3])


def test_as_bgr_image_makes_views_contiguous() -> None:
    img = np.random.default_rng(5).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    view = img[::2, ::-1]
    out = as_bgr_image(view)
    assert out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, view)
    gray_view = img[:, ::2, 0]
    assert as_bgr_image(gray_view).shape == (10, 6, 3)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4, 3), np.uint16), r"image dtype must be uint8, got uint16$"),
        (np.zeros((4, 4, 3), np.float32), r"image dtype must be uint8, got float32 \(scale 0-1"),
        (np.zeros((4, 4, 3), np.int64), r"image dtype must be uint8, got int64"),
        (np.full((4, 4, 3), np.nan, np.float32), r"image contains NaN or inf values \(float32\)"),
        (np.full((4, 4, 3), np.inf, np.float64), r"image contains NaN or inf values"),
        (np.zeros((1, 4, 4, 3), np.uint8), r"must have shape H×W×3 .*got shape \(1, 4, 4, 3\)"),
        (np.zeros((16,), np.uint8), r"must have shape H×W×3 .*got shape \(16,\)"),
        (np.zeros((4, 4, 2), np.uint8), r"must have 1, 3 or 4 channels, got 2 \(shape \(4, 4, 2\)"),
        (np.zeros((4, 4, 5), np.uint8), r"must have 1, 3 or 4 channels, got 5"),
        (np.zeros((0, 0, 3), np.uint8), r"image is empty: shape \(0, 0, 3\)"),
        (np.zeros((0, 5), np.uint8), r"image is empty"),
        (np.zeros((1, MAX_SIDE + 1), np.uint8), r"largest side edgedet accepts is 32767"),
    ],
    ids=[
        "uint16",
        "float32",
        "int64",
        "nan",
        "inf",
        "rank4",
        "rank1",
        "2ch",
        "5ch",
        "0x0",
        "0xW",
        "too-large",
    ],
)
def test_as_bgr_image_rejects(image: np.ndarray, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        as_bgr_image(image)


@pytest.mark.parametrize("image", [[[0, 0, 0]], "cat.jpg", None, 3.0])
def test_as_bgr_image_rejects_non_arrays(image: object) -> None:
    with pytest.raises(InvalidInputError, match=r"image must be a numpy array .* got"):
        as_bgr_image(image)


def test_invalid_input_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        as_bgr_image(np.zeros((2, 2, 3), np.float64))


def test_cv2_reads_what_as_bgr_image_expects(tmp_path: object) -> None:
    # an image round-tripped through cv2's PNG codec comes back as valid BGR input
    img = np.random.default_rng(6).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(as_bgr_image(decoded), img)


@pytest.mark.parametrize("style", ["center", "topleft"])
def test_letterbox_equals_resize_then_pad(style: str) -> None:
    # letterbox resizes into the canvas in place; it must equal resize + copyMakeBorder.
    rng = np.random.default_rng(11)
    for _ in range(100):
        h, w = (int(v) for v in rng.integers(1, 900, 2))
        th, tw = (int(v) for v in rng.integers(8, 700, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out, lb = letterbox(img, (th, tw), style, 114)
        nw, nh = round(lb.scale_x * w), round(lb.scale_y * h)
        top, left = int(lb.pad_y), int(lb.pad_x)
        ref = (
            img if (nw, nh) == (w, h) else cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
        )
        ref = cv2.copyMakeBorder(
            ref,
            top,
            th - nh - top,
            left,
            tw - nw - left,
            cv2.BORDER_CONSTANT,
            value=(114, 114, 114),
        )
        np.testing.assert_array_equal(out, ref)
