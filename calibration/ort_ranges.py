"""Which activations ONNX Runtime's calibrators measure, and histograms that survive outliers.

ONNX Runtime's calibrators (`onnxruntime.quantization.calibrate`) stay the engine; edgedet changes
two things around them, and the calibration record says so (`RangeStats`):

1. **Only the tensors that will be quantized are measured** (`calibration_targets`). ORT's
   calibrator measures every float input and output of every node of the op types it is given,
   whatever ``nodes_to_exclude`` says; edgedet asks it for the op types it quantizes and then
   keeps only the inputs of the layers it quantizes (and their outputs when ``scope="all"``
   re-quantizes outputs), leaving out the layers kept float (decode tail, DETR query selection
   and heads, stem). A tensor nobody quantizes has no range to get wrong, and costs nothing.
2. **A histogram that cannot grow is re-binned, not fatal** (`RobustHistograms`). ORT's
   `HistogramCollector` fixes a tensor's bin width on the first batches it sees and, when a later
   batch reaches further, adds bins of that width: a tensor whose range jumps a few thousand-fold
   on one image (measured: the attention logits of a scratch RT-DETR's AIFI encoder, ±2 on most
   images and -8987 on one, 9.3 million bins) makes numpy refuse the histogram ("Too many bins
   for data range") and the whole calibration fail. Here, before ORT merges a batch that would
   take a histogram past `MAX_BINS_FACTOR` x its initial bins, the histogram is folded into
   coarser bins (integer multiples of the old width, symmetric about 0, so ORT's merge goes on
   unchanged); a tensor whose histogram still cannot be built (infinite values, an error inside
   ORT) falls back to its observed min/max, finite values only. Both are listed per tensor.

Shapes: every collected tensor is flattened; histograms are ORT's tuples, ``(counts (n,) int64,
edges (n+1,) float32, min, max, threshold)`` for the signed-value collector (edges symmetric
about 0, ``n`` even) and ``(counts, edges, min, max)`` for the absolute-value one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A histogram may grow to this many times its initial bin count before it is re-binned coarser
#: (2048 bins -> 32768: 16x the first images' range at full resolution).
MAX_BINS_FACTOR = 16
#: The same for ``entropy``: ORT's KL search is quadratic in the bin count (measured on the
#: scratch RT-DETR with 16x: over 8 minutes for its 15 grown histograms, against seconds).
MAX_BINS_FACTOR_ENTROPY = 2

#: How many tensor names the record lists per change (the counts are always complete).
LISTED = 20


@dataclass(frozen=True)
class CalibrationTargets:
    """What the calibrator measures: ``op_types`` (given to ORT's ``create_calibrator``) and
    ``tensors`` (the tensor names whose ranges ``quantize_static`` will read)."""

    op_types: tuple[str, ...]
    tensors: frozenset[str]
    rule: str


def calibration_targets(
    model: Any,
    excluded: Sequence[str],
    *,
    op_types: Sequence[str] | None,
    quantize_outputs: bool,
) -> CalibrationTargets:
    """The tensors of ``model`` (an ``onnx.ModelProto``, nodes named) that ``quantize_static``
    quantizes when it runs with ``op_types_to_quantize=op_types`` (None: ORT's default, every op
    type its QDQ / QLinear registries know) and ``nodes_to_exclude=excluded``: the non-initializer
    inputs of every other node of those types, and their outputs when ``quantize_outputs``.
    Layers kept float later (the guard's sensitive layers) are a subset of the non-excluded ones,
    so these ranges serve them too."""
    if op_types is None:
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    types = frozenset(op_types)
    skip = set(excluded)
    initializers = {i.name for i in model.graph.initializer}
    tensors: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in types or node.name in skip:
            continue
        tensors.update(t for t in node.input if t and t not in initializers)
        if quantize_outputs:
            tensors.update(t for t in node.output if t)
    rule = (
        "inputs and outputs" if quantize_outputs else "inputs"
    ) + " of the layers quantized (layers kept float are not measured)"
    return CalibrationTargets(tuple(sorted(types)), frozenset(tensors), rule)


def restrict(calibrator: Any, targets: CalibrationTargets) -> tuple[int, int]:
    """Keep ORT's histogram ``calibrator`` (created with ``targets.op_types``) from measuring
    tensors outside ``targets``: its ``collect_data`` histograms only the names in its
    ``tensors_to_calibrate`` (pinned by tests/calibration/test_ort_ranges.py). Returns (kept,
    left out)."""
    selected = set(calibrator.tensors_to_calibrate)
    kept = selected & targets.tensors
    calibrator.tensors_to_calibrate = kept
    return len(kept), len(selected - kept)


@dataclass
class RangeStats:
    """What edgedet changed in ORT's range measurement, for the calibration record."""

    method: str
    measured: int = 0
    left_out: int = 0
    rule: str = ""
    rebinned: dict[str, dict[str, Any]] = field(default_factory=dict)
    minmax_fallback: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "onnxruntime",
            "method": self.method,
            "tensors_measured": self.measured,
            "tensors_left_out": self.left_out,
            "rule": self.rule,
            "rebinned": {k: self.rebinned[k] for k in sorted(self.rebinned)[:LISTED]},
            "rebinned_count": len(self.rebinned),
            "minmax_fallback": {
                k: self.minmax_fallback[k] for k in sorted(self.minmax_fallback)[:LISTED]
            },
            "minmax_fallback_count": len(self.minmax_fallback),
        }

    def notes(self) -> list[str]:
        """One sentence per kind of change that touches the ranges themselves."""
        out: list[str] = []
        if self.rebinned:
            names = ", ".join(sorted(self.rebinned)[:5])
            out.append(
                f"{len(self.rebinned)} activation histogram(s) outgrew their bin cap "
                f"({MAX_BINS_FACTOR}x the first bins, {MAX_BINS_FACTOR_ENTROPY}x for entropy) (a calibration image reached far beyond the others' range) and were "
                f"re-binned coarser instead of failing ONNX Runtime's merge: {names}"
            )
        if self.minmax_fallback:
            names = ", ".join(
                f"{k} ({self.minmax_fallback[k]})" for k in sorted(self.minmax_fallback)[:5]
            )
            out.append(
                f"{len(self.minmax_fallback)} activation(s) had no usable histogram and use "
                f"their observed min/max (finite values) instead: {names}"
            )
        return out


def _flat(data: Any) -> np.ndarray:
    """One 1-D array of a tensor's values over the batches of a collection round (ORT stacks
    the list with ``np.asarray``, which needs equal batch sizes; concatenating does not)."""
    if isinstance(data, (list, tuple)):
        parts = [np.ravel(np.asarray(a)) for a in data]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return np.ravel(np.asarray(data))


class RobustHistograms:
    """ORT's `HistogramCollector` (``inner``), fed one tensor at a time, with room made before a
    merge would outgrow ``max_bins`` and a min/max fallback per tensor (see the module
    docstring). Installed as an ORT histogram calibrator's ``collector`` by `install`; ORT's
    ``collect_data`` calls `collect`, edgedet reads `histogram_dict` (mse) or
    `compute_collection_result` (entropy, percentile)."""

    def __init__(self, inner: Any, max_bins: int, stats: RangeStats) -> None:
        self.inner = inner
        self.max_bins = int(max_bins)
        self.stats = stats
        self._minmax: dict[str, list[float]] = {}

    @property
    def histogram_dict(self) -> dict[str, Any]:
        return self.inner.histogram_dict  # type: ignore[no-any-return]

    def _absolute(self) -> bool:
        # the dispatch of HistogramCollector.collect: |x| histograms for symmetric percentile
        return bool(self.inner.method == "percentile" and self.inner.symmetric)

    def collect(self, name_to_arr: Mapping[str, Any]) -> None:
        for name, data in name_to_arr.items():
            arr = _flat(data)
            if name in self._minmax:
                self._widen(name, arr)
                continue
            if arr.size and np.isinf(arr).any():
                self._fall_back(name, arr, "infinite values")
                continue
            try:
                old = self.histogram_dict.get(name)
                if old is not None and arr.size:
                    self._make_room(name, old, arr)
                if self._absolute():
                    self.inner.collect_absolute_value({name: arr})
                else:
                    self.inner.collect_value({name: arr})
            except (KeyboardInterrupt, MemoryError):
                raise
            except Exception as err:  # numpy / ORT errors of several types, per tensor
                self._fall_back(name, arr, f"{type(err).__name__}: {err}"[:160])

    # -- re-binning ------------------------------------------------------------------------

    def _make_room(self, name: str, old: tuple[Any, ...], arr: np.ndarray) -> None:
        hist = np.asarray(old[0])
        n = len(hist)
        if self._absolute():
            edges = np.asarray(old[1])
            width = float(edges[1] - edges[0])
            top = float(np.nanmax(np.abs(arr)))
            if width <= 0 or top <= float(edges[-1]):
                return
            needed = n + math.ceil((top - float(edges[-1])) / width) + 1
            if needed <= self.max_bins:
                return
            factor = math.ceil(needed / self.max_bins)
            folded = np.add.reduceat(hist, np.arange(0, n, factor))
            new_edges = (float(edges[0]) + np.arange(len(folded) + 1) * (width * factor)).astype(
                edges.dtype
            )
            self.histogram_dict[name] = (folded, new_edges, *old[2:])
            self._note(name, needed, len(folded), float(new_edges[-1]))
            return
        threshold = float(old[4])
        new_threshold = float(max(abs(np.nanmin(arr)), abs(np.nanmax(arr))))
        if threshold <= 0 or new_threshold <= threshold or n % 2:
            return  # ORT's merge handles these without growing past its first bin width
        stride = 2.0 * threshold / n
        needed = n + 2 * (int((new_threshold - threshold) // stride) + 1)
        if needed <= self.max_bins:
            return
        factor = math.ceil(needed / self.max_bins)
        half = n // 2
        starts = np.arange(0, half, factor)
        right = np.add.reduceat(hist[half:], starts)  # outward from 0
        left = np.add.reduceat(hist[:half][::-1], starts)[::-1]
        per_side = len(right)
        dtype = np.asarray(old[1]).dtype
        new_threshold_arr = np.array(per_side * factor * stride, dtype=np.asarray(old[4]).dtype)
        edges = np.linspace(-float(new_threshold_arr), float(new_threshold_arr), 2 * per_side + 1)
        self.histogram_dict[name] = (
            np.concatenate([left, right]), edges.astype(dtype), old[2], old[3], new_threshold_arr,
        )  # fmt: skip
        self._note(name, needed, 2 * per_side, new_threshold)

    def _note(self, name: str, needed: int, bins: int, reach: float) -> None:
        row = self.stats.rebinned.setdefault(name, {"times": 0})
        row["times"] += 1
        row["bins_needed"] = int(needed)
        row["bins_after"] = int(bins)
        row["reach"] = round(float(reach), 6)

    # -- min/max fallback ------------------------------------------------------------------

    def _fall_back(self, name: str, arr: np.ndarray, why: str) -> None:
        old = self.histogram_dict.pop(name, None)
        lo, hi = math.inf, -math.inf
        if old is not None:
            lo, hi = float(old[2]), float(old[3])
        self._minmax[name] = [lo, hi]
        self._widen(name, arr)
        self.stats.minmax_fallback.setdefault(name, why)

    def _widen(self, name: str, arr: np.ndarray) -> None:
        finite = arr[np.isfinite(arr)]
        if finite.size:
            lo, hi = self._minmax[name]
            self._minmax[name] = [min(lo, float(finite.min())), max(hi, float(finite.max()))]

    def minmax_ranges(self, symmetric: bool) -> dict[str, tuple[float, float]]:
        """(lowest, highest) of the tensors that fell back to min/max (0 inside the range;
        ``symmetric``: ±max|x|). A tensor with no finite value gets (0, 0)."""
        out: dict[str, tuple[float, float]] = {}
        for name, (lo, hi) in self._minmax.items():
            lo, hi = (min(lo, 0.0), max(hi, 0.0)) if lo <= hi else (0.0, 0.0)
            if symmetric:
                t = max(abs(lo), abs(hi))
                lo, hi = -t, t
            out[name] = (lo, hi)
        return out

    def compute_collection_result(self) -> dict[str, Any]:
        """ORT's thresholds for the histogrammed tensors plus `minmax_ranges` (as ORT
        ``TensorData``) for the others."""
        from onnxruntime.quantization.calibrate import TensorData

        result: dict[str, Any] = (
            dict(self.inner.compute_collection_result()) if self.histogram_dict else {}
        )
        for name, (lo, hi) in self.minmax_ranges(bool(self.inner.symmetric)).items():
            result[name] = TensorData(
                lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32)
            )
        return result


def install(calibrator: Any, stats: RangeStats, factor: int = MAX_BINS_FACTOR) -> RobustHistograms:
    """Give ORT's histogram ``calibrator`` a `RobustHistograms` collector capped at ``factor``
    x its bins, built from the calibrator's own settings exactly as its ``collect_data`` would
    build ORT's collector (it builds one only when it has none)."""
    from onnxruntime.quantization.calibrate import HistogramCollector


    inner = HistogramCollector(
        method=calibrator.method,
        symmetric=calibrator.symmetric,
        num_bins=calibrator.num_bins,
        num_quantized_bins=calibrator.num_quantized_bins,
        percentile=calibrator.percentile,
        scenario=calibrator.scenario,
    )
    collector = RobustHistograms(inner, factor * int(calibrator.num_bins), stats)
    calibrator.collector = collector
    return collector
