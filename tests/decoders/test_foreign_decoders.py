"""Decoders of foreign families on hand-built raw outputs that encode known boxes.

Each test writes the raw numbers a model of that family would emit for a few known boxes
(grid cell, stride, log sizes, distribution bins ...) and checks the decoded boxes, scores and
classes exactly. Output-shape mismatches must raise `IncompatibleModelError` saying the outputs
do not fit the family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from edgedet.runtimes.base import TensorSpec

from edgedet.decoders import (
    Candidates,
    Family,
    family_names,
    get_family,
    meta_from_family,
    register_family,
)
from edgedet.decoders import base as decoders_base
from edgedet.decoders.base import grid_centers, select_scores
from edgedet.errors import IncompatibleModelError, InvalidInputError
from edgedet.meta import ModelMeta

MISMATCH = "model outputs do not fit family"


def spec(name: str, *shape: int | None) -> TensorSpec:
    return TensorSpec(name, tuple(shape), np.dtype("float32"))


def specs_of(outputs: Mapping[str, np.ndarray]) -> list[TensorSpec]:
    return [spec(k, *v.shape) for k, v in outputs.items()]


def decoder_for(
    family: str,
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int] = (64, 64),
    **meta: Any,
) -> Any:
    m = meta_from_family(family, **meta)
    return get_family(family).make_decoder(m, specs_of(outputs), input_hw)


def decode(
    family: str,
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int] = (64, 64),
    *,
    score_threshold: float = 0.25,
    multi_label: bool = False,
    max_candidates: int = 30000,
    **meta: Any,
) -> list[Candidates]:
    dec = decoder_for(family, outputs, input_hw, **meta)
    return dec(  # type: ignore[no-any-return]
        outputs,
        score_threshold=score_threshold,
        multi_label=multi_label,
        max_candidates=max_candidates,
    )


def by_score(c: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates sorted by descending score (decoders promise no order)."""
    order = np.argsort(-c.scores, kind="stable")
    return c.xyxy[order], c.scores[order], c.class_ids[order]


def check_types(c: Candidates) -> None:
    assert c.xyxy.dtype == np.float32 and c.xyxy.ndim == 2 and c.xyxy.shape[1] == 4
    assert c.scores.dtype == np.float32 and c.scores.shape == (len(c.xyxy),)
    assert c.class_ids.dtype == np.int32 and c.class_ids.shape == (len(c.xyxy),)


# -- shared helpers --------------------------------------------------------------------------


def test_grid_centers_order_and_offset() -> None:
    xy, stride = grid_centers((16, 24), [8, 16], offset=0.5)
    # stride 8: 2 rows × 3 cols, row-major; stride 16: 1 row × 2 cols (ceil)
    assert xy.shape == (8, 2) and stride.tolist() == [8] * 6 + [16] * 2
    np.testing.assert_array_equal(xy[:3], [[4, 4], [12, 4], [20, 4]])
    np.testing.assert_array_equal(xy[3], [4, 12])
    np.testing.assert_array_equal(xy[6:], [[8, 8], [24, 8]])
    xy0, _ = grid_centers((16, 24), [8], offset=0.0)
    np.testing.assert_array_equal(xy0[4], [8, 8])


def test_select_scores() -> None:
    s = np.array([[0.1, 0.9], [0.6, 0.7], [0.2, 0.3], [0.95, 0.0]], np.float32)
    rows, cls, conf = select_scores(s, 0.5, False, 100)
    assert rows.tolist() == [0, 1, 3] and cls.tolist() == [1, 1, 0]
    np.testing.assert_allclose(conf, [0.9, 0.7, 0.95])
    rows, cls, conf = select_scores(s, 0.5, True, 100)
    assert sorted(zip(rows.tolist(), cls.tolist())) == [(0, 1), (1, 0), (1, 1), (3, 0)]
    rows, cls, conf = select_scores(s, 0.5, True, 2)
    assert sorted(conf.tolist()) == pytest.approx([0.9, 0.95])
    rows, _, _ = select_scores(np.zeros((0, 3), np.float32), 0.1, False, 10)
    assert rows.shape == (0,)


