"""Compile a `CalibrationSpec` to ONNX Runtime static quantization: a QDQ ONNX model.

Steps (all in a private temporary folder; only the finished model is renamed into place, so an
interrupted run leaves no file that looks finished):

1. ``quant_pre_process`` (symbolic + ONNX shape inference, basic graph optimisation) when it
   succeeds; the original graph otherwise. A dynamic batch dimension is kept: calibration feeds
   batches of the source's ``batch_size`` and the QDQ model keeps the symbolic batch.
2. Unnamed nodes get names; the spec's exclusions (names, types, patterns, decode tail, head
   convs) are resolved on *this* graph.
3. Activation ranges: ``minmax`` / ``entropy`` / ``percentile`` through ORT's calibrators;
   ``mse`` from ORT's histogram collector with edgedet's MSE-optimal clipping. The ranges are
   cached (`onnxruntime.quantization` JSON cache) so several quantizations of one model (the
   sensitivity analysis) calibrate once.
4. ``quantize_static`` in QDQ format: int8 weights (per channel by default); uint8 asymmetric or
   int8 symmetric activations.
5. The edgedet meta (``precision="int8"`` and the calibration record) is written into the model.

``extra_options`` (ONNX Runtime's CamelCase dict) is built here from typed fields only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.errors import CalibrationError, missing_extra
from edgedet.meta import ModelMeta, write_onnx_meta
from edgedet.workdir import make_work_dir, remove_work_dir

from .ort_ranges import (
    MAX_BINS_FACTOR,
    MAX_BINS_FACTOR_ENTROPY,
    CalibrationTargets,
    RangeStats,
    RobustHistograms,
    calibration_targets,
    install,
    restrict,
)
from .source import CalibrationSource
from .spec import CalibrationSpec, Exclusion, resolve_exclusions

log = logging.getLogger("edgedet.calibration")

#: QDQ with per-channel scales (DequantizeLinear ``axis``) needs this ONNX opset.
MIN_OPSET = 13

#: Histogram resolution for entropy / percentile / mse calibration (TensorRT uses 2048).
HISTOGRAM_BINS = 2048


def _ort_quant() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as err:
        raise missing_extra(
            "onnxruntime", "calibrate", "INT8 calibration with ONNX Runtime"
        ) from err
    q.CalibrationDataReader.register(CalibrationSource)
    return q


def _method_enum(q: Any, method: str) -> Any:
    return {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
        "mse": q.CalibrationMethod.MinMax,  # ranges computed by edgedet, stored as min/max
        "mean_minmax": q.CalibrationMethod.MinMax,  # ORT's MinMax, averaged over batches
    }[method]


def extra_options(spec: CalibrationSpec) -> dict[str, Any]:
    """ONNX Runtime ``extra_options`` from the spec's typed fields (the only place they exist)."""
    opts: dict[str, Any] = {
        "ActivationSymmetric": spec.symmetric_activations,
        "WeightSymmetric": True,
        # data-movement ops (MaxPool, Transpose...) are quantized only behind a quantized input
        "ForceQuantizeNoInputCheck": False,
        "CalibMovingAverage": False,
    }
    if spec.method == "percentile":
        opts["CalibPercentile"] = spec.percentile
    if spec.symmetric_activations:
        opts["CalibTensorRangeSymmetric"] = True
    if spec.scope == "conv_inputs":
        opts["OpTypesToExcludeOutputQuantization"] = list(SCOPE_OPS)
    return opts


#: ``scope="conv_inputs"``: the op types quantized (inputs and weights only).
SCOPE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# -- MSE ranges ---------------------------------------------------------------------------------


