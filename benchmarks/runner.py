"""One benchmark configuration, measured end to end: load, accuracy pass, latency pass.

`BenchConfig` is one point of a sweep (model, runtime, precision, input size, batch, threads...).
`run_config` measures it in THIS process and returns a record; `run_in_subprocess` runs it in a
fresh interpreter (`python -m edgedet.benchmarks.worker`), which is how `edgedet bench` runs
every configuration: idle thread pools and allocations of the previous configuration's session
cannot distort the next one's timings, and a crash in a runtime becomes a ``failed`` record
instead of ending the sweep.

Order inside one configuration:

1. cold start: `edgedet.load` timed (reading the file, building / compiling the session);
2. accuracy pass: every dataset image through `edgedet.scoring.score` under the model's
   `EvalProtocol` (its family's published validator, e.g. Ultralytics: score 0.001, IoU 0.7,
   multi-label, 300 boxes; ``eval_conf`` / ``eval_iou`` / ``max_det`` / ``multi_label``
   override it), recorded as ``record["protocol"]``; precision / recall / F1 are taken at the
   deployment threshold from the same detections;
3. latency pass at the deployment thresholds (the protocol's, or ``deploy_threshold`` /
   ``iou_threshold``; one label per box) on a fixed set of
   dataset images decoded beforehand (`latency.measure_latency`), with power / clocks sampled
   around it (`system.PowerMonitor`);
4. throughput with several requests in flight when the runtime has an async API.

A combination that cannot run (runtime not installed, a precision the runtime cannot give this
model, an input size for a static model, a batch a fixed-batch model cannot take) is recorded as
``skipped`` with the reason; an error while measuring is ``failed`` with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from edgedet.runtimes.capabilities import PRECISIONS as ALL_PRECISIONS
from edgedet.runtimes.capabilities import normalize_precision
from edgedet.runtimes.registry import runtime_capabilities

from edgedet.errors import EdgedetError, InvalidInputError, RuntimeUnavailableError
from edgedet.workdir import work_dir

from .latency import measure_latency, measure_throughput, peak_rss_mb, rss_mb
from .system import PowerMonitor, host_info

#: Precisions a configuration may ask for (which runtime takes which, and whether it takes
#: ``threads``, is each runtime's declaration: `edgedet.runtimes.registry.runtime_capabilities`).
PRECISIONS = tuple(p for p in ALL_PRECISIONS if p != "mixed")


class SkipConfig(Exception):
    """This combination cannot run here; the message is the reason."""


@dataclass
class BenchConfig:
    """One configuration to measure. Paths are strings so the config travels as JSON."""

    model: str
    data: str
    runtime: str = "onnxruntime"
    precision: str | None = None  # None: what the model / runtime does by default
    imgsz: int | None = None  # None: the model's own input size
    batch: int = 1
    threads: int | None = None
    device: str | None = None
    family: str | None = None  # only for models without edgedet meta
    names: str | list[str] | None = None  # class names for models without edgedet meta
    images: int | None = None  # evaluate on this many dataset images (None: all)
    aliases: dict[str, str] | None = None  # model class name -> dataset class name
    safety_classes: list[str] | None = None
    # Evaluation protocol overrides of the accuracy pass (None: the model's protocol).
    multi_label: bool | None = None
    eval_conf: float | None = None
    eval_iou: float | None = None
    max_det: int | None = None
    # Deployment thresholds of the latency pass and P/R/F1 (None: the model's protocol's).
    deploy_threshold: float | None = None
    iou_threshold: float | None = None
    warmup: int = 10
    min_iterations: int = 50
    min_seconds: float = 3.0
    max_seconds: float = 60.0
    latency_images: int = 8
    throughput_requests: int = 4  # 0: do not measure throughput
    throughput_seconds: float = 2.0
    cpus: list[int] | None = None  # pin the worker to these CPUs (None: no pinning)
    eval_backend: str = "faster-coco-eval"
    cross_check: bool = False  # also evaluate with pycocotools and record the difference
    save_detections: str | None = None  # write the accuracy-pass detections here (JSON)
    keep_samples: bool = False  # put raw latency samples in the record (for pooling rounds)
    accuracy: bool = True  # run the accuracy pass (later --repeat rounds skip it)
    runtime_options: dict[str, Any] = field(default_factory=dict)
    # Tiles / test-time augmentation / ensemble (`edgedet.wrap.ViewSettings`; None: plain model).
    tiles: str | None = None
    tile_overlap: float = 0.2
    full_frame: bool = True
    tile_merge: str = "nms"
    tta: str | None = None
    ensemble: str | None = None  # comma-separated PATH or PATH:FAMILY of other models
    views_one_by_one: bool = False  # tiles / TTA views in separate runtime calls

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise InvalidInputError(f"batch must be >= 1, got {self.batch}")
        if self.imgsz is not None and self.imgsz < 32:
            raise InvalidInputError(f"imgsz must be >= 32 pixels, got {self.imgsz}")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError(f"threads must be >= 1, got {self.threads}")
        if self.images is not None and self.images < 1:
            raise InvalidInputError(f"images must be >= 1, got {self.images}")
        if self.precision is not None:
            self.precision = normalize_precision(self.precision, PRECISIONS)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown benchmark config keys {unknown}; known: {sorted(known)}"
            )
        return cls(**raw)

    def label(self) -> str:
        parts = [Path(self.model).stem, self.runtime]
        if self.precision:
            parts.append(self.precision)
        if self.imgsz:
            parts.append(str(self.imgsz))
        if self.batch != 1:
            parts.append(f"b{self.batch}")
        suffix = view_suffix(self.view_settings())
        if suffix:
            parts.append(suffix.lstrip("+"))
        return "/".join(parts)

    def view_settings(self) -> Any:
        """The `edgedet.wrap.ViewSettings` of ``tiles`` / ``tta`` / ``ensemble``."""
        from edgedet.wrap import ViewSettings

        members = [m.strip() for m in (self.ensemble or "").split(",") if m.strip()]
        return ViewSettings(
            tiles=self.tiles,
            tile_overlap=self.tile_overlap,
            full_frame=self.full_frame,
            tile_merge=self.tile_merge,
            tta=self.tta,
            ensemble=tuple(members),
            one_by_one=self.views_one_by_one,
        )


def view_suffix(settings: Any) -> str:
    """``+tiles 2x2`` / ``+tta flip,ms`` / ``+ens yolox_nano``: what a record's model name
    gets, so tables, plots and intervals tell the variants apart."""
    parts = []
    if settings.tiles:
        parts.append(f"+tiles {settings.tiles}")
    if settings.tta:
        parts.append(f"+tta {settings.tta}")
    for m in settings.ensemble:
        parts.append(f"+{Path(m.rpartition(':')[0] if ':' in m else m).stem}")
    if parts and settings.one_by_one:
        parts.append(" 1by1")
    return "".join(parts)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_input_shape(path: str | Path) -> tuple[int | None, ...] | None:
    """Shape of an ONNX model's first image input (None for dynamic dims); None if not ONNX."""
    p = Path(path)
    if p.suffix.lower() != ".onnx":
        return None
    import onnx

    model = onnx.load(str(p), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = inp.type.tensor_type.shape.dim
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return None


def _base_record(config: BenchConfig) -> dict[str, Any]:
    import edgedet

    return {
        "model": config.model,
        "model_name": Path(config.model).stem,
        "model_sha256": None,
        "family": config.family,
        "runtime": config.runtime,
        "runtime_version": None,
        "device": config.device,
        "precision": config.precision,
        "precision_requested": config.precision,
        "imgsz": config.imgsz,
        "batch": config.batch,
        "threads": config.threads,
        "dataset": None,
        "dataset_path": config.data,
        "images": config.images,
        "status": "failed",
        "reason": "",
        "latency_ms": None,
        "load_s": None,
        "first_inference_ms": None,
        "peak_rss_mb": None,
        "throughput_fps": None,
        "accuracy": None,
        "edgedet_version": edgedet.__version__,
        "host": None,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": dataclasses.asdict(config),
    }


def _precheck(config: BenchConfig) -> None:
    """Raise `SkipConfig` for combinations that cannot run, before loading anything."""
    from edgedet.runtimes.registry import probe, runtime_names

    if config.runtime not in runtime_names():
        raise SkipConfig(
            f"unknown runtime '{config.runtime}'; known runtimes: {', '.join(runtime_names())}"
        )
    info = probe(config.runtime)
    if not info["available"]:
        raise SkipConfig(str(info["reason"]))
    shape = onnx_input_shape(config.model)
    if shape is not None and len(shape) == 4:
        n, hw = shape[0], (shape[2], shape[3]) if shape[1] in (1, 3) else (shape[1], shape[2])
        static = all(isinstance(d, int) for d in hw)
        if config.imgsz is not None and static and tuple(hw) != (config.imgsz, config.imgsz):
            raise SkipConfig(
                f"imgsz {config.imgsz}: the model has a static input of {hw[1]}x{hw[0]}; "
                "export it with a dynamic input size (or at this size) to sweep sizes"
            )
        if isinstance(n, int) and n != config.batch:
            raise SkipConfig(
                f"batch {config.batch}: the model has a fixed batch of {n}; export it with a "
                "dynamic batch axis to sweep batch sizes"
            )
    req = config.precision
    allowed = runtime_capabilities(config.runtime).precision_option or None
    if req is not None and allowed is not None and req not in allowed:
        from edgedet.meta import is_quantized_onnx

        quantized = Path(config.model).suffix.lower() == ".onnx" and is_quantized_onnx(config.model)
        if not (req == "int8" and quantized):
            raise SkipConfig(
                f"precision {req}: runtime '{config.runtime}' offers {', '.join(allowed)} for "
                "a float model; INT8 needs a quantized (QDQ) model: see `edgedet calibrate`"
            )


def _load(config: BenchConfig, carried_meta: bool) -> tuple[Any, float]:
    import edgedet

    opts: dict[str, Any] = dict(config.runtime_options)
    declared = runtime_capabilities(config.runtime)
    if config.threads is not None and declared.threads:
        opts.setdefault("threads", config.threads)
    allowed = declared.precision_option
    if config.precision is not None and config.precision in allowed:
        opts.setdefault("precision", config.precision)
    if declared.builds_engine:  # a dynamic-batch engine's profile must reach the batch
        opts.setdefault("max_batch", config.batch)
    overrides: dict[str, Any] = {}
    if config.imgsz is not None:
        overrides["input_size"] = (config.imgsz, config.imgsz)
    if config.names is not None and not carried_meta:
        overrides["names"] = config.names
    views = config.view_settings()
    if views.active and declared.builds_engine:  # the views of a frame go in one call
        opts["max_batch"] = max(config.batch, 16)
    t0 = time.perf_counter()
    try:
        if views.active:
            from edgedet.wrap import load_wrapped

            det = load_wrapped(
                config.model,
                views,
                runtime=config.runtime,
                device=config.device,
                family=None if carried_meta else config.family,
                runtime_options=opts,
                **overrides,
            )
        else:
            det = edgedet.load(
                config.model,
                runtime=config.runtime,
                device=config.device,
                family=None if carried_meta else config.family,
                runtime_options=opts,
                **overrides,
            )
    except (RuntimeUnavailableError, InvalidInputError) as err:
        raise SkipConfig(str(err)) from err
    return det, time.perf_counter() - t0


def _detections_to_json(dets: dict[int, Any]) -> dict[str, Any]:
    return {
        str(k): {
            "xyxy": d.xyxy.tolist(),
            "scores": d.scores.tolist(),
            "class_ids": d.class_ids.tolist(),
        }
        for k, d in dets.items()
    }


def load_detections(path: str | Path) -> dict[int, Any]:
    """Read detections written by ``save_detections`` back into `Detections`."""
    from edgedet.detections import Detections

    raw = json.loads(Path(path).read_text())
    return {
        int(k): Detections(
            np.asarray(v["xyxy"], np.float32).reshape(-1, 4),
            np.asarray(v["scores"], np.float32),
            np.asarray(v["class_ids"], np.int32),
        )
        for k, v in raw.items()
    }


def _safety_classes(config: BenchConfig) -> tuple[str, ...]:
    from edgedet.eval.metrics import DEFAULT_SAFETY_CLASSES

    if config.safety_classes is not None:
        return tuple(config.safety_classes)
    return DEFAULT_SAFETY_CLASSES


def _evaluate(
    det: Any, dataset: Any, dets: dict[int, Any], config: BenchConfig, backend: str, protocol: Any
) -> Any:
    """The same detections scored by another COCO backend (``cross_check``)."""
    from edgedet.eval.metrics import evaluate

    return evaluate(
        dataset,
        dets,
        det.class_names,
        aliases=config.aliases,
        safety_classes=_safety_classes(config),
        deploy_threshold=protocol.deploy_score_threshold,
        backend=backend,
    )


def protocol_for(det: Any, config: BenchConfig) -> Any:
    """The `EvalProtocol` of ``det`` (its meta's, else its family's) with the config's
    overrides on top: ``eval_conf`` / ``eval_iou`` / ``max_det`` / ``multi_label`` for the
    accuracy pass, ``deploy_threshold`` / ``iou_threshold`` for the latency pass."""
    from edgedet.protocol import resolve_protocol

    return resolve_protocol(
        det.meta,
        overrides={
            "score_threshold": config.eval_conf,
            "iou_threshold": config.eval_iou,
            "max_detections": config.max_det,
            "multi_label": config.multi_label,
            "deploy_score_threshold": config.deploy_threshold,
            "deploy_iou_threshold": config.iou_threshold,
        },
    )


def _accuracy(
    det: Any, dataset: Any, config: BenchConfig, record: dict[str, Any], protocol: Any
) -> None:
    """The accuracy pass: `edgedet.scoring.score` over the dataset under ``protocol``."""
    from edgedet.scoring import score

    result = score(
        det,
        dataset,
        protocol,
        batch=config.batch,
        aliases=config.aliases,
        safety_classes=_safety_classes(config),
        backend=config.eval_backend,
        data_flag="--data",
    )
    dets, report = result.detections, result.report
    record["accuracy_pass_s"] = result.seconds
    if config.save_detections:
        from edgedet.fileio import atomic_write_bytes

        atomic_write_bytes(config.save_detections, json.dumps(_detections_to_json(dets)).encode())
        record["detections_file"] = config.save_detections
    record["accuracy"] = {**report.to_dict(), "backend": config.eval_backend}
    record["class_names"] = list(det.class_names)
    if config.cross_check:
        other = "pycocotools" if config.eval_backend != "pycocotools" else "faster-coco-eval"
        check = _evaluate(det, dataset, dets, config, other, protocol)
        keys = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")
        diffs = [
            abs(getattr(report, k) - getattr(check, k))
            for k in keys
            if getattr(report, k) is not None
            and getattr(check, k) is not None
            and np.isfinite(getattr(report, k))
            and np.isfinite(getattr(check, k))
        ]
        record["accuracy_check"] = {
            "backend": other,
            **{k: getattr(check, k) for k in keys},
            "max_abs_diff": max(diffs) if diffs else None,
        }


def _run(config: BenchConfig, record: dict[str, Any]) -> None:
    from edgedet.data import drop_unreadable, load_dataset
    from edgedet.meta import read_meta

    record["model_sha256"] = sha256_file(config.model)
    _precheck(config)
    carried = read_meta(config.model)
    record["family_source"] = "model meta" if carried is not None else "config (--family)"
    dataset = load_dataset(config.data)
    if config.images is not None:
        dataset = dataset.subset(config.images, seed=0)
    # a truncated or mis-sized image is skipped and listed (on_error="skip"), not a failed run
    dataset = drop_unreadable(dataset)
    record["dataset"] = dataset.name
    record["images"] = len(dataset)
    record["dataset_problems"] = list(dataset.problems[:20])
    record["dataset_problems_count"] = len(dataset.problems)
    if len(dataset) == 0:
        raise InvalidInputError(f"dataset {config.data} has no usable images")

    rss_before_load = rss_mb()
    det, load_s = _load(config, carried is not None)
    try:
        record["load_s"] = load_s
        record["rss_after_load_mb"] = rss_mb()
        record["rss_before_load_mb"] = rss_before_load
        info = det.describe()
        views = config.view_settings()
        if views.active:
            record["model_name"] = Path(config.model).stem + view_suffix(views)
            record["views"] = {**views.to_dict(), "batched": getattr(det, "batched", None)}
        record["family"] = det.meta.family
        record["runtime_version"] = info.get("runtime_version")
        record["device"] = info.get("device", config.device)
        record["precision"] = info.get("precision")
        record["runtime_info"] = info
        record["threads_used"] = info.get("threads")
        record["imgsz"] = list(det.input_hw) if config.imgsz is None else config.imgsz
        record["input_hw"] = list(det.input_hw)
        if det.fixed_batch is not None and det.fixed_batch != config.batch:
            raise SkipConfig(
                f"batch {config.batch}: the model has a fixed batch of {det.fixed_batch}"
            )
        if config.precision is not None and record["precision"] != config.precision:
            why = (
                "it runs a model in the precision the model was saved in; give it a model of "
                "that precision"
                if not runtime_capabilities(config.runtime).precision_option
                else f"device {record['device']} does not offer it for this model"
            )
            raise SkipConfig(
                f"precision {config.precision}: runtime '{config.runtime}' runs this model in "
                f"{record['precision']} ({why})"
            )

        first = dataset.read_image(dataset.samples[0])
        t0 = time.perf_counter_ns()
        det.predict_batch([first] * config.batch, batch_size=config.batch)
        record["first_inference_ms"] = (time.perf_counter_ns() - t0) / 1e6

        protocol = protocol_for(det, config)
        record["protocol"] = protocol.to_dict()
        if config.accuracy:
            _accuracy(det, dataset, config, record, protocol)
        else:
            record["accuracy_reason"] = "accuracy pass not run (a later --repeat round)"

        for key, value in protocol.deploy_settings().items():
            setattr(det, key, value)  # latency and throughput run at the deployment settings
        n_lat = min(config.latency_images, len(dataset))
        lat_images = [dataset.read_image(s) for s in dataset.samples[:n_lat]]
        monitor = PowerMonitor().start()
        lat = measure_latency(
            det,
            lat_images,
            batch=config.batch,
            warmup=config.warmup,
            min_iterations=config.min_iterations,
            min_seconds=config.min_seconds,
            max_seconds=config.max_seconds,
        )
        power = monitor.stop()
        record["latency_ms"] = lat.latency_ms()
        record["latency_iterations"] = lat.iterations
        record["latency_seconds"] = lat.seconds
        record["latency_stopped_by"] = lat.stopped_by
        record["fps_sequential"] = lat.fps_sequential
        record["latency_cpu_cores_used"] = lat.cpu_cores_used
        if config.keep_samples:
            record["latency_samples_ns"] = lat.samples_ns
        record["rss_start_mb"] = lat.rss_start_mb
        record["rss_end_mb"] = lat.rss_end_mb
        if power.get("measured"):
            per = power["energy_total_j"] / max(1, lat.iterations * config.batch)
            power["energy_per_inference_mj"] = per * 1000.0
        record["power"] = power
        record["warnings"] = list(power.get("warnings", [])) + _busy_warnings(record)

        if views.active:
            record["throughput_reason"] = (
                "not measured for tiles / TTA / ensembles (their views are not async requests)"
            )
        elif config.throughput_requests > 0:
            tp = measure_throughput(
                det,
                lat_images,
                requests=config.throughput_requests,
                batch=config.batch,
                seconds=config.throughput_seconds,
            )
            record["throughput_fps"] = tp.fps
            record["throughput_requests"] = tp.requests
            if tp.reason:
                record["throughput_reason"] = tp.reason
        else:
            record["throughput_reason"] = "not measured (throughput_requests=0)"
        record["method"] = {
            "clock": "time.perf_counter_ns",
            "warmup": config.warmup,
            "iterations": lat.iterations,
            "min_iterations": config.min_iterations,
            "min_seconds": config.min_seconds,
            "max_seconds": config.max_seconds,
            "latency_images": n_lat,
            "latency_thresholds": {
                "score": protocol.deploy_score_threshold,
                "iou": protocol.deploy_iou_threshold,
                "multi_label": False,
            },
            "accuracy_thresholds": {
                "score": protocol.score_threshold,
                "iou": protocol.iou_threshold,
                "multi_label": protocol.multi_label,
                "max_detections": protocol.max_detections,
                "nms": protocol.nms,
            },
            "outliers": "none removed",
            "process": "one process per configuration",
            "eval_backend": config.eval_backend,
        }
        record["peak_rss_mb"] = peak_rss_mb()
        record["status"] = "ok"
    finally:
        det.close()


def _busy_warnings(record: dict[str, Any]) -> list[str]:
    """Say so when other processes competed for the CPU during the run."""
    host = record.get("host") or {}
    load = host.get("load_avg")
    cores = host.get("cores_logical")
    if isinstance(load, list) and load and isinstance(cores, int) and load[0] > cores:
        return [
            f"machine busy: load average {load[0]:.1f} on {cores} logical cores when this "
            "configuration started; latencies include waiting for the CPU (use --repeat to "
            "interleave rounds, or measure on a quiet machine)"
        ]
    return []


def run_config(config: BenchConfig) -> dict[str, Any]:
    """Measure one configuration in this process; never raises for a measurement problem."""
    record = _base_record(config)
    try:
        record["host"] = host_info()
        if not Path(config.model).is_file():
            raise InvalidInputError(f"model file not found: {config.model}")
        _run(config, record)
    except SkipConfig as err:
        record["status"] = "skipped"
        record["reason"] = str(err)
    except (EdgedetError, Exception) as err:  # one bad configuration must not end a sweep
        record["status"] = "failed"
        record["reason"] = f"{type(err).__name__}: {err}"
        record["traceback"] = traceback.format_exc(limit=8)[-4000:]
    return record


def worker_env(config: BenchConfig) -> dict[str, str]:
    """Environment of a worker: thread counts of OpenMP / BLAS pools pinned to ``threads``."""
    env = dict(os.environ)
    if config.threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(config.threads)
    return env


#: Allowance for starting the worker and loading the model: importing the runtime, reading the
#: file and building the session (TensorRT builds an engine from an ONNX model on first use,
#: which takes minutes on a Jetson).
TIMEOUT_BASE_S = 900.0
#: Allowance per evaluated image in the accuracy pass, per view (tiles, TTA, ensemble members):
#: a slow embedded CPU takes about a second for a 640-pixel model; this leaves room for twice that.
TIMEOUT_PER_IMAGE_S = 2.0
#: Images assumed when ``images`` is None (the whole dataset): COCO val2017's 5000.
TIMEOUT_ASSUMED_IMAGES = 5000


def default_timeout_s(config: BenchConfig) -> float:
    """A generous limit for one worker, in seconds, from the work ``config`` asks for.

    The load allowance, plus `TIMEOUT_PER_IMAGE_S` per accuracy-pass image and view (images
    None: `TIMEOUT_ASSUMED_IMAGES`), plus twice the latency pass's own limits (warm-up,
    ``max_seconds``, the throughput pass). Only a worker that hangs should reach it; a limit
    from the work, not a fixed one, so a long legitimate run on a slow device is not killed.
    """
    views = 1
    settings = config.view_settings()
    if settings.active:
        views = 8 + len(settings.ensemble)  # tiles / TTA flips and scales: a handful of views
    images = config.images if config.images is not None else TIMEOUT_ASSUMED_IMAGES
    accuracy = TIMEOUT_PER_IMAGE_S * images * views * config.batch if config.accuracy else 0.0
    warmup = TIMEOUT_PER_IMAGE_S * (config.warmup + config.latency_images) * views * config.batch
    latency = 2.0 * (config.max_seconds + config.throughput_seconds) + warmup
    return TIMEOUT_BASE_S + accuracy + latency


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker's process group: the worker and whatever it started (a runtime's
    compiler or helper processes) that did not leave the group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # all gone already
        os.killpg(proc.pid, signal.SIGKILL)


