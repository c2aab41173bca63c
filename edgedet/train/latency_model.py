"""How long each convolution takes on the target, as a pruning budget: a linear latency model
fitted to ONNX Runtime's own per-node profile.

MACs are a poor proxy for latency on a CPU. YOLOX-nano pruned to 71% of its MACs ran only 4%
faster in ONNX Runtime's kernel time (10.5 -> 10.0 ms): the sensitivity allocation cut deep,
low-resolution layers, which hold many MACs but move little data, while the time goes to the
memory-bound high-resolution layers (the stem conv alone: 1.3 ms of 14 at 208x208, and the SiLU
after every conv is a fifth of the total). Each convolution's profiled time is fitted as

    ms = per_mmac * MACs / 1e6 + per_melement * (input + output elements) / 1e6

by least squares over the model's convolutions (YOLOX-nano on this 2-core EPYC, convs alone:
about 0.0104 ms per MMAC and 0.25-0.27 ms per million elements, R^2 0.87-0.88 against 0.75-0.78
for MACs alone, varying run to run by a few percent). The ratio
``macs_per_element = per_melement / per_mmac`` turns that into MAC-equivalents, which
`allocate.py` and `prune.py` budget instead of MACs (``PruneConfig.metric = "latency"``).

Each convolution's time includes the element-wise activation ONNX Runtime runs on its output
(SiLU as `QuickGelu`, Sigmoid, ReLU...), read from the session's optimised graph: that time
scales with the elements the conv writes. The profile runs with ONNX Runtime's extended graph
optimisations but without its NCHWc layout rewrite, so every profiled conv keeps its ONNX node
name; the layout reorders that rewrite adds (more of them when pruning leaves channel counts off
its block size) are not modelled. The model ranks where to cut; the prune report measures the
real end-to-end latency before and after, and that is what to judge the result by.
"""

from __future__ import annotations

import json
import tempfile
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


#: Element-wise ops ONNX Runtime runs on a conv's output (SiLU becomes QuickGelu), whose time
#: belongs to that conv: it scales with the elements the conv writes.
ACTIVATIONS = frozenset(
    {"QuickGelu", "Sigmoid", "Mul", "Relu", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish",
     "Tanh", "Gelu", "Elu"}
)  # fmt: skip