# -- YOLOv8 ----------------------------------------------------------------------------------


def yolov8_raw(nc: int = 3, n: int = 10) -> np.ndarray:
    """[1, 4 + nc, N]: anchor 2 is a (90, 30, 110, 70) box of class 1 at 0.9; anchor 7 is a
    (8, 7, 12, 13) box scoring 0.6 for class 2 and 0.55 for class 0; the rest score 0.01."""
    out = np.full((1, 4 + nc, n), 0.01, np.float32)
    out[0, :4, :] = np.array([[5], [5], [2], [2]], np.float32)
    out[0, :4, 2] = [100, 50, 20, 40]
    out[0, 4 + 1, 2] = 0.9
    out[0, :4, 7] = [10, 10, 4, 6]
    out[0, 4 + 2, 7] = 0.6
    out[0, 4 + 0, 7] = 0.55
    return out


@pytest.mark.parametrize("transposed", [False, True])
def test_yolov8_decodes_known_boxes(transposed: bool) -> None:
    raw = yolov8_raw()
    if transposed:
        raw = np.ascontiguousarray(raw.transpose(0, 2, 1))  # [1, N, 4 + nc]
    outputs = {"output0": raw}
    (c,) = decode("yolov8", outputs, class_names=("a", "b", "c"), score_threshold=0.5)
    check_types(c)
    assert not c.nms_done
    xyxy, scores, cls = by_score(c)
    np.testing.assert_allclose(xyxy, [[90, 30, 110, 70], [8, 7, 12, 13]])
    np.testing.assert_allclose(scores, [0.9, 0.6])
    assert cls.tolist() == [1, 2]
    (c,) = decode(
        "yolov8", outputs, class_names=("a", "b", "c"), score_threshold=0.5, multi_label=True
    )
    xyxy, scores, cls = by_score(c)
    np.testing.assert_allclose(scores, [0.9, 0.6, 0.55])
    assert cls.tolist() == [1, 2, 0]
    np.testing.assert_allclose(xyxy[2], [8, 7, 12, 13])


def test_yolov8_threshold_and_max_candidates() -> None:
    outputs = {"output0": yolov8_raw()}
    (c,) = decode("yolov8", outputs, class_names=("a", "b", "c"), score_threshold=0.7)
    assert c.class_ids.tolist() == [1]
    (c,) = decode("yolov8", outputs, class_names=("a", "b", "c"), score_threshold=0.95)
    assert len(c.xyxy) == 0 and c.xyxy.shape == (0, 4)
    (c,) = decode(
        "yolov8", outputs, class_names=("a", "b", "c"), score_threshold=0.0, max_candidates=2
    )
    np.testing.assert_allclose(sorted(c.scores.tolist()), [0.6, 0.9])  # the two best of ten


def test_yolov8_without_names_batch_and_rank2() -> None:
    raw = np.concatenate([yolov8_raw(), yolov8_raw()])  # batch of 2
    outputs = {"output0": raw}
    dec = decoder_for("yolov8", {"output0": raw[:1]})  # no class names: 7 channels < 10 anchors
    assert dec.num_classes == 3
    cands = dec(outputs, score_threshold=0.5)
    assert len(cands) == 2
    for c in cands:
        np.testing.assert_allclose(by_score(c)[0][0], [90, 30, 110, 70])
    (c,) = dec({"output0": raw[0]}, score_threshold=0.5)  # a rank-2 output is one image
    assert len(c.scores) == 2


def test_yolov8_fp16_output_decodes_like_fp32() -> None:
    raw = yolov8_raw()
    raw[0, :4, 2] = [100.3, 50.7, 20.1, 40.3]
    half = raw.astype(np.float16)
    (c16,) = decode("yolov8", {"output0": half}, class_names=("a", "b", "c"), score_threshold=0.5)
    (c32,) = decode(
        "yolov8",
        {"output0": half.astype(np.float32)},
        class_names=("a", "b", "c"),
        score_threshold=0.5,
    )
    check_types(c16)
    np.testing.assert_array_equal(c16.xyxy, c32.xyxy)


