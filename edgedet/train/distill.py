"""Label-free distillation: a student (pruned, or fake-quantized) learns to reproduce the raw head
outputs of its unpruned float teacher on unlabelled images.

Inputs are built with the deployment preprocessing (`edgedet.preprocess.Preprocessor` and the
model's `ModelMeta`), so the student learns on exactly what it will see. No labels: any image
folder works.

The loss, per head layout (`ADAPTERS`):

- scores: binary cross-entropy of the student's scores against the teacher's sigmoid scores
  (soft targets), per cell, weighted by ``floor + teacher confidence`` so cells where the teacher
  sees an object weigh most while background cells still teach the student to stay quiet;
- boxes: L1 between student and teacher box regressions on cells where the teacher is confident
  (``confidence > box_conf``), weighted by that confidence. Box regressions are the head's own
  units: expected DFL distances in strides for EdgeDet / NanoDet, raw (dx, dy, log w, log h)
  for YOLOX.

Layouts: ``edgedet`` (`EdgeDet.forward`'s per-level (box, cls) logits), ``yolox`` (YOLOX's
``[B, N, 4 + 1 + nc]`` with objectness and class probabilities, as converted from ONNX),
``raw`` (any model: mean squared error on every output tensor).

Checkpoints (`Distiller.save`) hold the whole student module (a pruned model has no config that
rebuilds it), the optimizer and scheduler, epoch, step and RNG states, and are written atomically
with `edgedet.fileio.atomic_write_bytes`; the per-epoch order and augmentation come from
``(seed, epoch, position)`` (`augment.epoch_order` / `augment.sample_rng`, shared with the
trainer), so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgedet.errors import DatasetError, InvalidInputError, TrainingError
from edgedet.fileio import atomic_write_bytes

from .augment import epoch_order, mosaic_unlabelled, random_zoom, sample_rng

ADAPTERS = ("edgedet", "yolox", "raw")
LR_SCALES = ("absolute", "relative")
AUGMENTS = ("flip", "strong")


@dataclass
class DistillConfig:
    epochs: int = 10
    batch: int = 8
    lr: float = 5e-4
    weight_decay: float = 1e-5
    warmup_steps: int = 20
    seed: int = 0
    score_weight: float = 1.0
    box_weight: float = 1.0
    box_conf: float = 0.3
    conf_floor: float = 0.05
    flip: bool = True
    save_every: int = 50
    freeze_bn: bool = True
    # "absolute": one lr for every tensor (AdamW moves each weight by about lr per step);
    # "relative": each tensor's lr is lr x its RMS at the start, so every layer changes by the
    # same fraction per step. Why: batch-norm-folded exports (YOLOX-nano) have weights spanning
    # orders of magnitude; an absolute 5e-4 rewrites the small ones (mAP 0.24 -> 0.005).
    lr_scale: str = "absolute"
    # "flip": horizontal flips only; "strong": also random zoom in/out and 2x2 mosaics. The
    # teacher labels whatever the student sees, so any geometry is valid, and a small image
    # set (coco128) goes further.
    augment: str = "flip"
    mosaic: float = 0.5

    def validate(self) -> None:
        for name in ("epochs", "batch"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InvalidInputError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.box_conf < 1:
            raise InvalidInputError(f"box_conf must be in [0, 1), got {self.box_conf}")
        if self.lr_scale not in LR_SCALES:
            raise InvalidInputError(f"lr_scale must be one of {LR_SCALES}, got {self.lr_scale!r}")
        if self.augment not in AUGMENTS:
            raise InvalidInputError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if not 0 <= self.mosaic <= 1:
            raise InvalidInputError(f"mosaic must be a probability in [0, 1], got {self.mosaic}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    """Image files in ``folder`` (recursively), sorted; `DatasetError` when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"image folder {root} not found (expected a directory of images)")
    from edgedet.data.images import IMAGE_SUFFIXES, find_images

    files = find_images(root)
    if not files:
        raise DatasetError(
            f"no images in {root} (looked for {', '.join(IMAGE_SUFFIXES)}); point --images at a "
            "folder of unlabelled images"
        )
    return files[:limit] if limit else files


