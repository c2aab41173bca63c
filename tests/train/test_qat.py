"""QAT through NNCF on a tiny EdgeDet: fake quantizers initialised from calibration (stem float,
asymmetric activations, conv inputs only), trained by distillation, resumable with the same result
as an uninterrupted run, exported to QDQ ONNX that ONNX Runtime and OpenVINO both run with the
decode tail in float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgedet.errors import CalibrationError, InvalidInputError, TrainingError
from edgedet.meta import read_meta
from edgedet.preprocess import Preprocessor
from edgedet.train.distill import DistillConfig, list_images
from edgedet.train.models.net import EdgeDet, ExportModel, build_model
from edgedet.train.qat import (
    export_qdq,
    fuse_conv_bn,
    input_convs,
    plan_quantization,
    qat_distill,
    set_qdq_export,
)
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


def _setup(images: Path) -> tuple[EdgeDet, Any, Any, list[Path], list[torch.Tensor]]:
    teacher = _teacher()
    meta = sample_meta(["a", "b"], SIZE, teacher.strides)
    pre = Preprocessor(meta, (SIZE, SIZE))
    files = list_images(images)
    calib = [torch.from_numpy(pre([np.asarray(cv2.imread(str(f)))])[0]) for f in files]
    return teacher, meta, pre, files, calib


def test_qat_trains_resumes_and_exports(images: Path, tmp_path: Path) -> None:
    teacher, meta, pre, files, calib = _setup(images)
    cfg = DistillConfig(epochs=1, batch=2, lr=1e-4, warmup_steps=0, save_every=1)
    ck = tmp_path / "qat.pt"
    kw: dict[str, Any] = {"adapter": "edgedet", "checkpoint": ck, "log": lambda s: None}
    _, res = qat_distill(teacher, calib, files, pre, cfg, stop_after_steps=1, **kw)
    assert res["interrupted"] and ck.is_file()
    q, res = qat_distill(teacher, calib, files, pre, cfg, resume=True, **kw)
    assert not res["interrupted"] and len(res["history"]) == 1
    assert res["quantization"] == {
        "scope": "conv_inputs", "activations": "asymmetric", "float_layers": {"stem.conv": "stem"},
    }  # fmt: skip

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
    graph = onnx.load(str(out)).graph
    producer = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    # the stem conv reads the float image with float weights; the next conv is quantized
    assert all(producer.get(t) is None or producer[t].op_type != "DequantizeLinear"
               for t in convs[0].input)  # fmt: skip
    assert producer[convs[1].input[1]].op_type == "DequantizeLinear"
    act_zp = [_const(graph, producer[convs[1].input[0]].input[2])]
    assert act_zp[0].dtype == np.uint8  # asymmetric activations (OpenVINO without VNNI)
    got_ort = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"images": x.numpy()}
    )[0]
    import openvino as ov

    got_ov = ov.Core().compile_model(str(out), "CPU")(x.numpy())[0]
    scores = slice(4, None)  # sigmoid scores in 0..1; boxes in pixels
    assert np.abs(got_ort[..., scores] - ref[..., scores]).max() < 0.05
    assert np.abs(got_ov[..., scores] - ref[..., scores]).max() < 0.05
    assert np.abs(got_ov[..., scores] - got_ort[..., scores]).max() < 0.05
    assert np.abs(got_ort[..., :4] - ref[..., :4]).max() < 0.1 * np.abs(ref[..., :4]).max()
    m = read_meta(out)
    assert m is not None and m.precision == "int8" and m.options["training"] == {"qat": 1}


def _const(graph: Any, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return np.asarray(numpy_helper.to_array(init))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return np.asarray(numpy_helper.to_array(node.attribute[0].t))
    raise KeyError(name)


def test_resume_equals_uninterrupted(images: Path, tmp_path: Path) -> None:
    teacher, _, pre, files, calib = _setup(images)
    cfg = DistillConfig(epochs=2, batch=2, lr=1e-3, warmup_steps=1, save_every=1)
    kw: dict[str, Any] = {"adapter": "edgedet", "log": lambda s: None,
                          "keep_float": ["stage2.0.conv"]}  # fmt: skip
    full, res_full = qat_distill(
        teacher, calib, files, pre, cfg, checkpoint=tmp_path / "a.pt", **kw
    )
    part = tmp_path / "b.pt"
    _, res = qat_distill(teacher, calib, files, pre, cfg, checkpoint=part, stop_after_steps=3, **kw)
    assert res["interrupted"]  # mid-epoch 2 (2 batches per epoch)
    resumed, res_resumed = qat_distill(
        teacher, calib, files, pre, cfg, checkpoint=part, resume=True, **kw
    )
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and len(a) > 100
    assert all(torch.equal(a[k], b[k]) for k in a)
    # (the interrupted epoch's logged mean loss covers only the steps run after the resume)
    assert res_full["history"][0]["loss"] == res_resumed["history"][0]["loss"]
    assert res_full["quantization"]["float_layers"] == {
        "stem.conv": "stem",
        "stage2.0.conv": "user",
    }
    with pytest.raises(TrainingError, match="different quantization settings"):
        qat_distill(teacher, calib, files, pre, cfg, checkpoint=part, resume=True,
                    **{**kw, "keep_float": []})  # fmt: skip


class _Focus(torch.nn.Module):
    """YOLOX's stem: four pixel-phase slices of the input, concatenated, then a conv; plus a
    second conv on the image itself and one that only sees the stem's output."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(12, 4, 3, padding=1)
        self.side = torch.nn.Conv2d(3, 4, 1, stride=2)
        self.body = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]]
        y = self.stem(torch.cat(parts, 1))
        return self.body(torch.sigmoid(y) * y) + self.side(x * 0.5)


