"""The training loop for `EdgeDet`.

What it does, in order: read the data (`edgedet.data.load_dataset`), build the model (or start
from a checkpoint with another class list), then per epoch: a deterministic order (class-balanced
when rare classes are named), augmented batches (`augment.Augmenter`; mosaic switched off for the
last ``close_mosaic`` epochs), forward / loss / backward with AMP on CUDA, gradient accumulation
and clipping, AdamW or SGD with warm-up then cosine, EMA of the weights; evaluation of the EMA
model with `edgedet.eval.metrics.evaluate` through the same preprocessing, decoder and NMS the exported
model gets; ``last.pt`` / ``best.pt`` written atomically (also every ``save_every`` optimizer
steps, so a killed run loses little); ``results.csv`` and ``results.png``.

Reproducibility and resume: every sample's augmentation draws from a generator seeded by
``(seed, epoch, position)`` and the epoch order from ``(seed, epoch)``, so the data a step sees
does not depend on what ran before; a checkpoint stores model, EMA, optimizer, scheduler, AMP
scaler, RNG states, epoch and step-in-epoch, and ``resume=True`` continues from the next step.
On CPU, an interrupted-and-resumed run ends with the same weights as an uninterrupted one.

DDP: launched under ``torchrun`` (``WORLD_SIZE`` > 1) each rank takes every ``world``-th sample of
the epoch order; rank 0 evaluates and writes. The same command runs on one CPU.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgedet.errors import DatasetError, InvalidInputError, TrainingError
from edgedet.fileio import atomic_write_bytes
from edgedet.meta import ModelMeta

from .augment import AugmentConfig, Augmenter, epoch_order, resize_keep_ratio, sample_rng
from .losses import DetectionLoss
from .models.net import EdgeDet, ExportModel, ModelConfig

CHECKPOINT_VERSION = 1


@dataclass
class TrainConfig:
    """Settings of one training run (stored in every checkpoint)."""

    data: str
    val: str | None = (
        None  # None: hold out val_fraction of data; "train": evaluate on the train set
    )
    val_fraction: float = 0.1
    model: str = "n"
    p2: bool = False
    activation: str = "silu"
    reg_max: int = 16
    epochs: int = 100
    imgsz: int = 640
    batch: int = 16
    accumulate: int = 1
    optimizer: str = "adamw"
    lr: float = 0.002
    lrf: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0005
    warmup_steps: int = 100
    ema_decay: float = 0.9998
    ema_tau: float = 200.0
    clip_grad: float = 10.0
    amp: bool = True
    patience: int = 30
    close_mosaic: int = 2
    multi_scale: float = 0.0
    cls_loss: str = "bce"
    box_loss: str = "ciou"
    class_weights: dict[str, float] = field(default_factory=dict)
    rare_classes: list[str] = field(default_factory=list)
    rare_repeat: float = 3.0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    threads: int | None = None
    out: str = "runs/train"
    save_every: int = 100
    eval_every: int = 1
    # Evaluation protocol overrides (None: edgedet's family default, `edgedet.protocol.EDGEDET`).
    eval_conf: float | None = None
    eval_iou: float | None = None
    max_det: int | None = None
    multi_label: bool | None = None
    resume: bool = False
    from_ckpt: str | None = None
    max_train_images: int | None = (
        None  # use only the first N images of data (before the val split)
    )
    names: str | None = (
        None  # class names for datasets without them (YOLO folders): "coco", file, list
    )
    progress: bool | None = None  # None: a live bar on a terminal, periodic lines otherwise

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["augment"] = self.augment.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        eval_protocol(self)  # an out-of-range --eval-iou / --eval-conf / --max-det fails now
        if self.optimizer not in ("adamw", "sgd"):
            raise InvalidInputError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.imgsz % 32 or self.imgsz < 64:
            raise InvalidInputError(f"imgsz must be a multiple of 32 and >= 64, got {self.imgsz}")
        if self.batch < 1 or self.accumulate < 1 or self.epochs < 1:
            raise InvalidInputError(
                f"batch, accumulate and epochs must be >= 1, got {self.batch}, {self.accumulate}, {self.epochs}"
            )
        if not 0 <= self.multi_scale < 1:
            raise InvalidInputError(f"multi_scale must be in [0, 1), got {self.multi_scale}")


# -- data ----------------------------------------------------------------------------------------


def _load(path: str, names: str | None = None) -> Any:
    from edgedet.data import load_dataset

    return load_dataset(path, on_error="skip", class_names=names)


class TrainSet:
    """Ground truth of a dataset as arrays, images read and resized on demand."""

    def __init__(self, ds: Any, samples: Sequence[Any], size: int, class_names: Sequence[str]):
        self.ds, self.samples, self.size = ds, list(samples), size
        # map dataset classes to model classes by name
        index = {n: i for i, n in enumerate(class_names)}
        missing = [n for n in ds.class_names if n not in index]
        self.remap = np.array([index.get(n, -1) for n in ds.class_names], np.int64)
        self.unmapped = missing
        self.boxes: list[np.ndarray] = []
        self.cls: list[np.ndarray] = []
        for s in self.samples:
            keep = ~np.asarray(s.gt.ignore, bool)
            c = (
                self.remap[np.asarray(s.gt.class_ids, np.int64)[keep]]
                if keep.any()
                else np.zeros(0, np.int64)
            )
            b = np.asarray(s.gt.xyxy, np.float32)[keep].reshape(-1, 4)
            ok = c >= 0
            self.boxes.append(b[ok])
            self.cls.append(c[ok])

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img = self.ds.read_image(self.samples[i])
        img, boxes = resize_keep_ratio(img, self.boxes[i], self.size)
        return img, boxes, self.cls[i].copy()

    def class_counts(self, nc: int) -> np.ndarray:
        return np.bincount(
            np.concatenate([c for c in self.cls] or [np.zeros(0, np.int64)]), minlength=nc
        )


class _EpochData(torch.utils.data.Dataset):
    def __init__(self, aug: Augmenter, order: np.ndarray, seed: int, epoch: int, mosaic_on: bool):
        self.aug, self.order, self.seed, self.epoch, self.mosaic_on = (
            aug,
            order,
            seed,
            epoch,
            mosaic_on,
        )

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, pos: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = sample_rng(self.seed, self.epoch, int(pos))
        return self.aug(rng, int(self.order[pos]), self.mosaic_on)


def collate(items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """BGR uint8 images -> RGB float [B,3,H,W] in 0..1; labels padded to the most boxes."""
    imgs = np.stack([it[0][:, :, ::-1] for it in items]).transpose(0, 3, 1, 2)
    m = max([len(it[2]) for it in items] + [1])
    b = len(items)
    boxes = np.zeros((b, m, 4), np.float32)
    labels = np.zeros((b, m), np.int64)
    mask = np.zeros((b, m), bool)
    for i, (_, bx, c) in enumerate(items):
        k = len(c)
        boxes[i, :k], labels[i, :k], mask[i, :k] = bx, c, True
    return {
        "images": torch.from_numpy(np.ascontiguousarray(imgs)),
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(labels),
        "mask": torch.from_numpy(mask),
    }


# -- optimisation ----------------------------------------------------------------------------------


class ModelEMA:
    """Exponential moving average of weights with a warm-up ramp: d = decay * (1 - exp(-u / tau))."""

    def __init__(self, model: nn.Module, decay: float, tau: float, updates: int = 0):
        import copy

        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:
                v.copy_(msd[k])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weights of convs/linears decay; norms' weights and all biases do not."""
    decay, no_decay = [], []
    for mod in model.modules():
        for name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias" or isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_lambda(total_steps: int, warmup: int, lrf: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return f


