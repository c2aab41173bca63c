"""Channel pruning: EdgeDet-n by about half its MACs keeps its output shapes and still exports
and runs on ONNX Runtime; importance variants; user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgedet.errors import InvalidInputError, TrainingError
from edgedet.train.channels import count_macs_params, flatten_tensors, output_layers, split_ops
from edgedet.train.export import export_module
from edgedet.train.models.net import EdgeDet, build_model
from edgedet.train.prune import PruneConfig, check_prunable, prune, prune_with_latency
from edgedet.train.report import latency_verdict, report_markdown

X = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _model() -> EdgeDet:
    torch.manual_seed(0)
    m = build_model(3, "n").eval()
    for bn in m.modules():  # trained-like BN scales (all 1 at init would tie every channel)
        if isinstance(bn, nn.BatchNorm2d):
            nn.init.uniform_(bn.weight, 0.1, 1.0)
    return m


def test_edgedet_has_no_split_and_head_is_protected() -> None:
    m = _model()
    assert split_ops(m, X) == []
    check_prunable(m, X)
    outs = output_layers(m, X)
    head = [*m.head.box_pred, *m.head.cls_pred]
    assert len(outs) == len(head) and all(any(o is h for h in head) for o in outs)


def test_prune_edgedet_half_macs_exports_and_runs(tmp_path: Path) -> None:
    m = _model()
    shapes = [t.shape for t in flatten_tensors(m(X))]
    report = prune_with_latency(m, X, PruneConfig(target=0.5, importance="l1", round_to=8), iters=3)
    assert report["reached_target"]
    assert 0.3 < report["macs_kept"] <= 0.5
    assert report["params_after"] < report["params_before"]
    assert (report["macs_after"], report["params_after"]) == count_macs_params(m, X)
    assert [t.shape for t in flatten_tensors(m(X))] == shapes
    pruned = {n: c for n, (b, c) in report["channels"].items() if c < b}
    assert pruned and all(c % 8 == 0 for c in pruned.values())  # round_to=8
    assert report["latency_after"]["p50_ms"] > 0 and "faster" in report
    # the pruned EdgeDet still exports through edgedet's exporter and runs in ORT
    from edgedet.train.export import export_onnx

    res = export_onnx(m, tmp_path / "pruned.onnx", 64)
    assert res["max_abs_diff"] < 1e-3
    assert "MACs" in report_markdown(report)


@pytest.mark.parametrize("importance", ["bnscale", "taylor", "l2", "activation"])
def test_importances_and_stages(importance: str) -> None:
    m = _model()
    seen: list[int] = []
    report = prune(
        m, X, PruneConfig(target=0.6, importance=importance, stages=2, global_pruning=False),
        recover=lambda model, stage: seen.append(stage),
    )  # fmt: skip
    assert seen == [0, 1]
    assert report["macs_kept"] <= 0.6 and len(report["stages"]) == 2
    assert report["stages"][0]["macs"] > report["stages"][1]["macs"]


class _TwoConv(nn.Module):
    """conv a (1x1, 16 ch) -> ReLU -> conv b (1x1) -> output conv c; channels 0-7 of ``a`` are
    constant (zero weights, bias 1): they carry an offset and no information."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 16, 1)
        self.b = nn.Conv2d(16, 16, 1)
        self.c = nn.Conv2d(16, 4, 1)
        with torch.no_grad():
            self.a.weight[:8] = 0.0
            self.a.bias[:8] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("compensate", [True, False])
def test_activation_importance_removes_constant_channels_and_compensation(
    compensate: bool,
) -> None:
    x = torch.randn(8, 3, 8, 8)
    m = _TwoConv().eval()
    with torch.no_grad():
        ref = m(x)
    # one step removing half of a's channels; b is ignored as a root, so only a's ranking counts
    cfg = PruneConfig(target=0.6, round_to=None, steps_per_stage=1, max_layer_ratio=0.5,
                      ignored=["b"], compensate=compensate, reconstruct=False)  # fmt: skip
    prune(m, x[:1], cfg, calibration=x)
    assert m.a.out_channels == 8 and m.b.in_channels == 8
    with torch.no_grad():
        same = torch.allclose(m(x), ref, atol=1e-5)
    # (reconstruction off: it would restore the offset too, through b's free bias)
    # the removed channels are the constant ones: with their offset folded into b's bias the
    # function is unchanged; without, the offset is lost
    assert same is compensate


