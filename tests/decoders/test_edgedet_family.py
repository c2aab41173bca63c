"""The decoder of edgedet's own models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgedet.decoders.edgedet_family import FAMILY, num_cells
from edgedet.errors import IncompatibleModelError
from edgedet.meta import ModelMeta


@dataclass
class Spec:
    name: str
    shape: tuple[int | None, ...]


META = ModelMeta(
    family="edgedet", class_names=("a", "b", "c"), input_size=(64, 64), strides=(8, 16, 32)
)


def test_decodes_boxes_and_scores() -> None:
    n = num_cells((64, 64), (8, 16, 32))
    assert n == 64 + 16 + 4
    dec = FAMILY.make_decoder(META, [Spec("output", (None, n, 7))], (64, 64))
    out = np.zeros((2, n, 7), np.float32)
    out[0, 5] = [1, 2, 30, 40, 0.1, 0.9, 0.2]
    out[0, 9] = [5, 5, 10, 10, 0.3, 0.0, 0.0]
    out[1, 0] = [0, 0, 8, 8, 0.0, 0.0, 0.6]
    res = dec({"output": out}, score_threshold=0.25)
    assert len(res) == 2
    order = np.argsort(res[0].scores)[::-1]
    np.testing.assert_allclose(res[0].xyxy[order], [[1, 2, 30, 40], [5, 5, 10, 10]])
    np.testing.assert_array_equal(res[0].class_ids[order], [1, 0])
    np.testing.assert_allclose(res[0].scores[order], [0.9, 0.3])
    assert res[1].class_ids.tolist() == [2]
    multi = dec({"output": out}, score_threshold=0.15, multi_label=True)
    assert sorted(multi[0].scores.tolist()) == pytest.approx([0.2, 0.3, 0.9])  # row 5 twice, row 9
    assert res[0].xyxy.dtype == np.float32 and res[0].class_ids.dtype == np.int32


def test_mismatched_outputs_say_what_was_expected() -> None:
    n = num_cells((64, 64), (8, 16, 32))
    with pytest.raises(
        IncompatibleModelError, match=r"last axis is 9 but the meta names 3 classes \(expected 7\)"
    ):
        FAMILY.make_decoder(META, [Spec("output", (1, n, 9))], (64, 64))
    with pytest.raises(
        IncompatibleModelError,
        match=r"100 boxes but input 64x64 with strides \[8, 16, 32\] gives 84",
    ):
        FAMILY.make_decoder(META, [Spec("output", (1, 100, 7))], (64, 64))
    with pytest.raises(IncompatibleModelError, match="expected one output 'output'"):
        FAMILY.make_decoder(META, [Spec("a", (1, n, 7)), Spec("b", (1, n, 4))], (64, 64))
    with pytest.raises(IncompatibleModelError, match=r"rank 3 .*Check --family"):
        FAMILY.make_decoder(META, [Spec("output", (1, 2, n, 7))], (64, 64))


def test_family_registered_with_preset() -> None:
    from edgedet.decoders import get_family

    fam = get_family("edgedet")
    assert fam.preset["color"] == "RGB" and fam.preset["letterbox"] == "center"


def test_shipped_sample_model_finds_synthetic_objects() -> None:
    """The embedded sample: meta fits the decoder, and on a held-out scene it finds the objects."""
    ort = pytest.importorskip("onnxruntime")
    from edgedet.assets import SAMPLE_MODEL, sample_model_path
    from edgedet.boxes import box_iou, nms
    from edgedet.data.synthetic import SAMPLE_VAL_SEED, make_scenes
    from edgedet.meta import read_meta
    from edgedet.preprocess import Preprocessor

    if not SAMPLE_MODEL.is_file():
        pytest.skip("sample model not built (python recipes/build_sample.py)")
    path = sample_model_path()
    assert path.stat().st_size <= 5_000_000
    meta = read_meta(path)
    assert meta is not None and meta.family == "edgedet" and meta.input_size is not None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.get_outputs()[0]
    dec = FAMILY.make_decoder(
        meta,
        [Spec(out.name, tuple(d if isinstance(d, int) else None for d in out.shape))],
        meta.input_size,
    )
    scene = make_scenes(1, SAMPLE_VAL_SEED, meta.input_size)[0]
    x, lbs = Preprocessor(meta, meta.input_size)([scene.image])
    (cand,) = dec({out.name: sess.run(None, {"images": x})[0]}, score_threshold=0.3)
    keep = nms(cand.xyxy, cand.scores, 0.6, cand.class_ids)
    boxes = lbs[0].to_original(cand.xyxy[keep])
    iou = box_iou(scene.xyxy, boxes)
    matched = (iou.max(1) > 0.5) & (cand.class_ids[keep][iou.argmax(1)] == scene.class_ids)
    assert matched.mean() >= 0.75
