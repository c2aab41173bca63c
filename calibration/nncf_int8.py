"""Compile a `CalibrationSpec` to NNCF post-training quantization for OpenVINO.

- `quantize_openvino`: ``nncf.quantize`` on the OpenVINO model read from the float ONNX, with
  the spec's exclusions as an ``nncf.IgnoredScope`` (ONNX node names are translated to
  OpenVINO operation names through the tensor names the ONNX frontend keeps), the method as an
  activation range estimator, and ``preset`` from the activation symmetry. Written as OpenVINO
  IR (``.xml`` + ``.bin``) and the edgedet sidecar (meta and calibration record) into a
  temporary folder, then renamed into place (sidecar and ``.bin`` first, so a ``.xml`` only ever
  appears beside its finished weights and meta: `save_ir_atomically`).
- `quantize_openvino_with_accuracy_control`: ``nncf.quantize_with_accuracy_control`` with
  edgedet's mAP50-95 on a labelled validation set as ``validation_fn`` and ``max_drop`` in mAP
  points; NNCF then returns the layers it kept in float.
- `quantize_onnx_nncf`: NNCF's ONNX backend, which writes a QDQ ONNX model (node names are used
  as they are).

Method mapping: ``minmax`` -> ``MINMAX``; ``mean_minmax`` -> ``MEAN_MINMAX``; ``percentile`` ->
``MEAN_QUANTILE`` with outlier probability ``1 - percentile/100``; ``mse`` and ``entropy`` ->
``HISTOGRAM`` (NNCF's quantization-error minimisation over a histogram; NNCF has no
KL-divergence estimator, the record says so).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import CalibrationError, missing_extra
from edgedet.meta import ModelMeta, sidecar_path, write_sidecar
from edgedet.workdir import make_work_dir, remove_work_dir

from .ort_int8 import QuantizeResult, calibration_record
from .source import CalibrationSource
from .spec import CalibrationSpec, Exclusion, resolve_exclusions

log = logging.getLogger("edgedet.calibration")


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as err:
        raise missing_extra("nncf", "calibrate", "INT8 calibration for OpenVINO") from err
    return nncf


def advanced_parameters(spec: CalibrationSpec) -> Any:
    """NNCF ``AdvancedQuantizationParameters`` from the spec's typed fields."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import (
        RangeEstimatorParameters,
        RangeEstimatorParametersSet,
        StatisticsCollectorParameters,
    )

    if spec.method == "minmax":
        est = RangeEstimatorParametersSet.MINMAX
    elif spec.method == "mean_minmax":
        est = RangeEstimatorParametersSet.MEAN_MINMAX
    elif spec.method == "percentile":
        base = RangeEstimatorParametersSet.MEAN_QUANTILE
        prob = max(1e-7, 1.0 - spec.percentile / 100.0)
        est = RangeEstimatorParameters(
            min=StatisticsCollectorParameters(
                statistics_type=base.min.statistics_type,
                aggregator_type=base.min.aggregator_type,
                quantile_outlier_prob=prob,
            ),
            max=StatisticsCollectorParameters(
                statistics_type=base.max.statistics_type,
                aggregator_type=base.max.aggregator_type,
                quantile_outlier_prob=prob,
            ),
        )
    else:  # mse, entropy
        est = RangeEstimatorParametersSet.HISTOGRAM
    return AdvancedQuantizationParameters(activations_range_estimator_params=est)


def _preset(nncf: Any, spec: CalibrationSpec) -> Any:
    return (
        nncf.QuantizationPreset.PERFORMANCE
        if spec.symmetric_activations
        else nncf.QuantizationPreset.MIXED
    )