def test_generic_module_export_runs(tmp_path: Path) -> None:
    m = _model()
    prune(m, X, PruneConfig(target=0.7, metric="params"))
    path = export_module(m, X, tmp_path / "g.onnx", output_names=[f"o{i}" for i in range(6)])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"images": X.numpy()})
    ref = [t.detach().numpy() for t in flatten_tensors(m(X))]
    assert max(float(np.abs(a - b).max()) for a, b in zip(outs, ref)) < 1e-3


def test_verdict_says_when_not_faster() -> None:
    assert latency_verdict(10.0, 10.1)["faster"] is False
    assert "NOT faster" in latency_verdict(10.0, 10.1)["note"]
    assert latency_verdict(10.0, 5.0)["speedup"] == pytest.approx(2.0)


class _Chunky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.a(x).chunk(2, 1)
        return torch.cat([self.b(p), q], 1)


def test_user_errors() -> None:
    with pytest.raises(InvalidInputError, match="fraction of macs kept"):
        PruneConfig(target=1.5).validate()
    with pytest.raises(InvalidInputError, match="importance must be one of"):
        PruneConfig(importance="random").validate()
    with pytest.raises(InvalidInputError, match="metric must be one of"):
        PruneConfig(metric="flops").validate()
    with pytest.raises(InvalidInputError, match="not modules of the model"):
        prune(_model(), X, PruneConfig(ignored=["nope"]))
    with pytest.raises(TrainingError, match="splits tensors"):
        check_prunable(_Chunky(), torch.rand(1, 3, 8, 8))


def _cli_ckpt(tmp_path: Path) -> Path:
    from edgedet.train.trainer import save_checkpoint

    m = _model()
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, {"model_cfg": m.cfg.to_dict(), "model": m.state_dict(),
                           "train_config": {"imgsz": 64}})  # fmt: skip
    return path


def _cli_images(tmp_path: Path) -> Path:
    import cv2

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.jpg"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8))
    return d


def _prune_cli(tmp_path: Path, name: str, *extra: str) -> tuple[Any, list[str]]:
    """The prune command's parser and argv for the tiny checkpoint and images, plus ``extra``."""
    import argparse

    from edgedet.train.compress_command import add_prune_arguments

    p = argparse.ArgumentParser()
    add_prune_arguments(p)
    argv = [str(_cli_ckpt(tmp_path)), "--images", str(_cli_images(tmp_path)), "--out",
            str(tmp_path / f"{name}.onnx"), "--latency-iters", "3", *extra]  # fmt: skip
    return p, argv


def test_prune_and_distill_commands(tmp_path: Path) -> None:
    import argparse
    import json

    from edgedet.meta import read_meta
    from edgedet.train.compress_command import (
        add_distill_arguments,
        add_prune_arguments,
        run_distill,
        run_prune,
    )

    ckpt, imgs, out = _cli_ckpt(tmp_path), _cli_images(tmp_path), tmp_path / "p.onnx"
    p = argparse.ArgumentParser()
    add_prune_arguments(p)
    argv = [str(ckpt), "--images", str(imgs), "--out", str(out), "--target-macs", "0.6",
            "--recover-epochs", "1", "--batch", "2", "--latency-iters", "3"]  # fmt: skip
    from edgedet.cli import main

    assert main(["prune", *argv]) == 0  # through the console command, as a user runs it
    report = json.loads((tmp_path / "p.report.json").read_text())
    assert report["macs_kept"] <= 0.6 and out.is_file() and report["macs_after"] > 0
    assert "MACs" in (tmp_path / "p.report.md").read_text()
    meta = read_meta(out)
    assert meta is not None and meta.options["training"]["kind"] == "prune"
    again = run_prune(p.parse_args([*argv, "--resume"]))  # all stages done: nothing re-pruned
    assert again["macs_after"] == report["macs_after"]

    d = argparse.ArgumentParser()
    add_distill_arguments(d)
    res = run_distill(d.parse_args([str(tmp_path / "p.pt"), "--teacher", str(ckpt), "--images",
                                    str(imgs), "--out", str(tmp_path / "d.onnx"), "--epochs",
                                    "1", "--batch", "2"]))  # fmt: skip
    assert len(res["history"]) == 1 and (tmp_path / "d.onnx").is_file()
    with pytest.raises(InvalidInputError, match=r"--out must end in \.onnx"):
        run_prune(p.parse_args([str(ckpt), "--images", str(imgs), "--out", "x.pt"]))


