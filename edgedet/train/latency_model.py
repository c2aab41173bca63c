"""How long each convolution takes on the target, as a pruning budget: a linear latency model
fitted to ONNX Runtime's own per-node profile.

MACs are a poor proxy for latency on a CPU. YOLOX-nano pruned to 71% of its MACs ran only 4%
faster in ONNX Runtime's kernel time (10.5 -> 10.0 ms): the sensitivity allocation cut deep,
low-resolution layers, which hold many MACs but move little data, while the time goes to the
memory-bound high-resolution layers (the stem conv alone: 1.3 ms of 14 at 208x208, and the SiLU
after every conv is a fifth of the total). Each convolution's profiled time is fitted as

    ms = per_mmac * MACs / 1e6 + per_melement * (input + output elements) / 1e6

by least squares over the model's convolutions (YOLOX-nano on this 2-core EPYC: 0.0105 ms per
MMAC and 0.269 ms per million elements, R^2 0.87 against 0.78 for MACs alone). The ratio
``macs_per_element = per_melement / per_mmac`` turns that into MAC-equivalents, which
`allocate.py` and `prune.py` budget instead of MACs (``PruneConfig.metric = "latency"``).

The profile runs with ONNX Runtime's extended graph optimisations (convolutions fused with
their activation) but without its NCHWc layout rewrite, so that every profiled node is still an
ONNX Conv of the model; the fully optimised session is faster overall, which the fit's scale
does not matter for, only the ratio. The prune report measures the real end-to-end latency
before and after, which is what the target is checked against.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.errors import InvalidInputError, missing_extra


@dataclass(frozen=True)
class LatencyModel:
    """``ms = per_mmac * MMACs + per_melement * M elements`` per convolution, fitted on
    ``convolutions`` profiled nodes with coefficient of determination ``r2``."""

    per_mmac: float
    per_melement: float
    r2: float
    r2_macs_only: float
    convolutions: int
    total_conv_ms: float
    runtime: str = "onnxruntime"
    threads: int = 2

    @property
    def macs_per_element(self) -> float:
        """What one element read or written costs, in MACs (the pruning budget's exchange
        rate); 0 when the fit found no element cost."""
        return max(0.0, self.per_melement) / self.per_mmac if self.per_mmac > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "macs_per_element": self.macs_per_element}


def _conv_shapes(model: Any) -> dict[str, tuple[float, float]]:
    """ONNX Conv node name -> (MACs, input + output elements) per image, from shape
    inference."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    weights = {i.name: list(i.dims) for i in inferred.graph.initializer}
    out: dict[str, tuple[float, float]] = {}
    for node in inferred.graph.node:
        if node.op_type != "Conv" or node.input[1] not in weights:
            continue
        x, y = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not x or not y or 0 in x[1:] or 0 in y[1:]:
            continue
        w = weights[node.input[1]]
        per_out = float(np.prod(y[1:]))
        out[node.name] = (per_out * w[1] * w[2] * w[3], float(np.prod(x[1:])) + per_out)
    return out


def fit_latency_model(
    onnx_path: str | Path, *, threads: int = 2, runs: int = 200, warmup: int = 20
) -> LatencyModel:
    """Profile ``onnx_path`` on ONNX Runtime's CPU provider (batch 1, random input) and fit
    the per-convolution latency model. A few seconds for a nano detector.

    Raises:
        InvalidInputError: the model has too few profiled convolutions to fit (< 3).
        RuntimeUnavailableError: onnx or onnxruntime is missing.
    """
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as err:
        raise missing_extra("onnxruntime", "onnxruntime", "the pruning latency model") from err
    model = onnx.load(str(onnx_path))
    shapes = _conv_shapes(model)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "profile")
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        dims = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feed = {inp.name: np.random.default_rng(0).random(dims, dtype=np.float32)}
        for _ in range(warmup + runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
    times: Counter[str] = Counter()
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            times[name[: -len("_kernel_time")]] += int(e["dur"])
    rows = [(shapes[n], t / (warmup + runs) / 1000.0) for n, t in times.items() if n in shapes]
    if len(rows) < 3:
        raise InvalidInputError(
            f"{onnx_path}: only {len(rows)} profiled convolutions; too few to fit a latency model"
        )
    x = np.array([[m / 1e6, e / 1e6] for (m, e), _ in rows])
    y = np.array([t for _, t in rows])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    macs_only = np.linalg.lstsq(x[:, :1], y, rcond=None)[0]

    def r2(pred: np.ndarray) -> float:
        total = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else 0.0

    return LatencyModel(
        per_mmac=float(coef[0]),
        per_melement=float(coef[1]),
        r2=r2(x @ coef),
        r2_macs_only=r2(x[:, :1] @ macs_only),
        convolutions=len(rows),
        total_conv_ms=float(y.sum()),
        threads=threads,
    )
