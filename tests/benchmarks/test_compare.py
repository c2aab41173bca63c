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

    from edgedet.bootstrap import bootstrap_map
    from edgedet.data import load_dataset
    from edgedet.data.synthetic import sample_validation_set
    from edgedet.detections import Detections

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
        from edgedet.metrics import evaluate

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