def mse_range(
    hist: np.ndarray, edges: np.ndarray, lo: float, hi: float, levels: int = 256
) -> tuple[float, float]:
    """The clipping range [a, b] within [lo, hi] minimising the expected squared error of
    uniform quantization with ``levels`` levels over a value histogram (bin centres weighted by
    counts).

    Both ends are searched on a 40 × 40 grid of fractions of the observed ends (so a one-sided
    outlier shrinks only its side); zero stays inside the range.
    """
    centres = (edges[:-1] + edges[1:]) * 0.5
    weights = hist.astype(np.float64)
    keep = weights > 0
    centres, weights = centres[keep].astype(np.float64), weights[keep]
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo <= 0 or len(centres) == 0:
        return lo, hi
    fractions = np.linspace(1.0, 0.025, 40)
    highs = hi * fractions  # (40,)
    best = (np.inf, lo, hi)
    for a in lo * fractions:
        scale = (highs - a) / (levels - 1)  # (40,)
        scale = np.where(scale > 0, scale, 1e-12)
        q = np.clip(np.round((centres[None, :] - a) / scale[:, None]), 0, levels - 1)
        err = ((centres[None, :] - (q * scale[:, None] + a)) ** 2 * weights[None, :]).sum(axis=1)
        k = int(np.argmin(err))
        if err[k] < best[0]:
            best = (float(err[k]), float(a), float(highs[k]))
    return best[1], best[2]


def _calibrate_mse(
    q: Any,
    model_path: Path,
    source: CalibrationSource,
    work: Path,
    cache: Path,
    spec: CalibrationSpec,
    targets: CalibrationTargets,
    stats: RangeStats,
) -> None:
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    calibrator = q.create_calibrator(
        model_path,
        list(targets.op_types),
        augmented_model_path=str(work / "augmented_mse.onnx"),
        calibrate_method=q.CalibrationMethod.Entropy,
        extra_options={"num_bins": HISTOGRAM_BINS, "symmetric": False},
    )
    collector = _robust(calibrator, targets, stats)
    _collect_chunked(calibrator, source)
    ranges: dict[str, Any] = {}
    for name, item in collector.histogram_dict.items():
        hist, edges, vmin, vmax = item[0], item[1], item[2], item[3]
        a, b = mse_range(np.asarray(hist), np.asarray(edges), float(vmin), float(vmax))
        if spec.symmetric_activations:
            t = max(abs(a), abs(b))
            a, b = -t, t
        ranges[name] = TensorData(lowest=np.array(a, np.float32), highest=np.array(b, np.float32))
    for name, (a, b) in collector.minmax_ranges(spec.symmetric_activations).items():
        ranges[name] = TensorData(lowest=np.array(a, np.float32), highest=np.array(b, np.float32))
    save_tensors_data(TensorsData(q.CalibrationMethod.MinMax, ranges), cache)


def _robust(calibrator: Any, targets: CalibrationTargets, stats: RangeStats) -> RobustHistograms:
    """Measure only ``targets`` and give ORT's histogram calibrator the robust collector
    (`edgedet.calibration.ort_ranges`)."""
    stats.measured, stats.left_out = restrict(calibrator, targets)
    # ORT's entropy search is quadratic in the bin count: a tighter cap (mse runs ORT's entropy
    # calibrator for its histograms but searches them itself, linearly)
    entropy = stats.method == "entropy"
    return install(calibrator, stats, MAX_BINS_FACTOR_ENTROPY if entropy else MAX_BINS_FACTOR)


class _Chunk:
    """A reader serving ``first`` and then at most ``size - 1`` more batches of ``it``, so ORT's
    histogram calibrators (which hold every intermediate tensor of every batch until the
    reader is exhausted) merge into their histograms every few images instead of holding
    gigabytes."""

    def __init__(
        self, first: dict[str, np.ndarray], it: Iterator[dict[str, np.ndarray]], size: int
    ) -> None:
        self.pending: dict[str, np.ndarray] | None = first
        self.it = it
        self.left = size
        self.exhausted = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pending is not None:
            item, self.pending = self.pending, None
            self.left -= 1
            return item
        if self.left <= 0:
            return None
        nxt = next(self.it, None)
        if nxt is None:
            self.exhausted = True
            return None
        self.left -= 1
        return nxt


#: Batches per histogram-collection round (memory: every activation of this many images).
CHUNK_BATCHES = 4


def _collect_chunked(calibrator: Any, source: CalibrationSource) -> None:
    source.rewind()
    it = iter(source)
    while True:
        first = next(it, None)
        if first is None:
            break
        chunk = _Chunk(first, it, CHUNK_BATCHES)
        calibrator.collect_data(chunk)
        if chunk.exhausted:
            break


# -- preparation --------------------------------------------------------------------------------



