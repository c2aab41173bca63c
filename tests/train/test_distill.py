"""Label-free distillation: loss behaviour per head layout, a pruned EdgeDet learning from its
teacher, and resume-after-interruption ending with the same weights as an uninterrupted run."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgedet.errors import DatasetError, InvalidInputError, TrainingError
from edgedet.preprocess import Preprocessor
from edgedet.train.augment import mosaic_unlabelled as mosaic
from edgedet.train.augment import random_zoom
from edgedet.train.distill import DistillConfig, Distiller, distill_loss, list_images
from edgedet.train.models.net import EdgeDet, build_model
from edgedet.train.prune import PruneConfig, prune
from edgedet.train.trainer import sample_meta

SIZE = 64


@pytest.fixture
def images(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = np.full((48 + 8 * i, 80, 3), 40, np.uint8)
        x0, y0 = int(rng.integers(0, 40)), int(rng.integers(0, 20))
        cv2.rectangle(img, (x0, y0), (x0 + 30, y0 + 20), (0, 200, 255), -1)
        cv2.imwrite(str(d / f"{i}.png"), img)
    (d / "notes.txt").write_text("not an image")
    return d


def _pair() -> tuple[EdgeDet, EdgeDet]:
    torch.manual_seed(0)
    teacher = build_model(2, "n")
    for m in teacher.modules():  # trained-like BN: real statistics, varied scales
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.3, 1.0)
            m.momentum = None  # cumulative average over the calibration pass
    with torch.no_grad():
        teacher.train()(torch.rand(4, 3, SIZE, SIZE))
    teacher.eval()
    student = copy.deepcopy(teacher)
    prune(student, torch.rand(1, 3, SIZE, SIZE), PruneConfig(target=0.6))
    return teacher, student


def _distiller(
    images: Path, ckpt: Path | None, resume: bool = False, **options: object
) -> Distiller:
    teacher, student = _pair()
    pre = Preprocessor(sample_meta(["a", "b"], SIZE, teacher.strides), (SIZE, SIZE))
    cfg = DistillConfig(epochs=2, batch=2, lr=1e-3, warmup_steps=1, save_every=1, **options)  # type: ignore[arg-type]
    return Distiller(
        student, teacher, list_images(images), pre, cfg,
        adapter="edgedet", checkpoint=ckpt, resume=resume, log=lambda s: None,
    )  # fmt: skip


STRONG = {"lr_scale": "relative", "augment": "strong", "mosaic": 0.5}


@pytest.mark.parametrize("options", [{}, STRONG], ids=["default", "relative-lr+strong-aug"])
def test_resume_equals_uninterrupted(
    images: Path, tmp_path: Path, options: dict[str, object]
) -> None:
    full = _distiller(images, tmp_path / "full.pt", **options)
    full.fit()
    part = _distiller(images, tmp_path / "part.pt", **options)
    assert part.fit(stop_after_steps=4)["interrupted"]  # mid-epoch 2 (3 batches per epoch)
    resumed = _distiller(images, tmp_path / "part.pt", resume=True, **options)
    assert resumed.global_step == 4 and resumed.epoch == 1
    resumed.fit()
    a, b = full.student.state_dict(), resumed.student.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(full.history) == 2 and "score" in full.history[0]


def test_distillation_reduces_the_gap(images: Path) -> None:
    d = _distiller(images, None)
    x = d.batch(0, 0)
    d.student.eval()
    with torch.no_grad():
        before = distill_loss(d.student(x), d.teacher(x), "edgedet", d.cfg)[0]
    d.cfg.epochs = 4
    d.optimizer, d.scheduler = d._make_optimizer()
    d.fit()
    with torch.no_grad():
        after = distill_loss(d.student(x), d.teacher(x), "edgedet", d.cfg)[0]
    assert float(after) < float(before)


def test_relative_lr_follows_each_tensor_scale(images: Path) -> None:
    d = _distiller(images, None, lr_scale="relative")
    params = [p for p in d.student.parameters() if p.requires_grad]
    assert len(d.optimizer.param_groups) == len(params)
    for group in d.optimizer.param_groups:
        (p,) = group["params"]
        rms = float(p.detach().pow(2).mean().sqrt())
        assert group["initial_lr"] == pytest.approx(1e-3 * max(rms, 1e-8), rel=1e-6)
        assert group["weight_decay"] == (d.cfg.weight_decay if p.ndim > 1 else 0.0)
    with pytest.raises(InvalidInputError, match="lr_scale must be one of"):
        DistillConfig(lr_scale="adaptive").validate()
    with pytest.raises(InvalidInputError, match="augment must be one of"):
        DistillConfig(augment="heavy").validate()


def test_strong_augmentation_is_seeded_and_keeps_the_image_format(images: Path) -> None:
    img = np.zeros((60, 90, 3), np.uint8)
    img[10:30, 20:50] = 255
    sizes = set()
    for seed in range(20):
        out = random_zoom(img, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        sizes.add(out.shape[:2])
        if out.shape[0] > 60:  # zoomed out: the whole image is on the canvas, the rest is grey
            assert int((out == 255).all(-1).sum()) == 20 * 30
            assert int((out == 114).all(-1).sum()) == out.shape[0] * out.shape[1] - 60 * 90
    assert len(sizes) > 10  # crops and canvases of many sizes
    quads = [np.full((40, 50, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    m = mosaic(quads, np.random.default_rng(1), side=128)
    assert m.shape == (128, 128, 3)
    assert {int(v) for v in np.unique(m)} == {10, 20, 30, 40}
    assert int(m[0, 0, 0]) == 10 and int(m[-1, -1, 0]) == 40
    a = _distiller(images, None, **STRONG)
    b = _distiller(images, None, **STRONG)
    assert torch.equal(a.batch(1, 0), b.batch(1, 0))  # (seed, epoch, position) decides
    assert not torch.equal(a.batch(0, 0), a.batch(1, 0))


def test_yolox_layout_loss() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.randn(2, 50, 4, generator=g), torch.rand(2, 50, 81, generator=g)], 2)
    t[:, :5, 4] = 0.95  # a few confident cells
    t[:, :5, 5] = 0.9
    cfg = DistillConfig()
    same = t.clone().requires_grad_(True)
    loss_same, parts = distill_loss(same, t, "yolox", cfg)
    assert parts["box"] == 0.0
    loss_same.backward()
    assert same.grad is not None and float(same.grad.abs().max()) < 1e-4  # minimum at teacher
    moved = t.clone()
    moved[..., :4] += 0.5
    moved[..., 4:] = moved[..., 4:] * 0.5
    loss_moved, parts = distill_loss(moved, t, "yolox", cfg)
    assert float(loss_moved) > float(loss_same.detach()) and parts["box"] == pytest.approx(0.5)
    raw, _ = distill_loss([moved], [t], "raw", cfg)
    assert float(raw) > 0


def test_user_errors(images: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no images in"):
        (tmp_path / "empty").mkdir()
        list_images(tmp_path / "empty")
    with pytest.raises(DatasetError, match="not found"):
        list_images(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="head layout must be one of"):
        distill_loss(torch.zeros(1), torch.zeros(1), "ssd", DistillConfig())
    with pytest.raises(InvalidInputError, match="epochs must be >= 1"):
        DistillConfig(epochs=0).validate()
    with pytest.raises(TrainingError, match="no checkpoint at"):
        _distiller(images, tmp_path / "none.pt", resume=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(TrainingError, match="not a readable distillation checkpoint"):
        _distiller(images, bad, resume=True)
    d = _distiller(images, tmp_path / "c.pt")
    d.save()
    d2 = _distiller(images, tmp_path / "c.pt")
    d2.cfg.lr = 0.5
    with pytest.raises(TrainingError, match="different settings"):
        Distiller(d2.student, d2.teacher, d2.images, d2.pre, d2.cfg, adapter="edgedet",
                  checkpoint=tmp_path / "c.pt", resume=True)  # fmt: skip