def onnx_to_ov_names(ov_model: Any, onnx_model: Any, names: Sequence[str]) -> list[str]:
    """OpenVINO operation names standing for ONNX nodes ``names``, matched by output tensor
    names (which the ONNX frontend keeps); nodes folded away by the frontend are skipped.

    The frontend splits an ONNX Conv with bias into Convolution + Add and gives the ONNX output
    name to the Add, so for a matched Add / Multiply the compute op feeding it is taken too
    (NNCF quantizes the Convolution's inputs; ignoring only the Add would keep it quantized).
    An ONNX Gemm becomes MatMul -> Multiply (alpha) -> Add (+ beta * C): for an ONNX compute
    node the walk goes back through up to `_GEMM_HOPS` Multiply / Add ops to its MatMul (a
    Ultralytics RT-DETR export's Linear layers are such Gemms: without this its DETR heads were
    quantized by NNCF although kept float in ONNX Runtime's QDQ).
    """
    wanted: dict[str, str] = {}
    compute_nodes: set[str] = set()
    for node in onnx_model.graph.node:
        if node.name in names:
            for out in node.output:
                wanted[out] = node.name
            if node.op_type in _ONNX_COMPUTE:
                compute_nodes.add(node.name)
    found: list[str] = []
    for op in ov_model.get_ops():
        if op.get_type_name() in ("Result", "Parameter", "Constant"):
            continue
        for output in op.outputs():
            hits = [wanted[t] for t in output.get_names() if t in wanted]
            if hits:
                found.append(op.get_friendly_name())
                if op.get_type_name() in ("Add", "Multiply"):
                    hops = _GEMM_HOPS if any(h in compute_nodes for h in hits) else 1
                    found.extend(_compute_behind(op, hops))
                break
    return sorted(set(found))


#: OpenVINO compute ops whose inputs NNCF quantizes.
_OV_COMPUTE = frozenset({"Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData"})
_ONNX_COMPUTE = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: Multiply / Add ops between an ONNX Gemm's OpenVINO MatMul and its output (alpha, + C).
_GEMM_HOPS = 3


def _compute_behind(op: Any, hops: int) -> list[str]:
    """Compute ops feeding ``op`` directly or through up to ``hops - 1`` Multiply / Add ops."""
    found: list[str] = []
    frontier = [op]
    for _ in range(hops):
        nxt = []
        for node in frontier:
            for inp in node.inputs():
                src = inp.get_source_output().get_node()
                kind = src.get_type_name()
                if kind in _OV_COMPUTE:
                    found.append(src.get_friendly_name())
                elif kind in ("Multiply", "Add"):
                    nxt.append(src)
        frontier = nxt
    return found


#: ``scope="conv_inputs"``: OpenVINO op types whose inputs NNCF must not quantize (it does by
#: default: on YOLOX-nano 208 of its 352 quantizers sit on the SiLU Multiply).
#: Normalisations and reductions too: on a scratch RT-DETR NNCF put 9 quantizers on the
#: LayerNorm (``MVN``) inputs, the transformer's residual stream, which ONNX Runtime's
#: ``conv_inputs`` leaves float.
NON_COMPUTE_OV_TYPES = (
    "Multiply", "Add", "Subtract", "Divide", "Concat", "MaxPool", "AvgPool", "Interpolate",
    "Sigmoid", "Swish", "Maximum", "Minimum", "ReduceMean", "Power", "Squeeze", "Unsqueeze",
    "MVN", "NormalizeL2", "GroupNormalization", "ReduceSum", "ReduceMax", "ReduceL2",
)  # fmt: skip


def _ignored_scope(
    nncf: Any, ov_model: Any, onnx_model: Any, exclusion: Exclusion, spec: CalibrationSpec
) -> Any:
    names = onnx_to_ov_names(ov_model, onnx_model, exclusion.names)
    types = list(NON_COMPUTE_OV_TYPES) if spec.scope == "conv_inputs" else []
    return nncf.IgnoredScope(names=names, types=types, validate=False)


