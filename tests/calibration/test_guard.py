"""The label-free guard, fidelity on held-out images, the held-out split, and the budget on
OpenVINO (real ONNX Runtime / OpenVINO / NNCF on a tiny model)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edgedet.calibration.command import NO_LABELS, add_calibrate_arguments, run_calibrate
from edgedet.calibration.guard import HeldOutImages, fidelity, guard_without_labels
from edgedet.calibration.ort_int8 import QuantizeResult
from edgedet.calibration.sensitivity import LayerSensitivity, SensitivityReport
from edgedet.calibration.source import CalibrationSource, auto_holdout
from edgedet.calibration.spec import Exclusion

from edgedet.detections import Detections
from edgedet.errors import InvalidInputError
from edgedet.meta import ModelMeta, read_meta, sidecar_path

META = ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(32, 32))


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_calibrate_arguments(p)
    return p.parse_args(list(argv))


def _dets(shift: float = 0.0) -> Detections:
    return Detections(
        np.array([[10, 10, 30, 30], [40, 5, 60, 45]], np.float32) + shift,
        np.array([0.9, 0.6], np.float32),
        np.array([0, 1], np.int32),
    )


def _heldout(tmp_path: Path, n: int = 3) -> HeldOutImages:
    paths = [tmp_path / f"h{i}.jpg" for i in range(n)]
    return HeldOutImages(paths, [np.zeros((64, 80, 3), np.uint8)] * n)


# -- fidelity -----------------------------------------------------------------------------------


def test_fidelity_of_float_against_itself_is_perfect_and_drops_with_error(tmp_path: Path) -> None:
    held = _heldout(tmp_path)
    ref = [_dets()] * 3
    same = fidelity(ref, ref, ("a", "b", "c"), held)
    assert same["map50_95"] == pytest.approx(1.0) and same["reference_boxes"] == 6
    assert set(same["per_class_ap"]) == {"a", "b"}  # c never detected by float: not scored
    worse = fidelity(ref, [_dets(3.0)] * 3, ("a", "b", "c"), held)
    assert worse["map50_95"] < 0.9
    empty = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int32))
    assert fidelity([empty] * 3, ref, ("a", "b"), held)["map50_95"] is None
    with pytest.raises(InvalidInputError, match="one reference and one candidate"):
        fidelity(ref, ref[:2], ("a", "b"), held)


# -- the guard's search (a builder double: what is tested is the search, not quantization) --------


class _Builder:
    suffix = ".xml"

    def __init__(self) -> None:
        self.ranked = 0
        self.built: list[list[str]] = []

    def build(self, out: Path, keep_float: Any = ()) -> QuantizeResult:
        out.write_text("xml")
        out.with_suffix(".bin").write_text("bin")
        sidecar_path(out).write_text("{}")
        self.built.append(list(keep_float))
        return QuantizeResult(out, META, {"k": len(keep_float)}, Exclusion((), {}, None))

    def rank(self, images: Any, progress: Any = None) -> SensitivityReport:
        self.ranked += 1
        return SensitivityReport("proxy", [LayerSensitivity(f"L{i}", "Conv") for i in range(5)])

    def close(self) -> None:
        pass


class _Int8:
    """Opens a candidate: its boxes are off by an amount that shrinks with layers kept float."""

    def __init__(self, shifts: dict[int, float]) -> None:
        self.shifts = shifts

    def __call__(self, path: Path) -> Any:
        return _ShiftedDet(self.shifts[int(path.stem[1:])])


class _ShiftedDet:
    """A detector double whose boxes are off by ``shift``."""

    def __init__(self, shift: float) -> None:
        self.shift = shift

    def __call__(self, image: Any) -> Detections:
        return _dets(self.shift)

    def close(self) -> None:
        pass


def test_guard_keeps_layers_float_until_the_held_out_error_is_within_bound(tmp_path: Path) -> None:
    held = _heldout(tmp_path)
    builder = _Builder()
    out = tmp_path / "q.xml"
    res = guard_without_labels(
        builder, out, held, [_dets()] * 3, _Int8({0: 8.0, 1: 4.0, 2: 0.5, 4: 0.0}), [],
        bound=0.1,
    )  # fmt: skip
    assert [t["kept_float"] for t in res.tries] == [0, 1, 2]
    assert res.met and res.kept_float == ["L0", "L1"] and builder.ranked == 1
    assert res.tries[0]["proxy_error"] > 0.1 >= res.tries[-1]["proxy_error"]
    assert out.is_file() and out.with_suffix(".bin").is_file() and sidecar_path(out).is_file()
    assert res.result.path == out and res.to_dict()["bound"] == 0.1


def test_guard_ranks_nothing_when_int8_is_already_within_bound(tmp_path: Path) -> None:
    builder = _Builder()
    res = guard_without_labels(
        builder, tmp_path / "q.xml", _heldout(tmp_path), [_dets()] * 3, _Int8({0: 0.0}), []
    )
    assert res.met and res.kept_float == [] and builder.ranked == 0 and len(res.tries) == 1


def test_guard_that_never_meets_the_bound_keeps_the_closest(tmp_path: Path) -> None:
    shifts = {0: 9.0, 1: 2.0, 2: 5.0, 4: 6.0}
    res = guard_without_labels(
        _Builder(), tmp_path / "q.xml", _heldout(tmp_path), [_dets()] * 3, _Int8(shifts), [],
        bound=0.0,
    )  # fmt: skip
    assert not res.met and res.kept_float == ["L0"] and len(res.tries) == 4


# -- held-out split -----------------------------------------------------------------------------


def test_holdout_is_disjoint_reproducible_and_checked(tiny_detector: Any, image_dir: Path) -> None:
    a = CalibrationSource(tiny_detector, images=image_dir, num=100, holdout="auto")
    b = CalibrationSource(tiny_detector, images=image_dir, num=100, holdout="auto")
    assert len(a.holdout_paths) == auto_holdout(13) == 6 and a.holdout_paths == b.holdout_paths
    assert not set(a.holdout_paths) & {e.path for e in a.entries}
    assert a.record()["holdout"] == 6
    assert auto_holdout(128) == 26 and auto_holdout(1000) == 64 and auto_holdout(3) == 0
    with pytest.raises(InvalidInputError, match="none would be left to calibrate on"):
        CalibrationSource(tiny_detector, images=image_dir, num=4, holdout=13)


# -- the command --------------------------------------------------------------------------------


def test_readme_line_without_labels_reports_fidelity_and_says_no_labels(
    tiny_model: Path, image_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "q.onnx"
    assert run_calibrate(_parse(str(tiny_model), "--images", str(image_dir), "--out", str(out))) == 0
    report = json.loads((tmp_path / "q.calibration.json").read_text())
    assert report["labelled_check"] is False and "accuracy" not in report
    assert report["images"]["holdout"] == 6 and report["images"]["count"] == 6
    guard = report["label_free_guard"]
    assert guard["heldout_images"] == 6 and guard["tries"][0]["kept_float"] == 0
    fid = report["fidelity"]  # (this random tiny model finds nothing at the deploy threshold)
    assert fid["images"] == 6 and fid["runtime"] == "onnxruntime" and fid["reference_boxes"] == 0
    assert report["latency_ms"]["float_p50"] > 0 and report["latency_ms"]["int8_p50"] > 0
    printed = capsys.readouterr().out
    assert NO_LABELS in printed and "fidelity: the float model found nothing" in printed
    assert "No labelled check ran" in (tmp_path / "q.calibration.md").read_text()


def test_bad_guard_flags(tiny_model: Path, image_dir: Path, tmp_path: Path) -> None:
    base = [str(tiny_model), "--images", str(image_dir), "--out", str(tmp_path / "q.onnx")]
    with pytest.raises(InvalidInputError, match="--holdout must be"):
        run_calibrate(_parse(*base, "--holdout", "x"))
    with pytest.raises(InvalidInputError, match="--proxy-bound must be"):
        run_calibrate(_parse(*base, "--proxy-bound", "-1"))
    with pytest.raises(InvalidInputError, match=r"name the output \*\.xml"):
        run_calibrate(_parse(*base, "--runtime", "openvino"))


def _fragile_model(path: Path) -> Path:
    """Conv(3->4) -> Conv(4->7) -> Sigmoid -> x32 for the box channels, shaped like a YOLOv5
    head [B, 3*21, 7], that detects (objectness bias +3). The first conv (the stem, float)
    passes the image through and adds a channel 1000x larger that nothing reads: the second
    conv's INT8 input (one scale per tensor) then rounds the image channels away."""
    from onnx import TensorProto, helper, numpy_helper

    from edgedet.meta import write_onnx_meta

    rng = np.random.default_rng(1)
    w1 = np.zeros((4, 3, 1, 1), np.float32)
    w1[0, 0] = w1[1, 1] = w1[2, 2] = 1.0
    w1[3] = 1000.0
    w2 = np.zeros((7, 4, 1, 1), np.float32)
    w2[:, :3] = rng.normal(0, 2, (7, 3, 1, 1))
    b2 = np.array([0, 0, 0, 0, 3, 2, 0], np.float32)
    scale = np.array([32, 32, 32, 32, 1, 1, 1], np.float32).reshape(1, 7, 1, 1)
    nodes = [
        helper.make_node("Conv", ["images", "W1", "B1"], ["stem"]),
        helper.make_node("Conv", ["stem", "W2", "B2"], ["conv"]),
        helper.make_node("Sigmoid", ["conv"], ["sig"]),
        helper.make_node("Mul", ["sig", "S"], ["scaled"]),
        helper.make_node("Reshape", ["scaled", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["all_rows"], perm=[0, 2, 1]),
        # 3 anchors x 21 cells (strides 8/16/32 on 32x32), the rows YOLOv5's decoder checks for;
        # taken from the middle of the image
        helper.make_node("Slice", ["all_rows", "starts", "ends", "axes"], ["output"]),
    ]
    inits = [
        numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(np.zeros(4, np.float32), "B1"),
        numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "B2"),
        numpy_helper.from_array(scale, "S"),
        numpy_helper.from_array(np.array([0, 7, 1024], np.int64), "shape"),
        numpy_helper.from_array(np.array([480], np.int64), "starts"),
        numpy_helper.from_array(np.array([543], np.int64), "ends"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
    ]  # fmt: skip
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 32, 32])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 63, 7])
    model = helper.make_model(
        helper.make_graph(nodes, "fragile", [x], [y], inits),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    write_onnx_meta(path, path, META)
    return path


def _val_from_float(tiny_model: Path, images: Path, root: Path) -> Path:
    """A YOLO labelled set whose boxes are the float model's own confident detections: float
    scores ~1.0 on it, and any INT8 error costs mAP."""
    import edgedet

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    det = edgedet.load(tiny_model, runtime="onnxruntime")
    for img in sorted(images.glob("img_*.jpg"))[:6]:
        import cv2

        im = cv2.imread(str(img))
        h, w = im.shape[:2]
        d = det(im)
        keep = d.scores >= 0.25
        lines = [
            f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
            for (x1, y1, x2, y2), c in zip(d.xyxy[keep], d.class_ids[keep])
        ]
        (root / "images" / img.name).write_bytes(img.read_bytes())
        (root / "labels" / f"{img.stem}.txt").write_text("\n".join(lines) + "\n")
    det.close()
    (root / "classes.txt").write_text("a\nb\n")
    return root


def test_openvino_budget_is_checked(image_dir: Path, tmp_path: Path) -> None:
    """Issue 13: --runtime openvino with --val and --max-map-drop used to skip the budget and
    report it met. Now the INT8 IR is scored, misses a tiny budget, and mixed precision runs."""
    model = _fragile_model(tmp_path / "fragile.onnx")
    val = _val_from_float(model, image_dir, tmp_path / "val")
    out = tmp_path / "q.xml"
    args = _parse(
        str(model), "--images", str(image_dir), "--runtime", "openvino", "--val", str(val),
        "--max-map-drop", "0.1", "--method", "minmax", "--out", str(out), "--no-latency",
    )  # fmt: skip
    code = run_calibrate(args)
    report = json.loads((tmp_path / "q.calibration.json").read_text())
    assert report["budget_checked"] is True
    first = report["mixed_precision"]["tries"][0]
    assert first["kept_float"] == 0 and first["ok"] is False and "mAP50-95 drops" in first["why"][0]
    assert code == (0 if report["budget_met"] else 1)
    assert out.is_file() and out.with_suffix(".bin").is_file()


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_guard_protects_a_fragile_model_without_labels(
    runtime: str, image_dir: Path, tmp_path: Path
) -> None:
    """All-INT8 wrecks this model; with no labels the guard sees it on the held-out images,
    keeps the layer float, and the fidelity of the result is that of float."""
    model = _fragile_model(tmp_path / "fragile.onnx")
    out = tmp_path / ("q.xml" if runtime == "openvino" else "q.onnx")
    args = _parse(str(model), "--images", str(image_dir), "--runtime", runtime, "--out", str(out),
                  "--method", "minmax", "--no-latency")  # fmt: skip
    assert run_calibrate(args) == 0
    report = json.loads(out.with_name(out.stem + ".calibration.json").read_text())
    tries = report["label_free_guard"]["tries"]
    assert tries[0]["kept_float"] == 0 and not tries[0]["ok"] and tries[0]["proxy_error"] > 0.5
    assert tries[-1]["ok"] and report["label_free_guard"]["kept_float"] == ["Conv_edgedet_1"]
    assert report["fidelity"]["map50_95"] > 0.95 and report["fidelity"]["reference_boxes"] > 0
    record = read_meta(out).calibration  # the model's own record says what checked it
    assert record["labelled_check"] is False and record["holdout_images"] == 6
    assert record["label_free_guard"]["met"] and record["fidelity"]["map50_95"] > 0.95
    plain = _parse(str(model), "--images", str(image_dir), "--runtime", runtime, "--no-guard",
                   "--out", str(out.with_name("plain" + out.suffix)), "--method", "minmax",
                   "--no-latency")  # fmt: skip
    assert run_calibrate(plain) == 0
    unguarded = json.loads(out.with_name("plain.calibration.json").read_text())
    assert "label_free_guard" not in unguarded and unguarded["fidelity"]["map50_95"] < 0.5


def test_tensorrt_int8_is_checked_where_its_format_runs(
    tiny_model: Path, image_dir: Path, tmp_path: Path
) -> None:
    """TensorRT is not installed here: its symmetric QDQ model is checked on a runtime that
    declares the same INT8 format (ONNX Runtime), and the report says which."""
    from edgedet.runtimes.registry import probe

    if probe("tensorrt")["available"]:
        pytest.skip("TensorRT is installed here")
    out = tmp_path / "q.onnx"
    args = _parse(str(tiny_model), "--images", str(image_dir), "--runtime", "tensorrt",
                  "--out", str(out), "--no-latency")  # fmt: skip
    assert run_calibrate(args) == 0
    report = json.loads((tmp_path / "q.calibration.json").read_text())
    assert report["checked_on"] == "onnxruntime" and report["fidelity"]["runtime"] == "onnxruntime"
    assert report["spec"]["symmetric_activations"] is True


def test_an_ort_calibrator_error_in_the_guard_is_a_calibration_error(
    tiny_model: Path, tiny_detector: Any, image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's histogram calibrator can raise numpy's ValueError on a tensor with a huge range (a
    trained RT-DETR did); the guard's ranking runs that calibrator too and must report it as a
    CalibrationError naming the model, not a traceback. The error is injected at our own
    sensitivity function; ONNX Runtime itself is not replaced."""
    from edgedet.calibration import sensitivity
    from edgedet.calibration.guard import OrtBuilder
    from edgedet.calibration.spec import CalibrationSpec

    from edgedet.errors import CalibrationError

    def too_many_bins(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("Too many bins for data range. Cannot create 9319286 finite-sized bins.")

    monkeypatch.setattr(sensitivity, "layer_sensitivity", too_many_bins)
    source = CalibrationSource(tiny_detector, images=image_dir, num=4)
    builder = OrtBuilder(tiny_model, source, CalibrationSpec(), read_meta(tiny_model))
    try:
        with pytest.raises(CalibrationError, match=r"running the images: ValueError: Too many bins"):
            builder.rank([np.zeros((32, 32, 3), np.uint8)])
    finally:
        builder.close()


def test_summary_gives_the_kept_candidates_error(tmp_path: Path) -> None:
    """When no candidate met the bound, the closest is kept: the printed error is its own, not
    the last candidate's."""
    from edgedet.calibration.report import summary_lines

    tries = [{"kept_float": 0, "proxy_error": 0.37, "ok": False},
             {"kept_float": 16, "proxy_error": 0.107, "ok": False},
             {"kept_float": 32, "proxy_error": 0.127, "ok": False}]  # fmt: skip
    guard = {"tries": tries, "kept_float": ["L"] * 16, "met": False, "bound": 0.1}
    lines = summary_lines(tmp_path / "q.xml", {"label_free_guard": guard, "labelled_check": True})
    assert "16 layer(s) kept float; held-out proxy error 0.107 (NOT within 0.1)" in lines[1]


class _MethodBuilder(_Builder):
    """A builder double with a range estimator (what the fallback changes)."""

    def __init__(self, method: str, log: list[str]) -> None:
        super().__init__()
        self.spec = type("Spec", (), {"method": method})()
        self.log = log

    def build(self, out: Path, keep_float: Any = ()) -> QuantizeResult:
        self.log.append(f"{self.spec.method}:{len(list(keep_float))}")
        return super().build(out, keep_float)

    def rank(self, images: Any, progress: Any = None) -> SensitivityReport:
        self.log.append(f"rank:{self.spec.method}")
        return super().rank(images, progress)


class _ByMethod:
    """Opens a candidate: its error depends on the estimator that built it and the layers
    kept float (read back from the builders' log)."""

    def __init__(self, log: list[str], shifts: dict[str, float]) -> None:
        self.log, self.shifts = log, shifts

    def __call__(self, path: Path) -> Any:
        return _ShiftedDet(self.shifts[self.log[-1]])


def _guard_with_fallback(
    tmp_path: Path, shifts: dict[str, float], name: str = "q.xml"
) -> tuple[Any, list[str], _MethodBuilder]:
    """The guard over an "mse" builder with a "mean_minmax" fallback; (result, build log, alt)."""
    log: list[str] = []
    main, alt = _MethodBuilder("mse", log), _MethodBuilder("mean_minmax", log)
    res = guard_without_labels(
        main, tmp_path / name, _heldout(tmp_path), [_dets()] * 3, _ByMethod(log, shifts), [],
        bound=0.1, fallback=alt,
    )  # fmt: skip
    return res, log, alt


def test_guard_goes_on_with_the_fallback_estimator_when_it_is_closer(tmp_path: Path) -> None:
    shifts = {"mse:0": 9.0, "mean_minmax:0": 2.0, "mean_minmax:1": 0.0}
    res, log, alt = _guard_with_fallback(tmp_path, shifts)
    assert log == ["mse:0", "mean_minmax:0", "rank:mean_minmax", "mean_minmax:1"]
    assert [(t["kept_float"], t["method"]) for t in res.tries] == [
        (0, "mse"), (0, "mean_minmax"), (1, "mean_minmax")
    ]
    assert res.met and res.builder is alt and res.method == "mean_minmax"
    assert res.to_dict()["method"] == "mean_minmax"


def test_guard_keeps_the_default_estimator_when_it_is_closer_or_within(tmp_path: Path) -> None:
    res, log, _ = _guard_with_fallback(tmp_path, {"mse:0": 2.0, "mean_minmax:0": 9.0, "mse:1": 0.0})
    assert log == ["mse:0", "mean_minmax:0", "rank:mse", "mse:1"] and res.method == "mse"
    res, log, _ = _guard_with_fallback(tmp_path, {"mse:0": 0.0}, "q2.xml")
    assert log == ["mse:0"] and res.met  # within the bound at once: no fallback built
