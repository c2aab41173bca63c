"""End to end on real, pretrained detectors: COCO mAP on coco_tiny_val2017 through ONNX Runtime
and OpenVINO (explicit f32), evaluated by pycocotools at score threshold 0.001.

Published-pipeline expectations (shared/testdata/PROVENANCE.md): YOLOX-nano about 0.30,
NanoDet-m about 0.25, YOLOv8n about 0.38; the two runtimes agree within 0.005.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edgedet
from edgedet.data import load_dataset
from edgedet.eval.metrics import evaluate

pytestmark = [pytest.mark.testdata, pytest.mark.slow]

CASES = [
    ("yolox_nano_416.onnx", "yolox", 0.30),
    ("nanodet_m_320.onnx", "nanodet", 0.25),
    ("yolov8n_dequant_fp32_640.onnx", None, 0.38),
]


@pytest.fixture(scope="module")
def coco_tiny(datasets_dir: Path):  # type: ignore[no-untyped-def]
    return load_dataset(datasets_dir / "coco_tiny_val2017")


@pytest.mark.parametrize(("model", "family", "expected"), CASES)
def test_map_matches_published_and_runtimes_agree(
    model: str, family: str | None, expected: float, models_dir: Path, coco_tiny
) -> None:  # type: ignore[no-untyped-def]
    results = {}
    for runtime in ("onnxruntime", "openvino"):
        det = edgedet.load(
            models_dir / model,
            runtime=runtime,
            family=family,
            score_threshold=0.001,
            iou_threshold=0.65,
            runtime_options={"threads": 2},
        )
        preds = {s.image_id: det(coco_tiny.read_image(s)) for s in coco_tiny.samples}
        report = evaluate(coco_tiny, preds, det.class_names, backend="pycocotools")
        results[runtime] = report.map50_95
        det.close()
    assert results["onnxruntime"] == pytest.approx(expected, abs=0.015)
    assert abs(results["onnxruntime"] - results["openvino"]) <= 0.005
