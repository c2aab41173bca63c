"""Model compression as a library: `prune_model`, `distill_model` and `qat_model`, each taking
a job config and returning a `CompressionResult`; ``edgedet prune / distill / qat``
(`compress_command.py`) only parse their flags into these configs, call and print.

Each takes a model as an ONNX file (converted with `edgedet.train.onnx_import`), an edgedet
training checkpoint, or a ``.pt`` module file written by these commands, and writes:

- ``OUT.onnx`` (atomically) with its `ModelMeta`, the training record under
  ``options["training"]``;
- ``OUT.pt``: the torch module (pruned models have no config that rebuilds them), so a later
  distillation / QAT can start from it;
- ``OUT.report.json`` and ``OUT.report.md`` (`report.py`);
- a work folder ``OUT.work/`` with checkpoints; ``resume`` continues from it.

The job configs declare every setting once: the commands' flags are generated from their
fields (`edgedet.configflags`).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgedet.configflags import setting
from edgedet.errors import EdgedetError, InvalidInputError, ModelLoadError, TrainingError
from edgedet.fileio import atomic_write_bytes
from edgedet.meta import ModelMeta

if TYPE_CHECKING:  # torch is imported inside the functions: the job configs work without it
    import torch
    from torch import nn

def _quiet(line: str) -> None:
    return None


# -- job settings (each is also a flag) --------------------------------------------------------


@dataclass
class CompressJob:
    """Settings shared by prune, distill and qat. The `setting` fields are the commands'
    flags; ``eval_conf`` / ``eval_iou`` / ``max_det`` / ``multi_label`` come from the shared
    protocol flags (`edgedet.protocol.add_protocol_arguments`)."""

    model: str = setting(
        "", "model: .onnx, an edgedet training checkpoint, or a .pt module", positional=True
    )
    images: str = setting("", "folder of unlabelled images (recovery)", required=True)
    out: str = setting("", "output .onnx (also writes .pt and reports)", required=True)
    family: str | None = setting(None, "decoder family for ONNX files without meta")
    imgsz: int | None = setting(None, "input size (square)")
    epochs: int = setting(0, flag="--recover-epochs")
    batch: int = setting(8)
    lr: float = setting(5e-4)
    lr_scale: str = setting(
        "absolute",
        "relative: each tensor's lr is --lr x its RMS, so every layer changes by the same "
        "fraction per step (for batch-norm-folded exports such as YOLOX-nano, whose small "
        "weights an absolute lr rewrites; use e.g. --lr 1e-3)",
        choices=["absolute", "relative"],
    )
    augment: str = setting(
        "flip",
        "strong: also random zoom in/out and 2x2 mosaics (the teacher labels what the "
        "student sees, so few images go further)",
        choices=["flip", "strong"],
    )
    seed: int = setting(0)
    max_images: int | None = setting(None, "use only the first N images")
    val: str | None = setting(None, "labelled dataset: mAP before/after")
    latency_iters: int = setting(50)
    resume: bool = setting(False, "continue from OUT.work/")
    eval_conf: float | None = None
    eval_iou: float | None = None
    max_det: int | None = None
    multi_label: bool | None = None

    def protocol_overrides(self) -> dict[str, Any]:
        from edgedet.protocol import protocol_overrides

        return protocol_overrides(self)  # type: ignore[arg-type]


@dataclass
class PruneJob(CompressJob):
    """``edgedet prune``: ``epochs`` are recovery epochs (``--recover-epochs``, default 0)."""

    target_macs: float | None = setting(None, "fraction of MACs kept")
    target_params: float | None = setting(None, "fraction of params kept")
    target_latency: float | None = setting(
        None,
        "fraction of the convolutions' latency kept, estimated by a model fitted to ONNX "
        "Runtime's per-node profile of this model here (MACs plus data moved; "
        "edgedet/train/latency_model.py); the report measures the real speed-up",
        metavar="F",
    )
    importance: str = setting(
        "activation",
        "channel ranking (default activation: variance on the calibration images x the "
        "weights that read the channel)",
        choices=["activation", "l1", "l2", "bnscale", "taylor"],
    )
    round_to: int = setting(
        0,
        "make channel counts a multiple of N (default 0: off; on small models rounding "
        "forces coarse jumps: a 16-channel layer can only go to 8)",
    )
    global_ranking: bool = setting(
        False, "one ranking across layers (default: the same ratio in every layer)"
    )
    sensitivity: bool = setting(
        False,
        "per-layer ratios from a measured scan: each layer is cut alone at 12.5/25/50%% "
        "and the MAC budget goes where the outputs (scored with the distillation loss on the "
        "calibration images) change least per MAC saved",
    )
    reconstruct: bool = setting(
        True,
        "after each pruning step refit every dense conv by least squares (ridge) so that "
        "on --reconstruct-images images it reproduces the unpruned model's outputs, in forward "
        "order (default on: seconds, and a far better start for recovery)",
        action=argparse.BooleanOptionalAction,
    )
    reconstruct_images: int = setting(
        128, "images (from --images) for --reconstruct, fed 16 at a time"
    )
    no_compensate: bool = setting(
        False, "do not fold removed channels' mean activations into the next layers' biases"
    )
    calibration_images: int = setting(32, "images (from --images) for activation statistics")
    stages: int = setting(1, "prune -> recover steps")

    def prune_config(self) -> Any:
        """The `prune.PruneConfig` these settings ask for (one target at most; default 70% of
        MACs), validated."""
        from .prune import PruneConfig

        given = {
            k: v
            for k, v in (
                ("macs", self.target_macs),
                ("params", self.target_params),
                ("latency", self.target_latency),
            )
            if v is not None
        }
        if len(given) > 1:
            raise InvalidInputError(
                "give one of --target-macs, --target-params, --target-latency, not "
                + " and ".join(f"--target-{k}" for k in given)
            )
        metric, target = next(iter(given.items())) if given else ("macs", 0.7)
        cfg = PruneConfig(
            target=target, metric=metric, importance=self.importance,
            round_to=self.round_to or None, global_pruning=self.global_ranking,
            stages=self.stages, compensate=not self.no_compensate, sensitivity=self.sensitivity,
            reconstruct=self.reconstruct,
            macs_per_element=0.0 if metric == "latency" else None,  # the fitted rate replaces it
        )  # fmt: skip
        cfg.validate()
        return cfg


@dataclass
class DistillJob(CompressJob):
    """``edgedet distill``."""

    epochs: int = setting(10, flag="--epochs")
    teacher: str = setting("", "the float teacher (same head layout)", required=True)


@dataclass
class QatJob(CompressJob):
    """``edgedet qat``."""

    epochs: int = setting(3, flag="--epochs")
    teacher: str | None = setting(None, "float teacher (default: the model itself)")
    calib_images: int = setting(64, "images for initialisation")
    keep_float: list[str] = setting(
        help="layers kept in float besides the stem: module names, or ONNX node names of a "
        "converted model (e.g. the layers edgedet calibrate's mixed-precision search kept)",
        action="append",
        metavar="LAYER[,LAYER...]",
        default_factory=list,
    )
    quantize_stem: bool = setting(
        False, "quantize the convs reading the input image too (default: float)"
    )
    scope: str = setting(
        "conv_inputs",
        "quantize only compute-op inputs (default) or NNCF's every-op default",
        choices=["conv_inputs", "all"],
    )
    symmetric_activations: bool = setting(
        False,
        "signed int8 activations (default uint8: OpenVINO without VNNI saturates on signed ones)",
    )


@dataclass
class CompressionResult:
    """What a compression job wrote, and its report (the dict in ``report_json``)."""

    onnx: Path
    pt: Path | None
    report_json: Path
    report_md: Path
    report: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: dict[str, Path], report: dict[str, Any]) -> CompressionResult:
        pt = paths["pt"] if paths["pt"].is_file() else None
        return cls(paths["onnx"], pt, paths["json"], paths["md"], report)


# -- models in and out --------------------------------------------------------------------------


MODULE_KIND = "edgedet.module"


@dataclass
class Source:
    """A model ready for compression: the torch module, its meta and input size, its head layout."""

    model: nn.Module
    meta: ModelMeta
    hw: tuple[int, int]
    adapter: str
    path: Path
    reg_max: int = 16

    def example(self) -> torch.Tensor:
        import torch

        return torch.zeros(1, 3, *self.hw)


def load_source(
    model: str | Path,
    family: str | None = None,
    imgsz: int | None = None,
    *,
    log: Callable[[str], None] | None = None,
) -> Source:
    """Load an ONNX file, an edgedet training checkpoint or a module file of these commands
    (``log`` hears of graph rewrites)."""
    from .distill import adapter_for
    from .models.net import EdgeDet

    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"model file not found: {path}")
    if path.suffix.lower() == ".onnx":
        from edgedet.detector import resolve_meta

        from .onnx_import import convert_onnx

        mod = convert_onnx(path)
        from .rewrite import split_convs

        # Conv -> SiLU -> Split (YOLOv8's C2f) becomes one conv per part: same outputs, and
        # channel pruning can follow it.
        rewritten = split_convs(mod)
        if rewritten:
            (log or _quiet)(f"{path.name}: rewrote {len(rewritten)} channel-split outputs as separate convs")
        meta = resolve_meta(path, family, None, {})
        shape = mod.input_shapes[0] if mod.input_shapes else ()
        hw = meta.input_size or (
            (int(shape[2]), int(shape[3]))
            if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int)
            else None
        )
        if hw is None:
            raise InvalidInputError(f"{path}: input size unknown; pass --imgsz")
        if imgsz:
            hw = (imgsz, imgsz)
        meta = meta.replace(input_size=hw)
        return Source(mod, meta, hw, adapter_for(mod, meta.family), path)
    from .safe_load import load_torch_file

    # weights_only, edgedet's own classes only: no code in the file runs
    ck = load_torch_file(path, what="ONNX or edgedet torch file")
    if isinstance(ck, dict) and ck.get("kind") == MODULE_KIND:
        mod, meta = ck["model"], ModelMeta.from_dict(ck["meta"])
        hw2 = meta.input_size or (640, 640)
        reg_max = int(getattr(getattr(mod, "cfg", None), "reg_max", 16))
        return Source(mod, meta, (int(hw2[0]), int(hw2[1])), ck["adapter"], path, reg_max)
    if isinstance(ck, dict) and "model_cfg" in ck:
        from .trainer import model_from_checkpoint, sample_meta

        det: EdgeDet = model_from_checkpoint(ck)
        side = imgsz or int(ck.get("train_config", {}).get("imgsz", 640))
        names = det.cfg.class_names or tuple(f"class{i}" for i in range(det.cfg.num_classes))
        meta = sample_meta(names, side, det.strides)
        return Source(det, meta, (side, side), "edgedet", path, det.cfg.reg_max)
    raise ModelLoadError(
        f"{path} is not a model edgedet can compress: expected .onnx, an edgedet training "
        "checkpoint or a .pt written by edgedet prune/distill/qat"
    )


def save_module(src: Source, model: nn.Module, out: Path) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(
        {"kind": MODULE_KIND, "model": model, "meta": src.meta.to_dict(), "adapter": src.adapter},
        buf,
    )
    atomic_write_bytes(out, buf.getvalue())
    return out


def export_model(
    src: Source, model: nn.Module, out: Path, record: dict[str, Any], precision: str = "fp32"
) -> Path:
    """Export ``model`` (a float module of ``src``'s kind) to ONNX with meta + training record."""
    from edgedet.meta import read_meta, write_onnx_meta

    from .export import export_module
    from .models.net import EdgeDet

    options = {**dict(src.meta.options), "training": record}
    if isinstance(model, EdgeDet):
        from .export import export_onnx

        export_onnx(model, out, src.hw, tuple(src.meta.class_names), source="edgedet compress")
        meta = read_meta(out)
        assert meta is not None  # export_onnx just wrote it
        write_onnx_meta(out, out, meta.replace(options={**dict(meta.options), **options},
                                               precision=precision))  # fmt: skip
        return out
    meta = src.meta.replace(options=options, precision=precision, source="edgedet compress")
    return export_module(model, src.example(), out, meta=meta)


def _predict_file(
    path: Path,
    data: str,
    family: str | None,
    threads: int,
    protocol: Any = None,
    overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, float], dict[int, Any], tuple[str, ...], Any, Any]:
    """(mAP50-95 / mAP50 / end-to-end p50 on ONNX Runtime, detections, class names, dataset,
    protocol) of one ONNX file, scored by `edgedet.scoring.score` under ``protocol`` (default:
    the model's own, `edgedet.protocol.resolve_protocol`, with ``overrides`` from the flags)."""
    import edgedet
    from edgedet.calibration.evaluate import p50_latency
    from edgedet.meta import read_meta
    from edgedet.protocol import resolve_protocol
    from edgedet.scoring import as_dataset, score

    fam = None if read_meta(path) is not None else family
    det = edgedet.load(path, family=fam, runtime_options={"threads": threads})
    try:
        ds = as_dataset(data)
        proto = protocol or resolve_protocol(det.meta, overrides=overrides)
        res = score(det, ds, proto, data_flag="--val")
        out = {"map50_95": res.map50_95, "map50": res.map50}
        out["e2e_p50_ms"], out["infer_p50_ms"] = p50_latency(det, ds)
        return out, res.detections, tuple(det.class_names), ds, proto
    finally:
        det.close()


