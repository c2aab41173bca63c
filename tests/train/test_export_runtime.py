"""`evaluate_onnx` (export's / train's check) takes any runtime whose declaration fits (a CPU
device, fp32), not a list of names: a registered plugin runs, TensorRT is refused by what it
declares. The plugin here is ONNX Runtime's real class under another name."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgedet.assets import SAMPLE_MODEL
from edgedet.errors import TrainingError
from edgedet.train.export import evaluate_onnx


@pytest.fixture()
def val(tmp_path: Path) -> Path:
    from edgedet.data.synthetic import sample_validation_set

    return sample_validation_set(tmp_path / "val", n=3)


def test_a_plugin_runtime_declaring_cpu_fp32_evaluates(
    val: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgedet.runtimes import registry

    monkeypatch.setattr(registry, "_registry", dict(registry._load_registry()))
    registry.register_runtime("ort_plugin_test", "edgedet.runtimes.ort_runtime:OnnxRuntime")
    plugin = evaluate_onnx(SAMPLE_MODEL, val, runtime="ort_plugin_test")
    builtin = evaluate_onnx(SAMPLE_MODEL, val, runtime="onnxruntime")
    assert plugin["map50_95"] == builtin["map50_95"]


def test_a_runtime_without_cpu_is_refused_by_its_declaration(val: Path) -> None:
    with pytest.raises(TrainingError, match=r"declares devices \['cuda', 'dla'\]") as err:
        evaluate_onnx(SAMPLE_MODEL, val, runtime="tensorrt")
    assert "'onnxruntime'" in str(err.value) and "'openvino'" in str(err.value)


def test_an_unknown_runtime_is_a_training_error(val: Path) -> None:
    with pytest.raises(TrainingError, match="unknown runtime 'nope'"):
        evaluate_onnx(SAMPLE_MODEL, val, runtime="nope")