@contextlib.contextmanager
def calibration_errors(model_path: str | Path) -> Iterator[None]:
    """Turn an error ONNX Runtime raises while it runs the calibration images (its session, run and
    histogram errors are not one type; e.g. numpy's "Too many bins for data range" on a tensor with
    a huge range) into a `CalibrationError` naming the model."""
    try:
        yield
    except (CalibrationError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as err:
        raise CalibrationError(
            f"calibration of {model_path} failed while running the images: {type(err).__name__}: {err}"
        ) from err


@dataclass
class PreparedModel:
    """A float model ready for quantization (pre-processed, nodes named) in a work folder."""

    path: Path
    work: Path
    preprocessed: bool
    cache: Path
    calibrated_with: str | None = None
    notes: list[str] = field(default_factory=list)
    #: what the last `calibrate_ranges` measured (`ort_ranges.RangeStats.to_dict`), or None
    ranges: dict[str, Any] | None = None


def prepare(model_path: str | Path, work: Path) -> PreparedModel:
    """Shape inference + optimisation (``quant_pre_process``) and node naming, into ``work``."""
    import onnx

    from .tail import ensure_node_names

    q = _ort_quant()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src = Path(model_path)
    work = Path(work).resolve()
    pre = work / "pre.onnx"
    notes: list[str] = []
    original = onnx.load(str(src))
    opset = next((o.version for o in original.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        # per-channel DequantizeLinear (its ``axis``) needs opset 13
        from onnx import version_converter

        try:
            converted = version_converter.convert_version(original, MIN_OPSET)
        except Exception as err:  # the converter raises RuntimeError / ValueError / C++ errors
            raise CalibrationError(
                f"{src} uses opset {opset}; INT8 QDQ needs opset >= {MIN_OPSET} and the ONNX "
                f"version converter failed ({type(err).__name__}: {err}); re-export the model "
                f"with opset {MIN_OPSET} or newer"
            ) from err
        src = work / "opset.onnx"
        onnx.save(converted, str(src))
        notes.append(f"converted from opset {opset} to {MIN_OPSET} for per-channel QDQ")
    del original
    preprocessed = False
    symbolic = _sympy_note()
    if symbolic is not None:
        notes.append(symbolic)
        log.warning("calibration: %s", symbolic)
    src = src.resolve()  # absolute: ORT runs in the work folder below
    try:
        with _cwd(work):
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=symbolic is not None)
        preprocessed = True
    except Exception as err:  # ORT raises plain Exception subclasses from several layers
        notes.append(
            f"quant_pre_process failed ({type(err).__name__}: {err}); used the graph as is"
        )
        log.warning("calibration: %s", notes[-1])
        try:
            with _cwd(work):
                quant_pre_process(
                    str(src), str(pre), skip_optimization=True, skip_symbolic_shape=True
                )
            preprocessed = True
        except Exception as err2:  # same: fall back to the plain graph
            notes.append(f"shape-only pre-processing failed too ({type(err2).__name__})")
            shutil.copyfile(src, pre)
    model = onnx.load(str(pre))
    if ensure_node_names(model):
        onnx.save(model, str(pre))
    del q
    return PreparedModel(pre, work, preprocessed, work / "ranges.json", notes=notes)


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    """Run in ``folder``: ORT's symbolic shape inference saves ``sym_shape_infer_temp.onnx``
    (and its external data) in the *current* directory when it cannot infer every shape, and
    leaves it there; in edgedet's work folder it is removed with the folder. (Python 3.10 has no
    ``contextlib.chdir``.)"""
    import os

    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _sympy_note() -> str | None:
    """Why ORT's symbolic shape inference cannot run here (sympy missing), or None.

    Checked up front (``find_spec``, nothing imported) so the note is precise and lands in the
    calibration record, instead of a failed first ``quant_pre_process`` and a retry."""
    import importlib.util

    if importlib.util.find_spec("sympy") is not None:
        return None
    from edgedet.hints import install_command

    return (
        "sympy is not installed: ONNX Runtime's symbolic shape inference was skipped in "
        "pre-processing (ONNX shape inference and graph optimisation still ran); "
        f"{install_command('calibrate')}"
    )


def calibrate_ranges(
    prepared: PreparedModel,
    source: CalibrationSource,
    spec: CalibrationSpec,
    family: str | None = None,
) -> None:
    """Run calibration once and store the activation ranges in ``prepared.cache``.

    Only the tensors ``quantize_static`` will quantize are measured: the inputs of the layers
    ``spec`` quantizes on this graph (``family``: the model family, for its exclusion rules),
    see `edgedet.calibration.ort_ranges`; what was measured and re-binned goes to
    ``prepared.ranges`` (and, as sentences, ``prepared.notes``) for the calibration record."""
    import onnx

    q = _ort_quant()
    key = _range_key(spec, family)
    if prepared.calibrated_with == key:
        return
    prepared.cache.unlink(missing_ok=True)
    model = onnx.load(str(prepared.path), load_external_data=False)
    exclusion = resolve_exclusions(model, spec, family)
    targets = calibration_targets(
        model,
        exclusion.names,
        op_types=SCOPE_OPS if spec.scope == "conv_inputs" else None,
        quantize_outputs=spec.scope != "conv_inputs",
    )
    del model
    stats = RangeStats(spec.method, rule=targets.rule)
    source.rewind()
    if spec.method == "mse":
        _calibrate_mse(
            q, prepared.path, source, prepared.work, prepared.cache, spec, targets, stats
        )
    else:
        from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

        opts = extra_options(spec)
        calib_opts: dict[str, Any] = {
            "symmetric": bool(opts.get("CalibTensorRangeSymmetric", False))
        }
        if spec.method == "percentile":
            calib_opts["percentile"] = spec.percentile
            calib_opts["num_bins"] = HISTOGRAM_BINS
        if spec.method == "entropy":
            # ORT's default (128 bins, 128 quantized bins) can only return the full range
            calib_opts["num_bins"] = HISTOGRAM_BINS
            calib_opts["num_quantized_bins"] = 128
        if spec.method == "mean_minmax":
            calib_opts["moving_average"] = True
        calibrator = q.create_calibrator(
            prepared.path,
            list(targets.op_types),
            augmented_model_path=str(prepared.work / "augmented.onnx"),
            calibrate_method=_method_enum(q, spec.method),
            extra_options=calib_opts,
        )
        if spec.method == "mean_minmax":
            # ORT's MinMax with ``moving_average`` averages the per-batch ReduceMin/ReduceMax of
            # one collect_data call (then blends later calls with an exponential average): one
            # call over every batch gives the plain mean of per-image ranges (batch size 1).
            # It holds two scalars per tensor and batch, so it needs no chunks.
            source.rewind()
            calibrator.collect_data(source)
        elif spec.method == "minmax":
            _collect_chunked(calibrator, source)
        else:  # histograms: the robust collector
            _robust(calibrator, targets, stats)
            _collect_chunked(calibrator, source)
        data = calibrator.compute_data()
        kept = {k: v for k, v in data.items() if k in targets.tensors}
        if spec.method in ("minmax", "mean_minmax"):
            stats.measured, stats.left_out = len(kept), len(data.data) - len(kept)
        save_tensors_data(TensorsData(data.calibration_method, kept), prepared.cache)
        del calibrator
    prepared.ranges = stats.to_dict()
    prepared.notes[:] = [n for n in prepared.notes if not n.startswith(_RANGE_NOTE)]
    prepared.notes.extend(f"{_RANGE_NOTE}{n}" for n in stats.notes())
    for note in stats.notes():
        log.warning("calibration: %s", note)
    prepared.calibrated_with = key


#: Prefix of the notes `calibrate_ranges` writes (replaced when the ranges are measured again).
_RANGE_NOTE = "activation ranges: "


def _range_key(spec: CalibrationSpec, family: str | None) -> str:
    return f"{spec.method}:{spec.percentile}:{spec.symmetric_activations}:{spec.scope}:{family}"


def quantize_prepared(
    prepared: PreparedModel,
    spec: CalibrationSpec,
    out: Path,
    *,
    nodes_to_exclude: Sequence[str] = (),
    nodes_to_quantize: Sequence[str] | None = None,
) -> None:
    """``quantize_static`` with the cached ranges (call `calibrate_ranges` first)."""
    q = _ort_quant()
    act = q.QuantType.QInt8 if spec.symmetric_activations else q.QuantType.QUInt8
    with _quiet_ort():
        q.quantize_static(
            str(prepared.path),
            str(out),
            calibration_data_reader=None,
            quant_format=q.QuantFormat.QDQ,
            per_channel=spec.per_channel,
            reduce_range=spec.reduce_range,
            activation_type=act,
            weight_type=q.QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude),
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize else None,
            op_types_to_quantize=list(SCOPE_OPS) if spec.scope == "conv_inputs" else None,
            calibrate_method=_method_enum(q, spec.method),
            extra_options=extra_options(spec),
            calibration_cache_path=str(prepared.cache),
        )


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """ORT's quantizer logs a pre-processing hint at WARNING on every call; keep it at INFO."""
    root = logging.getLogger()
    level = root.level
    try:
        if level < logging.ERROR:
            root.setLevel(logging.ERROR)
        yield
    finally:
        root.setLevel(level)


# -- the whole thing --------------------------------------------------------------------------


@dataclass
class QuantizeResult:
    """What `quantize_onnx` produced."""

    path: Path
    meta: ModelMeta
    record: dict[str, Any]
    exclusion: Exclusion


def calibration_record(
    spec: CalibrationSpec,
    source: CalibrationSource,
    exclusion: Exclusion,
    *,
    tool: str,
    map_before: float | None = None,
    map_after: float | None = None,
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record stored in ``ModelMeta.calibration``."""
    import edgedet

    images = source.record()
    record: dict[str, Any] = {
        "method": spec.method,
        "tool": tool,
        "spec": spec.to_dict(),
        "images": {k: images[k] for k in ("count", "requested", "images_sha256", "origin", "seed")},
        "skipped_images": images["skipped"],
        "warnings": [*images["warnings"], *notes],
        "excluded_nodes": list(exclusion.names),
        "excluded_summary": exclusion.summary(),
        "map_before": map_before,
        "map_after": map_after,
        "edgedet_version": edgedet.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(extra)
    return record


def quantize_onnx(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    out: str | Path,
    meta: ModelMeta,
    *,
    keep_float: Sequence[str] = (),
    prepared: PreparedModel | None = None,
    record_extra: Mapping[str, Any] | None = None,
) -> QuantizeResult:
    """Calibrate ``model_path`` on ``source`` and write a QDQ INT8 ONNX to ``out`` atomically.

    ``meta`` is the float model's resolved meta (``Detector.meta``); the output carries it with
    ``precision="int8"`` and the calibration record (``map_before`` / ``map_after`` are filled
    in later by the caller that evaluates, see `update_record`). ``keep_float`` names extra
    nodes to keep in float (sensitivity analysis).
    """
    import onnx

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise CalibrationError(f"ONNX Runtime INT8 output must be a .onnx file, got {out}")
    # removed below, and by the next run if this one is killed (edgedet.workdir)
    work = make_work_dir(".edgedet-calib-", out.parent if out.parent.is_dir() else None)
    try:
        if prepared is None:
            prepared = prepare(model_path, work)
        model = onnx.load(str(prepared.path), load_external_data=False)
        exclusion = resolve_exclusions(model, spec, meta.family, extra=keep_float)
        with calibration_errors(model_path):
            calibrate_ranges(prepared, source, spec, meta.family)
        tmp_q = work / "quantized.onnx"
        quantize_prepared(prepared, spec, tmp_q, nodes_to_exclude=exclusion.names)
        extra = {"activation_ranges": prepared.ranges, **(record_extra or {})}
        record = calibration_record(
            spec, source, exclusion, tool="onnxruntime", notes=prepared.notes, extra=extra
        )
        new_meta = meta.replace(precision="int8", calibration=record)
        write_onnx_meta(tmp_q, out, new_meta)  # atomic: temp file + rename
        return QuantizeResult(out, new_meta, record, exclusion)
    finally:
        remove_work_dir(work)  # ours alone: a given ``prepared`` lives in its caller's folder


def update_record(path: str | Path, **changes: Any) -> ModelMeta:
    """Rewrite the calibration record of an INT8 ONNX model (e.g. measured mAP), atomically."""
    from edgedet.meta import read_meta

    meta = read_meta(path)
    if meta is None or meta.calibration is None:
        raise CalibrationError(f"{path} carries no edgedet calibration record")
    record = dict(meta.calibration)
    record.update(changes)
    new = meta.replace(calibration=record)
    write_onnx_meta(path, path, new)
    return new
