"""Deploy profiles (`edgedet.deploy`): `edgedet.load` runs what the profile says, and refuses a
profile measured on another device (real ONNX Runtime and OpenVINO, a tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import edgedet
from edgedet.deploy import (
    ForeignProfileWarning,
    cpu_flags,
    device_fingerprint,
    foreign_reasons,
    new_profile,
    profile_path_for,
    read_profile,
    write_profile,
)
from edgedet.errors import IncompatibleModelError, ModelLoadError
from edgedet.meta import ModelMeta
from tests.tiny_models import make_tiny_yolov5

META = ModelMeta(family="yolov5", class_names=("a", "b"), input_size=(32, 32))


@pytest.fixture()
def deployed(tmp_path: Path) -> Path:
    """A folder as `edgedet optimize` leaves it: a model and its profile (OpenVINO, fp32, 1
    thread), measured here."""
    out = tmp_path / "out"
    out.mkdir()
    model = make_tiny_yolov5(out / "tiny.onnx", meta=META)
    profile = new_profile(model, "openvino", None, {"precision": "fp32", "threads": 1}, "fp32",
                          {"map50_95": 0.5, "e2e_p50_ms": 1.0})  # fmt: skip
    write_profile(profile_path_for(model), profile)
    return out


def _edit(folder: Path, **target: object) -> Path:
    path = next(folder.glob("*.deploy.json"))
    raw = json.loads(path.read_text())
    raw["target"].update(target)
    path.write_text(json.dumps(raw))
    return path


def test_load_runs_the_profile(deployed: Path) -> None:
    image = np.zeros((40, 48, 3), np.uint8)
    for target in (deployed, next(deployed.glob("*.deploy.json")), deployed / "tiny.onnx"):
        with edgedet.load(target) as det:  # no flags: the profile's runtime and options
            assert det.runtime_name == "openvino"
            assert det.describe()["threads"] == 1
            det(image)
    # runtime settings given: a model's profile is not used
    with edgedet.load(deployed / "tiny.onnx", runtime="onnxruntime") as det:
        assert det.runtime_name == "onnxruntime"


def test_foreign_profile_is_refused_or_not_used(deployed: Path) -> None:
    here = device_fingerprint("openvino")
    flags = list(here["cpu_flags"])
    _edit(deployed, cpu_flags=[f for f in flags if f != "avx2"] if "avx2" in flags
          else [*flags, "avx2"], cpu_model="Other CPU")  # fmt: skip
    with pytest.raises(IncompatibleModelError, match=r"avx2.*re-run `edgedet optimize"):
        edgedet.load(deployed)
    with pytest.warns(ForeignProfileWarning, match="foreign"):
        det = edgedet.load(deployed / "tiny.onnx")  # the file alone still loads, by suffix
    with det:
        assert det.runtime_name == "onnxruntime"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runtime_version": "1999.1"}, "openvino 1999.1 there"),
        ({"machine": "aarch64"}, "architecture aarch64 there"),
    ],
)
def test_foreign_reasons(deployed: Path, change: dict[str, str], message: str) -> None:
    profile = read_profile(_edit(deployed, **change))
    assert any(message in r for r in foreign_reasons(profile))


def test_gpu_compared_only_for_gpu_runtimes(deployed: Path) -> None:
    profile = read_profile(_edit(deployed, gpus=["NVIDIA Orin"]))
    assert foreign_reasons(profile) == []  # a CPU profile does not care about GPUs
    trt = read_profile(next(deployed.glob("*.deploy.json")))
    object.__setattr__(trt, "runtime", "tensorrt")
    here = {**trt.target, "gpus": ["NVIDIA H100"]}
    assert any("GPU" in r for r in foreign_reasons(trt, here))


def test_changed_model_is_foreign(deployed: Path) -> None:
    make_tiny_yolov5(deployed / "tiny.onnx", meta=META, seed=3)  # other weights, same name
    with pytest.raises(IncompatibleModelError, match="changed since it was measured"):
        edgedet.load(deployed)


def test_bad_profiles(deployed: Path, tmp_path: Path) -> None:
    path = next(deployed.glob("*.deploy.json"))
    path.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        edgedet.load(deployed)
    path.write_text(json.dumps({"edgedet_profile": 1, "model": "../x.onnx", "runtime": "openvino"}))
    with pytest.raises(ModelLoadError, match="file name beside it"):
        edgedet.load(path)
    (deployed / "second.deploy.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="exactly one"):
        edgedet.load(deployed)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="found 0"):
        edgedet.load(empty)


def test_cpu_flags_from_cpuinfo(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "model name\t: Some CPU\nflags\t\t: fpu sse avx avx2 fma avx512f avx512_vnni\n"
    )
    assert cpu_flags(tmp_path) == ["avx", "avx2", "avx512_vnni", "avx512f", "fma"]
    assert device_fingerprint("onnxruntime", tmp_path)["cpu_model"] == "Some CPU"


def test_bench_uses_the_profile(deployed: Path, tmp_path: Path) -> None:
    from edgedet.benchmarks.sweep import expand

    (config,) = expand([str(deployed)], {"data": str(tmp_path)})
    assert (config.runtime, config.precision, config.threads) == ("openvino", "fp32", 1)
    assert Path(config.model) == deployed / "tiny.onnx"
    (config,) = expand([str(deployed / "tiny.onnx")], {"data": str(tmp_path),
                                                        "runtime": "onnxruntime"})  # fmt: skip
    assert config.runtime == "onnxruntime"