def _drain(proc: subprocess.Popen[str], wait_s: float = 30.0) -> str:
    """The rest of a killed worker's stderr. The pipes close once its group is dead; a process
    that left the group (its own session) may hold them open, so give up after ``wait_s``."""
    try:
        return proc.communicate(timeout=wait_s)[1] or ""
    except subprocess.TimeoutExpired:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        proc.wait()
        return "(stderr not read: a process outside the worker's group kept it open)"


def run_in_subprocess(config: BenchConfig, *, timeout_s: float | None = None) -> dict[str, Any]:
    """Measure one configuration in a fresh Python process; returns its record.

    The worker runs in its own process group. One that runs past ``timeout_s`` seconds (None:
    `default_timeout_s`) is killed with its whole group and gives a ``failed`` record whose
    reason starts "timed out after N s"; one that crashes or writes no record gives a ``failed``
    record with the exit code; both carry the end of the worker's stderr. Whatever the worker
    left running in its group is killed when it ends, and on any error here (Ctrl-C included:
    a terminal's SIGINT does not reach another process group).
    """
    limit = default_timeout_s(config) if timeout_s is None else float(timeout_s)
    if not limit > 0:
        raise InvalidInputError(f"timeout must be > 0 seconds, got {timeout_s}")
    with work_dir("edgedet-bench-") as tmp:  # a killed run's is removed by the next
        cfg_path = Path(tmp) / "config.json"
        out_path = Path(tmp) / "record.json"
        cfg_path.write_text(config.to_json())
        cmd = [sys.executable, "-m", "edgedet.benchmarks.worker", str(cfg_path), str(out_path)]
        proc = subprocess.Popen(
            cmd,
            env=worker_env(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills all it started
        )
        try:
            _, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            stderr = _drain(proc)
            record = _base_record(config)
            record["reason"] = (
                f"timed out after {limit:.0f} s: the worker (pid {proc.pid}) and its process "
                "group were killed (a hung runtime or driver?); set the limit with --timeout"
            )
            record["stderr_tail"] = stderr[-2000:]
            return record
        except BaseException:
            _kill_group(proc)
            proc.wait()
            raise
        finally:
            _kill_group(proc)  # leftovers of a worker that exited
        if out_path.is_file():
            rec: dict[str, Any] = json.loads(out_path.read_text())
            return rec
        record = _base_record(config)
        record["reason"] = f"worker exited with code {proc.returncode} and wrote no record"
        record["stderr_tail"] = stderr[-2000:]
        return record
