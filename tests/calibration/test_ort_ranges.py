"""Activation ranges with ONNX Runtime's real calibrators: only the tensors that get quantized are
measured, and a tensor whose range jumps thousands-fold on one image no longer fails the
calibration (ORT's histogram merge keeps the first batches' bin width; numpy then refuses
millions of float32 bins). Real ORT throughout; the models are built here with onnx.helper."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

pytest.importorskip("onnxruntime")

from edgedet.calibration.ort_int8 import (
    CHUNK_BATCHES,
    PreparedModel,
    calibrate_ranges,
    prepare,
    quantize_prepared,
)
from edgedet.calibration.ort_ranges import (
    MAX_BINS_FACTOR,
    RangeStats,
    RobustHistograms,
)
from edgedet.calibration.sensitivity import load_ranges
from edgedet.calibration.spec import CalibrationSpec, resolve_exclusions

#: the first images' range and an outlier image's: ORT would need ~2048 * 6000 = 12 M bins
#: (the scratch RT-DETR's AIFI attention logits: about ±2, then -8987 on one image)
NORMAL, OUTLIER = 1.5, -9000.0


def _tiny(path: Path) -> Path:
    """x (N, 16) -> MatMul "quantized" -> h -> Softmax -> y; x -> Relu -> r -> MatMul "keep_me"
    -> z. Quantized with ``scope="conv_inputs"`` and "keep_me" kept float, only ``x`` is read
    quantized: ``h`` is a MatMul output (not re-quantized) and ``r`` feeds a float layer."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="quantized"),
        helper.make_node("Softmax", ["h"], ["y"], name="softmax", axis=-1),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["z"], name="keep_me"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_ranges",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4]),
        ],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


class _Batches:
    """The part of `CalibrationSource` calibration reads (``rewind``, iteration): fixed batches."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self.batches = batches
        self._it: Any = None

    def rewind(self) -> None:
        self._it = None

    def __iter__(self) -> Any:
        return iter([{"x": b} for b in self.batches])

    def get_next(self) -> dict[str, np.ndarray] | None:  # ORT's CalibrationDataReader
        if self._it is None:
            self._it = iter(self)
        return next(self._it, None)


def _outlier_batches() -> list[np.ndarray]:
    """CHUNK_BATCHES batches within ±NORMAL, then one with OUTLIER, then normal ones again."""
    rng = np.random.default_rng(1)
    batches = [rng.uniform(-NORMAL, NORMAL, (1, 16)).astype(np.float32) for _ in range(10)]
    batches[CHUNK_BATCHES][0, 3] = OUTLIER
    return batches


def _prepared(tmp_path: Path) -> PreparedModel:
    work = tmp_path / "work"
    work.mkdir()
    return prepare(_tiny(tmp_path / "tiny.onnx"), work)


SPEC = CalibrationSpec(exclude_names=("keep_me",), keep_stem_float=False)


def _excluded(prepared: PreparedModel, spec: CalibrationSpec) -> tuple[str, ...]:
    """What `quantize_onnx` excludes (the ranges are measured for the other layers)."""
    return resolve_exclusions(onnx.load(str(prepared.path)), spec).names


def test_ort_histogram_merge_explodes_on_an_outlier() -> None:
    """The mechanism, pinned on ORT itself: its collector keeps the first round's bin width, so
    an outlier round needs 2048 * 6000 float32 bins, which numpy refuses. (If a newer ORT stops
    failing here, `RobustHistograms` may be unnecessary: re-check it.)"""
    from onnxruntime.quantization.calibrate import HistogramCollector

    ort = HistogramCollector("entropy", False, 2048, 128, 99.999, "same")
    ort.collect_value({"t": np.array([NORMAL, -NORMAL / 2], np.float32)})
    with pytest.raises(ValueError, match="Too many bins"):
        ort.collect_value({"t": np.array([OUTLIER, 1.0], np.float32)})


def test_outlier_round_is_rebinned_not_fatal() -> None:
    from onnxruntime.quantization.calibrate import HistogramCollector

    stats = RangeStats("mse")
    inner = HistogramCollector("entropy", False, 2048, 128, 99.999, "same")
    robust = RobustHistograms(inner, MAX_BINS_FACTOR * 2048, stats)
    rng = np.random.default_rng(0)
    rounds = [rng.uniform(-NORMAL, NORMAL, 1000).astype(np.float32) for _ in range(3)]
    rounds[1][0] = OUTLIER
    for values in rounds:
        robust.collect({"t": [values[:500], values[500:]]})  # a round: a list of batches
    hist, edges, vmin, _, threshold = robust.histogram_dict["t"]
    assert len(hist) <= MAX_BINS_FACTOR * 2048 + 4 and len(edges) == len(hist) + 1
    assert hist.sum() == 3000  # every value counted once
    assert float(vmin) == OUTLIER and float(threshold) >= abs(OUTLIER)
    centre = np.abs((edges[:-1] + edges[1:]) / 2) < 2 * NORMAL
    assert hist[centre].sum() == 2999  # the normal values stay near 0 after folding
    assert np.allclose(edges, -edges[::-1], atol=1e-3 * float(threshold))  # symmetric about 0
    assert stats.rebinned["t"]["bins_needed"] > 9_000_000
    assert not stats.minmax_fallback and "re-binned" in stats.notes()[0]


def test_absolute_histogram_rebinned_too() -> None:
    """Symmetric percentile uses ORT's |x| histogram, which grows the same way."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    stats = RangeStats("percentile")
    inner = HistogramCollector("percentile", True, 2048, 128, 99.99, "same")
    robust = RobustHistograms(inner, 4 * 2048, stats)
    robust.collect({"t": np.linspace(0.01, NORMAL, 500, dtype=np.float32)})
    robust.collect({"t": np.array([OUTLIER, 1.0], np.float32)})
    hist, edges = robust.histogram_dict["t"][:2]
    assert len(hist) <= 4 * 2048 + 2 and hist.sum() == 502 and edges[-1] >= abs(OUTLIER)
    assert "t" in stats.rebinned


