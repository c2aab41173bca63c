"""The torch runtime as the reference: a real detector converted to torch (edgedet's ONNX->torch
importer) run through `Detector` gives the boxes ONNX Runtime gives."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import edgedet
from edgedet.detector import Detector

pytestmark = pytest.mark.testdata
torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("model", "family"), [("yolox_nano_416.onnx", "yolox"), ("nanodet_m_320.onnx", "nanodet")]
)
def test_torch_reference_matches_onnxruntime(
    model: str, family: str, models_dir: Path, datasets_dir: Path
) -> None:
    from edgedet.runtimes.torch_runtime import TorchRuntime

    from edgedet.train.onnx_import import convert_onnx

    path = models_dir / model
    ort = edgedet.load(path, family=family, runtime_options={"threads": 2})
    spec = ort.runtime.inputs[0]
    rt = TorchRuntime(
        convert_onnx(path),
        input_name=spec.name,
        output_names=[s.name for s in ort.runtime.outputs],
        input_shape=spec.shape,
    )
    assert [s.shape for s in rt.outputs] == [s.shape for s in ort.runtime.outputs]
    ref = Detector(rt, ort.meta)
    for image_path in sorted((datasets_dir / "coco_tiny_val2017" / "val2017").glob("*.jpg"))[:2]:
        img = cv2.imread(str(image_path))
        a, b = ort(img), ref(img)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)
        np.testing.assert_array_equal(a.class_ids, b.class_ids)
