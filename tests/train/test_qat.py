"""QAT through NNCF on a tiny EdgeDet: fake quantizers initialised from calibration, trained by
distillation, resumable, exported to QDQ ONNX that ONNX Runtime and OpenVINO both run with the
decode tail in float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgedet.errors import CalibrationError, TrainingError
from edgedet.meta import read_meta
from edgedet.preprocess import Preprocessor
from edgedet.train.distill import DistillConfig, list_images
from edgedet.train.models.net import EdgeDet, ExportModel, build_model
from edgedet.train.qat import export_qdq, fuse_conv_bn, qat_distill, set_qdq_export
from edgedet.train.trainer import sample_meta

SIZE = 64


def _teacher() -> EdgeDet:
    torch.manual_seed(0)
    m = build_model(2, "n")
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(bn.weight, 0.3, 1.0)
            bn.momentum = None
    with torch.no_grad():
        m.train()(torch.rand(4, 3, SIZE, SIZE))
    return m.eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("qat_imgs")
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        cv2.imwrite(str(d / f"{i}.png"), img)
    return d


def test_fuse_conv_bn_keeps_function() -> None:
    m = _teacher()
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        ref = m(x)
        assert fuse_conv_bn(m) == 61
        got = m(x)
    assert max(float((a - b).abs().max()) for r, g in zip(ref, got) for a, b in zip(r, g)) < 1e-3


def test_qat_trains_resumes_and_exports(images: Path, tmp_path: Path) -> None:
    teacher = _teacher()
    meta = sample_meta(["a", "b"], SIZE, teacher.strides)
    pre = Preprocessor(meta, (SIZE, SIZE))
    files = list_images(images)
    calib = [torch.from_numpy(pre([np.asarray(cv2.imread(str(f)))])[0]) for f in files]
    cfg = DistillConfig(epochs=1, batch=2, lr=1e-4, warmup_steps=0, save_every=1)
    ck = tmp_path / "qat.pt"
    kw: dict[str, Any] = {"adapter": "edgedet", "checkpoint": ck, "log": lambda s: None}
    _, res = qat_distill(teacher, calib, files, pre, cfg, stop_after_steps=1, **kw)
    assert res["interrupted"] and ck.is_file()
    q, res = qat_distill(teacher, calib, files, pre, cfg, resume=True, **kw)
    assert not res["interrupted"] and len(res["history"]) == 1

    wrapper = ExportModel(q, (SIZE, SIZE)).eval()  # type: ignore[arg-type]
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = wrapper(x).numpy()
    out = tmp_path / "qat.onnx"
    info = export_qdq(
        wrapper, x, out, meta=meta.replace(precision="int8", options={**meta.options,
                                                                        "training": {"qat": 1}}),
    )  # fmt: skip
    assert info["quantize_linear"] > 50 and info["tail_quantizers"] == 0
    got_ort = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"images": x.numpy()}
    )[0]
    import openvino as ov

    got_ov = ov.Core().compile_model(str(out), "CPU")(x.numpy())[0]
    scores = slice(4, None)  # sigmoid scores in 0..1; boxes in pixels
    assert np.abs(got_ort[..., scores] - ref[..., scores]).max() < 0.05
    assert np.abs(got_ov[..., scores] - ref[..., scores]).max() < 0.05
    assert np.abs(got_ort[..., :4] - ref[..., :4]).max() < 0.1 * np.abs(ref[..., :4]).max()
    m = read_meta(out)
    assert m is not None and m.precision == "int8" and m.options["training"] == {"qat": 1}


def test_user_errors() -> None:
    from edgedet.train.qat import quantize_for_qat

    with pytest.raises(CalibrationError, match="needs calibration images"):
        quantize_for_qat(_teacher(), [])
    with pytest.raises(TrainingError, match="no NNCF quantizers"):
        set_qdq_export(_teacher())
