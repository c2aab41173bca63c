"""``edgedet calibrate`` end to end on a tiny model, and its argument errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from edgedet.calibration.command import add_calibrate_arguments, run_calibrate, spec_from_args

from edgedet.errors import InvalidInputError
from edgedet.meta import read_meta


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_calibrate_arguments(p)
    return p.parse_args(list(argv))


def test_calibrate_images_folder(tiny_model: Path, image_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.onnx"
    args = _parse(
        str(tiny_model),
        "--images",
        str(image_dir),
        "--num",
        "6",
        "--method",
        "minmax",
        "--out",
        str(out),
        "--no-latency",
    )
    assert run_calibrate(args) == 0
    meta = read_meta(out)
    assert meta is not None and meta.precision == "int8" and meta.calibration is not None
    assert meta.calibration["images"]["count"] == 6
    report = json.loads((tmp_path / "q.calibration.json").read_text())
    assert report["images"]["count"] == 6 and report["size_mb"]["int8"] > 0
    md = (tmp_path / "q.calibration.md").read_text()
    assert "method: minmax" in md and "broken.jpg" in md
    assert "wrote" in capsys.readouterr().out


def test_exclude_parsing() -> None:
    args = _parse(
        "m.onnx",
        "--exclude",
        "Resize",
        "--exclude",
        "/model.22/Conv",
        "--exclude",
        "/^head/",
        "--exclude",
        "Conv_12",
    )
    spec = spec_from_args(args)
    assert spec.exclude_types == ("Resize",)
    assert spec.exclude_names == ("/model.22/Conv", "Conv_12")
    assert spec.exclude_patterns == ("^head",)
    assert spec_from_args(_parse("m.onnx", "--runtime", "tensorrt")).symmetric_activations


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.onnx", "--images", "x"], "model file not found: missing.onnx"),
        (["{model}", "--max-map-drop", "1"], r"need --val DATA"),
        (["{model}"], "calibration needs images: pass --images DIR or --data DATASET"),
        (["sweep", "{model}", "--images", "x"], "calibrate sweep needs --val DATA"),
        (["{model}", "{model}"], "calibrate takes one model"),
    ],
)
def test_errors(tiny_model: Path, argv: list[str], message: str) -> None:
    args = _parse(*[a.replace("{model}", str(tiny_model)) for a in argv])
    with pytest.raises(InvalidInputError, match=message):
        run_calibrate(args)


def _yolo_dataset(root: Path, images: Path) -> Path:
    """A YOLO-format labelled set over the fixture images, classes a and b."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i, img in enumerate(sorted(images.glob("img_*.jpg"))[:6]):
        (root / "images" / img.name).write_bytes(img.read_bytes())
        (root / "labels" / f"{img.stem}.txt").write_text(f"{i % 2} 0.5 0.5 0.4 0.4\n")
    (root / "classes.txt").write_text("a\nb\n")
    return root


