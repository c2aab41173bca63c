"""Records (JSON Lines) round trip and merge; reports rendered from records."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from edgedet.benchmarks.plot import pareto_front, plot_frontier
from edgedet.benchmarks.records import (
    append_record,
    config_key,
    merge_records,
    read_records,
    write_records,
)
from edgedet.benchmarks.report import print_table, render_csv, render_markdown, write_reports

from edgedet.errors import InvalidInputError

from .synthetic_records import make_record


def test_round_trip_and_append(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    a = make_record("a")
    b = make_record("b", runtime="openvino")
    b["accuracy"]["map_small"] = math.nan  # JSON has no NaN: written as null
    append_record(path, a)
    append_record(path, b)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)
    back = read_records(path)
    assert back[0] == a
    assert back[1]["accuracy"]["map_small"] is None
    assert read_records(tmp_path) == back  # a folder means its records.jsonl
    write_records(path, back[:1])
    assert len(read_records(path)) == 1


def test_bad_records_file_messages(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="records file not found"):
        read_records(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(make_record()) + "\n{not json\n")
    with pytest.raises(InvalidInputError, match=r"bad.jsonl line 2: not valid JSON"):
        read_records(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(InvalidInputError, match="line 1: expected a JSON object, got list"):
        read_records(bad)


def test_merge_devices(tmp_path: Path) -> None:
    write_records(
        tmp_path / "orin.jsonl", [make_record(host="orin"), make_record("m2", host="orin")]
    )
    nohost = make_record(host="x")
    del nohost["host"]
    write_records(tmp_path / "xavier.jsonl", [nohost])
    merged = merge_records([tmp_path / "orin.jsonl", tmp_path / "xavier.jsonl"])
    assert [r["host"]["name"] for r in merged] == ["orin", "orin", "xavier"]
    assert config_key(merged[0]) != config_key(make_record(host="xavier"))
    md = render_markdown(merged)
    assert "| host |" in md.splitlines()[2]  # a host column when several hosts


def test_reports_written(tmp_path: Path) -> None:
    records = [
        make_record("fast", map50_95=0.25, p50=5.0),
        make_record("slow_good", map50_95=0.40, p50=50.0, runtime="openvino"),
        make_record("dominated", map50_95=0.20, p50=60.0),
        make_record("missing_rt", status="skipped"),
    ]
    written = write_reports(records, tmp_path)
    assert set(written) == {"markdown", "csv", "plot"}
    png = tmp_path / "frontier.png"
    assert png.stat().st_size > 5000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "results.md").read_text()
    assert "| fast | onnxruntime | fp32 | 416 |" in md
    assert "runtime 'x' needs the x package" in md  # the reason of the skipped one
    assert "## Per-class AP" in md and "## Safety-class recall" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert len(rows) == 4
    assert float(rows[0]["latency_ms.e2e.p50"]) == 5.0
    assert float(rows[1]["accuracy.map50_95"]) == 0.40
    assert rows[0]["accuracy.per_class_ap.car"] == "0.4"
    assert rows[3]["status"] == "skipped" and rows[3]["accuracy.map50_95"] == ""
    from rich.console import Console

    buf = io.StringIO()
    print_table(records, Console(file=buf, width=200))
    text = buf.getvalue()
    assert "slow_good" in text and "skipped missing_rt" in text


def test_pareto_front() -> None:
    pts = [(5.0, 0.25), (50.0, 0.40), (60.0, 0.20), (5.0, 0.10), (20.0, 0.25)]
    assert pareto_front(pts) == [0, 1]
    assert pareto_front([]) == []


def test_no_plot_without_ok_records(tmp_path: Path) -> None:
    assert plot_frontier([make_record(status="failed")], tmp_path / "f.png") is None
    assert not (tmp_path / "f.png").exists()
    assert "failed" in render_csv([make_record(status="failed")])


def test_intervals_rendered_in_table_markdown_csv_and_plot(tmp_path: Path) -> None:
    from edgedet.benchmarks.plot import interval_of

    ref = make_record("float", map50_95=0.30, p50=10.0)
    int8 = make_record("int8", map50_95=0.29, p50=6.0, precision="int8")
    plain = [dict(ref), dict(int8)]
    ref["accuracy"] = {**ref["accuracy"], "map50_95_ci": {"low": 0.26, "high": 0.35}}
    int8["accuracy"] = {
        **int8["accuracy"],
        "map50_95_ci": {"low": 0.25, "high": 0.34},
        "vs_reference": {
            "reference": "float onnxruntime fp32",
            "difference": {"estimate": -0.01, "low": -0.02, "high": 0.005},
            "ratio": {"estimate": 0.967, "low": 0.94, "high": 1.012},
            "p_higher": 0.12,
            "resamples": 1000,
            "seed": 0,
        },
    }
    assert interval_of(ref) == (0.26, 0.35) and interval_of(plain[0]) is None
    write_reports([ref, int8], tmp_path / "ci")
    md = (tmp_path / "ci" / "results.md").read_text()
    assert "| 0.300 | 0.260–0.350 |" in md
    assert "## Against the reference (paired bootstrap over images)" in md
    row = "| int8 | onnxruntime | int8 | float onnxruntime fp32 | -0.0100 | -0.0200 to +0.0050 | 96.7 "
    assert row + "| 94.0–101.2 | 0.12 |" in md
    assert "share higher" in md
    rows = list(csv.DictReader(io.StringIO((tmp_path / "ci" / "results.csv").read_text())))
    assert rows[1]["accuracy.vs_reference.ratio.low"] == "0.94"
    assert rows[1]["accuracy.vs_reference.reference"] == "float onnxruntime fp32"
    assert rows[0]["accuracy.map50_95_ci.high"] == "0.35"
    write_reports(plain, tmp_path / "plain")
    # the error bars change the picture
    with_bars = (tmp_path / "ci" / "frontier.png").read_bytes()
    assert with_bars != (tmp_path / "plain" / "frontier.png").read_bytes()