# -- checkpoints -----------------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to bytes, then an atomic rename: readers see the old file or the new, never half."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TrainingError(f"checkpoint {p} not found")
    from .safe_load import load_torch_file

    # weights_only, edgedet's own classes only: no code in the file runs
    ck = load_torch_file(p, TrainingError, "edgedet checkpoint")
    if (
        isinstance(ck, dict)
        and ck.get("kind") == "edgedet.module"
        and isinstance(ck.get("model"), EdgeDet)
    ):
        # a pruned EdgeDet written by `edgedet prune` / `distill`: its channels differ from
        # what its config builds, so the module itself is the architecture
        mod: EdgeDet = ck["model"]
        return {"model_cfg": mod.cfg.to_dict(), "model": mod.state_dict(), "architecture": mod}
    if not isinstance(ck, dict) or "model_cfg" not in ck or "model" not in ck:
        raise TrainingError(
            f"{p} is not an edgedet checkpoint (no model_cfg / model); was it written by edgedet train?"
        )
    return ck


def build_model(ck: dict[str, Any]) -> EdgeDet:
    """An untrained-shape EdgeDet for a checkpoint: its pruned ``architecture`` when it has one
    (copied, weights to be loaded), otherwise built from ``model_cfg``."""
    arch = ck.get("architecture")
    if arch is not None:
        return copy.deepcopy(arch)  # type: ignore[no-any-return]
    return EdgeDet(ModelConfig.from_dict(ck["model_cfg"]))


