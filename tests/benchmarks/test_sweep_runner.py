"""Sweep expansion (CLI lists and YAML files) and the reasons configurations are skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgedet.benchmarks.runner import BenchConfig, run_config
from edgedet.benchmarks.sweep import expand, load_sweep_file, run_sweep

from edgedet.errors import InvalidInputError


def test_expand_every_combination(tmp_path: Path) -> None:
    configs = expand(
        [str(tmp_path / "a.onnx"), {"model": str(tmp_path / "b.onnx"), "runtime": "openvino"}],
        {
            "data": "ds",
            "runtime": ["onnxruntime", "openvino"],
            "precision": ["fp32", "fp16"],
            "imgsz": [320, 416],
            "batch": [1],
            "family": "yolox",
            "threads": 2,
        },
    )
    assert len(configs) == 2 * 2 * 2 + 1 * 2 * 2
    assert {c.runtime for c in configs[8:]} == {"openvino"}
    assert all(c.threads == 2 and c.family == "yolox" for c in configs)
    assert {(c.precision, c.imgsz) for c in configs[:4]} == {
        ("fp32", 320),
        ("fp32", 416),
        ("fp16", 320),
        ("fp16", 416),
    }


def test_runtime_by_suffix_when_not_given() -> None:
    configs = expand(["m.xml", "m.onnx", "m.engine"], {"data": "d"})
    assert [c.runtime for c in configs] == ["openvino", "onnxruntime", "tensorrt"]
    with pytest.raises(InvalidInputError, match=r"cannot choose a runtime for 'm\.bin'"):
        expand(["m.bin"], {"data": "d"})


def test_expand_errors() -> None:
    with pytest.raises(InvalidInputError, match="unknown setting 'colour'"):
        expand(["m.onnx"], {"data": "d", "colour": "red"})
    with pytest.raises(InvalidInputError, match="no dataset"):
        expand(["m.onnx"], {})
    with pytest.raises(InvalidInputError, match="batch must be >= 1"):
        expand(["m.onnx"], {"data": "d", "batch": 0})
    with pytest.raises(InvalidInputError, match="precision must be one of"):
        expand(["m.onnx"], {"data": "d", "precision": "fp8"})


@pytest.mark.testdata
def test_family_applies_only_to_models_without_meta(models_dir: Path) -> None:
    yolox = str(models_dir / "yolox_nano_416.onnx")
    v8 = str(models_dir / "yolov8n_dequant_fp32_640.onnx")  # carries Ultralytics metadata
    configs = expand([yolox, v8], {"data": "d", "family": "yolox", "names": "coco"})
    assert (configs[0].family, configs[0].names) == ("yolox", "coco")
    assert (configs[1].family, configs[1].names) == (None, None)


def test_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "data: datasets/coco\n"
        "threads: 2\n"
        "runtimes: [onnxruntime, openvino]\n"
        "models:\n"
        "  - model: models/yolox.onnx\n"
        "    family: yolox\n"
        "    imgsz: [416]\n"
        "  - model: models/nanodet.onnx\n"
        "    family: nanodet\n"
        "    runtime: onnxruntime\n"
        "    min_seconds: 1\n"
    )
    configs = load_sweep_file(sweep, {"images": 8, "threads": 4})
    assert [(Path(c.model).name, c.runtime) for c in configs] == [
        ("yolox.onnx", "onnxruntime"),
        ("yolox.onnx", "openvino"),
        ("nanodet.onnx", "onnxruntime"),
    ]
    assert configs[0].data == str((tmp_path / "datasets" / "coco").resolve())
    assert configs[0].imgsz == 416 and configs[2].imgsz is None
    assert all(c.images == 8 and c.threads == 2 for c in configs)  # the file wins over flags
    assert configs[2].min_seconds == 1 and configs[0].min_seconds == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: []\n")
    with pytest.raises(InvalidInputError, match="non-empty 'models:' list"):
        load_sweep_file(bad)
    with pytest.raises(InvalidInputError, match="sweep file not found"):
        load_sweep_file(tmp_path / "nope.yaml")


def test_config_json_round_trip() -> None:
    c = BenchConfig(model="m.onnx", data="d", precision="fp16", aliases={"person": "Pedestrian"})
    assert BenchConfig.from_json(c.to_json()) == c
    with pytest.raises(InvalidInputError, match="unknown benchmark config keys"):
        BenchConfig.from_json('{"model": "m", "data": "d", "speed": 1}')


def test_run_sweep_never_crashes(tmp_path: Path) -> None:
    def runner(config: BenchConfig) -> dict:
        return {
            "model": config.model,
            "status": "failed",
            "reason": "boom",
            "runtime": config.runtime,
        }

    configs = expand(["a.onnx", "b.onnx"], {"data": "d"})
    records = run_sweep(configs, tmp_path, progress=False, runner=runner)
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert len((tmp_path / "records.jsonl").read_text().splitlines()) == 2


def _skip_reason(**kw: object) -> tuple[str, str]:
    rec = run_config(BenchConfig(**kw))  # type: ignore[arg-type]
    return rec["status"], rec["reason"]


@pytest.mark.testdata
def test_impossible_combinations_are_skipped(models_dir: Path, datasets_dir: Path) -> None:
    from edgedet.runtimes.registry import probe

    common = {
        "model": str(models_dir / "yolox_nano_416.onnx"),
        "data": str(datasets_dir / "coco_tiny_val2017"),
        "family": "yolox",
        "images": 2,
    }
    status, reason = _skip_reason(**common, runtime="nope")
    assert status == "skipped" and "unknown runtime 'nope'" in reason
    if not probe("tensorrt")["available"]:
        status, reason = _skip_reason(**common, runtime="tensorrt")
        assert status == "skipped" and "tensorrt" in reason
    status, reason = _skip_reason(**common, imgsz=320)
    assert status == "skipped" and "static input of 416x416" in reason
    status, reason = _skip_reason(**common, batch=2)
    assert status == "skipped" and "fixed batch of 1" in reason
    status, reason = _skip_reason(**common, runtime="openvino", precision="int8")
    assert status == "skipped" and "INT8 needs a quantized (QDQ) model" in reason
    status, reason = _skip_reason(**common, runtime="onnxruntime", precision="fp16")
    assert status == "skipped" and "runs this model in fp32" in reason


@pytest.mark.testdata
def test_failures_are_recorded(models_dir: Path, datasets_dir: Path, tmp_path: Path) -> None:
    rec = run_config(BenchConfig(model=str(tmp_path / "none.onnx"), data=str(tmp_path)))
    assert rec["status"] == "failed" and "model file not found" in rec["reason"]
    rec = run_config(
        BenchConfig(
            model=str(models_dir / "yolox_nano_416.onnx"),
            data=str(tmp_path / "no_dataset"),
            family="yolox",
        )
    )
    assert rec["status"] == "failed" and "does not exist" in rec["reason"]
    rec = run_config(
        BenchConfig(
            model=str(models_dir / "yolox_nano_416.onnx"),
            data=str(datasets_dir / "coco_tiny_val2017"),
            images=1,
        )
    )  # no family for a model without meta
    assert rec["status"] == "failed" and "carries no edgedet metadata" in rec["reason"]


def test_worker_process_records_and_timeouts(tmp_path: Path) -> None:
    from edgedet.benchmarks.runner import run_in_subprocess

    config = BenchConfig(model=str(tmp_path / "none.onnx"), data=str(tmp_path), threads=1)
    rec = run_in_subprocess(config)
    assert rec["status"] == "failed" and "model file not found" in rec["reason"]
    assert rec["worker"]["opencv_threads"] == 1 and rec["worker"]["pid"] > 0
    rec = run_in_subprocess(config, timeout_s=0.01)
    assert rec["status"] == "failed" and rec["reason"].startswith("timed out after 0 s")


def test_rounds_are_interleaved_and_pooled(tmp_path: Path) -> None:
    from edgedet.benchmarks.sweep import combine_rounds

    order: list[str] = []
    accuracy_runs: list[bool] = []

    def runner(config: BenchConfig) -> dict:
        order.append(config.model)
        accuracy_runs.append(config.accuracy)
        k = order.count(config.model)  # round number, 1-based
        samples = {s: [k * 1_000_000] * 10 for s in ("e2e", "preprocess", "infer", "postprocess")}
        return {
            "model": config.model,
            "runtime": config.runtime,
            "batch": 1,
            "status": "ok",
            "latency_ms": {"e2e": {"p50": float(k)}},
            "latency_samples_ns": samples if config.keep_samples else None,
            "latency_iterations": 10,
            "load_s": float(k),
            "peak_rss_mb": 100.0 + k,
            "throughput_fps": None,
            "accuracy": {"map50_95": 0.3},
            "method": {"warmup": 1},
        }

    configs = expand(["a.onnx", "b.onnx"], {"data": "d"})
    records = run_sweep(configs, tmp_path, progress=False, repeat=3, runner=runner)
    assert order == ["a.onnx", "b.onnx"] * 3  # round after round, not config after config
    assert accuracy_runs == [True, True] + [False] * 4  # accuracy only in the first round
    a = records[0]
    assert a["rounds"] == 3 and a["latency_p50_rounds"] == [1.0, 2.0, 3.0]
    assert a["latency_ms"]["e2e"]["p50"] == pytest.approx(2.0)  # pooled 10+10+10 samples
    assert a["latency_ms"]["e2e"]["min"] == 1.0 and a["latency_ms"]["e2e"]["max"] == 3.0
    assert a["latency_iterations"] == 30 and a["load_s"] == 2.0 and a["peak_rss_mb"] == 103.0
    assert "latency_samples_ns" not in a and a["method"]["rounds"] == 3
    failed = combine_rounds([records[0], {"status": "failed", "reason": "boom"}])
    assert failed["status"] == "failed" and failed["rounds_ok"] == 1
    with pytest.raises(InvalidInputError, match="repeat must be >= 1"):
        run_sweep(configs, tmp_path, progress=False, repeat=0, runner=runner)
