"""Catalogue, entry point: Detector settings changed after load (and given to ``load``).

A bad value raises `InvalidInputError` naming the attribute when it is set, and the previous
value stays; good values take effect at the next call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgedet
from edgedet.errors import InvalidInputError
from tests.badinput.helpers import Fails, expect_error, image
from tests.tiny_models import make_tiny_yolov5, tiny_meta


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_yolov5(tmp_path_factory.mktemp("settings") / "tiny.onnx", meta=tiny_meta())


@pytest.fixture()
def det(model: Path) -> edgedet.Detector:
    return edgedet.load(model, runtime="onnxruntime", score_threshold=0.1, iou_threshold=0.5)


SET_ROWS: list[tuple[str, str, Any, Any]] = [
    # -- accepted --------------------------------------------------------------------------------
    *[(f"nms {m}", "nms", m, "ok") for m in ("class_aware", "agnostic", "soft_linear", "soft_gaussian", "diou", "none")],
    ("score 0", "score_threshold", 0, "ok"),
    ("score 1.0", "score_threshold", 1.0, "ok"),
    ("score numpy float", "score_threshold", np.float32(0.3), "ok"),
    ("iou 0.3", "iou_threshold", 0.3, "ok"),
    ("max_detections 1", "max_detections", 1, "ok"),
    ("max_candidates 5", "max_candidates", 5, "ok"),
    ("classes [0]", "classes", [0], "ok"),
    ("classes ['thing1']", "classes", ["thing1"], "ok"),
    ("classes 'thing1' (one name)", "classes", "thing1", "ok"),
    ("classes None", "classes", None, "ok"),
    ("multi_label True", "multi_label", True, "ok"),
    # -- refused ---------------------------------------------------------------------------------
    ("nms typo 'classaware'", "nms", "classaware", Fails(InvalidInputError, "nms must be one of")),
    ("nms 'bogus'", "nms", "bogus", Fails(InvalidInputError, "got 'bogus'")),
    ("nms None", "nms", None, Fails(InvalidInputError, "nms must be one of")),
    ("score 5.0", "score_threshold", 5.0, Fails(InvalidInputError, "score_threshold must be in [0, 1], got 5.0")),
    ("score nan", "score_threshold", float("nan"), Fails(InvalidInputError, "score_threshold must be in [0, 1], got nan")),
    ("score -0.1", "score_threshold", -0.1, Fails(InvalidInputError, "score_threshold must be in [0, 1]")),
    ("score '0.5'", "score_threshold", "0.5", Fails(InvalidInputError, "score_threshold must be a number")),
    ("score True", "score_threshold", True, Fails(InvalidInputError, "score_threshold must be a number")),
    ("iou -1", "iou_threshold", -1, Fails(InvalidInputError, "iou_threshold must be in [0, 1], got -1.0")),
    ("iou 1.5", "iou_threshold", 1.5, Fails(InvalidInputError, "iou_threshold must be in [0, 1]")),
    ("iou nan", "iou_threshold", float("nan"), Fails(InvalidInputError, "iou_threshold must be in [0, 1]")),
    ("max_detections 0", "max_detections", 0, Fails(InvalidInputError, "max_detections must be an integer >= 1, got 0")),
    ("max_detections -1", "max_detections", -1, Fails(InvalidInputError, "max_detections must be an integer >= 1")),
    ("max_detections 1.5", "max_detections", 1.5, Fails(InvalidInputError, "max_detections must be an integer >= 1")),
    ("max_detections True", "max_detections", True, Fails(InvalidInputError, "max_detections must be an integer >= 1")),
    ("max_candidates 0", "max_candidates", 0, Fails(InvalidInputError, "max_candidates must be an integer >= 1")),
    ("classes unknown name", "classes", ["nope"], Fails(InvalidInputError, "unknown class 'nope'")),
    ("classes id 99", "classes", [99], Fails(InvalidInputError, "class id 99 out of range 0..1")),
    ("classes id -1", "classes", [-1], Fails(InvalidInputError, "class id -1 out of range")),
    ("classes float", "classes", [1.5], Fails(InvalidInputError, "classes must hold class ids (int) or names (str)")),
    ("classes a dict", "classes", {"a": 1}, Fails(InvalidInputError, "classes must be None or a list")),
    ("multi_label 'yes'", "multi_label", "yes", Fails(InvalidInputError, "multi_label must be True or False")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "attr", "value", "expected"), SET_ROWS, ids=[r[0] for r in SET_ROWS])
def test_set(det: edgedet.Detector, case: str, attr: str, value: Any, expected: Any) -> None:
    before = getattr(det, attr)
    if isinstance(expected, Fails):
        expect_error(expected, setattr, det, attr, value)
        assert getattr(det, attr) == before or (before != before)  # unchanged (nan != nan)
        det(image())  # still usable
        return
    setattr(det, attr, value)
    out = det(image())
    if attr == "max_detections":
        assert len(out) <= value
    if attr == "classes" and value is not None:
        assert set(out.class_ids.tolist()) <= {1 if value in (["thing1"], "thing1") else 0}
    if attr == "score_threshold":
        assert (out.scores >= float(value)).all()


def test_nms_typo_no_longer_disables_nms(det: edgedet.Detector) -> None:
    """The probe's case: a typo used to skip NMS silently (96 boxes instead of 16)."""
    det.score_threshold = 0.0
    det.iou_threshold = 0.1
    with_nms = len(det(image()))
    with pytest.raises(InvalidInputError):
        det.nms = "classaware"
    assert det.nms == "class_aware" and len(det(image())) == with_nms


LOAD_ROWS: list[tuple[str, dict[str, Any], Any]] = [
    ("defaults", {}, "ok"),
    ("score nan", {"score_threshold": float("nan")}, Fails(InvalidInputError, "score_threshold must be in [0, 1], got nan")),
    ("iou 2", {"iou_threshold": 2}, Fails(InvalidInputError, "iou_threshold must be in [0, 1]")),
    ("max_detections 0", {"max_detections": 0}, Fails(InvalidInputError, "max_detections must be an integer >= 1")),
    ("nms magic", {"nms": "magic"}, Fails(InvalidInputError, "nms must be one of")),
    ("classes unknown", {"classes": ["zebra"]}, Fails(InvalidInputError, "unknown class 'zebra'")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "kwargs", "expected"), LOAD_ROWS, ids=[r[0] for r in LOAD_ROWS])
def test_load_settings(model: Path, case: str, kwargs: dict[str, Any], expected: Any) -> None:
    if isinstance(expected, Fails):
        expect_error(expected, edgedet.load, model, **kwargs)
    else:
        edgedet.load(model, **kwargs).close()
