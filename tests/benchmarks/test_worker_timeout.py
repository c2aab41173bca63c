"""A bench worker that really hangs: killed with its process group at the timeout, recorded as
failed, and the other configurations still measured.

The hang is real: a ``sitecustomize.py`` put on the worker's PYTHONPATH (the worker inherits the
parent's environment) starts a child process of its own and then sleeps, in the first worker
only (an O_EXCL marker file), before the worker has even imported edgedet. Nothing in edgedet is
patched; the parent sees exactly what a deadlocked runtime would show it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from edgedet.benchmarks.command import add_bench_arguments, run_bench
from edgedet.benchmarks.runner import BenchConfig, run_in_subprocess

HANG = """\
import os, subprocess, sys, time
marker = os.environ.get("EDGEDET_TEST_HANG_MARKER")
if marker:
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        fd = None  # a later worker: runs normally
    if fd is not None:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        os.write(fd, str(child.pid).encode())
        os.close(fd)
        sys.stderr.write("hanging on purpose\\n")
        sys.stderr.flush()
        time.sleep(600)
"""


@pytest.fixture
def hang_first_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The first worker started from now on hangs; returns the marker file (the hung worker's
    child pid is written into it)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HANG)
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(site) + (os.pathsep + old if old else ""))
    marker = tmp_path / "hung.pid"
    monkeypatch.setenv("EDGEDET_TEST_HANG_MARKER", str(marker))
    return marker


def _gone(pid: int, within_s: float = 5.0) -> bool:
    """True once ``pid`` no longer exists (or is a zombie awaiting its reaper)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_hung_worker_is_killed_with_its_group(hang_first_worker: Path, tmp_path: Path) -> None:
    config = BenchConfig(model=str(tmp_path / "none.onnx"), data=str(tmp_path))
    t0 = time.monotonic()
    rec = run_in_subprocess(config, timeout_s=3)
    assert time.monotonic() - t0 < 30
    assert rec["status"] == "failed"
    assert rec["reason"].startswith("timed out after 3 s"), rec["reason"]
    assert "hanging on purpose" in rec["stderr_tail"]
    child = int(hang_first_worker.read_text())
    assert _gone(child), f"the hung worker's child {child} survived the timeout"
    # the next worker is not affected
    rec = run_in_subprocess(config, timeout_s=60)
    assert rec["status"] == "failed" and "model file not found" in rec["reason"]


def test_bench_times_out_one_configuration_and_measures_the_rest(
    hang_first_worker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnxruntime")
    from edgedet import assets
    from edgedet.data.synthetic import sample_validation_set

    first = tmp_path / "first.onnx"
    second = tmp_path / "second.onnx"
    shutil.copyfile(assets.SAMPLE_MODEL, first)
    shutil.copyfile(assets.SAMPLE_MODEL, second)
    val = sample_validation_set(tmp_path / "val", n=2)
    out = tmp_path / "bench"
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args(
        [
            "--model", str(first), "--model", str(second), "--data", str(val),
            "--runtime", "onnxruntime", "--images", "2", "--warmup", "0",
            "--min-iterations", "2", "--min-seconds", "0", "--requests", "0",
            "--bootstrap", "0", "--no-progress", "--no-plot", "--timeout", "4",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert run_bench(args) == 1  # a configuration failed: like a crashed worker
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(Path(r["model"]).name, r["status"]) for r in records] == [
        ("first.onnx", "failed"),
        ("second.onnx", "ok"),
    ]
    assert records[0]["reason"].startswith("timed out after 4 s")
    assert _gone(int(hang_first_worker.read_text()))
    assert "1 ok, 0 skipped, 1 failed" in capsys.readouterr().out


def test_default_timeout_grows_with_the_work() -> None:
    from edgedet.benchmarks.runner import default_timeout_s

    small = BenchConfig(model="m.onnx", data="d", images=10)
    big = BenchConfig(model="m.onnx", data="d", images=5000)
    everything = BenchConfig(model="m.onnx", data="d")  # images None: the whole dataset
    tiled = BenchConfig(model="m.onnx", data="d", images=10, tiles="2x2")
    assert 900 <= default_timeout_s(small) < default_timeout_s(tiled) < default_timeout_s(big)
    assert default_timeout_s(everything) >= default_timeout_s(big)
    assert default_timeout_s(big) >= 5000 * 1.0  # at least a second per image


def test_bench_refuses_a_non_positive_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgedet import assets

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    args = parser.parse_args(
        ["--model", str(assets.SAMPLE_MODEL), "--data", str(tmp_path), "--timeout", "0"]
    )
    assert run_bench(args) == 2
    assert "--timeout must be > 0" in capsys.readouterr().err
