"""The device-side install never needs torch: import edgedet and run ONNX Runtime with it blocked."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.tiny_models import make_tiny_yolov5, tiny_meta

REPO = Path(__file__).resolve().parent.parent


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_import_and_detect_without_torch(tmp_path: Path) -> None:
    model = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    result = _run(f"""
        import sys
        sys.modules["torch"] = None  # any "import torch" now raises ImportError
        import numpy as np
        import edgedet
        from edgedet.runtimes.registry import probe
        det = edgedet.load({str(model)!r}, runtime="onnxruntime")
        dets = det(np.zeros((48, 64, 3), np.uint8))
        assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
        det2 = edgedet.load({str(model)!r}, runtime="openvino")
        det2(np.zeros((48, 64, 3), np.uint8))
        assert probe("torch")["available"] is False
        print("ok", len(dets), det.runtime_name)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_import_edgedet_is_light() -> None:
    """`import edgedet` alone pulls in no inference library, no torch, no OpenCV."""
    result = _run("""
        import sys
        import edgedet
        heavy = {"torch", "onnxruntime", "openvino", "tensorrt", "cv2", "matplotlib", "onnx"}
        print(sorted(heavy & set(sys.modules)))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_help_without_torch() -> None:
    result = _run("""
        import sys
        sys.modules["torch"] = None
        from edgedet.cli import main
        try:
            main(["--help"])
        except SystemExit as e:
            print("exit", e.code)
    """)
    assert result.returncode == 0, result.stderr
    assert "predict" in result.stdout and "exit 0" in result.stdout