def _static_input(model: Any, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """Fix the graph input's dimensions (``shape``, or 1 for each symbolic one) in place, so
    shape inference gives every conv a size; returns the shape to feed."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    given = list(shape) if shape is not None else [d.dim_value or 1 for d in dims]
    if len(given) != len(dims):
        raise InvalidInputError(
            f"input shape {tuple(given)} does not fit the model's {len(dims)}-D input"
        )
    for d, v in zip(dims, given):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    return tuple(int(v) for v in given)


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
        if node.op_type != "Conv" or node.input[1] not in weights or not node.name:
            continue
        x, y = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not x or not y or 0 in x[1:] or 0 in y[1:]:
            continue
        w = weights[node.input[1]]
        per_out = float(np.prod(y[1:]))
        out[node.name] = (per_out * w[1] * w[2] * w[3], float(np.prod(x[1:])) + per_out)
    return out


def attribute_times(
    nodes: list[tuple[str, str, list[str], list[str]]],
    node_ms: dict[str, float],
    convs: set[str],
) -> dict[str, float]:
    """Per conv: its own time plus that of the element-wise activations reading its output.

    ``nodes``: the optimised graph as ``(name, op_type, inputs, outputs)``; ``node_ms``: profiled
    time per node name; ``convs``: the names of the convs to report. An activation reading a
    conv's output directly (or through another such activation, as x * sigmoid(x) does) is
    counted with that conv.
    """
    owner: dict[str, str] = {}  # tensor -> the conv whose output it is (or derives from)
    total = {c: node_ms.get(c, 0.0) for c in convs if c in node_ms}
    for name, op, inputs, outputs in nodes:  # graph order: producers first
        if name in total:
            for o in outputs:
                owner[o] = name
        elif op in ACTIVATIONS:
            conv = next((owner[i] for i in inputs if i in owner), None)
            if conv is not None:
                total[conv] += node_ms.get(name, 0.0)
                for o in outputs:
                    owner[o] = conv
    return total


def fit_latency_model(
    onnx_path: str | Path,
    *,
    threads: int = 2,
    runs: int = 50,
    warmup: int = 20,
    input_shape: tuple[int, ...] | None = None,
) -> LatencyModel:
    """Profile ``onnx_path`` on ONNX Runtime's CPU provider (random input of ``input_shape``,
    default the model's, symbolic dimensions 1) and fit the per-convolution latency model. The
    warm-up runs in a session of its own, unprofiled; a few seconds for a nano detector.

    Raises:
        InvalidInputError: too few profiled convolutions (< 3), or no positive cost per MAC
            (the profile does not grow with the work: use a MACs target).
        RuntimeUnavailableError: onnx or onnxruntime is missing.
    """
    try:
        import onnx
        import onnxruntime as ort
    except ImportError as err:
        raise missing_extra("onnxruntime", "onnxruntime", "the pruning latency model") from err
    model = onnx.load(str(onnx_path))
    shape = _static_input(model, input_shape)
    shapes = _conv_shapes(model)
    feed_array = np.random.default_rng(0).random(shape, dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        static = Path(tmp) / "static.onnx"
        onnx.save(model, str(static))

        # Profiling, not inference: ONNX Runtime's per-node profile and optimised graph need
        # session options (enable_profiling, optimized_model_filepath) that the runtime class
        # (`edgedet.runtimes.ort_runtime`) does not expose, so this is the one session opened
        # outside runtimes/.
        def session(profile: bool) -> Any:
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            if profile:
                so.enable_profiling = True
                so.profile_file_prefix = str(Path(tmp) / "profile")
                so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            return ort.InferenceSession(str(static), so, providers=["CPUExecutionProvider"])

        warm = session(False)
        feed = {warm.get_inputs()[0].name: feed_array}
        for _ in range(warmup):  # caches and allocator, out of the profile
            warm.run(None, feed)
        del warm
        sess = session(True)
        sess.run(None, feed)  # the first run allocates: not counted below
        for _ in range(runs):
            sess.run(None, feed)
        events = json.loads(Path(sess.end_profiling()).read_text())
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False)
    per_run: dict[str, list[float]] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "Node" and name.endswith("_kernel_time"):
            per_run.setdefault(name[: -len("_kernel_time")], []).append(int(e["dur"]) / 1000.0)
    # The median over runs of each node (the first, allocating run included among runs + 1):
    # robust to the odd preempted run on a shared machine.
    node_ms = {n: float(np.median(v)) for n, v in per_run.items()}
    graph = [(n.name, n.op_type, list(n.input), list(n.output)) for n in optimized.graph.node]
    times = attribute_times(graph, node_ms, set(shapes))
    rows = [(shapes[n], t) for n, t in times.items()]
    if len(rows) < 3:
        raise InvalidInputError(
            f"{onnx_path}: only {len(rows)} profiled convolutions; too few to fit a latency model"
        )
    x = np.array([[m / 1e6, e / 1e6] for (m, e), _ in rows])
    y = np.array([t for _, t in rows])
    coef = np.linalg.lstsq(x, y, rcond=None)[0]
    macs_only = np.linalg.lstsq(x[:, :1], y, rcond=None)[0]
    if coef[1] < 0:  # data moved never saves time: the MACs-only fit is the model
        coef = np.array([macs_only[0], 0.0])
    if coef[0] <= 0:
        raise InvalidInputError(
            f"{onnx_path}: the profiled conv times do not grow with their MACs (fit "
            f"{coef[0]:.2g} ms/MMAC); the model is too small to time per layer here, use "
            "--target-macs"
        )

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
