"""Split rewrites (`edgedet.train.rewrite.split_convs`): same function, no split left, prunable.

The small case is a C2f-like block exported from torch (conv + SiLU, split in two, one half
through another conv, concat); the real case is YOLOv8n from ../shared/testdata (8 C2f splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgedet.train.channels import split_ops
from edgedet.train.onnx_import import convert_onnx
from edgedet.train.prune import PruneConfig, check_prunable, prune
from edgedet.train.rewrite import split_convs


class _C2fLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.cv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.m = nn.Conv2d(8, 8, 3, padding=1)
        self.cv2 = nn.Conv2d(24, 8, 1)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        y = y * torch.sigmoid(y)
        a, b = y.split([8, 8], 1)  # as Ultralytics C2f exports (an ONNX Split)
        c = self.m(b)
        c = c * torch.sigmoid(c)
        return self.head(torch.relu(self.cv2(torch.cat([a, b, c], 1))))


def _exported(tmp_path: Path) -> Path:
    path = tmp_path / "c2f.onnx"
    torch.onnx.export(
        _C2fLike().eval(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["images"],
        output_names=["out"], opset_version=17, dynamo=False,
    )  # fmt: skip
    return path


def test_c2f_like_split_is_rewritten_with_identical_outputs(tmp_path: Path) -> None:
    path = _exported(tmp_path)
    m = convert_onnx(path)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
    assert split_ops(m, x)  # the converted graph splits: pruning must refuse it
    with pytest.raises(Exception, match="splits tensors"):
        check_prunable(m, x)
    done = split_convs(m)
    assert len(done) == 2
    with torch.no_grad():
        assert torch.equal(m(x), ref)
    assert split_ops(m, x) == []
    check_prunable(m, x)
    # and now it prunes, and still runs with the head's channels intact
    rep = prune(m, x[:1], PruneConfig(target=0.7), calibration=x)
    assert rep["macs_kept"] <= 0.7
    with torch.no_grad():
        assert m(x).shape == ref.shape
    onnx_ref = ort.InferenceSession(str(path)).run(None, {"images": x[:1].numpy()})[0]
    assert onnx_ref.shape == (1, 5, 32, 32)


def test_nothing_to_rewrite_leaves_the_model_alone(tmp_path: Path) -> None:
    path = tmp_path / "plain.onnx"
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    torch.onnx.export(net, (torch.zeros(1, 3, 8, 8),), str(path), opset_version=17, dynamo=False)
    m = convert_onnx(path)
    steps = list(m.steps)
    assert split_convs(m) == [] and m.steps == steps


@pytest.mark.testdata
def test_yolov8n_c2f_splits_rewritten_bit_identical(models_dir: Path) -> None:
    m = convert_onnx(models_dir / "yolov8n_dequant_fp32_640.onnx")
    x = torch.from_numpy(np.random.default_rng(0).random((1, 3, 640, 640)).astype(np.float32))
    with torch.no_grad():
        ref = m(x)
    assert len(split_ops(m, x)) == 8
    assert len(split_convs(m)) == 16  # 8 splits, 2 parts each
    with torch.no_grad():
        assert torch.equal(m(x), ref)
    assert split_ops(m, x) == []
    # the box-distribution convs are reshaped to [1, 4, 16, N] by constants: kept whole
    assert len(m.fixed_channel_convs()) >= 3