def test_calibrate_with_val_and_budget(
    tiny_model: Path, image_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    val = _yolo_dataset(tmp_path / "val", image_dir)
    out = tmp_path / "q.onnx"
    args = _parse(
        str(tiny_model), "--images", str(image_dir), "--num", "4", "--val", str(val),
        "--max-map-drop", "0", "--out", str(out), "--no-latency",
    )  # fmt: skip
    assert run_calibrate(args) == 0
    report = json.loads((tmp_path / "q.calibration.json").read_text())
    assert report["budget_met"] is True and "map50_95" in report["accuracy"]["int8"]
    meta = read_meta(out)
    assert meta is not None and meta.calibration is not None
    assert meta.calibration["map_before"] is not None and meta.calibration["map_after"] is not None
    assert "| mAP50-95 (%) |" in (tmp_path / "q.calibration.md").read_text()
    # the drop's paired bootstrap interval, from the same detections as the two mAPs
    drop = report["accuracy"]["map_drop_interval_points"]
    assert drop["drop_points"] == pytest.approx(report["accuracy"]["map_drop_points"], abs=1e-3)
    assert drop["low"] <= drop["drop_points"] <= drop["high"]
    assert drop["images"] == report["accuracy"]["float"]["images"]
    assert (
        "95% paired bootstrap interval of the loss" in (tmp_path / "q.calibration.md").read_text()
    )
    # the tiny model's INT8 detects as its float does: an interval of width 0, no warning
    assert drop["half_width"] == 0 and "finer than these" not in caplog.text


def test_budget_finer_than_the_validation_set_warns(
    tiny_model: Path, image_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from edgedet.calibration import evaluate

    wide = {"drop_points": 0.2, "low": -1.1, "high": 1.6, "half_width": 1.35, "images": 6}
    monkeypatch.setattr(evaluate, "drop_interval", lambda *a, **k: dict(wide))
    val = _yolo_dataset(tmp_path / "val", image_dir)
    args = _parse(
        str(tiny_model), "--images", str(image_dir), "--num", "4", "--val", str(val),
        "--max-map-drop", "0.5", "--out", str(tmp_path / "q.onnx"), "--no-latency",
    )  # fmt: skip
    assert run_calibrate(args) == 0
    assert "the mAP budget (0.5 points) is finer than these 6 validation images" in caplog.text
    assert "[-1.10, 1.60]" in caplog.text


def test_sweep(tiny_model: Path, image_dir: Path, tmp_path: Path, capsys) -> None:
    val = _yolo_dataset(tmp_path / "val", image_dir)
    args = _parse(
        "sweep", str(tiny_model), "--images", str(image_dir), "--val", str(val),
        "--methods", "minmax,mse", "--nums", "2,4", "--out", str(tmp_path / "sw"),
    )  # fmt: skip
    assert run_calibrate(args) == 0
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [r["config"] for r in rows] == ["float", "minmax/2", "mse/2", "minmax/4", "mse/4"]
    assert "| rank | config |" in capsys.readouterr().out


def test_val_names_reach_every_accuracy_step(
    tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    """A YOLO set without names (coco128 has none): --val-names must name it for the float
    mAP, the sensitivity search and the INT8 mAP alike."""
    val = _yolo_dataset(tmp_path / "val", image_dir)
    (val / "classes.txt").unlink()
    argv = [str(tiny_model), "--images", str(image_dir), "--num", "4", "--val", str(val),
            "--max-map-drop", "0", "--no-latency"]  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"--val '\w+': none of its classes"):
        run_calibrate(_parse(*argv, "--out", str(tmp_path / "a.onnx")))
    assert (
        run_calibrate(_parse(*argv, "--val-names", "a,b", "--out", str(tmp_path / "b.onnx"))) == 0
    )
    report = json.loads((tmp_path / "b.calibration.json").read_text())
    assert report["budget_met"] is True and "map50_95" in report["accuracy"]["int8"]


def test_calibrate_from_python_returns_a_typed_result(
    tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    """The pipeline without the command line: the same files, a typed result, nothing printed."""
    from edgedet.calibration.pipeline import CalibrateConfig, CalibrationResult, calibrate

    cfg = CalibrateConfig(
        model=tiny_model, images=str(image_dir), num=6, method="minmax",
        out=str(tmp_path / "q.onnx"), no_latency=True,
    )  # fmt: skip
    res = calibrate(cfg)
    assert isinstance(res, CalibrationResult)
    assert res.path == tmp_path / "q.onnx" and res.budget_met is True
    assert res.report_json == tmp_path / "q.calibration.json"
    assert json.loads(res.report_json.read_text())["images"]["count"] == 6
    assert res.report["images"]["count"] == 6 and res.report_md.is_file()
    assert cfg.val is None  # the caller's config is not changed


def test_calibrate_flags_are_the_config_fields() -> None:
    """Every flag maps onto a CalibrateConfig field with the same default, and back."""
    from dataclasses import fields

    from edgedet.calibration.command import config_from_args
    from edgedet.calibration.pipeline import CalibrateConfig

    args = _parse("m.onnx")
    cfg = config_from_args(args)
    defaults = CalibrateConfig(model="m.onnx")
    for f in fields(CalibrateConfig):
        assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name
    cfg = config_from_args(_parse("sweep", "m.onnx", "--no-per-channel", "--exclude", "A",
                                  "--exclude", "B", "--num", "7", "--eval-iou", "0.5"))  # fmt: skip
    assert cfg.model == "m.onnx" and cfg.no_per_channel and cfg.exclude == ["A", "B"]
    assert cfg.num == 7 and cfg.eval_iou == 0.5
    with pytest.raises(SystemExit):
        _parse("m.onnx", "--images", "a", "--data", "b")  # one source or the other