def evaluate_pair(
    before: Path,
    after: Path,
    data: str,
    family: str | None,
    threads: int = 2,
    before_family: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``eval_before`` and ``eval_after`` (the numbers of `_predict_file`), ``protocol`` (the
    compressed model's `EvalProtocol`, used for both, ``overrides`` from the flags on top), and
    ``map_kept``: the
    share of mAP50-95 the compressed model keeps with its 95% paired bootstrap interval over the
    validation images (`edgedet.eval.bootstrap`), or the reason it could not be computed.
    ``before_family`` is the reference's family when it differs (a distillation teacher). The
    compressed model's score is the one that matters: a reference or interval that fails is
    reported, not raised."""
    a, pred_a, names_a, ds, proto = _predict_file(after, data, family, threads, None, overrides)
    out: dict[str, Any] = {"eval_after": a, "protocol": proto.to_dict()}
    try:
        b, pred_b, names_b, _, _ = _predict_file(
            before, data, before_family or family, threads, proto
        )
    except (EdgedetError, OSError, RuntimeError, ValueError) as err:
        out["map_kept"] = {"reason": f"the float reference could not be scored: {err}"}
        return out
    out["eval_before"] = b
    if names_a != names_b:
        out["map_kept"] = {"reason": "the two models have different class names"}
        return out
    try:
        from edgedet.eval.bootstrap import bootstrap_map

        res = bootstrap_map(ds, {"before": pred_b, "after": pred_a}, names_b, reference="before")
    except (EdgedetError, OSError, RuntimeError, ValueError, MemoryError) as err:
        out["map_kept"] = {"reason": f"bootstrap failed: {err}"}
        return out
    out["map_kept"] = {
        **res.ratios["after"].to_dict(),
        "difference": res.differences["after"].to_dict(),
        "resamples": res.resamples,
        "images": res.images,
    }
    return out


def float_reference(src: Source, model: nn.Module, folder: Path) -> Path:
    """An ONNX file of the float model ``model`` (of ``src``'s kind) to score against: the
    source file itself when it is ONNX, else an export into ``folder``."""
    if src.path.suffix.lower() == ".onnx":
        return src.path
    out = folder / "float.onnx"
    export_model(src, model, out, {"kind": "float reference"})
    return out


def score_against_float(
    src: Source, model: nn.Module, after: Path, data: str, family: str | None,
    before_family: str | None = None, overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """`evaluate_pair` of ``after`` against the float ``model`` of ``src`` (its `float_reference`)."""
    with tempfile.TemporaryDirectory() as tmp:
        ref = float_reference(src, model, Path(tmp))
        return evaluate_pair(
            ref, after, data, family, before_family=before_family, overrides=overrides
        )


def _out_paths(out: str) -> dict[str, Path]:
    o = Path(out)
    if o.suffix.lower() != ".onnx":
        raise InvalidInputError(f"--out must end in .onnx, got {o}")
    base = o.with_suffix("")
    return {
        "onnx": o,
        "pt": base.with_suffix(".pt"),
        "json": Path(str(base) + ".report.json"),
        "md": Path(str(base) + ".report.md"),
        "work": Path(str(base) + ".work"),
    }


def _write_reports(paths: dict[str, Path], report: dict[str, Any], md: str) -> None:
    atomic_write_bytes(paths["json"], json.dumps(report, indent=2, default=str).encode())
    atomic_write_bytes(paths["md"], md.encode())


def _preprocessor(src: Source) -> Any:
    from edgedet.preprocess import Preprocessor

    return Preprocessor(src.meta, src.hw)


def _read(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise TrainingError(f"cannot read image {path}")
    return np.asarray(img)


def _same_layout(student: Source, teacher: Source) -> tuple[nn.Module, nn.Module, str]:
    from .models.net import EdgeDet, ExportModel

    s, t = student.model, teacher.model
    if isinstance(s, EdgeDet) and isinstance(t, EdgeDet):
        return s, t, "edgedet"
    if isinstance(t, EdgeDet):
        t = ExportModel(t, teacher.hw)
    if isinstance(s, EdgeDet):
        raise InvalidInputError(
            "student is an EdgeDet but the teacher is not: give the teacher as an edgedet "
            "checkpoint or .pt too"
        )
    return s, t, student.adapter if student.adapter == teacher.adapter else "raw"




def _distill_config(job: CompressJob, epochs: int) -> Any:
    from .distill import DistillConfig

    return DistillConfig(
        epochs=epochs, batch=job.batch, lr=job.lr, seed=job.seed,
        lr_scale=job.lr_scale, augment=job.augment,
    )  # fmt: skip


# -- prune -----------------------------------------------------------------------------------------


def _resume_state(
    job: PruneJob, state_path: Path, metric: str, say: Callable[[str], None], stages: int
) -> dict[str, Any] | None:
    """The saved stage state of an interrupted run (``job.resume``), checked against the
    target kind; None when there is nothing to resume."""
    if not (job.resume and state_path.is_file()):
        return None
    from .safe_load import load_torch_file

    st = load_torch_file(state_path, TrainingError, "prune state")
    if st.get("metric", "macs" if st.get("latency_model") is None else "latency") != metric:
        raise InvalidInputError(
            f"{state_path} is a run with a {st.get('metric')} target; resume it with the same "
            f"target (--target-{st.get('metric')}), or start afresh without --resume"
        )
    say(f"resuming after stage {int(st['stage']) + 1} of {stages}")
    return dict(st)


def _fit_latency(
    src: Source, teacher: nn.Module, cfg: Any, fit: dict[str, Any] | None,
    say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """The latency model of a latency target (fitted to ONNX Runtime's profile of the float
    model, unless a resumed run brings its own), written into ``cfg.macs_per_element``."""
    if fit is None:
        from .latency_model import fit_latency_model

        with tempfile.TemporaryDirectory() as tmp:
            fit = fit_latency_model(float_reference(src, teacher, Path(tmp))).to_dict()
    cfg.macs_per_element = float(fit["macs_per_element"])
    cfg.validate()
    say(
        f"latency model (ONNX Runtime profile): {fit['per_mmac']:.4f} ms/MMAC + "
        f"{fit['per_melement']:.4f} ms/M elements moved (R^2 "
        f"{fit['r2']:.2f}; MACs alone {fit['r2_macs_only']:.2f}): one element "
        f"costs {cfg.macs_per_element:.1f} MACs"
    )
    return fit


def _time_and_score(job: CompressJob, src: Source, teacher: nn.Module, after: Path) -> dict[str, Any]:
    """Network latency of the float model and of ``after`` on ONNX Runtime, the verdict, and
    with ``job.val`` both scored through the same harness (`evaluate_pair`)."""
    from edgedet.benchmarks.latency import measure_network_latency

    from .report import latency_verdict

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        before_path = float_reference(src, teacher, Path(tmp))
        out["latency_before"] = measure_network_latency(before_path, iters=job.latency_iters)
        out["latency_after"] = measure_network_latency(after, iters=job.latency_iters)
        out.update(latency_verdict(out["latency_before"]["p50_ms"], out["latency_after"]["p50_ms"]))
        if job.val:
            fam = job.family or src.meta.family
            # the exported float teacher (or the source file itself) through the same harness
            out.update(
                evaluate_pair(before_path, after, job.val, fam, overrides=job.protocol_overrides())
            )
    return out


def prune_model(job: PruneJob, *, log: Callable[[str], None] | None = None) -> CompressionResult:
    """Prune ``job.model`` to its target (MACs, parameters or estimated latency) with optional
    recovery, export it, time it against the float model and, with ``job.val``, score both;
    writes the files of `CompressionResult`. ``log`` receives progress lines (default: none)."""
    say = log or _quiet
    import torch

    from .distill import Distiller, list_images
    from .prune import check_prunable, prune
    from .report import report_markdown

    paths = _out_paths(job.out)
    cfg = job.prune_config()
    metric = cfg.metric
    src = load_source(job.model, job.family, job.imgsz, log=say)
    images = list_images(job.images, job.max_images)
    pre = _preprocessor(src)
    teacher = copy.deepcopy(src.model).eval()
    model = src.model
    work = paths["work"]
    work.mkdir(parents=True, exist_ok=True)
    state_path = work / "prune_state.pt"
    resumed = _resume_state(job, state_path, metric, say, cfg.stages)
    start, base, kept = 0, None, None
    latency_fit: dict[str, Any] | None = None
    reference_value: float | None = None
    if resumed is not None:
        model, start, base = resumed["model"], int(resumed["stage"]) + 1, tuple(resumed["base"])
        kept = resumed.get("kept_channels")
        latency_fit = resumed.get("latency_model")  # the same rate as the interrupted run
        reference_value = resumed.get("reference_value")
    if metric == "latency":
        latency_fit = _fit_latency(src, teacher, cfg, latency_fit, say)
    example = src.example()
    check_prunable(model, example)
    x0, _ = pre([_read(images[0])])
    batch_x = torch.from_numpy(x0)
    # calibration and reconstruction images are both the first images of --images: read once
    n_cal = max(1, min(job.calibration_images, len(images)))
    n_fit = max(1, min(job.reconstruct_images, len(images))) if cfg.reconstruct else 0
    first = torch.from_numpy(pre([_read(p) for p in images[: max(n_cal, n_fit)]])[0])
    calibration = first[:n_cal]
    fit_images = first[:n_fit] if n_fit else None

    def recover(m: nn.Module, stage: int) -> None:
        if job.epochs <= 0:
            return
        ck = work / f"recover{stage}.pt"
        d = Distiller(
            m, teacher, images, pre, _distill_config(job, job.epochs), adapter=src.adapter,
            reg_max=src.reg_max, checkpoint=ck, resume=job.resume and ck.is_file(),
        )  # fmt: skip
        d.fit()
        if d.student is not m:
            m.load_state_dict(d.student.state_dict())

    def on_stage(m: nn.Module, stage: int, info: dict[str, Any]) -> None:
        buf = io.BytesIO()
        torch.save(
            {"model": m, "stage": stage, "base": report_base, "metric": metric,
             "kept_channels": info.get("kept_channels"), "latency_model": latency_fit,
             "reference_value": info.get("reference_value")},
            buf,
        )  # fmt: skip
        atomic_write_bytes(state_path, buf.getvalue())

    from .channels import count_macs_params

    report_base = base or count_macs_params(teacher, example)

    def taylor_loss(m: nn.Module) -> torch.Tensor:
        from .prune import default_taylor_loss

        return default_taylor_loss(m, batch_x)

    def distortion(reference: Any) -> Any:
        from .distill import distill_loss

        dcfg = _distill_config(job, 1)
        return lambda out: float(
            distill_loss(out, reference, src.adapter, dcfg, reg_max=src.reg_max)[0]
        )

    t0 = time.time()
    report = prune(
        model, example, cfg, recover=recover, loss_fn=taylor_loss, start_stage=start,
        base=report_base, on_stage=on_stage, log=say,
        calibration=calibration, distortion=distortion, reconstruction=fit_images,
        reference_model=teacher, kept_channels=kept, reference_value=reference_value,
    )  # fmt: skip
    report["seconds"] = time.time() - t0
    if latency_fit is not None:
        report["latency_model"] = latency_fit
    record = {"kind": "prune", "config": cfg.to_dict(), "recover_epochs": job.epochs,
              "images": str(job.images), "teacher": str(job.model)}  # fmt: skip
    export_model(src, model, paths["onnx"], record)
    save_module(src, model, paths["pt"])
    report.update(_time_and_score(job, src, teacher, paths["onnx"]))
    _write_reports(paths, report, report_markdown(report, f"Pruning {Path(job.model).name}"))
    return CompressionResult.of(paths, report)



# -- distill ---------------------------------------------------------------------------------------


def distill_model(
    job: DistillJob, *, log: Callable[[str], None] | None = None
) -> CompressionResult:
    """Distil ``job.teacher`` into ``job.model`` on unlabelled images and export the student;
    with ``job.val`` score it against its teacher."""
    from .distill import Distiller, list_images
    from .report import map_kept_line

    paths = _out_paths(job.out)
    student = load_source(job.model, job.family, job.imgsz, log=log)
    teacher = load_source(job.teacher, job.family, job.imgsz, log=log)
    s, t, adapter = _same_layout(student, teacher)
    images = list_images(job.images, job.max_images)
    paths["work"].mkdir(parents=True, exist_ok=True)
    ck = paths["work"] / "distill.pt"
    d = Distiller(
        s, t, images, _preprocessor(student), _distill_config(job, job.epochs),
        adapter=adapter, reg_max=student.reg_max, checkpoint=ck,
        resume=job.resume and ck.is_file(),
    )  # fmt: skip
    res = d.fit()
    record = {"kind": "distill", "config": d.cfg.to_dict(), "teacher": str(job.teacher),
              "images": str(job.images), "adapter": adapter}  # fmt: skip
    export_model(student, d.student, paths["onnx"], record)
    save_module(student, d.student, paths["pt"])
    report: dict[str, Any] = {"record": record, "history": res["history"]}
    if job.val:  # the student against its float teacher, on the same images
        report.update(
            score_against_float(
                teacher,
                teacher.model,
                paths["onnx"],
                job.val,
                student.meta.family,
                before_family=teacher.meta.family,
                overrides=job.protocol_overrides(),
            )
        )
    md = f"# Distillation of {Path(job.model).name}\n\n" + "\n".join(
        f"- epoch {h['epoch']}: loss {h['loss']:.4f}" for h in res["history"]
    )
    md += "\n" + map_kept_line(report)
    _write_reports(paths, report, md + "\n")
    return CompressionResult.of(paths, report)


def qat_model(job: QatJob, *, log: Callable[[str], None] | None = None) -> CompressionResult:
    """Quantization-aware training (NNCF) distilled from a float teacher, exported as a QDQ
    INT8 model; with ``job.val`` the INT8 model scored against the float one."""
    import torch

    from .distill import list_images
    from .models.net import EdgeDet, ExportModel
    from .qat import export_qdq, qat_distill
    from .report import map_kept_line

    paths = _out_paths(job.out)
    src = load_source(job.model, job.family, job.imgsz, log=log)
    teacher = None
    if job.teacher:
        teacher_src = load_source(job.teacher, job.family, job.imgsz, log=log)
        if type(teacher_src.model) is not type(src.model):
            raise InvalidInputError("--teacher must be the same kind of model as MODEL for QAT")
        teacher = teacher_src.model
    images = list_images(job.images, job.max_images)
    pre = _preprocessor(src)
    calib = [torch.from_numpy(pre([_read(p)])[0]) for p in images[: job.calib_images]]
    paths["work"].mkdir(parents=True, exist_ok=True)
    ck = paths["work"] / "qat.pt"
    cfg = _distill_config(job, job.epochs)
    keep = [k.strip() for arg in job.keep_float for k in arg.split(",") if k.strip()]
    q, res = qat_distill(
        src.model, calib, images, pre, cfg, adapter=src.adapter, reg_max=src.reg_max,
        checkpoint=ck, resume=job.resume and ck.is_file(), keep_float=keep,
        keep_stem_float=not job.quantize_stem, scope=job.scope,
        symmetric_activations=job.symmetric_activations, teacher=teacher,
    )  # fmt: skip
    record = {"kind": "qat", "config": cfg.to_dict(), "images": str(job.images),
              "teacher": str(job.teacher or job.model),
              "calibration_images": len(calib), "library": "nncf",
              "quantization": res["quantization"]}  # fmt: skip
    meta = src.meta.replace(
        precision="int8", source="edgedet qat",
        options={**dict(src.meta.options), "training": record},
    )  # fmt: skip
    wrapper = ExportModel(q, src.hw) if isinstance(src.model, EdgeDet) else q  # type: ignore[arg-type]
    names = getattr(src.model, "input_names", None) or ["images"]
    outs = getattr(src.model, "output_names", None) or ["output"]
    info = export_qdq(wrapper, src.example(), paths["onnx"], meta=meta, input_names=names,
                      output_names=outs)  # fmt: skip
    report: dict[str, Any] = {"record": record, "history": res["history"], "export": info}
    if job.val:  # qat_distill trains a copy: src.model is still the float model
        report.update(score_against_float(src, src.model, paths["onnx"], job.val, src.meta.family,
                                          overrides=job.protocol_overrides()))  # fmt: skip
    tail = info["tail_quantizers"]
    md = (
        f"# QAT of {Path(job.model).name}\n\n- Q/DQ pairs: {info['quantize_linear']}\n"
        f"- Q/DQ in the decode tail: {tail}\n"
        f"- activations: {res['quantization']['activations']}, scope "
        f"{res['quantization']['scope']}\n- kept float: "
        + (", ".join(f"{k} ({v})" for k, v in res["quantization"]["float_layers"].items())
           or "none")
        + "\n"
    )  # fmt: skip
    if "map_kept" in report:
        md += map_kept_line(report) + "\n"
    _write_reports(paths, report, md)
    return CompressionResult.of(paths, report)
