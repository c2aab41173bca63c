"""INT8 calibration as a library: `calibrate(config) -> CalibrationResult` and
`sweep(config) -> SweepResult`, callable from Python without the command line.

`CalibrateConfig` declares every setting once; ``edgedet calibrate``'s flags are generated from
it (`edgedet.configflags`), and `command.py` only parses, calls and prints. The pipeline:

1. read the float model (ONNX Runtime) and draw the calibration images (`source.py`), a
   held-out share set aside (never calibrated on);
2. build the INT8 model for the format the target runtime declares (`guard.builder_for`:
   QDQ ONNX for ONNX Runtime / TensorRT, OpenVINO IR for OpenVINO), keeping layers float until
   the label-free guard's held-out proxy error is within its bound;
3. with ``val``: mAP before / after on the labelled set under the model's protocol, the budget
   (mixed precision when missed, for every runtime), the drop's paired bootstrap interval;
4. fidelity and latency of the INT8 model against the float one on the held-out images;
5. the report, ``<out>.calibration.json`` / ``.md`` (`report.py`), written atomically, and
   the checks recorded in the INT8 model's own calibration record.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.configflags import setting
from edgedet.errors import CalibrationError, EdgedetError, InvalidInputError
from edgedet.eval.metrics import DEFAULT_SAFETY_CLASSES

from .guard import DEFAULT_PROXY_BOUND
from .report import report_path, sweep_table, write_report, write_sensitivity
from .spec import METHODS, CalibrationSpec

log = logging.getLogger("edgedet.calibration")

#: A progress callback factory: ``task(label)`` returns ``update(done, total)``.
TaskFactory = Callable[[str], Callable[[int, int], None]]


def int8_runtimes() -> list[str]:
    """Runtimes whose declaration lists an INT8 format (`edgedet.runtimes.capabilities`)."""
    from edgedet.runtimes.registry import runtime_capabilities, runtime_names

    return [n for n in runtime_names() if runtime_capabilities(n).int8_formats]


@dataclass
class CalibrateConfig:
    """Every setting of one INT8 calibration. The `setting` fields are also the flags of
    ``edgedet calibrate`` (same names, dashes for underscores); ``model`` is its positional
    MODEL, and ``eval_conf`` / ``eval_iou`` / ``max_det`` / ``multi_label`` come from the
    shared protocol flags (`edgedet.protocol.add_protocol_arguments`)."""

    model: str | Path = ""
    images: str | None = setting(
        None, "folder of calibration images (searched recursively)", exclusive="source"
    )
    data: str | None = setting(
        None, "a dataset edgedet reads (COCO JSON, YOLO, VOC, KITTI)", exclusive="source"
    )
    runtime: str = setting("onnxruntime", "target runtime", choices=int8_runtimes)
    num: int = setting(300, "calibration images (default 300)")
    seed: int = setting(0, "seed of the image draw (default 0)")
    family: str | None = setting(None, "decoder family, for models without edgedet meta")
    names: str | None = setting(
        None, "class names for models without meta: coco, a file, or a,b,c"
    )
    # a path, or a dataset already read (`calibrate` reads it once)
    val: Any = setting(None, "labelled validation dataset: mAP before/after, budgets")
    threads: int = setting(2, "inference threads (default 2)")
    val_names: str | None = setting(None, "class names of --val when it has none (YOLO: coco)")
    symmetric: bool = setting(False, "symmetric int8 activations")
    scope: str = setting(
        "conv_inputs",
        "quantize conv inputs+weights only (default, accurate) or every op ORT can (faster on ORT)",
        choices=("conv_inputs", "all"),
    )
    no_per_channel: bool = setting(False, "per-tensor weight scales")
    exclude: list[str] = setting(
        help="keep layers in float: a node name, an op type (e.g. Resize), or /regex/ (repeatable)",
        action="append",
        metavar="NAME|OpType|/REGEX/",
        default_factory=list,
    )
    quantize_decode_tail: bool = setting(
        False, "also quantize the decode tail (not recommended; it is float by default)"
    )
    quantize_stem: bool = setting(
        False, "also quantize the convs reading the input image (float by default)"
    )
    head_convs: str = setting(
        "auto",
        "the head's last convs: float for NanoDet-like heads (auto), or as said",
        choices=("auto", "quantize", "float"),
    )
    method: str | None = setting(
        None,
        "range estimator (default mse; without this flag the label-free guard also tries "
        "mean_minmax when mse misses its bound, and keeps the closer one)",
        choices=METHODS,
    )
    percentile: float = setting(99.999, "for --method percentile")
    max_map_drop: float | None = setting(None, "budget: mAP50-95 points (needs --val)")
    max_class_drop: float | None = setting(None, "budget per safety class, AP points")
    safety_classes: str = setting(
        ",".join(DEFAULT_SAFETY_CLASSES),
        "comma-separated classes --max-class-drop guards (and the report lists)",
    )
    accuracy_control: bool = setting(
        False, "openvino: NNCF accuracy-controlled quantization with edgedet mAP (needs --val)"
    )
    sensitivity: str = setting(
        "proxy",
        "how layers are ranked for mixed precision (default: proxy error)",
        choices=("proxy", "map"),
    )
    holdout: str = setting(
        "auto",
        "images of the calibration pool set aside, never calibrated on, for the label-free "
        "check and the fidelity report (default auto: a fifth of the pool, 8..64)",
        metavar="N|auto",
    )
    proxy_bound: float | None = setting(
        None,
        "label-free guard: keep layers float until the held-out proxy error (detection "
        f"error vs the float model) is at most this (default {DEFAULT_PROXY_BOUND:g}, chosen "
        "by measurement: calibration/README.md)",
    )
    no_guard: bool = setting(
        False, "skip the label-free guard (plain INT8; fidelity is still measured and printed)"
    )
    no_latency: bool = setting(False, "skip the latency measurement")
    out: str | None = setting(None, "output model (default: MODEL_int8.onnx / .xml)")
    methods: str = setting("minmax,percentile,mse", "sweep: methods")
    nums: str = setting("100,300", "sweep: image counts")
    eval_conf: float | None = None
    eval_iou: float | None = None
    max_det: int | None = None
    multi_label: bool | None = None

    def spec(self, **overrides: Any) -> CalibrationSpec:
        """The `CalibrationSpec` these settings ask for (``overrides`` on top)."""
        names, types, patterns = [], [], []
        for item in self.exclude:
            if len(item) > 2 and item.startswith("/") and item.endswith("/"):
                patterns.append(item[1:-1])
            elif (
                _OP_TYPE.match(item)
                and "/" not in item
                and "_" not in item
                and not item[-1].isdigit()
            ):
                types.append(item)
            else:
                names.append(item)
        safety = tuple(s.strip() for s in self.safety_classes.split(",") if s.strip())
        kwargs: dict[str, Any] = {
            "method": self.method or CalibrationSpec.method,
            "percentile": self.percentile,
            "num_images": self.num,
            "seed": self.seed,
            "per_channel": not self.no_per_channel,
            "symmetric_activations": self.symmetric or _capabilities(self.runtime).int8_symmetric,
            "exclude_names": tuple(names),
            "exclude_types": tuple(types),
            "exclude_patterns": tuple(patterns),
            "keep_decode_tail_float": not self.quantize_decode_tail,
            "keep_stem_float": not self.quantize_stem,
            "head_convs": self.head_convs,
            "scope": self.scope,
            "max_map_drop": self.max_map_drop,
            "max_class_drop": self.max_class_drop,
            "safety_classes": safety if self.max_class_drop is not None else (),
        }
        kwargs.update(overrides)
        return CalibrationSpec(**kwargs)

    def protocol_overrides(self) -> dict[str, Any]:
        from edgedet.protocol import protocol_overrides

        return protocol_overrides(self)  # type: ignore[arg-type]


@dataclass
class CalibrationResult:
    """What `calibrate` made: the INT8 model kept (``path``), its report (the dict written to
    ``report_json`` / ``report_md``) and whether every check it ran was met (the budget, else
    the label-free guard's bound)."""

    path: Path
    output: Path
    report: dict[str, Any]
    budget_met: bool
    report_json: Path
    report_md: Path


@dataclass
class SweepResult:
    """`sweep`'s rows (the float model first, then one per method x image count, failed ones
    with an ``error``), and where they were written (``sweep.json`` / ``sweep.md``)."""

    rows: list[dict[str, Any]]
    table: str
    folder: Path
    ok: list[dict[str, Any]] = field(default_factory=list)


_OP_TYPE = re.compile(r"^[A-Z][A-Za-z0-9]*$")


def _no_progress(label: str) -> Callable[[int, int], None]:
    return lambda done, total: None


# -- runtime facts (declared by the runtimes, never spelled here) ---------------------------------


def _capabilities(runtime: str) -> Any:
    """The runtime's declared capabilities (`edgedet.runtimes.capabilities`)."""
    from edgedet.runtimes.registry import runtime_capabilities

    return runtime_capabilities(runtime)


def _int8_format(runtime: str) -> str:
    fmt = _capabilities(runtime).int8_format
    if fmt is None:
        raise InvalidInputError(f"runtime '{runtime}' declares no INT8 format to calibrate for")
    return str(fmt)


def int8_suffix(runtime: str) -> str:
    """The file suffix of the INT8 model built for ``runtime``: ``.xml`` or ``.onnx``."""
    return ".xml" if _int8_format(runtime) == "openvino_ir" else ".onnx"


def default_out(model: Path, runtime: str, suffix: str = "int8") -> Path:
    return model.with_name(f"{model.stem}_{suffix}{int8_suffix(runtime)}")


def _eval_runtime(runtime: str) -> str:
    """Where the INT8 model is checked: ``runtime`` when it runs here, else the first runtime
    available here that runs the same INT8 format (a TensorRT QDQ model on ONNX Runtime)."""
    from edgedet.runtimes.registry import probe, runtime_names

    if probe(runtime)["available"]:
        return runtime
    fmt = _int8_format(runtime)
    for name in runtime_names():
        if fmt in _capabilities(name).int8_formats and probe(name)["available"]:
            log.warning("runtime '%s' is not available here: checking its INT8 model on '%s'",
                        runtime, name)  # fmt: skip
            return name
    raise InvalidInputError(f"no runtime here runs the {fmt} INT8 model built for '{runtime}'")


def _size_mb(path: Path) -> float:
    total = path.stat().st_size
    if path.suffix == ".xml" and path.with_suffix(".bin").is_file():
        total += path.with_suffix(".bin").stat().st_size
    return round(total / 1e6, 3)


# -- steps ------------------------------------------------------------------------------------


def _open(path: Path, cfg: CalibrateConfig, runtime: str) -> Any:
    from .evaluate import load_for_eval

    return load_for_eval(
        path, runtime=runtime, family=cfg.family, names=cfg.names, threads=cfg.threads
    )


def _make_source(
    cfg: CalibrateConfig, det: Any, num: int, progress: Any, *, holdout: int | str = 0
) -> Any:
    from .source import CalibrationSource

    if not cfg.images and not cfg.data:
        raise InvalidInputError("calibration needs images: pass --images DIR or --data DATASET")
    return CalibrationSource(
        det,
        images=cfg.images or None,
        dataset=cfg.data or None,
        num=num,
        seed=cfg.seed,
        progress=progress,
        holdout=holdout,
    )


def _parse_holdout(value: Any) -> int | str:
    if value is None or str(value).lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise InvalidInputError(f"--holdout must be 'auto' or an integer >= 0, got {value!r}")
    return n


def _builder(cfg: CalibrateConfig, model: Path, det: Any, spec: CalibrationSpec,
             source: Any, out: Path) -> Any:  # fmt: skip
    """The INT8 builder for the format the target runtime declares it runs."""
    from .guard import builder_for

    return builder_for(
        _int8_format(cfg.runtime), model, source, spec, det.meta,
        threads=cfg.threads, work_dir=out.parent,
    )  # fmt: skip


def _build(
    cfg: CalibrateConfig,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    *,
    keep_float: Sequence[str] = (),
) -> Any:
    if cfg.accuracy_control:
        from .nncf_int8 import quantize_openvino_with_accuracy_control

        if _int8_format(cfg.runtime) != "openvino_ir":
            raise InvalidInputError(
                "--accuracy-control is NNCF's mode for OpenVINO IR: use --runtime openvino"
            )
        if not cfg.val or spec.max_map_drop is None:
            raise InvalidInputError("--accuracy-control needs --val DATA and --max-map-drop X")
        return quantize_openvino_with_accuracy_control(
            model,
            source,
            spec,
            out,
            det.meta,
            cfg.val,
            max_drop_points=spec.max_map_drop,
            threads=cfg.threads,
        )
    builder = _builder(cfg, model, det, spec, source, out)
    try:
        return builder.build(out, keep_float)
    finally:
        builder.close()


def _score(
    path: Path,
    cfg: CalibrateConfig,
    runtime: str,
    *,
    latency: bool,
    safety: Sequence[str],
    progress: Any = None,
) -> Any:
    from .evaluate import score_model

    return score_model(
        path,
        cfg.val,
        runtime=_eval_runtime(runtime),
        family=cfg.family,
        names=cfg.names,
        threads=cfg.threads,
        safety_classes=safety or None,
        latency=latency,
        progress=progress,
        overrides=cfg.protocol_overrides(),
    )


def _run_on(path: Path, cfg: CalibrateConfig, runtime: str, images: Sequence[Any],
            latency: bool) -> tuple[list[Any], tuple[float, float] | None]:  # fmt: skip
    """Detections of model ``path`` on ``images`` (and its p50 latency when asked)."""
    from .evaluate import p50_latency_images
    from .guard import detect_all

    det = _open(path, cfg, runtime)
    try:
        dets = detect_all(det, images)
        return dets, (p50_latency_images(det, images[:8]) if latency and images else None)
    finally:
        det.close()


def _check(cfg: CalibrateConfig) -> tuple[Path, float, int | str]:
    """The model path, the guard's bound and the held-out count, after the input checks."""
    model = Path(cfg.model)
    if not model.is_file():
        raise InvalidInputError(f"model file not found: {model}")
    if model.suffix.lower() != ".onnx":
        raise InvalidInputError(f"calibrate needs a float ONNX model, got {model.name}")
    if (cfg.max_map_drop is not None or cfg.max_class_drop is not None) and not cfg.val:
        raise InvalidInputError(
            "--max-map-drop / --max-class-drop need --val DATA (a labelled set)"
        )
    bound = DEFAULT_PROXY_BOUND if cfg.proxy_bound is None else cfg.proxy_bound
    if not bound >= 0 or bound == float("inf"):
        raise InvalidInputError(f"--proxy-bound must be a finite number >= 0, got {bound}")
    return model, bound, _parse_holdout(cfg.holdout)


# -- calibrate ----------------------------------------------------------------------------------


def calibrate(config: CalibrateConfig, *, progress: TaskFactory | None = None) -> CalibrationResult:
    """Calibrate ``config.model`` to INT8 for ``config.runtime`` and check it (see the module
    docstring). ``progress(label)`` returns a ``(done, total)`` callback per long step.

    Raises:
        InvalidInputError: bad settings or inputs (nothing is written).
        CalibrationError: a build failed.
    """
    import dataclasses

    task = progress or _no_progress
    model, bound, holdout = _check(config)
    cfg = dataclasses.replace(config)  # ``val`` is read once below: the caller's stays a path
    if cfg.val:
        from .evaluate import load_dataset

        # read once, with its names: every later step (float mAP, sensitivity, the INT8 model's
        # mAP) takes the dataset object instead of re-reading the folder
        cfg.val = load_dataset(cfg.val, class_names=cfg.val_names)
    spec = cfg.spec()
    out = Path(cfg.out) if cfg.out else default_out(model, cfg.runtime)
    if out.suffix.lower() != int8_suffix(cfg.runtime):
        raise InvalidInputError(
            f"--out {out}: runtime '{cfg.runtime}' runs {_int8_format(cfg.runtime)} INT8 "
            f"models; name the output *{int8_suffix(cfg.runtime)}"
        )
    from edgedet.workdir import check_out_file

    out = check_out_file(out)  # writable: else an error naming it
    checked_on = _eval_runtime(cfg.runtime)
    report: dict[str, Any] = {
        "model": str(model), "runtime": cfg.runtime, "output": str(out), "checked_on": checked_on,
    }  # fmt: skip
    want_latency = not cfg.no_latency
    guard_on = not (cfg.no_guard or spec.has_budget or cfg.accuracy_control)
    det = _open(model, cfg, "onnxruntime")
    try:
        from .guard import HeldOutImages, guard_without_labels

        source = _make_source(cfg, det, spec.num_images, task("calibration images"), holdout=holdout)
        heldout = HeldOutImages.load(source.holdout_paths)
        for msg in heldout.skipped:
            log.warning("held-out image skipped: %s", msg)
        reference, float_latency = _run_on(model, cfg, checked_on, heldout.images, want_latency)
        met = True
        builder = _builder(cfg, model, det, spec, source, out)
        try:
            if cfg.accuracy_control:
                result = _build(cfg, model, det, spec, source, out)
            elif guard_on and heldout.images:
                rank_images = [source.load_image(e) for e in source.entries[:16]]
                from .guard import FALLBACK_METHOD

                # no --method: the guard may also try the per-image range estimator
                fallback = None
                if cfg.method is None and spec.method != FALLBACK_METHOD:
                    fallback = builder.with_spec(spec.replace(method=FALLBACK_METHOD))
                guarded = guard_without_labels(
                    builder, out, heldout, reference,
                    lambda p: _open(p, cfg, checked_on), rank_images,
                    bound=bound, progress=task, fallback=fallback,
                )  # fmt: skip
                if guarded.builder is not None and guarded.builder is not builder:
                    spec = guarded.builder.spec  # the estimator the guard kept
                    builder = guarded.builder  # (one work folder: closed once, below)
                result = guarded.result
                report["label_free_guard"] = guarded.to_dict()
                if guarded.sensitivity is not None:
                    write_sensitivity(out, guarded.sensitivity)
                met = guarded.met
                if not met:
                    log.warning(
                        "label-free guard: no candidate reached the held-out proxy bound "
                        "%.3f; kept the closest (%d layers float)",
                        bound, len(guarded.kept_float),
                    )  # fmt: skip
            else:
                if guard_on:
                    log.warning("label-free guard skipped: no held-out images (--holdout)")
                    report["label_free_guard"] = {"skipped": "no held-out images"}
                result = builder.build(out)
            report.update(
                spec=spec.to_dict(), images=source.record(), excluded=result.exclusion.summary()
            )
            if cfg.val:
                met = _labelled_check(
                    cfg, model, det, spec, source, out, builder, report, task,
                    latency=want_latency and not heldout.images,
                ) and met  # fmt: skip
                result = report.pop("_result", result)
            ranges = builder.activation_ranges()
            if ranges is not None:  # what edgedet changed in ORT's range measurement
                report["activation_ranges"] = ranges
        finally:
            builder.close()
        if heldout.images:
            from .guard import fidelity

            int8_dets, int8_latency = _run_on(
                result.path, cfg, checked_on, heldout.images, want_latency
            )
            report["fidelity"] = fidelity(
                reference, int8_dets, det.class_names, heldout
            ) | {"runtime": checked_on}
            if float_latency is not None and int8_latency is not None:
                report["latency_ms"] = {
                    "float_p50": round(float_latency[0], 2),
                    "int8_p50": round(int8_latency[0], 2),
                    "float_infer_p50": round(float_latency[1], 2),
                    "int8_infer_p50": round(int8_latency[1], 2),
                    "images": min(8, len(heldout.images)),
                    "runtime": checked_on,
                }
        report["labelled_check"] = bool(cfg.val)
        report["size_mb"] = {"float": _size_mb(model), "int8": _size_mb(result.path)}
        _record_checks(result.path, report)
        report["budget_met"] = met
    finally:
        det.close()
    write_report(out, report)
    return CalibrationResult(
        path=Path(result.path), output=out, report=report, budget_met=bool(met),
        report_json=report_path(out, ".json"), report_md=report_path(out, ".md"),
    )  # fmt: skip


def _record_checks(path: Path, report: dict[str, Any]) -> None:
    """Write what checked the INT8 model into its own calibration record (meta / sidecar)."""
    guard = report.get("label_free_guard") or {}
    fid = report.get("fidelity") or {}
    changes = {
        "holdout_images": report.get("images", {}).get("holdout", 0),
        "labelled_check": report.get("labelled_check", False),
        "label_free_guard": {
            k: guard.get(k) for k in ("bound", "met", "kept_float", "tries", "skipped") if k in guard
        } or None,
        "fidelity": {
            k: fid.get(k) for k in ("map50_95", "map50", "images", "reference_boxes", "runtime")
        } or None,
    }
    _update_record(path, **changes)


def _update_record(path: Path, **changes: Any) -> None:
    """Update the INT8 model's calibration record: in the ONNX file, or in its sidecar."""
    if path.suffix == ".onnx":
        from .ort_int8 import update_record

        update_record(path, **changes)
        return
    from edgedet.meta import read_meta, write_sidecar

    meta = read_meta(path)
    if meta is None or meta.calibration is None:
        raise CalibrationError(f"{path} has no edgedet sidecar with a calibration record")
    record = dict(meta.calibration)
    record.update(changes)
    write_sidecar(path, meta.replace(calibration=record))


def _labelled_check(
    cfg: CalibrateConfig,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    builder: Any,
    report: dict[str, Any],
    task: Any,
    *,
    latency: bool,
) -> bool:
    """mAP before/after on ``val``, the budget (mixed precision when missed), the loss
    interval; fills ``report`` (``report["_result"]``: the model kept, when it changed)."""
    result_path = Path(report["output"])
    safety = list(spec.safety_classes) or list(DEFAULT_SAFETY_CLASSES)
    before = _score(model, cfg, cfg.runtime, latency=latency, safety=safety,
                    progress=task("float mAP"))  # fmt: skip
    after = _score(result_path, cfg, cfg.runtime, latency=latency, safety=safety,
                   progress=task("int8 mAP"))  # fmt: skip
    met = True
    if spec.has_budget:
        from .evaluate import within_budget

        met, why = within_budget(
            before,
            after,
            max_map_drop=spec.max_map_drop,
            max_class_drop=spec.max_class_drop,
            safety_classes=spec.safety_classes,
        )
        if not met and not cfg.accuracy_control:
            log.warning("budget not met (%s): running mixed precision", "; ".join(why))
            result, after, met, mixed = _mixed(
                cfg, model, det, spec, source, out, before, safety, task, builder, latency
            )
            report["mixed_precision"] = mixed
            report["_result"] = result
            report["excluded"] = result.exclusion.summary()
        elif not met:
            log.warning("budget not met (%s)", "; ".join(why))
        report["budget_checked"] = True
    report["accuracy"] = _accuracy_section(before, after, safety)
    _update_record(result_path, map_before=before.map50_95, map_after=after.map50_95)
    from .evaluate import drop_interval

    try:  # an extra on the report: its failure must not cost the model or report
        drop = drop_interval(before, after, cfg.val)
    except (EdgedetError, OSError, ValueError, MemoryError) as err:
        log.warning("no interval for the mAP loss: %s", err)
        drop = None
    if drop is not None:
        report["accuracy"]["map_drop_interval_points"] = drop
        budget = spec.max_map_drop
        if budget is not None and drop["half_width"] > budget:
            log.warning(
                "the mAP budget (%g points) is finer than these %d validation images "
                "resolve: the drop is %.2f points, 95%% interval [%.2f, %.2f]; use "
                "more validation images",
                budget, drop["images"], drop["drop_points"], drop["low"], drop["high"],
            )  # fmt: skip
    return bool(met)


def _mixed(
    cfg: CalibrateConfig,
    model: Path,
    det: Any,
    spec: CalibrationSpec,
    source: Any,
    out: Path,
    before: Any,
    safety: Sequence[str],
    task: Any,
    builder: Any,
    latency: bool,
) -> tuple[Any, Any, bool, dict[str, Any]]:
    from .evaluate import load_dataset
    from .sensitivity import layer_sensitivity, mixed_precision

    val = load_dataset(cfg.val)
    sens = layer_sensitivity(
        model,
        source,
        spec,
        det.meta,
        val,
        metric=cfg.sensitivity,
        threads=cfg.threads,
        prepared=builder.prepared,
        progress=task("layer sensitivity"),
    )
    write_sensitivity(out, sens)

    def evaluate(path: Path) -> Any:
        return _score(path, cfg, cfg.runtime, latency=False, safety=safety)

    res = mixed_precision(
        model,
        source,
        spec,
        det.meta,
        val,
        out,
        sens.ranking(),
        before=before,
        evaluate=evaluate,
        build=lambda path, keep: builder.build(path, keep).path,
        suffix=builder.suffix,
    )
    after = _score(res.path, cfg, cfg.runtime, latency=latency, safety=safety)
    from edgedet.meta import read_meta

    from .ort_int8 import QuantizeResult
    from .spec import Exclusion

    meta = read_meta(res.path)
    if meta is None or meta.calibration is None:  # pragma: no cover - written just above
        raise CalibrationError(f"{res.path} lost its calibration record")
    names = tuple(meta.calibration["excluded_nodes"])
    exclusion = Exclusion(names, dict.fromkeys(names, "float"), None)
    mixed = {
        "kept_float": res.kept_float,
        "tries": res.tries,
        "met": res.met,
        "sensitivity": sens.to_dict()["layers"][:20],
    }
    return QuantizeResult(res.path, meta, dict(meta.calibration), exclusion), after, res.met, mixed


def _accuracy_section(before: Any, after: Any, safety: Sequence[str]) -> dict[str, Any]:
    from .evaluate import class_drops

    retained = 100.0 * after.map50_95 / before.map50_95 if before.map50_95 > 0 else float("nan")
    return {
        "float": before.to_dict(),
        "int8": after.to_dict(),
        "retained_pct": round(retained, 2),
        "map_drop_points": round((before.map50_95 - after.map50_95) * 100.0, 3),
        "safety_class_drop_points": class_drops(before, after, safety),
    }


# -- sweep ----------------------------------------------------------------------------------


def sweep(config: CalibrateConfig, *, progress: TaskFactory | None = None) -> SweepResult:
    """Methods (``config.methods``) x image counts (``config.nums``), each INT8 model scored
    by mAP and latency on ``config.val``; ``sweep.json`` / ``sweep.md`` in ``config.out``
    (default ``MODEL_sweep/``). A configuration that fails is a row with its error."""
    task = progress or _no_progress
    if not config.val:
        raise InvalidInputError("calibrate sweep needs --val DATA to score each INT8 model")
    model = Path(config.model)
    if not model.is_file():
        raise InvalidInputError(f"model file not found: {model}")
    methods = [m.strip() for m in config.methods.split(",") if m.strip()]
    try:
        nums = [int(n) for n in config.nums.split(",") if n.strip()]
    except ValueError as err:
        raise InvalidInputError(
            f"--nums must be comma-separated integers, got {config.nums!r}"
        ) from err
    outdir = Path(config.out) if config.out else model.with_name(model.stem + "_sweep")
    outdir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    det = _open(model, config, "onnxruntime")
    try:
        before = _score(model, config, config.runtime, latency=True, safety=())
        rows.append(
            {
                "config": "float",
                "method": "-",
                "images": 0,
                "map50_95": before.map50_95,
                "map50": before.map50,
                "p50_ms": before.latency_p50_ms,
                "path": str(model),
            }
        )
        for num in nums:
            source = _make_source(config, det, num, task(f"images ({num})"))
            for method in methods:
                spec = config.spec(method=method, num_images=num)
                out = outdir / f"{model.stem}_{method}_{num}{int8_suffix(config.runtime)}"
                try:
                    result = _build(config, model, det, spec, source, out)
                    s = _score(result.path, config, config.runtime, latency=True, safety=())
                except EdgedetError as err:
                    rows.append(
                        {
                            "config": f"{method}/{num}",
                            "method": method,
                            "images": source.num_images,
                            "error": str(err),
                        }
                    )
                    continue
                rows.append(
                    {
                        "config": f"{method}/{num}",
                        "method": method,
                        "images": source.num_images,
                        "map50_95": s.map50_95,
                        "map50": s.map50,
                        "p50_ms": s.latency_p50_ms,
                        "path": str(result.path),
                    }
                )
    finally:
        det.close()
    ok, table = sweep_table(rows, outdir)
    return SweepResult(rows=rows, table=table, folder=outdir, ok=ok)