def save_ir_atomically(ov_model: Any, out: Path, meta: ModelMeta) -> Path:
    """``ov.save_model`` and the edgedet sidecar (``meta``) into a temp folder beside ``out``,
    then publish the three files so that no reader sees the IR without its meta, or a new
    ``.bin`` / sidecar with an old ``.xml``.

    OpenVINO reads ``X.bin`` beside ``X.xml``, edgedet reads ``X.edgedet.json``, and none of
    them can tell that the files belong together; three files cannot be renamed at once.
    Everything that can fail on content (the IR, serialising the meta: an unserialisable value
    raises here) happens in the temp folder, before anything is published. Then the old
    ``.xml`` is removed, the sidecar and the ``.bin`` are renamed into place, and the ``.xml``
    last: it only ever appears beside its own weights and meta. An error while publishing puts
    the previous files back (hard links kept in the temp folder). The remaining window, stated:
    a crash (SIGKILL, power loss) during the renames leaves no ``.xml`` (loading refuses with
    "model file not found"; rerun the command), never a mismatched set."""
    import openvino as ov

    if out.suffix.lower() != ".xml":
        raise CalibrationError(f"OpenVINO INT8 output must be an .xml file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_work_dir(".edgedet-ir-", out.parent)  # a killed run's: removed by the next
    try:
        ov.save_model(ov_model, str(tmp / out.name), compress_to_fp16=False)
        write_sidecar(tmp / out.name, meta)
        # published in this order, the .xml last; each file's new copy is in tmp under its name
        order = [sidecar_path(out), out.with_suffix(".bin"), out]
        _publish(tmp, order)
    finally:
        remove_work_dir(tmp)
    return out


def _publish(tmp: Path, order: list[Path]) -> None:
    """Rename ``tmp / p.name`` over each ``p`` in ``order`` after removing the last one (the
    file readers open first); on an error restore the previous files and re-raise."""
    backup = tmp / ".previous"
    backup.mkdir()
    kept: dict[Path, Path] = {}
    for p in order:
        if p.is_file():
            try:
                os.link(p, backup / p.name)
            except OSError:  # no hard links here: a copy keeps the previous file as well
                shutil.copy2(p, backup / p.name)
            kept[p] = backup / p.name
        elif p.exists():  # a folder or other non-file where a model file goes
            raise CalibrationError(f"cannot write {p}: something that is not a file is there")
    published: list[Path] = []
    try:
        order[-1].unlink(missing_ok=True)  # no old .xml may meet the new .bin or meta
        for p in order:
            os.replace(tmp / p.name, p)
            published.append(p)
    except BaseException:
        order[-1].unlink(missing_ok=True)
        for p in order:  # the .xml (readers' entry) comes back last
            if p in kept:
                os.replace(kept[p], p)
            elif p in published:
                p.unlink(missing_ok=True)
        raise


def quantize_openvino(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    out: str | Path,
    meta: ModelMeta,
    *,
    defaults: bool = False,
) -> QuantizeResult:
    """INT8 OpenVINO IR from a float ONNX model with NNCF. ``defaults=True`` runs
    ``nncf.quantize`` with its own defaults (the naive baseline): no exclusions, no options."""
    import onnx
    import openvino as ov

    nncf = _nncf()
    out = Path(out)
    onnx_model = onnx.load(str(model_path))
    exclusion = resolve_exclusions(
        onnx_model,
        spec.replace(
            keep_decode_tail_float=False, exclude_names=(), exclude_types=(), exclude_patterns=()
        )
        if defaults
        else spec,
        meta.family,
    )
    ov_model = ov.Core().read_model(str(model_path))
    dataset = source.nncf_dataset()
    try:
        if defaults:
            q = nncf.quantize(ov_model, dataset, subset_size=source.num_images)
        else:
            q = nncf.quantize(
                ov_model,
                dataset,
                preset=_preset(nncf, spec),
                subset_size=source.num_images,
                fast_bias_correction=True,
                ignored_scope=_ignored_scope(nncf, ov_model, onnx_model, exclusion, spec),
                advanced_parameters=advanced_parameters(spec),
            )
    except CalibrationError:
        raise
    except Exception as err:  # NNCF raises its own and OpenVINO's errors
        raise CalibrationError(
            f"NNCF quantization of {model_path} failed: {type(err).__name__}: {err}"
        ) from err
    notes = (
        ["nncf has no KL-divergence estimator: entropy ran as HISTOGRAM"]
        if spec.method == "entropy"
        else []
    )
    record = calibration_record(
        spec,
        source,
        exclusion,
        tool="nncf+openvino" + (" (defaults)" if defaults else ""),
        notes=notes,
    )
    new_meta = meta.replace(precision="int8", calibration=record)
    save_ir_atomically(q, out, new_meta)  # the IR and its sidecar, published together
    return QuantizeResult(out, new_meta, record, exclusion)


def quantize_openvino_with_accuracy_control(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    out: str | Path,
    meta: ModelMeta,
    val: Any,
    *,
    max_drop_points: float,
    threads: int | None = 2,
) -> QuantizeResult:
    """``nncf.quantize_with_accuracy_control`` with edgedet's mAP50-95 as the validation
    function (on ``val``, a labelled dataset); ``max_drop_points`` in mAP points."""
    import onnx
    import openvino as ov

    from .evaluate import load_dataset

    nncf = _nncf()
    out = Path(out)
    dataset = load_dataset(val)
    onnx_model = onnx.load(str(model_path))
    exclusion = resolve_exclusions(onnx_model, spec, meta.family)
    ov_model = ov.Core().read_model(str(model_path))
    validate = make_validation_fn(meta, dataset, threads=threads)
    val_data = nncf.Dataset(list(dataset.samples))
    try:
        q = nncf.quantize_with_accuracy_control(
            ov_model,
            source.nncf_dataset(),
            val_data,
            validation_fn=validate,
            max_drop=max_drop_points / 100.0,
            drop_type=nncf.DropType.ABSOLUTE,
            preset=_preset(nncf, spec),
            subset_size=source.num_images,
            ignored_scope=_ignored_scope(nncf, ov_model, onnx_model, exclusion, spec),
            advanced_quantization_parameters=advanced_parameters(spec),
        )
    except Exception as err:  # NNCF raises its own and OpenVINO's errors
        raise CalibrationError(
            f"NNCF accuracy-controlled quantization of {model_path} failed: {type(err).__name__}: {err}"
        ) from err
    record = calibration_record(
        spec,
        source,
        exclusion,
        tool="nncf+openvino accuracy control",
        extra={"max_drop_points": max_drop_points},
    )
    new_meta = meta.replace(precision="int8", calibration=record)
    save_ir_atomically(q, out, new_meta)  # the IR and its sidecar, published together
    return QuantizeResult(out, new_meta, record, exclusion)


def make_validation_fn(
    meta: ModelMeta, dataset: Any, *, threads: int | None = 2
) -> Callable[[Any, Any], tuple[float, None]]:
    """NNCF ``validation_fn(compiled_model, samples) -> (mAP50-95, None)`` running edgedet's
    preprocessing, decoder and NMS around the compiled model and scoring with edgedet.eval.metrics."""
    import openvino as ov

    from edgedet.detector import Detector
    from edgedet.scoring import score

    class _Compiled:  # the smallest runtime Detector accepts, around a compiled model
        name = "openvino"

        def __init__(self, compiled: Any) -> None:
            from edgedet.runtimes.base import TensorSpec

            self.compiled = compiled
            self.inputs = tuple(
                TensorSpec(
                    p.get_any_name(),
                    tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape()),
                    __import__("numpy").float32,
                )
                for p in compiled.inputs
            )
            self.outputs = tuple(
                TensorSpec(
                    p.get_any_name(),
                    tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape()),
                    __import__("numpy").float32,
                )
                for p in compiled.outputs
            )

        def infer(self, feeds: Any) -> dict[str, Any]:
            res = self.compiled(dict(feeds))
            return {p.get_any_name(): res[p] for p in self.compiled.outputs}

        def close(self) -> None:
            pass

    def validate(compiled: Any, samples: Any) -> tuple[float, None]:
        if not isinstance(compiled, ov.CompiledModel):
            compiled = ov.Core().compile_model(
                compiled, "CPU", {"INFERENCE_NUM_THREADS": threads or 0}
            )
        det = Detector(_Compiled(compiled), meta)
        return score(det, dataset, samples=list(samples)).map50_95, None

    return validate