def test_prune_command_with_sensitivity_ratios_and_reconstruction(tmp_path: Path) -> None:
    import json

    from edgedet.train.compress_command import run_prune

    p, argv = _prune_cli(tmp_path, "s", "--target-macs", "0.7", "--sensitivity", "--reconstruct")
    report = run_prune(p.parse_args(argv))
    fits = report["reconstruction"][0]["layers"]  # every dense conv, refitted or left as is
    assert len(fits) > 10 and all(r["after"] <= r["before"] for r in fits)
    assert sum(r["fitted"] for r in fits) > len(fits) // 2
    assert "least-squares reconstruction" in (tmp_path / "s.report.md").read_text()
    assert report["reached_target"] and report["macs_kept"] <= 0.7
    scan = report["sensitivity"][0]  # one stage: one scan, a row per prunable group
    assert len(scan) > 5 and all(
        set(r) == {"name", "channels", "macs", "convs", "elements", "cost"} for r in scan
    )
    assert all(c >= 0 for r in scan for c in r["cost"].values())
    saved = json.loads((tmp_path / "s.report.json").read_text())
    assert saved["sensitivity"][0][0]["name"] == scan[0]["name"]
    kept = {n for n, (b, c) in report["channels"].items() if c == b}
    assert kept  # not every layer cut alike: the scan spared some


