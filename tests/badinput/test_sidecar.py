"""Catalogue, entry point: the ``<stem>.edgedet.json`` sidecar beside an OpenVINO IR (and an
ONNX file without meta), loaded on real OpenVINO / ONNX Runtime.

Every malformed sidecar must become `IncompatibleModelError` naming the sidecar; a partial
sidecar (``ModelMeta(family="yolox", class_names=...)``) takes the family preset.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgedet
from edgedet.errors import IncompatibleModelError
from edgedet.meta import ModelMeta, sidecar_path, write_sidecar
from tests.badinput.helpers import Fails, canary, expect_error, image, nested
from tests.tiny_models import make_tiny_yolov5, tiny_meta


def _ir(onnx_path: Path) -> Path:
    import openvino as ov

    xml = onnx_path.with_suffix(".xml")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ir(make_tiny_yolov5(tmp_path_factory.mktemp("ir") / "tiny.onnx"))


@pytest.fixture(scope="module")
def ir_yolox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _ir(make_tiny_yolov5(tmp_path_factory.mktemp("irx") / "yx.onnx", anchors=1))


def good(**changes: Any) -> dict[str, Any]:
    meta = tiny_meta().to_dict()
    meta.update(changes)
    return {"meta": meta}


def _text(text: str) -> Callable[[Path], bytes]:
    return lambda _c: text.encode()


def _json(data: Any) -> Callable[[Path], bytes]:
    return lambda _c: json.dumps(data).encode()


ROWS: list[tuple[str, Callable[[Path], bytes] | None, dict[str, Any], Any]] = [
    # -- accepted --------------------------------------------------------------------------------
    ("good sidecar", _json(good()), {}, "ok"),
    ("extra keys beside meta", _json({**good(), "engine": {"trt": "10"}}), {}, "ok"),
    ("empty object, family given", _text("{}"), {"family": "yolov5", "names": "a,b"}, "ok"),
    # -- no meta ---------------------------------------------------------------------------------
    ("no sidecar", None, {}, Fails(IncompatibleModelError, "carries no edgedet metadata")),
    ("empty object", _text("{}"), {}, Fails(IncompatibleModelError, "carries no edgedet metadata")),
    # -- unreadable ------------------------------------------------------------------------------
    ("malformed JSON", _text("{broken"), {}, Fails(IncompatibleModelError, "unreadable edgedet sidecar")),
    ("empty file", _text(""), {}, Fails(IncompatibleModelError, "unreadable edgedet sidecar")),
    ("invalid UTF-8", lambda _c: b'{"meta": {"family": "\xff\xfe"}}', {}, Fails(IncompatibleModelError, "not UTF-8")),
    ("latin-1 bytes", lambda _c: '{"meta": {"source": "caf\u00e9"}}'.encode("latin-1"), {}, Fails(IncompatibleModelError, "not UTF-8")),
    ("nested 100k deep", _text(nested(100_000)), {}, Fails(IncompatibleModelError, "nested too deeply")),
    ("meta nested 100k deep", _text('{"meta": ' + nested(100_000, "object") + "}"), {}, Fails(IncompatibleModelError, "nested too deeply")),
    ("a JSON list", _text("[]"), {}, Fails(IncompatibleModelError, "sidecar must be a JSON object")),
    ("meta a string", _json({"meta": "x"}), {}, Fails(IncompatibleModelError, "edgedet meta must be a JSON object")),
    # -- invalid values --------------------------------------------------------------------------
    ("strides 5", _json(good(strides=5)), {}, Fails(IncompatibleModelError, "ModelMeta.strides must be a list")),
    ("strides 0", _json(good(strides=[0, 16, 32])), {}, Fails(IncompatibleModelError, "ModelMeta.strides entries must be in 1..")),
    ("input_size 416", _json(good(input_size=416)), {}, Fails(IncompatibleModelError, "input_size must be (height, width)")),
    ("scale NaN", _json(good(scale=float("nan"))), {}, Fails(IncompatibleModelError, "ModelMeta.scale must be finite")),
    ("std inf", _json(good(std=[float("inf")] * 3)), {}, Fails(IncompatibleModelError, "ModelMeta.std must be finite")),
    ("calibration 'oops'", _json(good(calibration="oops")), {}, Fails(IncompatibleModelError, "ModelMeta.calibration must be a JSON object")),
    ("class_names = a local file", lambda c: json.dumps(good(class_names=str(c))).encode(), {}, Fails(IncompatibleModelError, "a names file can be given only by the user")),
    ("unknown field", _json(good(bogus=1)), {}, Fails(IncompatibleModelError, "unknown fields ['bogus']")),
    ("20 MB source", _json(good(source="s" * 20_000_000)), {}, Fails(IncompatibleModelError, "characters long")),
]  # fmt: skip


@pytest.mark.parametrize(("case", "content", "kwargs", "expected"), ROWS, ids=[r[0] for r in ROWS])
def test_sidecar(
    ir: Path, tmp_path: Path, case: str, content: Callable[[Path], bytes] | None, kwargs: dict[str, Any], expected: Any
) -> None:
    secret = canary(tmp_path)
    xml = tmp_path / "model.xml"
    xml.write_bytes(ir.read_bytes())
    xml.with_suffix(".bin").write_bytes(ir.with_suffix(".bin").read_bytes())
    if content is not None:
        sidecar_path(xml).write_bytes(content(secret))
    if isinstance(expected, Fails):
        err = expect_error(expected, edgedet.load, xml, runtime="openvino", **kwargs)
        assert "TOP-SECRET" not in str(err)
        if content is not None and "no edgedet metadata" not in expected.fragment:
            assert "model.edgedet.json" in str(err)  # the sidecar is named
        return
    with edgedet.load(xml, runtime="openvino", **kwargs) as det:
        det(image())


def test_sidecar_is_a_directory(ir: Path, tmp_path: Path) -> None:
    xml = tmp_path / "model.xml"
    xml.write_bytes(ir.read_bytes())
    xml.with_suffix(".bin").write_bytes(ir.with_suffix(".bin").read_bytes())
    sidecar_path(xml).mkdir()
    expect_error(Fails(IncompatibleModelError, "carries no edgedet metadata"), edgedet.load, xml)


def test_openvino_with_sidecar_matches_onnxruntime(ir: Path, tmp_path: Path) -> None:
    write_sidecar(ir, tiny_meta())
    onnx_path = ir.with_suffix(".onnx")
    img = image(64, 80)
    with edgedet.load(ir) as ov_det, edgedet.load(onnx_path, meta=tiny_meta()) as ort_det:
        assert ov_det.runtime_name == "openvino"
        np.testing.assert_allclose(ov_det(img).xyxy, ort_det(img).xyxy, atol=1e-3)
    sidecar_path(ir).unlink()


def test_partial_sidecar_takes_the_family_preset(ir_yolox: Path) -> None:
    """M4: write_sidecar(ModelMeta(family="yolox", class_names=...)) is fed as YOLOX."""
    write_sidecar(ir_yolox, ModelMeta(family="yolox", class_names=("a", "b")))
    with edgedet.load(ir_yolox) as det:
        m = det.meta
        assert (m.color, m.scale, m.letterbox) == ("BGR", 1.0, "topleft")
        assert m.class_names == ("a", "b")


def test_onnx_without_meta_reads_its_sidecar(tmp_path: Path) -> None:
    plain = make_tiny_yolov5(tmp_path / "plain.onnx")
    sidecar_path(plain).write_text(json.dumps(good(strides=[8, -16, 32])))
    expect_error(Fails(IncompatibleModelError, "plain.edgedet.json: invalid edgedet meta"), edgedet.load, plain)
    write_sidecar(plain, tiny_meta())
    with edgedet.load(plain) as det:
        assert det.class_names == ("thing0", "thing1")