def test_infinite_values_fall_back_to_min_max() -> None:
    from onnxruntime.quantization.calibrate import HistogramCollector

    stats = RangeStats("entropy")
    inner = HistogramCollector("entropy", False, 2048, 128, 99.999, "same")
    robust = RobustHistograms(inner, 16 * 2048, stats)
    robust.collect({"masked": np.array([0.5, -0.25], np.float32)})
    robust.collect({"masked": np.array([-np.inf, 3.0, 1.0], np.float32)})
    robust.collect({"masked": np.array([-1.0], np.float32), "fine": np.array([1.0, -1.0], np.float32)})
    assert "masked" not in robust.histogram_dict and "fine" in robust.histogram_dict
    assert robust.minmax_ranges(symmetric=False) == {"masked": (-1.0, 3.0)}
    assert stats.minmax_fallback == {"masked": "infinite values"}
    result = robust.compute_collection_result()
    assert float(result["masked"].range_value[0]) == -1.0 and "fine" in result
    assert "min/max" in stats.notes()[0]


def test_calibration_survives_an_outlier_image(tmp_path: Path) -> None:
    """The scratch RT-DETR's failure, end to end on ORT's real calibrator and quantizer: without
    the re-binning, `calibrate_ranges` raises numpy's "Too many bins for data range"."""
    prepared = _prepared(tmp_path)
    calibrate_ranges(prepared, _Batches(_outlier_batches()), SPEC)  # type: ignore[arg-type]
    ranges = load_ranges(prepared.cache)
    lo, hi = ranges["x"]
    assert lo < 0.0 < hi
    assert prepared.ranges is not None and "x" in prepared.ranges["rebinned"]
    assert any("re-binned" in n for n in prepared.notes)
    out = tmp_path / "int8.onnx"
    quantize_prepared(prepared, SPEC, out, nodes_to_exclude=_excluded(prepared, SPEC))
    q = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == "x" for n in q.graph.node)


