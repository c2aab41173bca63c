"""The ``detr`` family on hand-built outputs of every layout it reads, and its bad inputs.

Each test writes the raw numbers a DETR export of that layout emits for a few known queries and
checks the decoded boxes (network-input pixels), scores and classes exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from edgedet.runtimes.base import TensorSpec

from edgedet import protocol
from edgedet.decoders import get_family, meta_from_family
from edgedet.decoders.detr import size_feed, size_input_name
from edgedet.errors import IncompatibleModelError
from edgedet.meta import ultralytics_meta

HW = (64, 128)  # network input (h, w)
NAMES = ("car", "person", "sign")
MISMATCH = "model outputs do not fit family 'detr'"


def spec(name: str, *shape: int | None) -> TensorSpec:
    return TensorSpec(name, tuple(shape), np.dtype("float32"))


def decoder(arrays: dict[str, np.ndarray], names: tuple[str, ...] = NAMES, **options: Any) -> Any:
    meta = meta_from_family("detr", class_names=names, options=options)
    specs = [spec(k, *v.shape) for k, v in arrays.items()]
    return get_family("detr").make_decoder(meta, specs, HW)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def raw_queries(q: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Query 1: car 0.9 at normalised (0.5, 0.5, 0.25, 0.5); query 3: sign 0.8 and person 0.6 at
    (0.25, 0.25, 0.1, 0.2); every other score 0.01."""
    probs = np.full((1, q, 3), 0.01, np.float32)
    probs[0, 1, 0] = 0.9
    probs[0, 3, 2], probs[0, 3, 1] = 0.8, 0.6
    boxes = np.full((1, q, 4), 0.1, np.float32)
    boxes[0, 1] = [0.5, 0.5, 0.25, 0.5]
    boxes[0, 3] = [0.25, 0.25, 0.1, 0.2]
    return probs, boxes


# the same queries in network-input pixels (w 128, h 64), x1 y1 x2 y2
CAR = [48.0, 16.0, 80.0, 48.0]
SIGN = [25.6, 9.6, 38.4, 22.4]


def sorted_cands(c: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-c.scores, kind="stable")
    return c.xyxy[order], c.scores[order], c.class_ids[order]


def check_two_queries(c: Any) -> None:
    assert c.nms_done and c.xyxy.dtype == np.float32 and c.class_ids.dtype == np.int32
    xyxy, scores, cls = sorted_cands(c)
    np.testing.assert_allclose(xyxy, [CAR, SIGN], atol=1e-4)
    np.testing.assert_allclose(scores, [0.9, 0.8], atol=1e-5)
    assert cls.tolist() == [0, 2]


def test_raw_boxes_and_logits() -> None:
    probs, boxes = raw_queries()
    logits = np.log(probs / (1 - probs))
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    dec = decoder(outputs)
    assert dec.num_classes == 3 and dec.scores == "sigmoid"
    (c,) = dec(outputs, score_threshold=0.5)
    check_two_queries(c)
    # multi-label (the mAP protocol): every (query, class) above the threshold
    (c,) = dec(outputs, score_threshold=0.5, multi_label=True)
    np.testing.assert_allclose(sorted(c.scores.tolist()), [0.6, 0.8, 0.9], atol=1e-5)
    # a batch of two decodes each image
    both = {k: np.concatenate([v, v]) for k, v in outputs.items()}
    assert len(dec(both, score_threshold=0.5)) == 2


def test_packed_probabilities() -> None:
    probs, boxes = raw_queries()
    outputs = {"output0": np.concatenate([boxes, probs], -1)}  # [1, Q, 4 + C]
    dec = decoder(outputs)
    assert dec.layout == "raw" and dec.scores == "probs"
    (c,) = dec(outputs, score_threshold=0.5)
    check_two_queries(c)


def test_packed_without_names_counts_classes() -> None:
    probs, boxes = raw_queries()
    outputs = {"output0": np.concatenate([boxes, probs], -1)}
    assert decoder(outputs, names=()).num_classes == 3


