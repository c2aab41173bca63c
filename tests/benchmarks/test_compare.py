"""`edgedet bench compare`: differences and a non-zero exit on regression."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from edgedet.benchmarks.command import add_bench_arguments, run_bench
from edgedet.benchmarks.compare import compare
from edgedet.benchmarks.records import write_records

from edgedet.errors import InvalidInputError

from .synthetic_records import make_record


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    return run_bench(parser.parse_args(list(argv)))


def test_no_regression_within_limits() -> None:
    rows, regressed = compare(
        [make_record(map50_95=0.300, p50=10.0)],
        [make_record(map50_95=0.295, p50=10.9)],
        max_map_drop=0.01,
        max_latency_increase=0.10,
    )
    assert not regressed and len(rows) == 1
    assert rows[0].map_delta == pytest.approx(-0.005)
    assert rows[0].latency_change == pytest.approx(0.09)


def test_regressions_are_flagged() -> None:
    old = [make_record("a"), make_record("b"), make_record("c"), make_record("d")]
    new = [
        make_record("a", map50_95=0.28),  # -2 points
        make_record("b", p50=12.0),  # +20 %
        make_record("c", status="failed"),
    ]  # d is missing
    rows, regressed = compare(old, new, max_map_drop=0.01, max_latency_increase=0.10)
    assert regressed
    reasons = {r.label.split()[0]: r.regressions for r in rows}
    assert "mAP50-95 dropped 0.0200" in reasons["a"][0]
    assert "p50 latency +20.0%" in reasons["b"][0]
    assert reasons["c"][0].startswith("now failed")
    assert reasons["d"] == ["missing in NEW"]
    # unchecked limits do not flag numbers
    _, regressed = compare(old[:2], new[:2])
    assert not regressed


def test_bad_limits() -> None:
    with pytest.raises(InvalidInputError, match="max_map_drop must be >= 0"):
        compare([], [], max_map_drop=-1)
    with pytest.raises(InvalidInputError, match="max_latency_increase must be >= 0"):
        compare([], [], max_latency_increase=-0.5)


def test_compare_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, same, worse = tmp_path / "old.jsonl", tmp_path / "same.jsonl", tmp_path / "worse.jsonl"
    write_records(old, [make_record()])
    write_records(same, [make_record(p50=10.2)])
    write_records(worse, [make_record(p50=13.0)])
    assert _run("compare", str(old), str(same), "--max-latency-increase", "0.1") == 0
    assert "no regression" in capsys.readouterr().out
    assert _run("compare", str(old), str(worse), "--max-latency-increase", "0.1") == 1
    assert "1 regression(s)" in capsys.readouterr().out
    assert _run("compare", str(old), str(tmp_path / "nope.jsonl")) == 2
    assert "records file not found" in capsys.readouterr().err


def test_report_command_merges(tmp_path: Path) -> None:
    write_records(tmp_path / "a.jsonl", [make_record(host="a")])
    write_records(tmp_path / "b.jsonl", [make_record(host="b")])
    out = tmp_path / "out"
    assert (
        _run("report", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--out", str(out)) == 0
    )
    assert len((out / "records.jsonl").read_text().splitlines()) == 2
    assert (out / "results.md").is_file() and (out / "frontier.png").is_file()


def test_paired_interval_of_the_map_difference_from_saved_detections(tmp_path: Path) -> None:
    """Two runs with saved detections on the same images: compare gives the paired bootstrap
    interval of NEW - OLD, as bootstrap_map computes it; without the files, none."""
    pytest.importorskip("pycocotools")
    import json

    import numpy as np
    from edgedet.benchmarks.compare import difference_rows
    from edgedet.benchmarks.runner import _detections_to_json

    from edgedet.data import load_dataset
    from edgedet.data.synthetic import sample_validation_set
    from edgedet.detections import Detections
    from edgedet.eval.bootstrap import bootstrap_map

    data = sample_validation_set(tmp_path / "val", n=30)
    ds = load_dataset(data)
    rng = np.random.default_rng(0)

    def noisy(sigma: float) -> dict[int, Detections]:
        out = {}
        for s in ds.samples:
            xyxy = s.gt.xyxy + rng.normal(0, sigma, s.gt.xyxy.shape).astype(np.float32)
            out[s.image_id] = Detections(
                xyxy, rng.uniform(0.3, 1.0, len(xyxy)).astype(np.float32), s.gt.class_ids
            )
        return out

    runs = {"old": noisy(1.0), "new": noisy(4.0)}
    records = {}
    for name, dets in runs.items():
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(_detections_to_json(dets)))
        from edgedet.eval.metrics import evaluate

        rec = make_record(map50_95=evaluate(ds, dets, ds.class_names).map50_95)
        rec.update(
            dataset_path=str(data), images=len(ds), class_names=list(ds.class_names),
            detections_file=str(f),
        )  # fmt: skip
        records[name] = rec
    rows, _ = compare([records["old"]], [records["new"]], bootstrap=200)
    direct = bootstrap_map(ds, runs, ds.class_names, reference="old", resamples=200)
    ci = direct.differences["new"]
    assert rows[0].map_delta_ci == (ci.low, ci.high)
    assert ci.high < 0  # more box noise: lower mAP on every resample
    assert ci.low <= rows[0].map_delta <= ci.high
    assert f"{ci.low:+.4f} to {ci.high:+.4f}" in difference_rows(rows)[1][0]
    # scored with other aliases: not comparable image for image, no interval
    records["new"]["config"] = {**records["new"].get("config", {}), "aliases": {"car": "truck"}}
    assert compare([records["old"]], [records["new"]], bootstrap=50)[0][0].map_delta_ci is None
    records["new"]["config"]["aliases"] = None
    Path(records["new"]["detections_file"]).unlink()
    rows, _ = compare([records["old"]], [records["new"]], bootstrap=200)
    assert rows[0].map_delta_ci is None


def test_same_model_name_with_a_new_file_is_compared() -> None:
    """Records match by model name (file stem), runtime, precision and dataset: a re-exported
    file (new hash) and a moved path are the same configuration, the hash change a detail."""
    old = make_record("yolox", map50_95=0.30)
    new = make_record("yolox", map50_95=0.28)
    new["model_sha256"] = "sha-another-file"
    new["model"] = "/elsewhere/yolox.onnx"
    rows, regressed = compare([old], [new], max_map_drop=0.01)
    assert len(rows) == 1 and regressed
    assert rows[0].map_delta == pytest.approx(-0.02)
    assert any("model file changed" in d for d in rows[0].details)
    # another runtime or precision stays a different configuration
    other = make_record("yolox", runtime="openvino")
    rows, regressed = compare([old], [other])
    assert len(rows) == 2 and regressed  # onnxruntime missing in NEW
    fp16 = make_record("yolox", precision="fp16")
    assert len(compare([old], [fp16])[0]) == 2


def test_latency_gate_is_noise_aware() -> None:
    """A +15 % p50 inside OLD's measured spread (below its p90) is a detail, not a regression;
    above it, a regression. With per-round p50s, overlapping rounds are within the spread."""
    old = make_record(p50=10.0)  # p90 11.0
    rows, regressed = compare([old], [make_record(p50=10.5)], max_latency_increase=0.03)
    assert not regressed and "within the measured spread" in rows[0].details[0]
    rows, regressed = compare([old], [make_record(p50=11.5)], max_latency_increase=0.03)
    assert regressed and "old p90 11.00 ms" in rows[0].regressions[0]
    old_r, new_r = make_record(p50=10.0), make_record(p50=11.5)
    old_r["latency_p50_rounds"], new_r["latency_p50_rounds"] = [9.8, 10.0, 11.6], [11.2, 11.5]
    rows, regressed = compare([old_r], [new_r], max_latency_increase=0.1)
    assert not regressed and "round p50s" in rows[0].details[0]
    new_r["latency_p50_rounds"] = [11.7, 11.9]
    assert compare([old_r], [new_r], max_latency_increase=0.1)[1]


def test_protocol_change_is_shown() -> None:
    old, new = make_record(), make_record()
    old["protocol"] = {"iou_threshold": 0.45, "multi_label": False, "source": "a"}
    new["protocol"] = {"iou_threshold": 0.7, "multi_label": True, "source": "b"}
    rows, _ = compare([old], [new])
    assert "iou_threshold 0.45 -> 0.7" in rows[0].details[0]