def model_from_checkpoint(ck: dict[str, Any], use_ema: bool = True) -> EdgeDet:
    model = build_model(ck)
    sd: dict[str, Any] = ck["ema"] if use_ema and ck.get("ema") is not None else ck["model"]
    model.load_state_dict(sd)
    return model.eval()


def transfer_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Copy every tensor whose name and shape match; returns (copied, names skipped)."""
    own = model.state_dict()
    copied, skipped = 0, []
    for k, v in state.items():
        if k in own and own[k].shape == v.shape:
            own[k].copy_(v)
            copied += 1
        else:
            skipped.append(k)
    return copied, skipped


# -- evaluation -------------------------------------------------------------------------------------


def sample_meta(class_names: Sequence[str], imgsz: int, strides: Sequence[int]) -> ModelMeta:
    return ModelMeta(
        family="edgedet",
        class_names=tuple(class_names),
        input_name="images",
        input_size=(imgsz, imgsz),
        color="RGB",
        scale=1 / 255,
        letterbox="center",
        pad_value=114,
        strides=tuple(strides),
        options={"output": "output", "decode_tail": "/decode/"},
    )


def eval_protocol(cfg: Any = None) -> Any:
    """The `EvalProtocol` validation uses: edgedet's family default with the config's
    ``eval_conf`` / ``eval_iou`` / ``max_det`` / ``multi_label`` on top (None: not given)."""
    from edgedet.protocol import resolve_protocol

    overrides = {
        "score_threshold": getattr(cfg, "eval_conf", None),
        "iou_threshold": getattr(cfg, "eval_iou", None),
        "max_detections": getattr(cfg, "max_det", None),
        "multi_label": getattr(cfg, "multi_label", None),
    }
    return resolve_protocol(family="edgedet", overrides=overrides)


def evaluate_model(
    model: EdgeDet,
    ds: Any,
    samples: Sequence[Any],
    imgsz: int,
    class_names: Sequence[str],
    *,
    protocol: Any = None,
    batch: int = 16,
    device: str = "cpu",
) -> dict[str, float]:
    """mAP of ``model`` on ``samples`` of ``ds``, scored as its ONNX export would be: the model
    plus its decode tail in the torch runtime, through a `Detector` and `edgedet.scoring.score`
    under ``protocol`` (default `eval_protocol()`)."""
    from edgedet.scoring import score, torch_detector

    meta = sample_meta(class_names, imgsz, model.strides)
    was_training = model.training
    det = torch_detector(ExportModel(model, (imgsz, imgsz)), meta, device=device)
    try:
        res = score(det, ds, protocol or eval_protocol(), samples=samples, batch=batch,
                    data_flag="--val")  # fmt: skip
    finally:
        det.close()
        model.train(was_training)
    return {"map50_95": res.map50_95, "map50": res.map50}


# -- the trainer ----------------------------------------------------------------------------------


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


class Trainer:
    def __init__(self, cfg: TrainConfig, log: Callable[[str], None] | None = None):
        cfg.validate()
        self.cfg = cfg
        self.rank, self.world, self.local_rank = _dist_info()
        self._log = log or (lambda s: print(s, flush=True))
        self.out = Path(cfg.out)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise TrainingError(
                "device 'cuda' asked for but torch sees no CUDA device; use --device cpu"
            )
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if cfg.device.startswith("cuda") else "gloo")
            if cfg.device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
                self.device = torch.device("cuda", self.local_rank)
            else:
                self.device = torch.device("cpu")
        else:
            self.device = torch.device(cfg.device)

    def log(self, msg: str) -> None:
        if self.rank == 0:
            self._log(msg)

    # -- setup --------------------------------------------------------------------------------------

    def _datasets(self, class_names: Sequence[str] | None) -> None:
        cfg = self.cfg
        try:
            ds = _load(cfg.data, cfg.names)
        except DatasetError as err:
            raise TrainingError(f"cannot read training data {cfg.data}: {err}") from err
        if len(ds) == 0:
            raise TrainingError(f"training data {cfg.data} holds no images")
        self.class_names = tuple(class_names) if class_names else tuple(ds.class_names)
        samples = list(ds.samples)
        if cfg.max_train_images:
            samples = samples[: cfg.max_train_images]
        if cfg.val == "train":
            train_s, val_s, vds = samples, samples, ds
        elif cfg.val:
            vds = _load(cfg.val, cfg.names)
            train_s, val_s = samples, list(vds.samples)
        else:
            rng = np.random.Generator(np.random.PCG64([cfg.seed, 3]))
            perm = rng.permutation(len(samples))
            k = max(1, round(len(samples) * cfg.val_fraction)) if len(samples) > 1 else 0
            val_idx = set(perm[:k].tolist())
            train_s = [s for i, s in enumerate(samples) if i not in val_idx] or samples
            val_s = [s for i, s in enumerate(samples) if i in val_idx] or samples
            vds = ds
        self.train = TrainSet(ds, train_s, cfg.imgsz, self.class_names)
        self.val_ds, self.val_samples = vds, val_s
        if self.train.unmapped:
            self.log(
                f"note: dataset classes not in the model's class list are ignored: {self.train.unmapped}"
            )

    def _setup(self) -> None:
        cfg = self.cfg
        ck = None
        last = self.out / "last.pt"
        if cfg.resume:
            if not last.is_file():
                raise TrainingError(
                    f"--resume: no checkpoint at {last}; start without --resume or point --out at the run"
                )
            ck = load_checkpoint(last)
            saved = TrainConfig.from_dict(ck["train_config"])
            # keep the run's settings; a resumed run may only extend epochs or change device/threads
            self.cfg = cfg = replace(
                saved, resume=True, device=cfg.device, threads=cfg.threads, workers=cfg.workers,
                epochs=max(cfg.epochs, saved.epochs),
                progress=cfg.progress,
            )  # fmt: skip
        init = None
        if cfg.from_ckpt and ck is None:
            init = load_checkpoint(cfg.from_ckpt)
        class_names = tuple(ck["model_cfg"]["class_names"]) if ck is not None else None
        self._datasets(class_names)
        nc = len(self.class_names)
        if ck is not None:
            mcfg = ModelConfig.from_dict(ck["model_cfg"])
        elif init is not None:
            icfg = ModelConfig.from_dict(init["model_cfg"])
            mcfg = replace(icfg, num_classes=nc, class_names=self.class_names)
        else:
            mcfg = ModelConfig(nc, cfg.model, cfg.p2, cfg.activation, cfg.reg_max, self.class_names)
        torch.manual_seed(cfg.seed)
        arch = (ck or init or {}).get("architecture")
        if arch is not None:
            # a pruned model: fine-tune it as it is (no new head, no transfer to other classes)
            if tuple(arch.cfg.class_names or ()) != tuple(self.class_names):
                raise InvalidInputError(
                    f"the pruned model's classes {list(arch.cfg.class_names or ())} differ from "
                    f"the dataset's {list(self.class_names)}; fine-tune it on the same classes"
                )
            model = build_model({"architecture": arch})
            mcfg = model.cfg
            if ck is None and init is not None:
                model.load_state_dict(init.get("ema") or init["model"])
                self.log(f"fine-tuning the pruned model from {cfg.from_ckpt}")
            init = None
        else:
            model = EdgeDet(mcfg)
            model.head.init_bias(cfg.imgsz)
        self._architecture = arch
        if init is not None:
            sd = init.get("ema") or init["model"]
            copied, skipped = transfer_weights(model, sd)
            self.log(
                f"transfer from {cfg.from_ckpt}: {copied} tensors loaded, {len(skipped)} re-initialised ({', '.join(skipped[:4])}{'...' if len(skipped) > 4 else ''})"
            )
        model.to(self.device)
        self.model = model
        self.ema = ModelEMA(model, cfg.ema_decay, cfg.ema_tau)
        if cfg.optimizer == "adamw":
            self.opt: torch.optim.Optimizer = torch.optim.AdamW(
                param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.momentum, 0.999)
            )
        else:
            self.opt = torch.optim.SGD(
                param_groups(model, cfg.weight_decay),
                lr=cfg.lr,
                momentum=cfg.momentum,
                nesterov=True,
            )
        self.repeat = None
        if cfg.rare_classes:
            unknown = sorted(set(cfg.rare_classes) - set(self.class_names))
            if unknown:
                raise InvalidInputError(
                    f"--rare-classes names {unknown} not in the class list {list(self.class_names)}"
                )
            rare = np.array([self.class_names.index(n) for n in cfg.rare_classes])
            has = np.array([np.isin(c, rare).any() for c in self.train.cls])
            self.repeat = np.where(has, cfg.rare_repeat, 1.0)
        nb = self.batches_per_epoch()
        total = max(1, cfg.epochs * nb // cfg.accumulate)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(total, min(cfg.warmup_steps, total // 2 + 1), cfg.lrf)
        )
        self.use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        cw = None
        if cfg.class_weights:
            unknown = sorted(set(cfg.class_weights) - set(self.class_names))
            if unknown:
                raise InvalidInputError(
                    f"--class-weights names {unknown} not in the class list {list(self.class_names)}"
                )
            cw = torch.tensor([float(cfg.class_weights.get(n, 1.0)) for n in self.class_names])
        self.loss_fn = DetectionLoss(
            nc,
            mcfg.strides,
            mcfg.reg_max,
            cls_loss=cfg.cls_loss,
            box_loss=cfg.box_loss,
            class_weights=cw,
        )
        patches = []
        if cfg.rare_classes and cfg.augment.copy_paste > 0:
            patches = self._rare_patches()
        self.aug = Augmenter(self.train.load, len(self.train), cfg.imgsz, cfg.augment, patches)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_fitness, self.best_epoch = -1.0, -1
        self.history: list[dict[str, float]] = []
        if ck is not None:
            self._restore(ck)
        if self.world > 1:
            self.ddp: nn.Module = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.local_rank] if self.device.type == "cuda" else None
            )
        else:
            self.ddp = model

    def _rare_patches(self, limit: int = 200) -> list[tuple[np.ndarray, int]]:
        rare = {self.class_names.index(n) for n in self.cfg.rare_classes}
        out: list[tuple[np.ndarray, int]] = []
        for i in range(len(self.train)):
            if not any(int(c) in rare for c in self.train.cls[i]):
                continue
            img, boxes, cls = self.train.load(i)
            for b, c in zip(boxes.astype(int), cls):
                if int(c) in rare and b[2] - b[0] >= 4 and b[3] - b[1] >= 4:
                    out.append((img[b[1] : b[3], b[0] : b[2]].copy(), int(c)))
            if len(out) >= limit:
                break
        return out

    def batches_per_epoch(self) -> int:
        n = len(self.train) if self.repeat is None else round(float(self.repeat.sum()))
        per_rank = n // self.world if self.world > 1 else n
        return max(1, -(-per_rank // self.cfg.batch))

    def _state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model_cfg": self.model.cfg.to_dict(),
            "model": self.model.state_dict(),
            # pruned models: the module skeleton, since model_cfg no longer builds it
            "architecture": self._architecture,
            "ema": self.ema.ema.state_dict(),
            "ema_updates": self.ema.updates,
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "history": self.history,
            "train_config": self.cfg.to_dict(),
            "meta": sample_meta(self.class_names, self.cfg.imgsz, self.model.strides).to_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def _restore(self, ck: dict[str, Any]) -> None:
        self.model.load_state_dict(ck["model"])
        self.ema.ema.load_state_dict(ck["ema"])
        self.ema.updates = int(ck["ema_updates"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.epoch, self.step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        self.global_step = int(ck["global_step"])
        self.best_fitness, self.best_epoch = float(ck["best_fitness"]), int(ck["best_epoch"])
        self.history = list(ck["history"])
        rng = ck["rng"]
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.log(
            f"resumed {self.out / 'last.pt'} at epoch {self.epoch + 1} step {self.step_in_epoch}"
        )

    def save(self, name: str = "last.pt") -> None:
        if self.rank == 0:
            save_checkpoint(self.out / name, self._state())

    # -- loop --------------------------------------------------------------------------------------

    def _loader(self, epoch: int, start_batch: int) -> Any:
        cfg = self.cfg
        order = epoch_order(len(self.train), cfg.seed, epoch, self.repeat)
        if self.world > 1:  # every rank must run the same number of steps
            order = order[: len(order) // self.world * self.world][self.rank :: self.world]
        mosaic_on = epoch < cfg.epochs - cfg.close_mosaic
        data = _EpochData(self.aug, order, cfg.seed, epoch, mosaic_on)
        positions = list(range(start_batch * cfg.batch, len(order)))
        sub = torch.utils.data.Subset(data, positions)
        return torch.utils.data.DataLoader(
            sub, batch_size=cfg.batch, shuffle=False, num_workers=cfg.workers, collate_fn=collate,
            persistent_workers=False,
        )  # fmt: skip

    def _batch_size_for(self, epoch: int, step: int) -> int:
        cfg = self.cfg
        if cfg.multi_scale <= 0:
            return cfg.imgsz
        rng = np.random.Generator(np.random.PCG64([cfg.seed, epoch, step, 13]))
        lo = int(cfg.imgsz * (1 - cfg.multi_scale)) // 32 * 32
        hi = int(cfg.imgsz * (1 + cfg.multi_scale)) // 32 * 32
        return int(rng.integers(max(lo, 64) // 32, hi // 32 + 1)) * 32

    def train_step(self, batch: dict[str, torch.Tensor], epoch: int, step: int) -> dict[str, float]:
        cfg = self.cfg
        imgs = batch["images"].to(self.device, non_blocking=True).float() / 255.0
        boxes = batch["boxes"].to(self.device)
        size = self._batch_size_for(epoch, step)
        if size != imgs.shape[-1]:
            f = size / imgs.shape[-1]
            imgs = nn.functional.interpolate(
                imgs, size=(size, size), mode="bilinear", align_corners=False
            )
            boxes = boxes * f
        with torch.autocast(self.device.type, enabled=self.use_amp):
            levels = self.ddp(imgs)
        loss, parts = self.loss_fn(
            levels, batch["labels"].to(self.device), boxes, batch["mask"].to(self.device)
        )
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {float(loss)} at epoch {epoch + 1} step {step}; lower --lr or check the labels"
            )
        self.scaler.scale(loss / cfg.accumulate).backward()
        if (step + 1) % cfg.accumulate == 0:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
            self.sched.step()
            self.ema.update(self.model)
            self.global_step += 1
        return parts

    def evaluate(self) -> dict[str, float]:
        if not self.val_samples:
            return {"map50_95": float("nan"), "map50": float("nan")}
        ema_model: EdgeDet = self.ema.ema  # type: ignore[assignment]
        return evaluate_model(
            ema_model, self.val_ds, self.val_samples, self.cfg.imgsz, self.class_names,
            protocol=eval_protocol(self.cfg), device=str(self.device),
        )  # fmt: skip

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or until ``stop_after_steps`` batches ran in this call, for tests)."""
        self._setup()
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            # With the validation protocol resolved (from_dict ignores the extra key).
            record = {**self.cfg.to_dict(), "eval_protocol": eval_protocol(cfg).to_dict()}
            (self.out / "train_config.json").write_text(json.dumps(record, indent=2))
        nb = self.batches_per_epoch()
        self.log(
            f"training EdgeDet-{self.model.cfg.size}{'-p2' if self.model.cfg.p2 else ''} "
            f"({sum(p.numel() for p in self.model.parameters()) / 1e6:.2f}M params) on {len(self.train)} images, "
            f"validating on {len(self.val_samples)}, {len(self.class_names)} classes, imgsz {cfg.imgsz}, "
            f"batch {cfg.batch}x{cfg.accumulate}x{self.world}, {cfg.epochs} epochs, device {self.device}; "
            f"mAP protocol: {eval_protocol(cfg).describe()}"
        )
        ran = 0
        stopped = False
        for epoch in range(self.epoch, cfg.epochs):
            self.epoch = epoch
            self.model.train()
            t0 = time.time()
            sums = {"box": 0.0, "cls": 0.0, "dfl": 0.0}
            seen = 0
            start = self.step_in_epoch
            show = cfg.progress if cfg.progress is not None else sys.stdout.isatty()
            for step, batch in enumerate(self._loader(epoch, start), start=start):
                parts = self.train_step(batch, epoch, step)
                for k in sums:
                    sums[k] += parts[k]
                seen += 1
                self.step_in_epoch = step + 1
                ran += 1
                if (
                    (step + 1) % cfg.accumulate == 0
                    and cfg.save_every
                    and self.global_step % cfg.save_every == 0
                ):
                    self.save("last.pt")
                if self.rank == 0 and (show or (step + 1) % max(1, nb // 10) == 0):
                    ips = seen * cfg.batch * self.world / max(time.time() - t0, 1e-9)
                    msg = (
                        f"epoch {epoch + 1}/{cfg.epochs} {step + 1}/{nb} box {sums['box'] / seen:.3f} "
                        f"cls {sums['cls'] / seen:.3f} dfl {sums['dfl'] / seen:.3f} {ips:.1f} img/s"
                    )
                    if show:
                        sys.stdout.write("\r" + msg)
                        sys.stdout.flush()
                    else:
                        self.log(msg)
                if stop_after_steps is not None and ran >= stop_after_steps:
                    stopped = True
                    break
            if show and self.rank == 0:
                sys.stdout.write("\n")
            if stopped:
                if (self.step_in_epoch % cfg.accumulate) == 0:
                    self.save("last.pt")
                return {"stopped": True, "epoch": epoch, "step": self.step_in_epoch}
            train_time = time.time() - t0
            self.step_in_epoch = 0
            self.epoch = epoch + 1
            row: dict[str, float] = {
                "epoch": epoch + 1,
                "box": sums["box"] / max(seen, 1),
                "cls": sums["cls"] / max(seen, 1),
                "dfl": sums["dfl"] / max(seen, 1),
                "lr": float(self.opt.param_groups[0]["lr"]),
                "train_s": train_time,
                "img_per_s": seen * cfg.batch * self.world / max(train_time, 1e-9),
            }
            if self.rank == 0 and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                te = time.time()
                row.update(self.evaluate())
                row["eval_s"] = time.time() - te
                fit = 0.1 * row["map50"] + 0.9 * row["map50_95"]
                if fit > self.best_fitness:
                    self.best_fitness, self.best_epoch = fit, epoch + 1
                    self.history.append(row)
                    self.save("best.pt")
                else:
                    self.history.append(row)
            else:
                self.history.append(row)
            self.save("last.pt")
            if self.rank == 0:
                self._write_curves()
                m = (
                    f"mAP50 {row['map50']:.3f} mAP50-95 {row['map50_95']:.3f}"
                    if "map50" in row
                    else "no eval"
                )
                self.log(
                    f"epoch {epoch + 1}/{cfg.epochs}: loss box {row['box']:.3f} cls {row['cls']:.3f} "
                    f"dfl {row['dfl']:.3f} | {m} | {row['img_per_s']:.1f} img/s, {train_time:.0f}s"
                    f"{' *best*' if self.best_epoch == epoch + 1 else ''}"
                )
            stop = bool(
                cfg.patience
                and self.best_epoch >= 0
                and epoch + 1 - self.best_epoch >= cfg.patience
            )
            if self.world > 1:  # rank 0 evaluates; every rank follows its decision
                import torch.distributed as dist

                flag = torch.tensor([1 if stop else 0], device=self.device)
                dist.broadcast(flag, 0)
                stop = bool(flag.item())
            if stop:
                self.log(
                    f"early stop: no improvement for {cfg.patience} epochs (best epoch {self.best_epoch})"
                )
                break
        return {
            "stopped": False,
            "best_fitness": self.best_fitness,
            "best_epoch": self.best_epoch,
            "history": self.history,
        }

    def _write_curves(self) -> None:
        keys = sorted({k for r in self.history for k in r}, key=lambda k: (k != "epoch", k))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        for r in self.history:
            w.writerow(r)
        atomic_write_bytes(self.out / "results.csv", buf.getvalue().encode())
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return
        ep = [r["epoch"] for r in self.history]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
        for k in ("box", "cls", "dfl"):
            axes[0].plot(ep, [r[k] for r in self.history], label=k)
        axes[0].set_title("train loss")
        axes[0].legend()
        for k in ("map50", "map50_95"):
            pts = [(r["epoch"], r[k]) for r in self.history if k in r]
            if pts:
                axes[1].plot(*zip(*pts), marker=".", label=k)
        axes[1].set_title("validation mAP")
        axes[1].legend()
        axes[2].plot(ep, [r["lr"] for r in self.history])
        axes[2].set_title("learning rate")
        for a in axes:
            a.set_xlabel("epoch")
        fig.tight_layout()
        buf2 = io.BytesIO()
        fig.savefig(buf2, format="png", dpi=90)
        plt.close(fig)
        atomic_write_bytes(self.out / "results.png", buf2.getvalue())


def train(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a training; returns a summary (best fitness / epoch, history)."""
    return Trainer(cfg, log).fit()