@pytest.mark.testdata
def test_evaluate_pair_on_a_real_detector(
    models_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    """The compression reports' "share of float mAP kept" with its paired interval, through the
    real file-scoring path: YOLOX-nano against a copy with one conv's weights perturbed (the
    interval's arithmetic is tested in tests/test_bootstrap.py)."""
    import onnx
    from onnx import numpy_helper

    from edgedet.train.compress import evaluate_pair
    from edgedet.train.report import map_kept_line

    yolox = models_dir / "yolox_nano_416.onnx"
    model = onnx.load(str(yolox))
    conv = next(n for n in model.graph.node if n.name == "Conv_175")
    init = next(i for i in model.graph.initializer if i.name == conv.input[1])
    w = numpy_helper.to_array(init)
    noise = np.random.default_rng(0).normal(0, 0.3 * float(w.std()), w.shape)
    init.CopyFrom(numpy_helper.from_array((w + noise).astype(w.dtype), init.name))
    worse = tmp_path / "worse.onnx"
    onnx.save(model, str(worse))
    pair = evaluate_pair(yolox, worse, str(datasets_dir / "coco_tiny_val2017"), "yolox")
    kept, before, after = pair["map_kept"], pair["eval_before"], pair["eval_after"]
    assert before["map50_95"] > 0.25 and after["map50_95"] < before["map50_95"]
    assert kept["estimate"] == pytest.approx(after["map50_95"] / before["map50_95"], abs=1e-4)
    assert kept["low"] <= kept["estimate"] <= kept["high"] and kept["images"] == 80
    assert f"{kept['estimate']:.1%} [{kept['low']:.1%}, {kept['high']:.1%}]" in map_kept_line(pair)
    # a reference that cannot be scored leaves the result's own score and says why
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    pair = evaluate_pair(broken, worse, str(datasets_dir / "coco_tiny_val2017"), "yolox")
    assert "eval_after" in pair and "could not be scored" in pair["map_kept"]["reason"]


def test_map_kept_line() -> None:
    from edgedet.train.report import map_kept_line

    assert map_kept_line({}) == ""
    kept = {"estimate": 0.66, "low": 0.561, "high": 0.727, "images": 80}
    assert "66.0% [56.1%, 72.7%], 95% paired bootstrap over 80" in map_kept_line({"map_kept": kept})
    assert "undefined" in map_kept_line({"map_kept": {"estimate": None, "low": None}})
    assert "no interval (why)" in map_kept_line({"map_kept": {"reason": "why"}})


def test_prune_command_with_a_latency_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedet.train import latency_model
    from edgedet.train.compress_command import run_prune

    # The profile of a 64-pixel toy is timer noise on a shared CI machine: a fixed fit stands
    # in (the fit itself is tested in test_latency_model.py on real models).
    fixed = latency_model.LatencyModel(0.01, 0.2, 0.9, 0.8, 12, 1.0)
    monkeypatch.setattr(latency_model, "fit_latency_model", lambda *a, **k: fixed)
    p, argv = _prune_cli(tmp_path, "l", "--target-latency", "0.8", "--stages", "2")
    report = run_prune(p.parse_args(argv))
    fit = report["latency_model"]
    assert fit == fixed.to_dict() and fit["macs_per_element"] == 20.0
    assert report["config"]["metric"] == "latency"
    assert report["config"]["macs_per_element"] == fit["macs_per_element"]
    assert report["reached_target"] and report["latency_estimate_kept"] <= 0.8 * 1.001
    assert "estimated convolution latency kept" in (tmp_path / "l.report.md").read_text()
    # the fitted rate travels in the stage state: a resume budgets with the same one
    from edgedet.train.safe_load import load_torch_file

    state = load_torch_file(tmp_path / "l.work" / "prune_state.pt")  # no pickle code runs
    assert state["latency_model"] == fit
    again = run_prune(p.parse_args([*argv, "--resume"]))
    assert again["latency_model"] == fit and again["macs_after"] == report["macs_after"]
    with pytest.raises(InvalidInputError, match="--target-macs and --target-latency"):
        run_prune(p.parse_args([*argv, "--target-macs", "0.5"]))
    macs_argv = [a if a != "--target-latency" else "--target-macs" for a in argv]
    with pytest.raises(InvalidInputError, match="a latency target; resume it with the same"):
        run_prune(p.parse_args([*macs_argv, "--resume"]))
    assert state["reference_value"] > 0


def test_prune_model_from_python_returns_a_typed_result(tmp_path: Path) -> None:
    """The pipeline without the command line: a PruneJob in, a CompressionResult out, the same
    files the command writes, and the flags' defaults are the job's defaults."""
    import argparse
    import json

    from edgedet.configflags import from_args
    from edgedet.train.compress import CompressionResult, PruneJob, prune_model
    from edgedet.train.compress_command import add_prune_arguments

    job = PruneJob(model=str(_cli_ckpt(tmp_path)), images=str(_cli_images(tmp_path)),
                   out=str(tmp_path / "py.onnx"), target_macs=0.7, latency_iters=3)  # fmt: skip
    lines: list[str] = []
    res = prune_model(job, log=lines.append)
    assert isinstance(res, CompressionResult) and res.onnx == tmp_path / "py.onnx"
    assert res.pt == tmp_path / "py.pt" and res.pt.is_file() and res.report_md.is_file()
    assert json.loads(res.report_json.read_text())["macs_after"] == res.report["macs_after"]
    assert res.report["macs_kept"] <= 0.7 and any("stage 1/1" in s for s in lines)
    p = argparse.ArgumentParser()
    add_prune_arguments(p)
    parsed = from_args(PruneJob, p.parse_args([job.model, "--images", job.images, "--out", job.out]))
    assert parsed == PruneJob(model=job.model, images=job.images, out=job.out)