def test_stem_detection_and_plan() -> None:
    x = torch.rand(1, 3, 16, 16)
    assert input_convs(_Focus(), x) == ["stem", "side"]
    m = _teacher()
    assert input_convs(m, torch.rand(1, 3, SIZE, SIZE)) == ["stem.conv"]
    plan = plan_quantization(_Focus(), x, keep_float=["body"])
    assert plan.float_layers == {"stem": "stem", "side": "stem", "body": "user"}
    assert len(plan.nncf_names) == 3 and all("conv2d" in n for n in plan.nncf_names)
    assert {"mul", "cat", "sigmoid", "add"} <= set(plan.ignored_types)
    plan = plan_quantization(_Focus(), x, keep_stem_float=False, scope="all")
    assert plan.float_layers == {} and plan.ignored_types == []
    with pytest.raises(InvalidInputError, match="not a conv/linear layer"):
        plan_quantization(_Focus(), x, keep_float=["head"])
    with pytest.raises(InvalidInputError, match="scope must be one of"):
        plan_quantization(_Focus(), x, scope="everything")


def test_user_errors() -> None:
    from edgedet.train.qat import quantize_for_qat

    with pytest.raises(CalibrationError, match="needs calibration images"):
        quantize_for_qat(_teacher(), [])
    with pytest.raises(TrainingError, match="no NNCF quantizers"):
        set_qdq_export(_teacher())


def test_yolox_export_agrees_on_ort_and_openvino(
    models_dir: Path, datasets_dir: Path, tmp_path: Path
) -> None:
    """The regression behind `plan_quantization`'s defaults: NNCF's symmetric (signed) activations
    made OpenVINO's int8 convs saturate on AVX2 without VNNI (objectness peak 0.05 against ONNX
    Runtime's 0.99 on the same file); with uint8 activations the two runtimes agree."""
    import openvino as ov

    from edgedet.decoders.base import meta_from_family
    from edgedet.train.onnx_import import convert_onnx
    from edgedet.train.qat import quantize_for_qat

    meta = meta_from_family("yolox", input_size=(416, 416))
    pre = Preprocessor(meta, (416, 416))
    files = list_images(datasets_dir / "coco128", 3)
    x = [torch.from_numpy(pre([np.asarray(cv2.imread(str(f)))])[0]) for f in files]
    model = convert_onnx(models_dir / "yolox_nano_416.onnx").eval()
    q = quantize_for_qat(model, x[:2])
    out = tmp_path / "yolox_qdq.onnx"
    info = export_qdq(q, x[2], out, meta=meta.replace(precision="int8"))
    assert info["tail_quantizers"] in (0, -1)  # -1: calibration/ not importable
    a = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"images": x[2].numpy()}
    )[0]
    b = ov.Core().compile_model(str(out), "CPU")(x[2].numpy())[0]
    assert a[..., 4].max() > 0.5 and abs(float(a[..., 4].max() - b[..., 4].max())) < 0.05
    assert float(np.abs(a[..., 4:] - b[..., 4:]).mean()) < 0.003


def test_run_qat_command(images: Path, tmp_path: Path) -> None:
    import argparse

    from edgedet.train.compress import Source, save_module
    from edgedet.train.compress_command import add_qat_arguments, run_qat

    teacher = _teacher()
    meta = sample_meta(["a", "b"], SIZE, teacher.strides)
    model = tmp_path / "m.pt"
    save_module(Source(teacher, meta, (SIZE, SIZE), "edgedet", model), teacher, model)
    parser = argparse.ArgumentParser()
    add_qat_arguments(parser)
    out = tmp_path / "q.onnx"
    args = parser.parse_args(
        [str(model), "--images", str(images), "--out", str(out), "--epochs", "1", "--batch",
         "2", "--calib-images", "2", "--keep-float", "stage2.0.conv"]
    )  # fmt: skip
    report = run_qat(args)
    want = {"stem.conv": "stem", "stage2.0.conv": "user"}
    assert report["record"]["quantization"]["float_layers"] == want
    m = read_meta(out)
    assert m is not None and m.precision == "int8"
    assert m.options["training"]["quantization"]["float_layers"] == want
    assert "stage2.0.conv (user)" in (tmp_path / "q.report.md").read_text()
