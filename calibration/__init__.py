"""INT8 calibration: one `CalibrationSpec` compiled to ONNX Runtime (QDQ ONNX), NNCF (OpenVINO
IR) and TensorRT; calibration sources through the deployment preprocessing; per-layer
sensitivity and mixed precision. See calibration/README.md.

    >>> from edgedet.calibration import CalibrationSpec, CalibrationSource, quantize_onnx  # doctest: +SKIP
    >>> det = edgedet.load("yolox_nano.onnx", family="yolox", names="coco")                  # doctest: +SKIP
    >>> src = CalibrationSource(det, images="frames/", num=300)                             # doctest: +SKIP
    >>> quantize_onnx("yolox_nano.onnx", src, CalibrationSpec(), "yolox_int8.onnx", det.meta)  # doctest: +SKIP

The whole ``edgedet calibrate`` pipeline (guard, budget, fidelity, report) from Python:

    >>> from edgedet.calibration import CalibrateConfig, calibrate                          # doctest: +SKIP
    >>> res = calibrate(CalibrateConfig("yolox_nano.onnx", images="frames/", family="yolox"))  # doctest: +SKIP
    >>> res.path, res.budget_met, res.report["fidelity"]["map50_95"]                        # doctest: +SKIP

Submodules are imported on first use; onnxruntime, nncf, openvino and tensorrt only when a
function needing them runs.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "CalibrationSpec": ("edgedet.calibration.spec", "CalibrationSpec"),
    "resolve_exclusions": ("edgedet.calibration.spec", "resolve_exclusions"),
    "CalibrationSource": ("edgedet.calibration.source", "CalibrationSource"),
    "find_decode_tail": ("edgedet.calibration.tail", "find_decode_tail"),
    "find_input_convs": ("edgedet.calibration.tail", "find_input_convs"),
    "quantize_onnx": ("edgedet.calibration.ort_int8", "quantize_onnx"),
    "quantize_openvino": ("edgedet.calibration.nncf_int8", "quantize_openvino"),
    "quantize_openvino_with_accuracy_control": (
        "edgedet.calibration.nncf_int8",
        "quantize_openvino_with_accuracy_control",
    ),
    "make_entropy_calibrator": ("edgedet.calibration.trt_int8", "make_entropy_calibrator"),
    "layer_sensitivity": ("edgedet.calibration.sensitivity", "layer_sensitivity"),
    "mixed_precision": ("edgedet.calibration.sensitivity", "mixed_precision"),
    "calibrate": ("edgedet.calibration.pipeline", "calibrate"),
    "CalibrateConfig": ("edgedet.calibration.pipeline", "CalibrateConfig"),
    "CalibrationResult": ("edgedet.calibration.pipeline", "CalibrationResult"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgedet.calibration' has no attribute {name!r}")
