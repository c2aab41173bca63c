"""benchmarks/jetson_check.py, the on-device check, run against the FAKE TensorRT (so its code
paths are exercised in CI; what it reports is only meaningful on a real device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_tensorrt_versions import Env

pytestmark = pytest.mark.fake_tensorrt

CHECKS = [
    "environment", "target", "fp16", "fp32", "dynamic_batch", "dynamic_hw",
    "ultralytics_header", "dla", "calibrator", "device_index", "power",
]  # fmt: skip


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0", "11.1.0"])
def test_jetson_check_runs_every_check_on_the_fake(
    version: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Env(monkeypatch, trt_version=version)
    from edgedet.benchmarks import jetson_check

    out = tmp_path / "report.json"
    code = jetson_check.main(["--out", str(out), "--only", *CHECKS])
    report = json.loads(out.read_text())
    failed = {k: v.get("error") for k, v in report.items() if v["status"] == "FAIL"}
    assert failed == {} and code == 0
    assert set(report) == set(CHECKS)
    assert report["dla"]["status"] == "PASS"  # the fake has 2 DLA cores; placement "DLA"
    expected_calibrator = "SKIP" if version.startswith("11") else "PASS"
    assert report["calibrator"]["status"] == expected_calibrator
    assert report["power"]["status"] == "SKIP"  # not a Jetson


def test_jetson_check_fails_when_dla_falls_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = Env(monkeypatch)
    from edgedet.benchmarks import jetson_check
    from edgedet.runtimes import trt_engine

    # a build that (wrongly) gives DLA a min != max profile falls back to the GPU in the fake
    monkeypatch.setattr(trt_engine, "batch_plan", lambda mb, ob, dla: trt_engine.BatchPlan(1, 2, 2))
    out = tmp_path / "report.json"
    assert jetson_check.main(["--out", str(out), "--only", "dla"]) == 1
    assert "fell back to the GPU" in json.loads(out.read_text())["dla"]["error"]
    assert env.state.builds >= 1