def quantize_onnx_nncf(
    model_path: str | Path,
    source: CalibrationSource,
    spec: CalibrationSpec,
    out: str | Path,
    meta: ModelMeta,
) -> QuantizeResult:
    """QDQ ONNX through NNCF's ONNX backend (ONNX node names in the ignored scope)."""
    import onnx

    from edgedet.meta import write_onnx_meta

    nncf = _nncf()
    out = Path(out)
    model = onnx.load(str(model_path))
    exclusion = resolve_exclusions(model, spec, meta.family)
    try:
        q = nncf.quantize(
            model,
            source.nncf_dataset(as_dict=True),
            preset=_preset(nncf, spec),
            subset_size=source.num_images,
            ignored_scope=nncf.IgnoredScope(names=list(exclusion.names), validate=False),
            advanced_parameters=advanced_parameters(spec),
        )
    except Exception as err:  # NNCF raises its own and ONNX Runtime's errors
        raise CalibrationError(
            f"NNCF (ONNX backend) quantization of {model_path} failed: {type(err).__name__}: {err}"
        ) from err
    work = make_work_dir(".edgedet-nncf-", out.parent)  # a killed run's: removed by the next
    try:
        onnx.save(q, str(work / "q.onnx"))
        record = calibration_record(spec, source, exclusion, tool="nncf+onnx")
        new_meta = meta.replace(precision="int8", calibration=record)
        write_onnx_meta(work / "q.onnx", out, new_meta)
    finally:
        remove_work_dir(work)
    return QuantizeResult(out, new_meta, record, exclusion)