@pytest.mark.parametrize(
    ("outputs", "names", "match"),
    [
        (
            {"a": np.zeros((1, 7, 10)), "b": np.zeros((1, 7, 10))},
            ("a", "b", "c"),
            r"'yolov8': expected exactly one output \[B, 4\+nc, N\]",
        ),
        (
            {"a": np.zeros((1, 9, 10))},
            ("a", "b", "c"),
            r"'yolov8': neither axis equals 4 \+ 3 classes",
        ),
        (
            {"a": np.zeros((1, 12, 7))},
            (),
            r"'yolov8': cannot tell classes from anchors; pass class names",
        ),
        ({"a": np.zeros((1, 2, 7, 10))}, ("a",), r"'yolov8': expected a static output of rank 3"),
    ],
)
def test_yolov8_output_mismatch(
    outputs: dict[str, np.ndarray], names: tuple[str, ...], match: str
) -> None:
    with pytest.raises(IncompatibleModelError, match=MISMATCH + ".*" + match.split(":", 1)[1]):
        decoder_for("yolov8", outputs, class_names=names)
    with pytest.raises(IncompatibleModelError, match=match):
        decoder_for("yolov8", outputs, class_names=names)


def test_yolov8_dynamic_output_is_mismatch() -> None:
    m = meta_from_family("yolov8", class_names=("a",))
    with pytest.raises(
        IncompatibleModelError, match=rf"{MISMATCH} 'yolov8'.*output0\[1, 5, None\]"
    ):
        get_family("yolov8").make_decoder(m, [spec("output0", 1, 5, None)], (64, 64))


def test_yolo11_is_an_alias_of_yolov8() -> None:
    (c,) = decode("yolo11", {"output0": yolov8_raw()}, class_names=("a", "b", "c"))
    assert sorted(c.class_ids.tolist()) == [1, 2]


# -- YOLOv5 ----------------------------------------------------------------------------------


def yolov5_raw() -> np.ndarray:
    """[1, 252, 5 + 2]: rows (cx, cy, w, h, obj, p0, p1); 3 anchors × 84 cells of a 64×64
    input at strides 8/16/32, all zero after the first five."""
    rows = np.array(
        [
            [
                [100, 50, 20, 40, 0.9, 0.1, 0.8],  # class 1, 0.72
                [10, 10, 4, 6, 0.4, 1.0, 0.0],  # class 0, 0.4
                [30, 30, 8, 8, 0.2, 1.0, 1.0],  # objectness too low
                [60, 60, 10, 10, 0.9, 0.7, 0.6],  # class 0 0.63, class 1 0.54
                [1, 1, 1, 1, 0.0, 0.0, 0.0],
            ]
        ],
        np.float32,
    )
    return np.concatenate([rows, np.zeros((1, 252 - 5, 7), np.float32)], axis=1)


def test_yolov5_decodes_known_boxes() -> None:
    outputs = {"output": yolov5_raw()}
    (c,) = decode("yolov5", outputs, class_names=("a", "b"), score_threshold=0.3)
    check_types(c)
    xyxy, scores, cls = by_score(c)
    np.testing.assert_allclose(xyxy, [[90, 30, 110, 70], [55, 55, 65, 65], [8, 7, 12, 13]])
    np.testing.assert_allclose(scores, [0.72, 0.63, 0.4], rtol=1e-6)
    assert cls.tolist() == [1, 0, 0]
    (c,) = decode("yolov5", outputs, class_names=("a", "b"), score_threshold=0.5, multi_label=True)
    xyxy, scores, cls = by_score(c)
    np.testing.assert_allclose(scores, [0.72, 0.63, 0.54], rtol=1e-6)
    assert cls.tolist() == [1, 0, 1]
    np.testing.assert_allclose(xyxy[1], xyxy[2])
    (c,) = decode("yolov5", outputs, class_names=("a", "b"), score_threshold=0.3, max_candidates=1)
    np.testing.assert_allclose(c.scores, [0.72], rtol=1e-6)


