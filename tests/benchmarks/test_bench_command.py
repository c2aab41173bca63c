"""`edgedet bench` end to end on a tiny setting, and its usage errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from edgedet.benchmarks.command import add_bench_arguments, run_bench

#: Keys every record must carry (issue 3).
RECORD_KEYS = {
    "model", "model_sha256", "family", "runtime", "runtime_version", "device", "precision",
    "imgsz", "batch", "threads", "dataset", "images", "status", "reason", "latency_ms", "load_s",
    "peak_rss_mb", "throughput_fps", "accuracy", "edgedet_version", "host", "timestamp",
}  # fmt: skip
ACCURACY_KEYS = {
    "map50_95", "map50", "map75", "map_small", "map_medium", "map_large", "per_class_ap",
    "safety_recall", "precision", "recall", "f1",
}  # fmt: skip


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(list(argv)))


@pytest.mark.testdata
@pytest.mark.slow
def test_bench_end_to_end(models_dir: Path, datasets_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    from edgedet.benchmarks.runner import load_detections

    from edgedet.data import load_dataset
    from edgedet.eval.metrics import evaluate

    out = tmp_path / "bench"
    data = datasets_dir / "coco_tiny_val2017"
    code = _run(
        "--model", str(models_dir / "yolox_nano_416.onnx"),
        "--family", "yolox",
        "--data", str(data),
        "--runtime", "onnxruntime", "--runtime", "openvino",
        "--imgsz", "416", "--imgsz", "320",
        "--threads", "1",
        "--images", "4",
        "--warmup", "1", "--min-iterations", "3", "--min-seconds", "0",
        "--requests", "2",
        "--save-detections", "--no-progress",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [(r["runtime"], r["status"]) for r in records] == [
        ("onnxruntime", "ok"),
        ("onnxruntime", "skipped"),
        ("openvino", "ok"),
        ("openvino", "skipped"),
    ]
    for name in ("results.md", "results.csv", "frontier.png"):
        assert (out / name).stat().st_size > 0
    dataset = load_dataset(data).subset(4, seed=0)
    for rec in (r for r in records if r["status"] == "ok"):
        assert set(rec) >= RECORD_KEYS
        assert set(rec["accuracy"]) >= ACCURACY_KEYS
        assert set(rec["latency_ms"]) == {"e2e", "preprocess", "infer", "postprocess"}
        for stats in rec["latency_ms"].values():
            assert {"p50", "p90", "p99", "mean", "std", "min", "max"} <= set(stats)
        assert rec["images"] == 4 and rec["threads"] == 1 and rec["precision"] == "fp32"
        assert rec["model_sha256"] == (
            "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd"
        )
        assert rec["load_s"] > 0 and rec["peak_rss_mb"] > 0 and rec["throughput_fps"] > 0
        assert rec["power"]["measured"] in (True, False)
        # the mAP in the record is pycocotools' on the very detections of the accuracy pass
        dets = load_detections(rec["detections_file"])
        assert set(dets) == {s.image_id for s in dataset.samples}
        ref = evaluate(dataset, dets, _coco_names(), backend="pycocotools")
        assert rec["accuracy"]["map50_95"] == pytest.approx(ref.map50_95, abs=1e-4)
        assert rec["accuracy"]["map50"] == pytest.approx(ref.map50, abs=1e-4)
        assert rec["accuracy"]["map50_95"] > 0.05
    skipped = records[1]
    assert "static input of 416x416" in skipped["reason"]
    # Bootstrap: each record's interval holds its mAP; OpenVINO is compared with the first
    # configuration (ONNX Runtime) on the same resamples, as bootstrap_map computes it.
    from edgedet.eval.bootstrap import bootstrap_map

    ort, ov = records[0], records[2]
    for rec in (ort, ov):
        ci = rec["accuracy"]["map50_95_ci"]
        assert ci["low"] <= rec["accuracy"]["map50_95"] <= ci["high"] and ci["resamples"] == 1000
    assert "vs_reference" not in ort["accuracy"]
    paired = ov["accuracy"]["vs_reference"]
    direct = bootstrap_map(
        dataset,
        {
            "ort": load_detections(ort["detections_file"]),
            "ov": load_detections(ov["detections_file"]),
        },
        _coco_names(),
        resamples=1000,
    )
    assert paired["difference"] == direct.differences["ov"].to_dict()
    assert paired["ratio"] == direct.ratios["ov"].to_dict()
    assert paired["reference"] == "yolox_nano_416 fp32 onnxruntime imgsz 416 1 threads"
    assert "Against the reference (paired bootstrap" in (out / "results.md").read_text()


def _coco_names() -> tuple[str, ...]:
    from edgedet.meta import COCO80

    return COCO80


def test_no_model_and_no_sample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    from edgedet import assets

    monkeypatch.setattr(assets, "SAMPLE_MODEL", tmp_path / "sample_roads.onnx")
    assert _run("--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "embedded sample model is not installed" in err
    assert "edgedet bench --model yolox.onnx --family yolox --data path/to/coco" in err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert _run("--model", str(model)) == 2
    assert "--data is required with --model" in capsys.readouterr().err
    assert _run("--model", str(model), "--data", str(tmp_path / "nope")) == 2
    assert "dataset not found" in capsys.readouterr().err
    assert _run("--model", str(tmp_path / "none.onnx"), "--data", str(tmp_path)) == 2
    assert "model file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run("--alias", "person")
    assert "--alias takes MODEL_CLASS=DATASET_CLASS" in capsys.readouterr().err


@pytest.mark.testdata
def test_family_per_model_without_meta(models_dir: Path) -> None:
    from edgedet.benchmarks.sweep import per_model_settings

    from edgedet.errors import EdgedetError

    yolox = str(models_dir / "yolox_nano_416.onnx")
    nanodet = str(models_dir / "nanodet_m_320.onnx")
    v8 = str(models_dir / "yolov8n_dequant_fp32_640.onnx")  # carries meta: takes no --family
    entries = per_model_settings([yolox, v8, nanodet], ["yolox", "nanodet"], ["coco"])
    assert entries == [
        {"model": yolox, "family": "yolox", "names": "coco"},
        {"model": v8},
        {"model": nanodet, "family": "nanodet", "names": "coco"},
    ]
    with pytest.raises(EdgedetError, match="3 --family values for 2 model"):
        per_model_settings([yolox, v8, nanodet], ["yolox", "nanodet", "yolov8"], None)


@pytest.mark.slow
def test_no_arguments_runs_the_sample(tmp_path: Path) -> None:
    from edgedet.assets import SAMPLE_MODEL as sample

    if not sample.is_file():
        pytest.skip(f"the sample model is not built yet ({sample})")
    out = tmp_path / "bench"
    code = _run(
        "--images", "4", "--warmup", "1", "--min-iterations", "3", "--min-seconds", "0",
        "--requests", "0", "--no-progress", "--no-plot", "--out", str(out),
    )  # fmt: skip
    assert code == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    # Every installed CPU runtime, side by side (both are installed in the test environment).
    assert sorted(r["runtime"] for r in records) == ["onnxruntime", "openvino"]
    for record in records:
        assert record["status"] == "ok", record["reason"]
        assert record["model_name"] == "sample_roads" and record["accuracy"]["map50"] > 0
        # the scratch detections of the bootstrap are not left pointed at
        assert "detections_file" not in record and record["config"]["save_detections"] is None
        ci = record["accuracy"]["map50_95_ci"]
        assert ci["low"] <= record["accuracy"]["map50_95"] <= ci["high"]
    assert "vs_reference" in records[1]["accuracy"]