# -- head layouts -----------------------------------------------------------------------------------


def _edgedet_parts(out: Any, reg_max: int) -> dict[str, torch.Tensor]:
    from .models.net import dfl_expectation, flatten_outputs

    box, cls = flatten_outputs(out)
    return {"cls_logits": cls.float(), "box": dfl_expectation(box.float(), reg_max)}


def _yolox_parts(out: Any) -> dict[str, torch.Tensor]:
    t = out[0] if isinstance(out, (tuple, list)) else out
    t = t.float()
    return {"box": t[..., :4], "obj": t[..., 4], "cls": t[..., 5:]}


def _bce_prob(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(target * torch.log(p) + (1 - target) * torch.log1p(-p))


def distill_loss(
    student_out: Any,
    teacher_out: Any,
    adapter: str,
    cfg: DistillConfig,
    *,
    reg_max: int = 16,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss between raw head outputs; returns (loss, parts for logging)."""
    if adapter == "raw":
        from .channels import flatten_tensors

        pairs = zip(flatten_tensors(student_out), flatten_tensors(teacher_out))
        loss = torch.stack([F.mse_loss(a.float(), b.float()) for a, b in pairs]).sum()
        return loss, {"mse": float(loss.detach())}
    if adapter == "edgedet":
        s = _edgedet_parts(student_out, reg_max)
        t = _edgedet_parts(teacher_out, reg_max)
        t_scores = t["cls_logits"].sigmoid()
        conf = t_scores.amax(-1)  # [B, N]
        score_cell = F.binary_cross_entropy_with_logits(
            s["cls_logits"], t_scores, reduction="none"
        ).sum(-1)
    elif adapter == "yolox":
        s, t = _yolox_parts(student_out), _yolox_parts(teacher_out)
        conf = t["obj"] * t["cls"].amax(-1)
        # objectness everywhere, class scores where the teacher sees an object
        score_cell = _bce_prob(s["obj"], t["obj"]) + t["obj"] * _bce_prob(s["cls"], t["cls"]).sum(
            -1
        )
    else:
        raise InvalidInputError(f"head layout must be one of {ADAPTERS}, got {adapter!r}")
    w = conf + cfg.conf_floor
    score = (w * score_cell).sum() / w.sum()
    mask = (conf > cfg.box_conf).float() * conf
    if float(mask.sum()) > 0:
        box = (mask.unsqueeze(-1) * (s["box"] - t["box"]).abs()).sum() / (4 * mask.sum())
    else:
        box = s["box"].sum() * 0.0
    loss = cfg.score_weight * score + cfg.box_weight * box
    return loss, {"score": float(score.detach()), "box": float(box.detach())}


def adapter_for(model: nn.Module, family: str | None = None) -> str:
    """The head layout of ``model``: EdgeDet by type, else the ONNX family, else ``raw``."""
    from .models.net import EdgeDet

    if isinstance(model, EdgeDet):
        return "edgedet"
    if family in ("yolox",):
        return "yolox"
    return "raw"


# -- the loop ---------------------------------------------------------------------------------------


class Distiller:
    """Distil ``teacher`` into ``student`` on ``images`` preprocessed by ``pre``.

    ``student`` is trained in place. ``checkpoint``: where `save` writes (atomically); with
    ``resume=True`` an existing checkpoint is loaded first (its student module replaces the one
    passed).
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        images: Sequence[str | Path],
        pre: Any,
        cfg: DistillConfig,
        *,
        adapter: str = "raw",
        reg_max: int = 16,
        checkpoint: str | Path | None = None,
        resume: bool = False,
        log: Callable[[str], None] | None = None,
        trainable: Callable[[nn.Module], list[nn.Parameter]] | None = None,
        pack: Callable[[nn.Module], Any] | None = None,
        unpack: Callable[[Any], nn.Module] | None = None,
    ):
        cfg.validate()
        if adapter not in ADAPTERS:
            raise InvalidInputError(f"head layout must be one of {ADAPTERS}, got {adapter!r}")
        if not images:
            raise DatasetError("no images to distil on")
        self.cfg, self.adapter, self.reg_max = cfg, adapter, reg_max
        self.images = [Path(p) for p in images]
        self.pre = pre
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.log = log or (lambda s: print(s, flush=True))
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict[str, float]] = []
        self._trainable = trainable
        # how the student goes into a checkpoint: the whole module by default (a pruned model
        # has no config that rebuilds it); QAT passes NNCF's config + state dict instead
        self._pack = pack or (lambda m: m)
        self._unpack = unpack or (lambda obj: obj)
        self.student = student
        ck = None
        if resume:
            if self.checkpoint is None or not self.checkpoint.is_file():
                raise TrainingError(
                    f"--resume: no checkpoint at {self.checkpoint}; run once without --resume"
                )
            ck = self._read(self.checkpoint)
            self.student = self._unpack(ck["student"])
        self.optimizer, self.scheduler = self._make_optimizer()
        if ck is not None:
            self._restore(ck)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.images) / self.cfg.batch)

    def _make_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        params = (
            self._trainable(self.student)
            if self._trainable
            else [p for p in self.student.parameters() if p.requires_grad]
        )
        groups: list[dict[str, Any]]
        if self.cfg.lr_scale == "relative":
            # one group per tensor, lr proportional to the tensor's RMS (fixed at the start so a
            # resumed run rebuilds the same groups from the checkpointed optimizer state)
            groups = [
                {
                    "params": [p],
                    "lr": self.cfg.lr * max(float(p.detach().float().pow(2).mean().sqrt()), 1e-8),
                    "weight_decay": self.cfg.weight_decay if p.ndim > 1 else 0.0,
                }
                for p in params
            ]
        else:
            groups = [
                {"params": [p for p in params if p.ndim > 1],
                 "weight_decay": self.cfg.weight_decay},
                {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
            ]  # fmt: skip
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr)
        total = max(1, self.cfg.epochs * self.batches_per_epoch)
        warm = min(self.cfg.warmup_steps, total // 4)

        def f(step: int) -> float:
            if step < warm:
                return (step + 1) / (warm + 1)
            return 0.05 + 0.95 * 0.5 * (
                1 + math.cos(math.pi * (step - warm) / max(1, total - warm))
            )

        return opt, torch.optim.lr_scheduler.LambdaLR(opt, f)

    # -- checkpoints
    def state(self) -> dict[str, Any]:
        return {
            "kind": "edgedet.distill",
            "student": self._pack(self.student),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "history": self.history,
            "config": self.cfg.to_dict(),
            "adapter": self.adapter,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": np.random.get_state(),
                "python": random.getstate(),
            },
        }

    def save(self, path: str | Path | None = None) -> Path:
        target = Path(path) if path else self.checkpoint
        if target is None:
            raise TrainingError("no checkpoint path given")
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write_bytes(target, buf.getvalue())
        return target

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        from .safe_load import load_torch_file

        # weights_only, edgedet's own classes only: no code in the file runs
        ck = load_torch_file(path, TrainingError, "distillation checkpoint")
        if not isinstance(ck, dict) or ck.get("kind") != "edgedet.distill":
            raise TrainingError(f"{path} is not an edgedet distillation checkpoint")
        return ck

    def _restore(self, ck: dict[str, Any]) -> None:
        saved = DistillConfig(**ck["config"])
        if saved != self.cfg:
            diff = {
                k: (v, getattr(self.cfg, k)) for k, v in asdict(saved).items()
                if getattr(self.cfg, k) != v
            }  # fmt: skip
            raise TrainingError(
                f"--resume with different settings than the checkpoint (saved, now): {diff}; "
                "resume with the same settings or start a new run"
            )
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.epoch, self.step_in_epoch = int(ck["epoch"]), int(ck["step_in_epoch"])
        self.global_step = int(ck["global_step"])
        self.history = list(ck.get("history", []))
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])

    # -- data
    def batch(self, epoch: int, index: int) -> torch.Tensor:
        order = epoch_order(len(self.images), self.cfg.seed, epoch)
        idx = order[index * self.cfg.batch : (index + 1) * self.cfg.batch]
        imgs = []
        for pos, i in enumerate(idx):
            rng = sample_rng(self.cfg.seed, epoch, index * self.cfg.batch + pos)
            img = self._image(int(i))
            if self.cfg.augment == "strong":
                if rng.random() < self.cfg.mosaic:
                    others = rng.integers(0, len(self.images), size=3)
                    img = mosaic_unlabelled([img] + [self._image(int(j)) for j in others], rng)
                else:
                    img = random_zoom(img, rng)
            if self.cfg.flip and rng.random() < 0.5:
                img = img[:, ::-1].copy()
            imgs.append(img)
        x, _ = self.pre(imgs)
        return torch.from_numpy(x)

    def _image(self, i: int) -> np.ndarray:
        img = cv2.imread(str(self.images[i]), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"cannot read image {self.images[i]}")
        return img

    # -- training
    def train_step(self, x: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            t_out = self.teacher(x)
        self.student.train()
        if self.cfg.freeze_bn:  # small batches: keep running statistics, train the affine part
            for m in self.student.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        s_out = self.student(x)
        loss, parts = distill_loss(s_out, t_out, self.adapter, self.cfg, reg_max=self.reg_max)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"distillation loss is {float(loss)} at step {self.global_step}; lower --lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], 10.0
        )
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": float(loss.detach()), **parts}

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.epochs``; ``stop_after_steps`` simulates an interruption (tests).
        A progress bar per epoch on stderr (`edgedet.progress`)."""
        from rich.console import Console

        from edgedet.progress import progress_tasks

        with progress_tasks(Console(stderr=True)) as task:
            return self._fit(task, stop_after_steps)

    def _fit(self, task: Any, stop_after_steps: int | None) -> dict[str, Any]:
        steps_done = 0
        nb = self.batches_per_epoch
        while self.epoch < self.cfg.epochs:
            bar = task(f"distill {self.epoch + 1}/{self.cfg.epochs}")
            sums: dict[str, float] = {}
            counted = 0
            t0 = time.time()
            while self.step_in_epoch < nb:
                if stop_after_steps is not None and steps_done >= stop_after_steps:
                    return {"history": self.history, "interrupted": True}
                parts = self.train_step(self.batch(self.epoch, self.step_in_epoch))
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                counted += 1
                self.step_in_epoch += 1
                self.global_step += 1
                steps_done += 1
                bar(self.step_in_epoch, nb, f"loss {parts['loss']:.4f}")
                if self.checkpoint and self.global_step % self.cfg.save_every == 0:
                    self.save()
            n = max(1, counted)
            summary = {"epoch": self.epoch + 1, **{k: v / n for k, v in sums.items()}}
            summary["seconds"] = time.time() - t0
            self.history.append(summary)
            self.log(
                f"epoch {self.epoch + 1}/{self.cfg.epochs}: "
                + ", ".join(f"{k} {v:.4f}" for k, v in summary.items() if k not in ("epoch",))
                + f", lr {self.scheduler.get_last_lr()[0]:.2e}"
            )
            self.epoch += 1
            self.step_in_epoch = 0
            if self.checkpoint:
                self.save()
        self.student.eval()
        return {"history": self.history, "interrupted": False}
