"""--tiles / --tta / --ensemble in ``edgedet predict`` and ``edgedet bench`` (real ONNX Runtime,
the shipped sample model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from edgedet.benchmarks.runner import BenchConfig, run_config

from edgedet.assets import sample_model_path
from edgedet.cli import main
from edgedet.data.synthetic import generate


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the dynamic-batch copies


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), 3, seed=5, imgsz=(288, 512), formats=("coco",))


def test_predict_with_tiles_runs_one_batched_call_per_frame(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["predict", str(sample_model_path()), str(scenes / "images"), "--tiles", "2x2", "--save", str(out), "--no-draw"])
    assert rc == 0
    doc = json.loads((out / "detections.json").read_text())
    assert doc["runtime"]["tiles"]["batched"] is True and doc["runtime"]["tiles"]["grid"] == [2, 2]
    assert list((tmp_path / "cache" / "edgedet" / "batch").glob("sample_roads_*_dynbatch.onnx"))


def test_predict_refuses_bad_view_settings(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = next((scenes / "images").iterdir())
    out = tmp_path / "out"
    base = ["predict", str(sample_model_path()), str(image), "--save", str(out), "--no-draw"]
    assert main([*base, "--tiles", "1000px"]) == 2
    assert "tiles of 1000x1000 px are not smaller than the 512x288 image: nothing to tile" in capsys.readouterr().err
    assert not (out / "detections.json").exists()
    assert main([*base, "--tiles", "2x2", "--tta", "flip"]) == 2
    assert "--tiles and --tta together are not supported" in capsys.readouterr().err
    assert main([*base, "--ensemble", str(tmp_path / "missing.onnx")]) == 2
    assert "--ensemble member not found" in capsys.readouterr().err
    assert main([*base, "--tiles", "two"]) == 2
    assert "expected a grid 'COLSxROWS'" in capsys.readouterr().err


def test_bench_records_a_tiled_configuration(scenes: Path, tmp_path: Path) -> None:
    config = BenchConfig(
        model=str(sample_model_path()),
        data=str(scenes),
        tiles="2x2",
        warmup=1,
        min_iterations=2,
        min_seconds=0.0,
        latency_images=1,
        throughput_requests=4,
    )
    rec = run_config(config)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["model_name"] == "sample_roads+tiles 2x2"
    assert rec["views"]["batched"] is True and rec["views"]["tiles"] == "2x2"
    assert rec["runtime_info"]["tiles"]["full_frame"] is True
    assert rec["accuracy"]["map50_95"] is not None
    assert rec["throughput_fps"] is None and "not measured for tiles" in rec["throughput_reason"]
    assert config.label() == "sample_roads/onnxruntime/tiles 2x2"


def test_bench_sweeps_tiles_as_an_axis() -> None:
    import argparse

    from edgedet.benchmarks.command import _configs, add_bench_arguments

    parser = argparse.ArgumentParser()
    add_bench_arguments(parser)
    base = ["--model", str(sample_model_path()), "--data", "d", "--tiles", "none", "--tiles", "2x2"]
    configs = _configs(parser.parse_args([*base, "--tta", "none"]))
    assert [c.tiles for c in configs] == ["none", "2x2"]
    assert [c.view_settings().active for c in configs] == [False, True]
    # --views-one-by-one adds the tiled configuration with its views in separate calls
    configs = _configs(parser.parse_args([*base, "--views-one-by-one"]))
    assert [c.label() for c in configs] == [
        "sample_roads/onnxruntime",
        "sample_roads/onnxruntime/tiles 2x2",
        "sample_roads/onnxruntime/tiles 2x2 1by1",
    ]

