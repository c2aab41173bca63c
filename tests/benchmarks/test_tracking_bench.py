"""`edgedet bench` on data with identities: tracking metrics and stream speed, per runtime."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
from edgedet.benchmarks.command import add_bench_arguments, run_bench
from edgedet.benchmarks.tracking import tracking_sequences

import edgedet
from edgedet.data.synthetic import generate_sequence
from edgedet.errors import SourceLostError
from edgedet.video import ReplaySource

pytest.importorskip("supervision", reason="the 'track' extra (supervision) is not installed")
pytest.importorskip("motmetrics", reason="motmetrics (the 'bench' extra) is not installed")


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(list(argv)))


def test_bench_reports_tracking_metrics_for_sequences(tmp_path: Path) -> None:
    data = tmp_path / "seqs"
    for seed in (3, 4):
        generate_sequence(data / f"s{seed}", 12, seed=seed)
    (data / "notes").mkdir()  # not a sequence: ignored
    assert [p.name for p in tracking_sequences(data)] == ["s3", "s4"]
    out = tmp_path / "out"
    assert _run("--data", str(data), "--runtime", "onnxruntime", "--out", str(out), "--warmup", "1") == 0
    doc = json.loads((out / "tracking.json").read_text())
    (rec,) = doc["records"]
    assert rec["status"] == "ok" and rec["runtime_info"]["runtime"] == "onnxruntime"
    m = rec["tracking"]["overall"]
    assert 0.5 < m["mota"] <= 1 and 0.5 < m["idf1"] <= 1 and m["frames"] == 24
    assert set(rec["tracking"]["per_sequence"]) == {"synth-3", "synth-4"}
    for mode in ("sequential", "pipelined", "sequential_camera", "pipelined_camera"):
        assert rec[mode]["frames"] + rec[mode]["dropped"] == 24 and rec[mode]["fps"] > 0
        assert 0 < rec[mode]["latency_ms_p50"] <= rec[mode]["latency_ms_p99"]
    assert len(rec["sequential"]["fps_rounds"]) == len(rec["pipelined"]["fps_rounds"]) == 3
    assert "| sample_roads.onnx | onnxruntime |" in (out / "tracking.md").read_text()


def test_bench_on_a_plain_dataset_is_not_tracking(tmp_path: Path) -> None:
    assert tracking_sequences(tmp_path) == []
    assert tracking_sequences(tmp_path / "missing") == []


def test_replay_paces_frames_like_a_camera(tmp_path: Path) -> None:
    seq = generate_sequence(tmp_path / "s", 6, seed=0)
    det = edgedet.load(Path(edgedet.__file__).parent / "assets" / "sample_roads.onnx")
    t0 = time.monotonic()
    got = []
    with pytest.raises(SourceLostError, match=r"replay of .* at 25 fps"):
        for r in det.stream(ReplaySource(seq, 25.0), drop="never"):
            got.append(r)
    assert len(got) == 6 and time.monotonic() - t0 >= 5 / 25.0
    assert all(r.latency < 1.0 for r in got)