@pytest.mark.parametrize(
    ("outputs", "names", "match"),
    [
        (
            {"a": np.zeros((1, 5, 7)), "b": np.zeros((1, 5, 7))},
            ("a", "b"),
            r"'yolov5': expected exactly one output \[B, N, 5\+nc\]",
        ),
        ({"a": np.zeros((1, 5, 5))}, ("a",), r"'yolov5': expected an output of shape"),
        ({"a": np.zeros((1, 5, 7, 1))}, ("a",), r"'yolov5': expected an output of shape"),
        (
            {"a": np.zeros((1, 5, 7))},
            ("a", "b", "c"),
            r"'yolov5': the last axis holds 2 classes but the model has 3 class names",
        ),
    ],
)
def test_yolov5_output_mismatch(
    outputs: dict[str, np.ndarray], names: tuple[str, ...], match: str
) -> None:
    with pytest.raises(IncompatibleModelError, match=f"{MISMATCH} {match}"):
        decoder_for("yolov5", outputs, class_names=names)


def test_yolov5_preset_has_coco_names() -> None:
    with pytest.raises(IncompatibleModelError, match="the model has 80 class names"):
        decoder_for("yolov5", {"output": yolov5_raw()})


# -- YOLOX -----------------------------------------------------------------------------------


def yolox_raw(input_hw: tuple[int, int] = (64, 64), nc: int = 2) -> tuple[np.ndarray, int]:
    """Raw YOLOX grid output with one known box: stride 16, cell (row 1, col 2),
    d = (0.5, 0.25), log wh = (log 2, log 1): centre (40, 20), size 32 × 16."""
    h, w = input_hw
    cells = [math.ceil(h / s) * math.ceil(w / s) for s in (8, 16, 32)]
    out = np.zeros((1, sum(cells), 5 + nc), np.float32)
    row = cells[0] + 1 * math.ceil(w / 16) + 2
    out[0, row, :4] = [0.5, 0.25, math.log(2.0), 0.0]
    out[0, row, 4] = 0.9
    out[0, row, 5:] = 0.1
    out[0, row, 5 + 1] = 0.95
    return out, row


def test_yolox_decodes_known_box() -> None:
    raw, _ = yolox_raw()
    (c,) = decode("yolox", {"output": raw}, class_names=("a", "b"), score_threshold=0.3)
    check_types(c)
    np.testing.assert_allclose(c.xyxy, [[24, 12, 56, 28]], atol=1e-5)
    np.testing.assert_allclose(c.scores, [0.9 * 0.95], rtol=1e-6)
    assert c.class_ids.tolist() == [1]


def test_yolox_each_level_and_non_square_input() -> None:
    hw = (96, 64)  # cells 12×8, 6×4, 3×2
    nc = 1
    n = sum(math.ceil(96 / s) * math.ceil(64 / s) for s in (8, 16, 32))
    raw = np.zeros((1, n, 5 + nc), np.float32)
    expected = []
    offset = 0
    for s in (8, 16, 32):
        gh, gw = math.ceil(96 / s), math.ceil(64 / s)
        r, col = gh - 1, gw - 1  # the last cell of each level
        raw[0, offset + r * gw + col] = [0.0, 0.0, 0.0, math.log(3.0), 0.8, 1.0]
        cx, cy = col * s, r * s
        expected.append([cx - s / 2, cy - 3 * s / 2, cx + s / 2, cy + 3 * s / 2])
        offset += gh * gw
    (c,) = decode("yolox", {"output": raw}, hw, class_names=("a",), score_threshold=0.5)
    np.testing.assert_allclose(c.xyxy[np.argsort(c.xyxy[:, 2] - c.xyxy[:, 0])], expected, atol=1e-4)


