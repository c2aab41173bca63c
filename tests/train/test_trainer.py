"""The trainer: a micro run writes checkpoints, resumes exactly, transfers to another class list,
never leaves a half-written checkpoint; export matches torch through ONNX Runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgedet.data.synthetic import generate  # noqa: E402
from edgedet.errors import InvalidInputError, TrainingError  # noqa: E402
from edgedet.train.augment import AugmentConfig  # noqa: E402
from edgedet.train.trainer import (  # noqa: E402
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)

SIZE = 64


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "d", 16, seed=7, imgsz=(SIZE, SIZE))


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=str(data), val="train", epochs=2, imgsz=SIZE, batch=4, out=str(out), warmup_steps=2,
        save_every=1, threads=1, progress=False, augment=AugmentConfig(mosaic=0.5, mixup=0.2),
        close_mosaic=1, seed=3,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def full_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("full")
    Trainer(_cfg(tiny_data, out), log=_quiet).fit()
    return out


def test_micro_training_writes_checkpoints_and_curves(full_run: Path) -> None:
    for name in ("last.pt", "best.pt", "results.csv", "results.png", "train_config.json"):
        assert (full_run / name).is_file(), name
    ck = load_checkpoint(full_run / "last.pt")
    assert ck["epoch"] == 2 and ck["step_in_epoch"] == 0 and ck["global_step"] == 8
    for key in ("model", "ema", "optimizer", "scheduler", "rng", "history", "train_config", "meta"):
        assert key in ck
    assert len(ck["history"]) == 2 and "map50" in ck["history"][-1]
    rows = (full_run / "results.csv").read_text().splitlines()
    assert rows[0].startswith("epoch") and len(rows) == 3
    assert not list(full_run.glob("*.tmp"))


def test_resume_after_a_kill_mid_epoch_gives_identical_weights(
    tiny_data: Path, full_run: Path, tmp_path: Path
) -> None:
    # the "kill": stop after 6 of 8 steps (in epoch 2); last.pt was written at step 6
    Trainer(_cfg(tiny_data, tmp_path), log=_quiet).fit(stop_after_steps=6)
    ck = load_checkpoint(tmp_path / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 2)
    Trainer(_cfg(tiny_data, tmp_path, resume=True), log=_quiet).fit()
    a = load_checkpoint(full_run / "last.pt")
    b = load_checkpoint(tmp_path / "last.pt")
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part}.{k} differs after resume"
    assert a["history"][-1]["map50_95"] == b["history"][-1]["map50_95"]


def test_resume_without_checkpoint_says_what_to_do(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"--resume: no checkpoint at .*start without --resume"):
        Trainer(_cfg(tiny_data, tmp_path, resume=True), log=_quiet).fit()


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model_cfg": {}, "model": {"w": torch.ones(3)}})

    def crash(_fd: int) -> None:
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"model_cfg": {}, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_unreadable_checkpoint_is_a_training_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a readable edgedet checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(TrainingError, match=r"checkpoint .* not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_transfer_to_another_class_list(tiny_data: Path, full_run: Path, tmp_path: Path) -> None:
    # a dataset with 2 classes, one shared by name with the checkpoint
    coco = json.loads((tiny_data / "annotations" / "instances.json").read_text())
    coco["categories"] = [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] in (1, 2)]
    d2 = tmp_path / "two"
    (d2 / "annotations").mkdir(parents=True)
    (d2 / "annotations" / "instances.json").write_text(json.dumps(coco))
    os.symlink(tiny_data / "images", d2 / "images")
    logs: list[str] = []
    tr = Trainer(
        _cfg(d2, tmp_path / "run", epochs=1, from_ckpt=str(full_run / "best.pt")), log=logs.append
    )
    tr.fit()
    assert tr.class_names == ("car", "bus")
    assert tr.model.head.cls_pred[0].weight.shape[0] == 2
    assert any("transfer from" in m and "re-initialised" in m for m in logs)
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["model_cfg"]["class_names"] == ["car", "bus"]


def test_pruned_model_fine_tunes_with_labels_and_resumes(
    tiny_data: Path, full_run: Path, tmp_path: Path
) -> None:
    # `edgedet prune` writes the pruned module; the trainer fine-tunes it as it is (labels as
    # recovery), its checkpoints carry the pruned architecture, and a kill + resume is exact.
    import io

    from edgedet.fileio import atomic_write_bytes
    from edgedet.train.channels import conv_channels
    from edgedet.train.prune import PruneConfig, prune
    from edgedet.train.trainer import model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(full_run / "best.pt"))
    prune(model, torch.zeros(1, 3, SIZE, SIZE), PruneConfig(target=0.6))
    pruned_channels = conv_channels(model)
    buf = io.BytesIO()
    torch.save({"kind": "edgedet.module", "model": model, "meta": {}, "adapter": "edgedet"}, buf)
    atomic_write_bytes(tmp_path / "pruned.pt", buf.getvalue())

    def cfg(out: Path, **kw: object) -> TrainConfig:
        return _cfg(tiny_data, out, from_ckpt=str(tmp_path / "pruned.pt"), **kw)

    logs: list[str] = []
    Trainer(cfg(tmp_path / "a"), log=logs.append).fit()
    assert any("fine-tuning the pruned model" in m for m in logs)
    ck = load_checkpoint(tmp_path / "a" / "last.pt")
    tuned = model_from_checkpoint(ck)
    assert conv_channels(tuned) == pruned_channels  # still pruned, not rebuilt from the config
    # interrupted after 6 of 8 steps, resumed: same weights as the uninterrupted run
    Trainer(cfg(tmp_path / "b"), log=_quiet).fit(stop_after_steps=6)
    Trainer(cfg(tmp_path / "b", resume=True), log=_quiet).fit()
    b = load_checkpoint(tmp_path / "b" / "last.pt")
    for k, v in ck["model"].items():
        assert torch.equal(v, b["model"][k]), f"model.{k} differs after resume"


def test_bad_class_names_in_options(tiny_data: Path, tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInputError, match=r"--class-weights names \['bus'\] not in the class list"
    ):
        Trainer(_cfg(tiny_data, tmp_path, class_weights={"bus": 2.0}), log=_quiet).fit()
    with pytest.raises(InvalidInputError, match=r"--rare-classes names \['bus'\]"):
        Trainer(_cfg(tiny_data, tmp_path, rare_classes=["bus"]), log=_quiet).fit()


def test_rare_classes_class_weights_and_copy_paste_run(tiny_data: Path, tmp_path: Path) -> None:
    cfg = _cfg(
        tiny_data, tmp_path, epochs=1, rare_classes=["cyclist", "sign"], class_weights={"cyclist": 3.0},
        augment=AugmentConfig(copy_paste=1.0), multi_scale=0.25, accumulate=2,
    )  # fmt: skip
    tr = Trainer(cfg, log=_quiet)
    tr.fit()
    assert tr.repeat is not None and tr.repeat.max() == 3.0
    assert tr.global_step >= 1


def test_export_matches_torch_and_decodes(full_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edgedet.decoders.edgedet_family import make_edgedet_decoder
    from edgedet.meta import read_meta
    from edgedet.train.export import evaluate_onnx, export_checkpoint

    out = tmp_path / "m.onnx"
    res = export_checkpoint(full_run / "best.pt", out, dynamic_batch=True)
    assert res["max_abs_diff"] < 1e-3
    meta = read_meta(out)
    assert meta is not None and meta.family == "edgedet" and meta.input_size == (SIZE, SIZE)
    assert meta.class_names[0] == "car" and meta.strides == (8, 16, 32)
    import onnx

    g = onnx.load(str(out)).graph
    assert [o.name for o in g.output] == ["output"]
    # no Split anywhere; Slice only on shape vectors (dynamic batch), never on activations
    producers = {o: n.op_type for n in g.node for o in n.output}
    assert not [n for n in g.node if n.op_type == "Split"]
    assert all(producers.get(n.input[0]) == "Shape" for n in g.node if n.op_type == "Slice")

    class Spec:
        name = "output"
        shape = (None, 84, 10)

    dec = make_edgedet_decoder(meta, [Spec()], (SIZE, SIZE))
    assert dec.num_classes == 6
    rep = evaluate_onnx(out, _data_of(full_run))
    assert 0.0 <= rep["map50"] <= 1.0


def _data_of(run: Path) -> Path:
    return Path(json.loads((run / "train_config.json").read_text())["data"])


def test_openvino_matches_onnxruntime(full_run: Path, tmp_path: Path) -> None:
    ov = pytest.importorskip("openvino")
    ort = pytest.importorskip("onnxruntime")
    from edgedet.train.export import export_checkpoint

    out = tmp_path / "m.onnx"
    export_checkpoint(full_run / "best.pt", out)
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    ref = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"images": x}
    )[0]
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"images": x})[compiled.output(0)]
    assert np.abs(ref - got).max() < 1e-3


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(tiny_data: Path, tmp_path: Path) -> None:
    """The same training command under torchrun (2 CPU ranks, gloo) trains and writes once."""
    import subprocess
    import sys

    pytest.importorskip("torch.distributed")
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from edgedet.train.trainer import TrainConfig, Trainer\n"
        f"cfg = TrainConfig(data={str(tiny_data)!r}, val='train', epochs=1, imgsz={SIZE}, batch=4,"
        f" out={str(tmp_path / 'run')!r}, threads=1, warmup_steps=1, progress=False)\n"
        "Trainer(cfg).fit()\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["global_step"] == 2  # 16 images / 2 ranks / batch 4
    assert "batch 4x1x2" in res.stdout


def test_command_line(
    tiny_data: Path, full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edgedet.train.command import main

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path / "s"),
                "--n",
                "2",
                "--seed",
                "1",
                "--imgsz",
                "64",
                "96",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "s" / "images").glob("*.png"))) == 2
    rc = main(
        [
            "train",
            "--data",
            str(tiny_data),
            "--class-weights",
            "car:2",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert rc == 2
    assert "--class-weights expects name=weight" in capsys.readouterr().err
    assert main(["export", str(full_run / "last.pt"), "--out", str(tmp_path / "m.onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    rc = main(["export", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.onnx")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_validation_scores_through_a_detector_like_the_export(
    full_run: Path, tmp_path: Path
) -> None:
    """Train's validation is `edgedet.scoring.score` on the model in the torch runtime: the
    same detections as the ONNX export through ONNX Runtime, under edgedet's protocol."""
    import edgedet
    from edgedet.data import load_dataset
    from edgedet.protocol import family_protocol
    from edgedet.scoring import score
    from edgedet.train.export import evaluate_onnx, export_checkpoint
    from edgedet.train.trainer import eval_protocol, evaluate_model, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(full_run / "best.pt"))
    ds = load_dataset(_data_of(full_run))
    names = tuple(model.cfg.class_names)
    proto = family_protocol("edgedet").replace(score_threshold=0.0001)
    torch_map = evaluate_model(model, ds, ds.samples, SIZE, names, protocol=proto)
    out = tmp_path / "m.onnx"
    export_checkpoint(full_run / "best.pt", out, dynamic_batch=True)
    onnx_map = evaluate_onnx(out, ds, protocol=proto)
    assert torch_map["map50_95"] == pytest.approx(onnx_map["map50_95"], abs=2e-3)
    with edgedet.load(out, runtime="onnxruntime") as det:
        assert score(det, ds, proto).map50_95 == onnx_map["map50_95"]
    assert eval_protocol() == family_protocol("edgedet")
    written = json.loads((full_run / "train_config.json").read_text())["eval_protocol"]
    assert written == family_protocol("edgedet").to_dict()
    with pytest.raises(InvalidInputError, match="--eval-iou"):
        _cfg(Path("d"), tmp_path, eval_iou=1.2).validate()