@pytest.mark.parametrize("method", ["mse", "entropy", "percentile", "minmax", "mean_minmax"])
def test_only_quantized_tensors_are_measured(tmp_path: Path, method: str) -> None:
    """ORT's calibrator would measure h (a MatMul output, never re-quantized with
    scope="conv_inputs") and r (read only by the layer kept float); edgedet measures x only,
    and quantize_static still finds every range it needs."""
    prepared = _prepared(tmp_path)
    spec = SPEC.replace(method=method)
    batches = [b for i, b in enumerate(_outlier_batches()) if i != CHUNK_BATCHES]
    calibrate_ranges(prepared, _Batches(batches), spec)  # type: ignore[arg-type]
    assert set(load_ranges(prepared.cache)) == {"x"}
    assert prepared.ranges is not None
    assert prepared.ranges["tensors_measured"] == 1 and prepared.ranges["tensors_left_out"] >= 2
    quantize_prepared(prepared, spec, tmp_path / "int8.onnx", nodes_to_exclude=_excluded(prepared, spec))
    # scope="all" re-quantizes outputs (h, and Relu's r); z, made by the float layer, is left out
    everything = spec.replace(scope="all")
    calibrate_ranges(prepared, _Batches(batches), everything)  # type: ignore[arg-type]
    measured = set(load_ranges(prepared.cache))
    assert {"x", "h", "r"} <= measured and "z" not in measured
    quantize_prepared(
        prepared, everything, tmp_path / "all.onnx", nodes_to_exclude=_excluded(prepared, everything)
    )


def test_failed_symbolic_shape_inference_leaves_nothing_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's symbolic shape inference saves ``sym_shape_infer_temp.onnx`` (and its external
    data) in the current directory when it cannot infer every shape (here: an op of an unknown
    domain); edgedet runs it in its work folder."""
    pytest.importorskip("sympy")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["y"], name="mystery", domain="com.example")],
        "unknown_op",
        [x],
        [y],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "m.onnx"))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    work = tmp_path / "work"
    work.mkdir()
    prepared = prepare(Path("..") / "m.onnx", work)  # a relative path still works
    assert prepared.path.is_file()
    assert os.listdir(cwd) == []
    assert any("quant_pre_process failed" in n for n in prepared.notes)


def test_report_states_what_edgedet_changed(tmp_path: Path) -> None:
    """The calibration report (.md) says which tensors were measured and which were re-binned."""
    from edgedet.calibration.guard import OrtBuilder
    from edgedet.calibration.report import render_markdown

    prepared = _prepared(tmp_path)
    calibrate_ranges(prepared, _Batches(_outlier_batches()), SPEC)  # type: ignore[arg-type]
    builder = OrtBuilder.__new__(OrtBuilder)  # only its prepared model is read here
    builder._prepared = prepared
    ranges = builder.activation_ranges()
    assert ranges is not None and ranges["used_for"] == "the INT8 model"
    report = {"model": "m.onnx", "output": "m_int8.onnx", "runtime": "onnxruntime"}
    md = render_markdown({**report, "activation_ranges": ranges})
    assert "1 tensors measured, the inputs of the layers quantized" in md
    assert "**warning**: activation ranges: 1 activation histogram(s) outgrew" in md


def test_mean_minmax_is_the_mean_of_per_image_ranges(tmp_path: Path) -> None:
    """``mean_minmax``: ORT's MinMax calibrator with ``moving_average`` over one collect_data
    call averages the per-batch (per-image) min and max, so one image reaching 100 moves the
    range a little instead of setting it (``minmax`` gives 100)."""
    prepared = _prepared(tmp_path)
    batches = [np.full((1, 16), 1.0, np.float32) for _ in range(8)]
    for b in batches:
        b[0, 0] = -1.0
    batches[5][0, 1] = 100.0
    spec = SPEC.replace(method="mean_minmax")
    calibrate_ranges(prepared, _Batches(batches), spec)  # type: ignore[arg-type]
    lo, hi = load_ranges(prepared.cache)["x"]
    assert lo == pytest.approx(-1.0) and hi == pytest.approx((7 * 1.0 + 100.0) / 8)
    calibrate_ranges(prepared, _Batches(batches), SPEC.replace(method="minmax"))  # type: ignore[arg-type]
    assert load_ranges(prepared.cache)["x"][1] == pytest.approx(100.0)