def test_softmax_with_background_and_pixel_xyxy() -> None:
    """C + 1 logits (last = no object): softmax, background column dropped; pixel xyxy boxes."""
    logits = np.zeros((1, 2, 4), np.float32)
    logits[0, 0] = [math.log(9.0), 0, 0, 0]  # car: 9 / (9 + 3) = 0.75
    logits[0, 1] = [0, 0, 0, math.log(30.0)]  # mostly background: best class 1/33
    boxes = np.asarray([[CAR, SIGN]], np.float32)
    outputs = {"pred_logits": logits, "pred_boxes": boxes}
    dec = decoder(outputs, box_format="xyxy", box_units="pixels")
    assert dec.scores == "softmax" and dec.num_classes == 3
    (c,) = dec(outputs, score_threshold=0.5)
    np.testing.assert_allclose(c.xyxy, [CAR], atol=1e-5)
    np.testing.assert_allclose(c.scores, [0.75], atol=1e-6)
    assert c.class_ids.tolist() == [0]


def test_postprocessed_boxes_scores_labels() -> None:
    """lyuwenyu / D-FINE / DEIM deployment export: top-k done, pixel xyxy, labels as int64."""
    outputs = {
        "labels": np.asarray([[0, 2, 1]], np.int64),
        "boxes": np.asarray([[CAR, SIGN, SIGN]], np.float32),
        "scores": np.asarray([[0.9, 0.8, 0.05]], np.float32),
    }
    dec = decoder(outputs)
    assert dec.layout == "topk"
    (c,) = dec(outputs, score_threshold=0.5)
    check_two_queries(c)


def test_ultralytics_topk_rows() -> None:
    """Ultralytics >= 8.4 RT-DETR: [B, K, 6] of normalised cx, cy, w, h, score, class."""
    rows = np.zeros((1, 4, 6), np.float32)
    rows[0, 0] = [0.5, 0.5, 0.25, 0.5, 0.9, 0]
    rows[0, 1] = [0.25, 0.25, 0.1, 0.2, 0.8, 2]
    rows[0, 2] = [0.25, 0.25, 0.1, 0.2, 0.01, 1]
    dec = decoder({"output0": rows})  # 3 names: 6 columns can only be (box, score, class)
    assert dec.layout == "topk"
    (c,) = dec({"output0": rows}, score_threshold=0.5)
    check_two_queries(c)
    explicit = decoder({"output0": rows}, topk_in_graph=True)
    (c,) = explicit({"output0": rows}, score_threshold=0.5)
    check_two_queries(c)


def test_protocol_is_topk_over_queries_and_classes() -> None:
    p = get_family("detr").protocol
    assert p is protocol.DETR
    assert p.nms == "none" and p.multi_label and p.max_detections == 300
    assert p.score_threshold == 0.0


def test_ultralytics_metadata_is_detr() -> None:
    props = {
        "names": "{0: 'car', 1: 'person'}",
        "imgsz": "[320, 320]",
        "stride": "32",
        "task": "detect",
        "head": "RTDETRDecoder",
        "version": "8.4.0",
    }
    meta = ultralytics_meta(props, "x.onnx")
    assert meta is not None and meta.family == "detr" and meta.letterbox == "stretch"
    assert meta.eval_protocol == protocol.ULTRALYTICS_RTDETR.to_dict()
    older = {k: v for k, v in props.items() if k != "head"}
    assert ultralytics_meta(older, "x.onnx").family == "yolov8"  # type: ignore[union-attr]
    older["description"] = "Ultralytics rtdetr-l model trained on coco.yaml"
    assert ultralytics_meta(older, "x.onnx").family == "detr"  # type: ignore[union-attr]
    yolo = {**props, "head": "Detect"}
    assert ultralytics_meta(yolo, "x.onnx").family == "yolov8"  # type: ignore[union-attr]


def test_size_input() -> None:
    meta = meta_from_family("detr", class_names=NAMES)
    specs = [spec("images", 1, 3, 64, 128), TensorSpec("orig_target_sizes", (1, 2), np.dtype("int64"))]
    assert size_input_name(meta, specs) == "orig_target_sizes"
    assert size_input_name(meta, specs[:1]) is None
    feed = size_feed(np.int64, 2, HW)
    assert feed.dtype == np.int64 and feed.tolist() == [[128, 64], [128, 64]]  # (w, h)
    named = meta.replace(options={"size_input": "nope"})
    with pytest.raises(IncompatibleModelError, match="size input 'nope'"):
        size_input_name(named, specs)


