"""The runtime registry: auto resolution table, registration, missing extras."""

from __future__ import annotations

import pytest
from edgedet.runtimes import registry

from edgedet.errors import InvalidInputError, RuntimeUnavailableError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("m.engine", "tensorrt"),
        ("m.plan", "tensorrt"),
        ("m.xml", "openvino"),
        ("M.ONNX", "onnxruntime"),
    ],
)
def test_auto_by_suffix(name: str, expected: str) -> None:
    assert registry.resolve_auto(name) == expected


def test_auto_unknown_suffix() -> None:
    with pytest.raises(InvalidInputError, match=r"suffix '\.tflite' is none of"):
        registry.resolve_auto("model.tflite")


def test_register_and_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", dict(registry._BUILTIN))
    registry.register_runtime("mine", "edgedet.runtimes.ort_runtime:OnnxRuntime")
    assert "mine" in registry.runtime_names()
    assert registry.runtime_class("mine").name == "onnxruntime"
    with pytest.raises(InvalidInputError, match="already registered"):
        registry.register_runtime("onnxruntime", "somewhere:Else")


def test_missing_package_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_registry", dict(registry._BUILTIN))
    registry.register_runtime(
        "ghost", "edgedet_no_such_module:Ghost", package="ghostlib", extra="ghost"
    )
    with pytest.raises(
        RuntimeUnavailableError, match=r"needs the ghostlib package \(the 'ghost' extra\): pip install .+\[ghost\]"
    ):
        registry.runtime_class("ghost")
    info = registry.probe("ghost")
    assert info["available"] is False and "[ghost]" in info["reason"]


def test_unknown_runtime_lists_known() -> None:
    with pytest.raises(
        InvalidInputError, match="known runtimes: onnxruntime, openvino, tensorrt, torch"
    ):
        registry.runtime_class("coreml")
