"""``edgedet optimize``: the candidate set, the decision, and whole runs on a tiny model with the
real ONNX Runtime and OpenVINO (interrupted and resumed, one runtime only, nothing in budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgedet.benchmarks import optimize as opt

import edgedet
from edgedet.errors import InvalidInputError
from edgedet.meta import ModelMeta
from tests.tiny_models import make_tiny_yolov5

META = ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(32, 32))
FAST = ["--min-seconds", "0.05", "--resamples", "20", "--calib-num", "6", "--rounds", "1"]


def make_val(val: Path) -> Path:
    """A 6-image YOLO dataset of noise with one box each (classes a, b) in ``val``."""
    (val / "images").mkdir(parents=True)
    (val / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(val / "images" / f"img_{i}.jpg"),
                    rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8))  # fmt: skip
        (val / "labels" / f"img_{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.4\n")
    (val / "classes.txt").write_text("a\nb\n")
    return val


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    model = make_tiny_yolov5(tmp_path / "tiny.onnx", batch="N", meta=META)
    return {"model": model, "val": make_val(tmp_path / "val"), "out": tmp_path / "out"}


def _argv(s: dict[str, Path], *extra: str) -> list[str]:
    return [str(s["model"]), "--data", str(s["val"]), "--images", str(s["val"] / "images"),
            "--out", str(s["out"]), *FAST, *extra]  # fmt: skip


def _only(*available: str) -> Any:
    """A probe for a device where only ``available`` runtimes are installed."""
    from edgedet.runtimes.registry import probe

    def fake(name: str) -> dict[str, Any]:
        if name in available:
            return probe(name)
        return {"name": name, "available": False, "reason": f"{name} is not installed here"}

    return fake


# -- enumeration and decision -----------------------------------------------------------------


def test_candidates_follow_the_declarations() -> None:
    cands, skipped = opt.enumerate_candidates(probe=_only("onnxruntime", "openvino"))
    keys = {c.key for c in cands}
    assert {"onnxruntime-fp32-float", "onnxruntime-int8-qdq_onnx", "onnxruntime-int8-qdq_all",
            "openvino-fp32-float", "openvino-bf16-float", "openvino-fp16-float",
            "openvino-int8-openvino_ir", "openvino-int8-qdq_onnx"} == keys  # fmt: skip
    assert all(s.key.startswith("tensorrt") and "not installed" in s.reason for s in skipped)
    # ORT has no precision option for a float model: fp16 there needs another file, not offered
    assert not any(c.runtime == "onnxruntime" and c.precision == "fp16" for c in cands)
    one, _ = opt.enumerate_candidates(precisions=["int8"], threads=[1, 2],
                                      probe=_only("onnxruntime"))  # fmt: skip
    assert sorted(c.key for c in one) == [
        "onnxruntime-int8-qdq_all-t1", "onnxruntime-int8-qdq_all-t2",
        "onnxruntime-int8-qdq_onnx-t1", "onnxruntime-int8-qdq_onnx-t2",
    ]  # fmt: skip


def test_runtimes_come_from_their_declared_model_formats(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch runs TorchScript, not ONNX: not a candidate, by its declaration, not its name."""
    import dataclasses

    from edgedet.runtimes import registry

    assert "onnx" not in registry.runtime_capabilities("torch").model_formats
    cands, skipped = opt.enumerate_candidates(probe=_only("onnxruntime", "torch"))
    assert not any(c.key.startswith("torch") for c in [*cands, *skipped])
    real = registry.runtime_capabilities

    def declared(name: str) -> Any:
        caps = real(name)
        if name == "torch":  # a torch runtime that would load ONNX files
            return dataclasses.replace(caps, model_formats=("onnx",))
        return caps

    monkeypatch.setattr(registry, "runtime_capabilities", declared)
    cands, _ = opt.enumerate_candidates(probe=_only("onnxruntime", "torch"))
    assert "torch-fp32-float" in {c.key for c in cands}


def _rec(map50_95: float, p50: float, diff: tuple[float, float] | None = None) -> dict[str, Any]:
    acc: dict[str, Any] = {"map50_95": map50_95}
    if diff is not None:
        acc["vs_reference"] = {"difference": {"low": diff[0], "high": diff[1]}}
    return {"status": "ok", "accuracy": acc, "latency_ms": {"e2e": {"p50": p50}}}


def test_decide_fastest_within_budget_and_why_others_lost() -> None:
    cands, _ = opt.enumerate_candidates(probe=_only("onnxruntime", "openvino"))
    by = {c.key: c for c in cands}
    ref = _rec(0.300, 40.0)
    entries = [
        (by["onnxruntime-fp32-float"], ref),
        (by["openvino-int8-openvino_ir"], _rec(0.260, 15.0, (-0.06, -0.02))),  # loses 4 points
        (by["openvino-bf16-float"], _rec(0.296, 20.0, (-0.012, 0.004))),  # 0.4 [-0.4, 1.2]
        (by["openvino-fp32-float"], _rec(0.300, 30.0, (-0.001, 0.001))),
        (by["onnxruntime-int8-qdq_onnx"], {"status": "failed", "reason": "boom"}),
    ]
    chosen, verdicts = opt.decide(entries, ref, 1.0)
    assert chosen is not None and chosen.key == "openvino-bf16-float"
    v = {x.key: x for x in verdicts}
    assert v["openvino-int8-openvino_ir"].status == "over_budget"
    assert "loses 4.00 points > budget 1" in v["openvino-int8-openvino_ir"].reason
    assert v["openvino-bf16-float"].cannot_tell and "cannot tell" in v["openvino-bf16-float"].reason
    assert v["openvino-fp32-float"].status == "slower" and "1.50x" in v["openvino-fp32-float"].reason
    assert v["onnxruntime-int8-qdq_onnx"].status == "failed"
    # a budget nothing eligible meets: no choice; the filter leaves the float reference out
    chosen, verdicts = opt.decide(entries, ref, 0.1, lambda c: c.precision == "int8")
    assert chosen is None
    assert {x.key: x.status for x in verdicts}["onnxruntime-fp32-float"] == "not_eligible"


