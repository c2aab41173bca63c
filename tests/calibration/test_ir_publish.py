"""An OpenVINO INT8 IR is published with its edgedet sidecar or not at all.

Real NNCF quantizations of the tiny model; the sidecar write fails for real: a meta value JSON
cannot hold, or a folder where the sidecar goes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from edgedet.calibration.nncf_int8 import quantize_openvino
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec

from edgedet.errors import CalibrationError
from edgedet.meta import read_meta, sidecar_path

pytest.importorskip("nncf")
pytest.importorskip("openvino")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_failed_sidecar_keeps_the_previous_ir(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ir" / "tiny_int8.xml"
    src = CalibrationSource(tiny_detector, images=image_dir, num=6)
    spec = CalibrationSpec(method="minmax", keep_stem_float=False)
    quantize_openvino(tiny_model, src, spec, out, tiny_detector.meta)
    before = _files(out.parent)
    assert sorted(before) == ["tiny_int8.bin", "tiny_int8.edgedet.json", "tiny_int8.xml"]
    bad_meta = tiny_detector.meta.replace(options={"not json": object()})
    other = CalibrationSpec(method="percentile", keep_stem_float=True)  # a different IR
    with pytest.raises(TypeError, match="not JSON serializable"):
        quantize_openvino(tiny_model, src, other, out, bad_meta)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(before)  # no temp folder
    assert _files(out.parent) == before  # the previous IR, weights and meta, byte for byte
    meta = read_meta(out)
    assert meta is not None and meta.calibration is not None
    assert meta.calibration["tool"] == "nncf+openvino"


def test_unwritable_sidecar_publishes_nothing(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ir" / "tiny_int8.xml"
    sidecar_path(out).mkdir(parents=True)  # a folder where the sidecar must go
    src = CalibrationSource(tiny_detector, images=image_dir, num=4)
    spec = CalibrationSpec(method="minmax", keep_stem_float=False)
    with pytest.raises((CalibrationError, OSError)):
        quantize_openvino(tiny_model, src, spec, out, tiny_detector.meta)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny_int8.edgedet.json"]
    assert not out.exists() and not out.with_suffix(".bin").exists()


def test_a_failed_rename_restores_the_previous_set(tmp_path: Path) -> None:
    from edgedet.calibration.nncf_int8 import _publish

    folder = tmp_path / "models"
    folder.mkdir()
    out = folder / "m.xml"
    order = [sidecar_path(out), out.with_suffix(".bin"), out]
    for p in order:
        p.write_text(f"old {p.suffix}")
    before = _files(folder)
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / sidecar_path(out).name).write_text("new sidecar")
    (staged / out.name).write_text("new xml")  # its .bin is missing: the second rename fails
    with pytest.raises(FileNotFoundError):
        _publish(staged, order)
    assert _files(folder) == before


def test_moving_a_candidate_never_pairs_its_bin_with_an_old_xml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedet.calibration import files

    out = tmp_path / "m.xml"
    cand = tmp_path / ".edgedet-calib-x" / "cand.xml"
    cand.parent.mkdir()
    for model, text in ((out, "old"), (cand, "new")):
        for p in (model, model.with_suffix(".bin"), sidecar_path(model)):
            p.write_text(f"{text} {p.suffix}")
    real = files.os.replace

    def killed_before_the_xml(src: object, dst: object) -> None:
        if str(dst).endswith(".xml"):
            raise KeyboardInterrupt("killed before the last rename")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(files.os, "replace", killed_before_the_xml)
    with pytest.raises(KeyboardInterrupt):
        files.move_model(cand, out)
    monkeypatch.undo()
    assert out.with_suffix(".bin").read_text() == "new .bin"
    assert not out.exists()  # the old .xml is not there to be read with the new .bin and meta
    files.move_model(cand, cand)  # onto itself: nothing removed
    assert cand.read_text() == "new .xml"