# -- bad input ---------------------------------------------------------------------------------


def test_missing_logits_output() -> None:
    _, boxes = raw_queries()
    with pytest.raises(IncompatibleModelError, match=rf"{MISMATCH}.*'pred_boxes' but no class logits"):
        decoder({"pred_boxes": boxes, "aux": boxes})


def test_query_count_disagrees() -> None:
    probs, boxes = raw_queries(5)
    with pytest.raises(IncompatibleModelError, match="disagree on the query count"):
        decoder({"pred_logits": probs[:, :4], "pred_boxes": boxes})


def test_unexpected_query_count() -> None:
    probs, boxes = raw_queries(5)
    outputs = {"pred_logits": probs, "pred_boxes": boxes}
    assert decoder(outputs, num_queries=5).num_classes == 3
    with pytest.raises(IncompatibleModelError, match="has 5 queries but its meta says num_queries=300"):
        decoder(outputs, num_queries=300)


def test_class_count_mismatch() -> None:
    probs, boxes = raw_queries()
    with pytest.raises(IncompatibleModelError, match="logits have 3 columns but the model has 5"):
        decoder({"pred_logits": probs, "pred_boxes": boxes}, names=("a", "b", "c", "d", "e"))


def test_logits_read_as_probabilities_refused() -> None:
    probs, boxes = raw_queries()
    outputs = {"output0": np.concatenate([boxes, np.log(probs / (1 - probs))], -1)}
    dec = decoder(outputs)
    with pytest.raises(IncompatibleModelError, match=r"not probabilities.*'scores': 'sigmoid'"):
        dec(outputs, score_threshold=0.5)
    (c,) = decoder(outputs, scores="sigmoid")(outputs, score_threshold=0.5)
    check_two_queries(c)


def test_pixel_boxes_read_as_normalised_refused() -> None:
    probs, _ = raw_queries()
    boxes = np.full((1, 5, 4), 40.0, np.float32)
    outputs = {"pred_logits": logit(0.9) * np.ones_like(probs), "pred_boxes": boxes}
    with pytest.raises(IncompatibleModelError, match="'box_units': 'pixels'"):
        decoder(outputs)(outputs, score_threshold=0.5)


def test_two_class_six_columns_is_ambiguous() -> None:
    rows = np.zeros((1, 4, 6), np.float32)
    with pytest.raises(IncompatibleModelError, match="topk_in_graph"):
        decoder({"output0": rows}, names=("a", "b"))
    assert decoder({"output0": rows}, names=("a", "b"), topk_in_graph=False).layout == "raw"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"outputs": {"logitz": "pred_logits"}}, "unknown roles"),
        ({"outputs": {"logits": "nope", "boxes": "pred_boxes"}}, r"lacks"),
        ({"box_format": "xywh"}, "box_format"),
        ({"scores": "relu"}, "scores"),
        ({"num_queries": "many"}, "num_queries"),
    ],
)
def test_bad_options(options: dict[str, Any], match: str) -> None:
    probs, boxes = raw_queries()
    with pytest.raises(IncompatibleModelError, match=match):
        decoder({"pred_logits": probs, "pred_boxes": boxes}, **options)


@pytest.mark.parametrize(
    ("shape", "family"), [((1, 300, 6), "'end2end'"), ((1, 300, 7), "'detr'")]
)
def test_query_output_loaded_as_yolov8_names_the_family(shape: tuple[int, ...], family: str) -> None:
    """A one-to-one [1, 300, 6] or DETR [1, 300, 4 + C] output read as a YOLOv8 grid."""
    names = ("a", "b") if shape[-1] == 6 else ("a", "b", "c", "d", "e")
    meta = meta_from_family("yolov8", class_names=names)
    with pytest.raises(IncompatibleModelError, match=family):
        get_family("yolov8").make_decoder(meta, [spec("output0", *shape)], (640, 640))
