"""No code runs from a torch file: a ``.pth`` carrying a pickle payload, given to every command
that reads checkpoints, is refused before it is unpickled (the payload's marker never appears);
edgedet's own files still load (the round trips of train / prune / distill / qat checkpoints are
in their own tests, which read them through the same loader)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgedet.cli import main  # noqa: E402
from edgedet.errors import ModelLoadError, TrainingError  # noqa: E402
from edgedet.train.safe_load import load_torch_file  # noqa: E402


class Payload:
    """Unpickling this calls os.mkdir(marker): what a malicious model-zoo file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _payload_files(d: Path, marker: Path) -> dict[str, Path]:
    """The same payload in every container a user could be handed."""
    d.mkdir(parents=True, exist_ok=True)
    files = {
        # looks like an edgedet module file / training checkpoint, payload inside
        "module": ({"kind": "edgedet.module", "model": Payload(marker), "meta": {}}, True),
        "checkpoint": ({"model_cfg": {}, "model": {"w": Payload(marker)}}, True),
        "legacy": ({"model": Payload(marker)}, False),  # torch's pre-1.6 (non-zip) format
    }
    out = {}
    for name, (obj, zipped) in files.items():
        p = d / f"{name}.pth"
        torch.save(obj, p, _use_new_zipfile_serialization=zipped)
        out[name] = p
    raw = d / "raw.pth"  # a bare pickle named .pth
    raw.write_bytes(pickle.dumps(Payload(marker)))
    out["raw"] = raw
    return out


def test_payload_is_refused_by_the_loader(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    for name, path in _payload_files(tmp_path / "f", marker).items():
        with pytest.raises(ModelLoadError, match=str(path.name)):
            load_torch_file(path)
        assert not marker.exists(), f"{name}: the payload ran"
    # the sanity check that the files really carry a payload: the unsafe load runs it
    torch.load(tmp_path / "f" / "module.pth", weights_only=False)
    assert marker.exists()


def test_refusal_names_the_file_and_what_to_do(tmp_path: Path) -> None:
    path = _payload_files(tmp_path, tmp_path / "PWNED")["module"]
    with pytest.raises(TrainingError) as err:
        load_torch_file(path, TrainingError, "edgedet checkpoint")
    msg = str(err.value)
    assert str(path) in msg and "refused before loading" in msg and "posix.mkdir" in msg
    assert "export it to ONNX" in msg and len(msg) < 600
    assert not (tmp_path / "PWNED").exists()


def _images(d: Path) -> Path:
    import cv2

    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        cv2.imwrite(str(d / f"{i}.jpg"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return d


def _good_module(path: Path) -> Path:
    from edgedet.train.compress import Source, save_module
    from edgedet.train.models.net import build_model
    from edgedet.train.trainer import sample_meta

    torch.manual_seed(0)
    m = build_model(2, "n").eval()
    save_module(Source(m, sample_meta(["a", "b"], 64, m.strides), (64, 64), "edgedet", path), m,
                path)  # fmt: skip
    return path


def test_every_command_refuses_a_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgedet.data.synthetic import generate

    marker = tmp_path / "PWNED"
    evil = _payload_files(tmp_path / "evil", marker)["module"]
    good = _good_module(tmp_path / "good.pt")
    imgs = _images(tmp_path / "imgs")
    data = generate(tmp_path / "data", 2, seed=1, imgsz=(64, 64))

    def work(name: str, state: str) -> list[str]:
        """--out for a run whose --resume state (``state`` in its work folder) is the payload."""
        w = tmp_path / f"{name}.work"
        w.mkdir()
        (w / state).write_bytes(evil.read_bytes())
        return ["--out", str(tmp_path / f"{name}.onnx"), "--resume"]

    train_out = tmp_path / "run"
    train_out.mkdir()
    (train_out / "last.pt").write_bytes(evil.read_bytes())
    common = ["--images", str(imgs), "--epochs", "1", "--batch", "2"]
    cases = {
        "prune MODEL": ["prune", str(evil), "--images", str(imgs), "--out", str(tmp_path / "a.onnx")],
        "prune --resume": ["prune", str(good), "--images", str(imgs), *work("p", "prune_state.pt")],
        "distill MODEL": ["distill", str(evil), "--teacher", str(good), *common, "--out",
                          str(tmp_path / "b.onnx")],
        "distill --teacher": ["distill", str(good), "--teacher", str(evil), *common, "--out",
                              str(tmp_path / "c.onnx")],
        "distill --resume": ["distill", str(good), "--teacher", str(good), *common,
                             *work("d", "distill.pt")],
        "qat MODEL": ["qat", str(evil), *common, "--out", str(tmp_path / "e.onnx")],
        "qat --teacher": ["qat", str(good), "--teacher", str(evil), *common, "--out",
                          str(tmp_path / "f.onnx")],
        "qat --resume": ["qat", str(good), *common, "--calib-images", "2", *work("q", "qat.pt")],
        "export CKPT": ["export", str(evil), "--out", str(tmp_path / "g.onnx")],
        "train --from": ["train", "--data", str(data), "--val", "train", "--epochs", "1",
                         "--imgsz", "64", "--out", str(tmp_path / "t"), "--from", str(evil)],
        "train --resume": ["train", "--data", str(data), "--val", "train", "--epochs", "1",
                           "--imgsz", "64", "--out", str(train_out), "--resume"],
    }  # fmt: skip
    for name, argv in cases.items():
        rc = main(argv)
        err = capsys.readouterr().err
        assert not marker.exists(), f"{name}: the payload ran"
        assert rc != 0 and "refused before loading" in err, f"{name}: rc {rc}, {err[-500:]}"
        assert "Traceback" not in err, name


def test_edgedet_module_files_round_trip(tmp_path: Path) -> None:
    """The module files prune / distill / qat write (an EdgeDet, and an ONNX model converted by
    edgedet) load back through the weights-only loader with the same outputs."""
    from edgedet.assets import sample_model_path
    from edgedet.train.compress import load_source, save_module

    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    edge = load_source(_good_module(tmp_path / "edge.pt"))
    onnx_src = load_source(sample_model_path())
    save_module(onnx_src, onnx_src.model, tmp_path / "conv.pt")
    conv = load_source(tmp_path / "conv.pt")
    assert type(conv.model).__name__ == "OnnxModule" and conv.meta == onnx_src.meta
    x2 = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(conv.model.eval()(x2), onnx_src.model.eval()(x2))
        assert edge.model.eval()(x) is not None
    from edgedet.train.models.net import build_model

    torch.manual_seed(0)
    want = build_model(2, "n").state_dict()  # what _good_module saved
    got = edge.model.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
