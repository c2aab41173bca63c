"""Without sympy, ORT's symbolic shape inference is skipped on purpose and the calibration record
says so (issue 16: the warning went onto the progress bar and nowhere else)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from edgedet.calibration.ort_int8 import quantize_onnx
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec

from edgedet.meta import read_meta


def test_missing_sympy_lands_in_the_record(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setitem(sys.modules, "sympy", None)  # find_spec("sympy") -> None: not installed
    src = CalibrationSource(tiny_detector, images=image_dir, num=4, batch_size=2)
    out = tmp_path / "tiny_int8.onnx"
    spec = CalibrationSpec(method="minmax", num_images=4, keep_stem_float=False)
    with caplog.at_level(logging.WARNING, logger="edgedet.calibration"):
        res = quantize_onnx(tiny_model, src, spec, out, tiny_detector.meta)
    rec = read_meta(out).calibration  # type: ignore[union-attr]
    notes = [w for w in rec["warnings"] if "sympy" in w]
    assert len(notes) == 1 and "symbolic shape inference was skipped" in notes[0]
    assert "[calibrate]" in notes[0] and "pip install" in notes[0]
    assert not any("quant_pre_process failed" in w for w in rec["warnings"])  # no failed retry
    assert res.path == out
    assert sum("sympy" in r.getMessage() for r in caplog.records) == 1


def test_log_lines_follow_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich's progress display swaps sys.stderr for a proxy; the CLI's handler must use it."""
    import io

    from edgedet._cli_support import CurrentStderrHandler

    handler = CurrentStderrHandler()
    swapped = io.StringIO()
    monkeypatch.setattr(sys, "stderr", swapped)
    handler.emit(logging.LogRecord("edgedet", logging.WARNING, __file__, 1, "hello", None, None))
    assert swapped.getvalue() == "hello\n"
