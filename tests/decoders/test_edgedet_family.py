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
