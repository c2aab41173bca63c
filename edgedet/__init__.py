"""edgedet: object detectors from the workstation to the robot.

    >>> import edgedet
    >>> det = edgedet.load("model.onnx")          # runtime chosen by suffix, meta from the file
    >>> dets = det(cv2.imread("frame.jpg"))        # Detections in original pixels

Submodules are imported lazily (attrs-style module ``__getattr__``), so ``import edgedet`` is
cheap and never imports torch or an inference library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .offline import block_openvino_telemetry

block_openvino_telemetry()  # before any OpenVINO / NNCF import: see edgedet/offline.py

if TYPE_CHECKING:
    from .detections import Detections
    from .detector import Detector, StreamResult, load
    from .meta import ModelMeta

_LAZY = {
    "Detections": ("edgedet.detections", "Detections"),
    "Detector": ("edgedet.detector", "Detector"),
    "StreamResult": ("edgedet.detector", "StreamResult"),
    "load": ("edgedet.detector", "load"),
    "ModelMeta": ("edgedet.meta", "ModelMeta"),
}

__all__ = ["Detections", "Detector", "ModelMeta", "StreamResult", "__version__", "load"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgedet' has no attribute {name!r}")
