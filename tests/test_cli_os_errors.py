"""A file operation the system refuses ends a command with one line and exit code 3.

The errors are real ones from the operating system: a read-only folder (chmod 0o500) when the
tests do not run as root, and, since root ignores permission bits, an output path whose parent
is an existing file otherwise (and always).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgedet.cli import main
from tests.tiny_models import make_tiny_yolov5, tiny_meta

EXIT_OS_ERROR = 3  # README and `edgedet --help`: the system refused a file operation


@pytest.fixture()
def predict_args(tmp_path: Path) -> list[str]:
    model = make_tiny_yolov5(tmp_path / "tiny.onnx", meta=tiny_meta())
    image = tmp_path / "img.jpg"
    cv2.imwrite(str(image), np.full((40, 60, 3), 128, dtype=np.uint8))
    return ["predict", str(model), str(image), "--save", str(tmp_path / "out"), "--no-draw"]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("edgedet: error: "), err
    return lines[0]


def test_output_under_a_file_is_one_line_and_exit_3(
    predict_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "results.json"
    blocker.write_text("{}")
    target = blocker / "coco.json"  # its parent is a file: the system refuses
    capsys.readouterr()
    assert main([*predict_args, "--coco-results", str(target)]) == EXIT_OS_ERROR
    line = _one_error_line(capsys.readouterr().err)
    assert str(blocker) in line
    assert ("File exists" in line) or ("Not a directory" in line), line
    assert blocker.read_text() == "{}"  # nothing lost


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root ignores permission bits: the test above covers a real OSError as root",
)
def test_read_only_folder_is_one_line_and_exit_3(
    predict_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)  # 0o500
    try:
        capsys.readouterr()
        code = main([*predict_args, "--coco-results", str(ro / "coco.json")])
        line = _one_error_line(capsys.readouterr().err)
    finally:
        ro.chmod(0o700)
    assert code == EXIT_OS_ERROR
    assert "Permission denied" in line and str(ro) in line, line
    assert list(ro.iterdir()) == []  # no temp file left behind


def test_message_names_errno_path_and_remedy(tmp_path: Path) -> None:
    from edgedet.cli import os_error_message

    with pytest.raises(OSError) as caught:
        os.mkdir(tmp_path / "missing" / "child")  # a real ENOENT
    msg = os_error_message(caught.value)
    assert msg.startswith("No such file or directory: ")
    assert str(tmp_path / "missing" / "child") in msg and "ENOENT" in msg
    assert "ENOSPC: the disk is full" in os_error_message(
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    )


def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from edgedet.cli import EXIT_OS_ERROR as code

    assert code == EXIT_OS_ERROR
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"{EXIT_OS_ERROR} the system refused a file operation" in " ".join(
        capsys.readouterr().out.split()
    )
