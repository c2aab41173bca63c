"""The ``detr`` family end to end on a trained tiny DETR exported in every layout.

The model (`tests/detr_models.py`, weights from ``recipes/build_tiny_detr.py``) is exported to
ONNX here in each output layout; edgedet must score every layout the same on held-out synthetic
road scenes, on ONNX Runtime and OpenVINO, and well above an untrained model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgedet
from edgedet.data.synthetic import SAMPLE_VAL_SEED, generate
from edgedet.errors import IncompatibleModelError
from edgedet.scoring import score
from tests import detr_models as dm

pytest.importorskip("torch")

#: mAP50-95 the committed weights reach on the 40 held-out scenes (measured: see docs/detr.md);
#: random weights score ~0.000.
MIN_MAP = 0.15


@pytest.fixture(scope="session")
def detr_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("detr_val"), 40, SAMPLE_VAL_SEED, (dm.IMGSZ, dm.IMGSZ),
        formats=("coco",),
    )  # fmt: skip


@pytest.fixture(scope="session")
def layout_maps(detr_files: dict[str, Path], detr_val: Path) -> dict[tuple[str, str], float]:
    out = {}
    for layout, path in detr_files.items():
        for runtime in ("onnxruntime", "openvino"):
            with edgedet.load(path, runtime=runtime) as det:
                out[layout, runtime] = score(det, detr_val).map50_95
    return out


def test_every_layout_scores_the_same(layout_maps: dict[tuple[str, str], float]) -> None:
    base = layout_maps["raw", "onnxruntime"]
    assert base > MIN_MAP, layout_maps
    for (layout, runtime), m in layout_maps.items():
        if layout == "softmax_px":  # softmax with a background logit 0 is not the sigmoid
            assert m > MIN_MAP and abs(m - base) < 0.05, (layout, runtime, m, base)
        else:
            assert abs(m - base) < 1e-3, (layout, runtime, m, base)


def test_detections_match_torch(detr_files: dict[str, Path]) -> None:
    """edgedet's boxes (original pixels, after the stretch resize) are the torch model's."""
    import torch

    from edgedet.data.synthetic import make_scenes

    model = dm.load_state(dm.build_model())
    (scene,) = make_scenes(1, SAMPLE_VAL_SEED, (96, 160))  # not the input size: resized
    img = scene.image
    with edgedet.load(detr_files["postprocessed"], runtime="onnxruntime", score_threshold=0.1) as det:
        got = det(img)
        feeds, _ = det.preprocess([img])
    assert set(feeds) == {"images", "orig_target_sizes"}
    assert feeds["orig_target_sizes"].tolist() == [[dm.IMGSZ, dm.IMGSZ]]
    with torch.no_grad():
        logits, boxes = model(torch.from_numpy(feeds["images"]))
    probs = torch.sigmoid(logits)[0].numpy()  # [Q, C]
    # the graph's top-k is over (query, class) pairs: a query may come with several classes
    query, cls = np.nonzero(probs > det.score_threshold)
    conf = probs[query, cls]
    order = np.argsort(-conf, kind="stable")
    query, cls, conf = query[order], cls[order], conf[order]
    assert len(got) == len(conf) > 0
    b = boxes[0].numpy()[query] * dm.IMGSZ
    xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    xyxy *= np.asarray([160, 96, 160, 96], np.float32) / dm.IMGSZ  # back through the stretch
    got_order = np.argsort(-got.scores, kind="stable")
    np.testing.assert_allclose(got.scores[got_order], conf, atol=1e-5)
    assert got.class_ids[got_order].tolist() == cls.tolist()
    hi = np.asarray([160, 96, 160, 96], np.float32)  # detections are clipped to the image
    np.testing.assert_allclose(
        np.clip(got.xyxy[got_order], 0, hi), np.clip(xyxy, 0, hi), atol=0.05
    )


@pytest.mark.parametrize(
    ("head", "family", "kind"),
    [("RTDETRDecoder", "detr", "DETR-style"), ("Detect", "end2end", "one-to-one")],
)
def test_query_file_loaded_as_yolov8(
    detr_files: dict[str, Path], tmp_path: Path, head: str, family: str, kind: str
) -> None:
    """An RT-DETR or a YOLO26 one-to-one file (Ultralytics metadata) read with --family yolov8:
    an error naming the right family; without --family it loads as that family."""
    import onnx

    model = onnx.load(str(detr_files["topk6"]))
    del model.metadata_props[:]
    for key, value in {
        "names": str(dict(enumerate(dm.CLASS_NAMES))),
        "imgsz": f"[{dm.IMGSZ}, {dm.IMGSZ}]",
        "stride": "32",
        "task": "detect",
        "head": head,
        "end2end": str(family == "end2end"),
        "version": "8.4.190",
    }.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / f"ultralytics_{family}.onnx"
    onnx.save(model, str(path))
    with edgedet.load(path) as det:  # its own metadata names the family
        assert det.meta.family == family
    with pytest.raises(IncompatibleModelError, match=rf"{kind}.*use family '{family}'"):
        edgedet.load(path, family="yolov8")


def test_missing_logits_output_file(tmp_path: Path, detr_files: dict[str, Path]) -> None:
    """A raw DETR export whose logits output was cut off: named error at load."""
    import onnx

    model = onnx.load(str(detr_files["raw"]))
    keep = [o for o in model.graph.output if o.name != "pred_logits"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    path = tmp_path / "no_logits.onnx"
    onnx.save(model, str(path))
    with pytest.raises(IncompatibleModelError, match="'pred_boxes' but no class logits"):
        edgedet.load(path, runtime="onnxruntime")