def test_yolox_decoded_option_reads_cxcywh() -> None:
    raw = np.zeros((1, 3, 7), np.float32)
    raw[0, 1] = [100, 50, 20, 40, 0.9, 0.0, 1.0]
    (c,) = decode("yolox", {"output": raw}, class_names=("a", "b"), options={"decoded": True})
    np.testing.assert_allclose(c.xyxy, [[90, 30, 110, 70]])


def test_yolox_fp16_junk_sizes_stay_finite() -> None:
    raw, row = yolox_raw()
    raw[0, row, 2:4] = 15.0  # a junk log-size: exp(15) × 16 overflows float16
    (c,) = decode(
        "yolox", {"output": raw.astype(np.float16)}, class_names=("a", "b"), score_threshold=0.3
    )
    check_types(c)
    assert np.all(np.isfinite(c.xyxy))


def test_yolox_grid_count_mismatch() -> None:
    raw, _ = yolox_raw()
    with pytest.raises(
        IncompatibleModelError,
        match=rf"{MISMATCH} 'yolox': 84 predictions, but a 32x32 input with strides \[8, 16, 32\] "
        r"has 21 grid cells",
    ):
        decoder_for("yolox", {"output": raw}, (32, 32), class_names=("a", "b"))
    with pytest.raises(IncompatibleModelError, match=rf"{MISMATCH} 'yolox': the last axis holds 2"):
        decoder_for("yolox", {"output": raw})  # the preset has 80 COCO names


# -- NanoDet ---------------------------------------------------------------------------------

BINS = 8  # reg_max 7


def nanodet_outputs(nc: int = 3, input_hw: tuple[int, int] = (64, 64)) -> dict[str, np.ndarray]:
    """Per-level scores [1, N_l, nc] and box logits [1, N_l, 4 × 8]; one known box at stride 8,
    cell (row 3, col 5), centre (44, 28), distances l,t,r,b = bins 2,1,3,4 × 8 -> (28, 20, 68, 60),
    class 2 at 0.8. The output names are deliberately swapped (as in the public NanoDet-m export):
    roles must come from shapes."""
    h, w = input_hw
    outs: dict[str, np.ndarray] = {}
    for i, s in enumerate((8, 16, 32)):
        n = math.ceil(h / s) * math.ceil(w / s)
        cls = np.full((1, n, nc), 0.01, np.float32)
        box = np.zeros((1, n, 4 * BINS), np.float32)
        if s == 8:
            cell = 3 * math.ceil(w / 8) + 5
            cls[0, cell, 2] = 0.8
            logits = np.zeros((4, BINS), np.float32)
            for side, b in enumerate((2, 1, 3, 4)):
                logits[side, b] = 60.0  # one-hot after softmax
            box[0, cell] = logits.ravel()
        outs[f"box_pred_{i}"] = cls  # swapped names on purpose
        outs[f"cls_pred_{i}"] = box
    return outs


def test_nanodet_decodes_known_box() -> None:
    outputs = nanodet_outputs()
    (c,) = decode("nanodet", outputs, class_names=("a", "b", "c"), score_threshold=0.5)
    check_types(c)
    np.testing.assert_allclose(c.xyxy, [[28, 20, 68, 60]], atol=1e-4)
    np.testing.assert_allclose(c.scores, [0.8])
    assert c.class_ids.tolist() == [2]


def test_nanodet_expectation_between_bins_and_center_offset() -> None:
    outputs = nanodet_outputs()
    cell = 3 * 8 + 5
    logits = outputs["cls_pred_0"][0, cell].reshape(4, BINS)
    logits[:] = 0.0
    logits[:, 2] = 60.0
    logits[:, 3] = 60.0  # equal mass on bins 2 and 3: expected distance 2.5 × 8 = 20
    (c,) = decode("nanodet", outputs, class_names=("a", "b", "c"), score_threshold=0.5)
    np.testing.assert_allclose(c.xyxy, [[44 - 20, 28 - 20, 44 + 20, 28 + 20]], atol=1e-3)
    # NanoDet-Plus style priors sit on the cell corner
    (c,) = decode(
        "nanodet",
        outputs,
        class_names=("a", "b", "c"),
        score_threshold=0.5,
        options={"reg_max": 7, "center_offset": 0.0},
    )
    np.testing.assert_allclose(c.xyxy, [[40 - 20, 24 - 20, 40 + 20, 24 + 20]], atol=1e-3)