def test_latency_rounds_median_and_busy_note() -> None:
    rec = _rec(0.3, 10.0)
    assert opt.p50_of(rec) == 10.0
    rec["optimize_p50_rounds"] = [12.0, 30.0, 11.0]
    assert opt.p50_of(rec) == 11.0
    rec.update(latency_cpu_cores_used=0.6, threads_used=2)
    assert "used 0.60 of 2 cores" in opt.busy_note(rec)
    rec["latency_cpu_cores_used"] = 1.9
    assert opt.busy_note(rec) == ""


def test_bad_arguments(setup: dict[str, Path]) -> None:
    for extra, message in [
        (["--max-map-drop", "-1"], "finite number >= 0"),
        (["--max-map-drop", "nan"], "finite number >= 0"),
        (["--runtime", "nosuch"], "nosuch"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--precision", "int4"], "--precision must be one of"),
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--runtime", "tensorrt"], "not here: tensorrt fp32"),
    ]:
        args = _parse(_argv(setup, *extra))
        with pytest.raises(InvalidInputError, match=message):
            opt.run_optimize(args)
    assert not setup["out"].exists()  # nothing written for bad arguments
    args = _parse(_argv(setup))
    args.data = str(setup["val"] / "missing")
    with pytest.raises(InvalidInputError, match="not found"):
        opt.run_optimize(args)


def _parse(argv: list[str]) -> Any:
    import argparse

    p = argparse.ArgumentParser()
    opt.add_optimize_arguments(p)
    return p.parse_args(argv)


# -- whole runs -------------------------------------------------------------------------------


def test_interrupted_run_resumes_and_profile_loads(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgedet.benchmarks import runner

    real = runner.run_in_subprocess
    calls: list[str] = []

    def interrupt_second(config: Any, **kw: Any) -> dict[str, Any]:
        calls.append(config.runtime)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(config, **kw)

    monkeypatch.setattr(runner, "run_in_subprocess", interrupt_second)
    argv = _argv(setup, "--precision", "fp32")
    with pytest.raises(KeyboardInterrupt):
        opt.run_optimize(_parse(argv))
    records = sorted(p.name for p in (setup["out"] / "candidates").glob("*-float.json"))
    assert records == ["onnxruntime-fp32-float.json"]  # the finished one is on disk
    assert not list(setup["out"].glob("*.deploy.json"))
    first = (setup["out"] / "candidates" / records[0]).stat().st_mtime_ns

    monkeypatch.setattr(runner, "run_in_subprocess", real)
    capsys.readouterr()
    assert opt.run_optimize(_parse(argv)) == 0
    text = capsys.readouterr().out
    assert "onnxruntime fp32: finished in an earlier run (resumed)" in text
    assert (setup["out"] / "candidates" / records[0]).stat().st_mtime_ns == first
    assert (setup["out"] / "candidates" / "openvino-fp32-float.json").is_file()

    (profile,) = setup["out"].glob("*.deploy.json")
    saved = json.loads(profile.read_text())
    assert saved["runtime"] in ("onnxruntime", "openvino")
    assert saved["measured"]["map_drop_points"] <= 1.0
    assert saved["target"]["cpu_flags"] == edgedet.deploy.device_fingerprint("x")["cpu_flags"]
    report = (setup["out"] / "optimize.md").read_text()
    assert "**chosen**" in report and ("**slower**" in report or "**over_budget**" in report)
    assert (setup["out"] / "frontier.png").stat().st_size > 1000
    with edgedet.load(setup["out"]) as det:  # no other flags
        assert det.runtime_name == saved["runtime"]
        det(np.zeros((40, 48, 3), np.uint8))


def test_one_runtime_device_and_nothing_within_budget(
    setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edgedet.runtimes.registry as registry

    monkeypatch.setattr(registry, "probe", _only("onnxruntime"))
    # the tiny model's only conv reads the image (kept float): its INT8 builds quantize
    # nothing, so no INT8 candidate can be measured and nothing eligible meets the budget
    rc = opt.run_optimize(_parse(_argv(setup, "--precision", "int8", "--max-map-drop", "0")))
    text = capsys.readouterr().out
    assert rc == 1
    assert "openvino" in text and "openvino is not installed here" in text
    assert "no candidate is within 0 mAP points" in text
    assert not list(setup["out"].glob("*.deploy.json"))
    summary = json.loads((setup["out"] / "optimize.json").read_text())
    status = {c["key"]: c["status"] for c in summary["candidates"]}
    assert status["onnxruntime-fp32-float"] == "not_eligible"
    assert status["onnxruntime-int8-qdq_onnx"] == "skipped"
    assert status["openvino-fp32-float"] == "skipped"


def test_cli_exit_codes(setup: dict[str, Path]) -> None:
    from edgedet.cli import main

    assert main(["optimize", *_argv(setup, "--max-map-drop", "-2")]) == 2
