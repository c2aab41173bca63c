"""Working folders of killed runs: a calibration killed with SIGKILL leaves its
``.edgedet-calib-*`` folder (nothing can run at SIGKILL); the next run removes it, while a live
run's folder beside it is kept. The same for bench's folders in the temp folder; an IR is
published so that a new ``.bin`` never meets an old ``.xml``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from edgedet.calibration.ort_int8 import quantize_onnx
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec

from edgedet.workdir import MARKER, make_work_dir, remove_work_dir, sweep_stale, work_dir

REPO = Path(__file__).resolve().parents[2]


def _owner(parent: Path, prefix: str) -> tuple[subprocess.Popen[str], Path]:
    """A process that makes a working folder in ``parent`` and then waits (a run in progress)."""
    code = textwrap.dedent(f"""
        import sys, time
        from edgedet.workdir import make_work_dir
        w = make_work_dir({prefix!r}, {str(parent)!r})
        (w / "opset.onnx").write_bytes(b"x" * 1000)
        print(w, flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)  # fmt: skip
    assert proc.stdout is not None
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir() and (folder / MARKER).is_file()
    return proc, folder


def _killed(parent: Path, prefix: str) -> Path:
    proc, folder = _owner(parent, prefix)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert folder.is_dir()  # SIGKILL: nothing cleaned
    return folder


def test_next_calibration_removes_a_killed_runs_folder_and_keeps_a_live_one(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    live, alive = _owner(out_dir, ".edgedet-calib-")  # first: a new owner sweeps as it starts
    dead = _killed(out_dir, ".edgedet-calib-")
    assert alive.is_dir()  # the killed run's start kept the live run's folder
    old = out_dir / ".edgedet-calib-from-an-old-version"  # no marker, older than this process
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    try:
        src = CalibrationSource(tiny_detector, images=image_dir, num=4)
        quantize_onnx(tiny_model, src, CalibrationSpec(num_images=4), out_dir / "m.onnx",
                      tiny_detector.meta)  # fmt: skip
        assert not dead.exists() and not old.exists()
        assert alive.is_dir() and (alive / "opset.onnx").is_file()  # a running calibration's
        assert sorted(p.name for p in out_dir.iterdir()) == sorted(["m.onnx", alive.name])
    finally:
        live.kill()
        live.wait(timeout=10)


def test_failed_calibration_removes_its_folder(
    tiny_detector, tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=4)
    src.entries[1].path.unlink()  # fails while running the images
    with pytest.raises(Exception, match="unreadable"):
        quantize_onnx(tiny_model, src, CalibrationSpec(), tmp_path / "m.onnx", tiny_detector.meta)
    assert not list(tmp_path.glob(".edgedet-calib-*"))


def test_bench_folders_in_the_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = _killed(tmp_path, "edgedet-bench-")
    assert dead.is_dir()
    young = tmp_path / "edgedet-bench-made-just-now"  # no marker, newer than this process
    young.mkdir()
    with work_dir("edgedet-bench-") as mine:
        assert mine.parent == tmp_path and not dead.exists()
        assert young.is_dir()  # not provably dead: kept
        assert sweep_stale(tmp_path, "edgedet-bench-") == []  # our own folder is ours
    assert not mine.exists()


def test_remove_work_dir_after_an_error(tmp_path: Path) -> None:
    w = make_work_dir(".edgedet-x-", tmp_path)
    (w / "f").write_text("x")
    remove_work_dir(w)
    assert list(tmp_path.iterdir()) == []


def test_ir_publish_never_pairs_a_new_bin_with_an_old_xml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ov = pytest.importorskip("openvino")
    from edgedet.calibration import nncf_int8

    from edgedet.meta import sidecar_path
    from tests.tiny_models import make_tiny_yolov5, tiny_meta

    def ir(classes: int) -> object:
        onnx_path = make_tiny_yolov5(tmp_path / f"m{classes}.onnx", nc=classes)
        return ov.Core().read_model(str(onnx_path))

    out = tmp_path / "ir" / "m.xml"
    nncf_int8.save_ir_atomically(ir(2), out, tiny_meta())
    old_bin, old_meta = out.with_suffix(".bin").read_bytes(), sidecar_path(out).read_bytes()
    real = os.replace

    def crash_before_xml(src: object, dst: object) -> None:
        if str(dst).endswith(".xml"):
            raise KeyboardInterrupt("killed between the two renames")
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(nncf_int8.os, "replace", crash_before_xml)
    with pytest.raises(KeyboardInterrupt):
        nncf_int8.save_ir_atomically(ir(5), out, tiny_meta().replace(family="yolov8"))
    monkeypatch.undo()
    # the old .xml was removed first, so it never met the new .bin; the previous .bin and meta
    # were put back (the .xml's own restore hit the same crashing rename)
    assert not out.exists()
    assert out.with_suffix(".bin").read_bytes() == old_bin
    assert sidecar_path(out).read_bytes() == old_meta
    assert not list(out.parent.glob(".edgedet-ir-*"))


def test_bench_worker_ends_when_its_parent_is_killed(tmp_path: Path) -> None:
    child = ("import os, time; from edgedet.benchmarks.worker import exit_with_parent; "
             "exit_with_parent(os.getppid(), 0.1); print(os.getpid(), flush=True); time.sleep(60)")
    parent = textwrap.dedent(f"""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE, text=True)
        print(p.stdout.readline().strip(), flush=True)
        time.sleep(60)
    """)  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)  # fmt: skip
    assert proc.stdout is not None
    worker = int(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.time() + 10
    while running(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not running(worker), "the worker outlived its killed parent"