def test_nanodet_multi_label_and_unbatched_outputs() -> None:
    outputs = {k: v[0] for k, v in nanodet_outputs().items()}  # [N_l, C] without batch axis
    outputs["box_pred_0"][29, 0] = 0.7
    (c,) = decode(
        "nanodet", outputs, class_names=("a", "b", "c"), score_threshold=0.5, multi_label=True
    )
    xyxy, scores, cls = by_score(c)
    np.testing.assert_allclose(scores, [0.8, 0.7])
    assert cls.tolist() == [2, 0]
    np.testing.assert_allclose(xyxy, [[28, 20, 68, 60]] * 2, atol=1e-4)


def test_nanodet_static_batch_of_two() -> None:
    one = nanodet_outputs()
    outputs = {k: np.concatenate([v, v]) for k, v in one.items()}  # [2, N_l, C] static batch
    cands = decode("nanodet", outputs, class_names=("a", "b", "c"), score_threshold=0.5)
    assert len(cands) == 2
    for c in cands:
        np.testing.assert_allclose(c.xyxy, [[28, 20, 68, 60]], atol=1e-4)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("max_candidates", [30000, 7])
def test_nanodet_levels_picked_apart_equal_the_stacked_pick(
    multi_label: bool, max_candidates: int
) -> None:
    """The decoder picks candidates level by level; the result must equal picking on all levels
    stacked (the straightforward reading of the GFL head), including the candidate cap."""
    rng = np.random.default_rng(3)
    outputs = {k: rng.random(v.shape, np.float32) ** 6 for k, v in nanodet_outputs(nc=5).items()}
    for k in outputs:
        if outputs[k].shape[-1] == 4 * BINS:
            outputs[k] = rng.normal(0, 2, outputs[k].shape).astype(np.float32)
    dec = decoder_for("nanodet", outputs, class_names=tuple("abcde"))
    (got,) = dec(
        outputs, score_threshold=0.3, multi_label=multi_label, max_candidates=max_candidates
    )
    cls = np.concatenate([outputs[n][0] for n in dec.cls_names])
    box = np.concatenate([outputs[n][0] for n in dec.box_names])
    rows, cid, conf = select_scores(cls, 0.3, multi_label, max_candidates)
    x = box[rows].reshape(-1, 4, BINS)
    x = np.exp(x - x.max(axis=2, keepdims=True))
    dist = (x / x.sum(axis=2, keepdims=True)) @ np.arange(BINS) * dec.stride[rows, None]
    c = dec.center[rows]
    want = Candidates(np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1), conf, cid)
    assert 0 < len(got.scores) <= max_candidates
    for a, b in zip(by_score(got), by_score(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_nanodet_output_mismatch() -> None:
    good = nanodet_outputs()
    names = ("a", "b", "c")
    bad = dict(good)
    bad["extra"] = np.zeros((1, 50, 3), np.float32)
    with pytest.raises(
        IncompatibleModelError,
        match=rf"{MISMATCH} 'nanodet': output 'extra' has 50 rows, which is no level of a 64x64 "
        r"input with strides \[8, 16, 32\]",
    ):
        decoder_for("nanodet", bad, class_names=names)
    bad = dict(good)
    bad["box_pred_2"] = np.zeros((1, 4, 10), np.float32)
    with pytest.raises(
        IncompatibleModelError,
        match=r"output 'box_pred_2' has width 10: neither 3 classes nor 4×\(reg_max\+1\)=32",
    ):
        decoder_for("nanodet", bad, class_names=names)
    bad = {k: v for k, v in good.items() if not k.endswith("_2")}
    with pytest.raises(
        IncompatibleModelError, match=r"no score and box outputs for strides \[32\]"
    ):
        decoder_for("nanodet", bad, class_names=names)
    bad = dict(good)
    bad["more_scores"] = good["box_pred_0"]
    with pytest.raises(IncompatibleModelError, match=r"two 'cls' outputs for stride 8"):
        decoder_for("nanodet", bad, class_names=names)
    bad = dict(good)
    bad["box_pred_0"] = np.zeros((1, 2, 64, 3), np.float32)
    with pytest.raises(IncompatibleModelError, match=r"output 'box_pred_0' is not \[N, C\]"):
        decoder_for("nanodet", bad, class_names=names)
    with pytest.raises(IncompatibleModelError, match="neither 80 classes"):
        decoder_for("nanodet", good)  # the preset's 80 COCO names do not fit 3 score columns


# -- end-to-end (NMS in the graph) -----------------------------------------------------------


def test_end2end_packed() -> None:
    packed = np.zeros((1, 5, 6), np.float32)  # rows with score 0 are padding
    packed[0, 0] = [10, 20, 30, 40, 0.9, 3]
    packed[0, 1] = [1, 2, 3, 4, 0.3, 0]
    packed[0, 2] = [5, 5, 9, 9, 0.2, 1]
    (c,) = decode("end2end", {"output0": packed}, class_names=("a", "b", "c", "d"))
    check_types(c)
    assert c.nms_done
    np.testing.assert_allclose(c.xyxy, [[10, 20, 30, 40], [1, 2, 3, 4]])
    np.testing.assert_allclose(c.scores, [0.9, 0.3])
    assert c.class_ids.tolist() == [3, 0]
    (c,) = decode("end2end", {"output0": packed}, max_candidates=1, score_threshold=0.0)
    assert c.class_ids.tolist() == [3]
    (c,) = decode("end2end", {"output0": packed[0]}, score_threshold=0.5)  # no batch axis
    assert c.class_ids.tolist() == [3]


def efficient_nms_outputs() -> dict[str, np.ndarray]:
    boxes = np.zeros((2, 4, 4), np.float32)
    scores = np.zeros((2, 4), np.float32)
    classes = np.zeros((2, 4), np.int32)
    boxes[0, :3] = [[0, 0, 10, 10], [5, 5, 20, 20], [7, 7, 8, 8]]
    scores[0, :3] = [0.9, 0.5, 0.8]  # the third is past num_dets: ignored
    classes[0, :3] = [2, 1, 0]
    boxes[1, 0] = [1, 1, 2, 2]
    scores[1, 0] = 0.7
    classes[1, 0] = 4
    return {
        "num_dets": np.array([[2], [1]], np.int32),
        "det_boxes": boxes,
        "det_scores": scores,
        "det_classes": classes,
    }


def test_end2end_efficient_nms_style_outputs() -> None:
    outputs = efficient_nms_outputs()
    first, second = decode("end2end", outputs)
    check_types(first)
    np.testing.assert_allclose(first.xyxy, [[0, 0, 10, 10], [5, 5, 20, 20]])
    np.testing.assert_allclose(first.scores, [0.9, 0.5])
    assert first.class_ids.tolist() == [2, 1]
    assert second.class_ids.tolist() == [4] and second.nms_done


def test_end2end_explicit_output_roles() -> None:
    src = efficient_nms_outputs()
    outputs = {"o1": src["det_boxes"], "o2": src["det_scores"], "o3": src["det_classes"]}
    roles = {"boxes": "o1", "scores": "o2", "classes": "o3"}
    first, _ = decode("end2end", outputs, options={"outputs": roles})
    # no count output: every row above the threshold
    assert first.class_ids.tolist() == [2, 1, 0]
    with pytest.raises(
        IncompatibleModelError, match=rf"{MISMATCH} 'end2end': meta names outputs \['nope'\]"
    ):
        decoder_for("end2end", outputs, options={"outputs": {**roles, "scores": "nope"}})
    with pytest.raises(
        IncompatibleModelError, match=rf"{MISMATCH} 'end2end': options\['outputs'\] must name"
    ):
        decoder_for("end2end", outputs, options={"outputs": {"boxes": "o1", "scores": "o2"}})
    with pytest.raises(IncompatibleModelError, match=r"unknown output roles \['labels'\]"):
        decoder_for("end2end", outputs, options={"outputs": {**roles, "labels": "o3"}})


def test_end2end_unrecognised_outputs() -> None:
    with pytest.raises(
        IncompatibleModelError,
        match=rf"{MISMATCH} 'end2end': expected one \[B, K, 6\] output or boxes/scores/classes",
    ):
        decoder_for("end2end", {"x": np.zeros((1, 100, 4)), "y": np.zeros((1, 100))})
    with pytest.raises(IncompatibleModelError, match=MISMATCH):
        decoder_for("end2end", {"output0": np.zeros((1, 100, 7))})


# -- family registry -------------------------------------------------------------------------


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoders_base, "_FAMILIES", dict(decoders_base._FAMILIES))


class CornerDecoder:
    """A user family: one output [B, K, 5] of (x1, y1, x2, y2, score), class 0."""

    num_classes = 1

    def __init__(self, name: str):
        self.name = name

    def __call__(
        self,
        outputs: Mapping[str, np.ndarray],
        *,
        score_threshold: float,
        multi_label: bool = False,
        max_candidates: int = 30000,
    ) -> list[Candidates]:
        res = []
        for pred in outputs[self.name]:
            keep = pred[:, 4] > score_threshold
            res.append(
                Candidates(
                    pred[keep, :4].astype(np.float32),
                    pred[keep, 4].astype(np.float32),
                    np.zeros(int(keep.sum()), np.int32),
                )
            )
        return res


def make_corner(meta: ModelMeta, specs: Sequence[Any], input_hw: tuple[int, int]) -> CornerDecoder:
    return CornerDecoder(specs[0].name)


@pytest.mark.usefixtures("isolated_registry")
def test_register_user_family() -> None:
    fam = Family(
        name="corners",
        make_decoder=make_corner,
        preset={"color": "BGR", "scale": 1.0, "class_names": ("thing",)},
        description="test family",
    )
    register_family(fam)
    assert "corners" in family_names()
    assert get_family("corners") is fam
    meta = meta_from_family("corners", pad_value=0)
    assert (meta.family, meta.color, meta.scale, meta.pad_value) == ("corners", "BGR", 1.0, 0)
    assert meta.class_names == ("thing",)
    raw = np.array([[[1, 2, 3, 4, 0.9], [0, 0, 1, 1, 0.1]]], np.float32)
    (c,) = decode("corners", {"out": raw})
    np.testing.assert_allclose(c.xyxy, [[1, 2, 3, 4]])
    with pytest.raises(InvalidInputError, match="family 'corners' is already registered"):
        register_family(fam)
    replacement = Family(name="corners", make_decoder=make_corner)
    register_family(replacement, replace=True)
    assert get_family("corners") is replacement


@pytest.mark.usefixtures("isolated_registry")
def test_builtin_family_cannot_be_registered_twice() -> None:
    with pytest.raises(InvalidInputError, match="family 'yolov8' is already registered"):
        register_family(get_family("yolov8"))


def test_unknown_family_lists_known_ones() -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"unknown model family 'nope'; known families: .*end2end, nanodet, .*yolov5, "
        r"yolov8, yolox\. Register your own with edgedet\.decoders\.register_family\(\)",
    ):
        get_family("nope")
    with pytest.raises(InvalidInputError, match="unknown model family 'nope'"):
        meta_from_family("nope")
    assert {"yolov8", "yolo11", "yolov5", "yolox", "nanodet", "end2end"} <= set(family_names())
