"""``edgedet optimize`` with TensorRT as a runtime, against the FAKE ``tensorrt`` / CUDA modules
of ``tests/runtimes/fake_tensorrt.py`` (marked ``fake_tensorrt``; real TensorRT needs an NVIDIA
GPU and cannot be installed here).

What runs for real: the candidate enumeration from TensorRT's declaration, the INT8 build
(``edgedet calibrate --runtime tensorrt``: a Q/DQ file with symmetric activations, calibrated
with ONNX Runtime), edgedet's TensorRT runtime building each engine through the fake builder
(the precision flags it sets are recorded), scoring and timing through the bench pipeline, the
decision, the deploy profile and ``edgedet.load`` of it, and the refusal of that profile under
another TensorRT version or GPU.

What the fake cannot give, so nothing here asserts it: TensorRT's numerics and speed. The fake
runs each engine's embedded ONNX graph with ONNX Runtime in float32, so fp32 and fp16 engines
score the same mAP and every latency is ONNX Runtime's on the CPU; which TensorRT candidate is
fastest is therefore not asserted, only that the chosen one is a TensorRT candidate, its profile
names the TensorRT version and GPU it was measured with, and another version or GPU refuses it.
Candidates are measured in this process (the fake exists only here; optimize's worker processes
would import the real, absent ``tensorrt``), through the same ``run_config`` the worker calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import edgedet.runtimes.registry as registry
import numpy as np
import onnx
import pytest
from edgedet.benchmarks import optimize as opt
from edgedet.benchmarks import runner
from onnx import numpy_helper

import edgedet
from edgedet.deploy import ForeignProfileWarning, sha256_file
from edgedet.errors import IncompatibleModelError
from edgedet.meta import read_sidecar
from tests.benchmarks.test_optimize import META, make_val
from tests.runtimes.test_tensorrt_fake import _OURS, fake_tensorrt
from tests.tiny_models import make_tiny_yolov5

pytestmark = pytest.mark.fake_tensorrt

FAST = ["--min-seconds", "0.05", "--resamples", "20", "--calib-num", "6", "--rounds", "1",
        "--latency-images", "2"]  # fmt: skip
REAL_PROBE = registry.probe


def _install(monkeypatch: pytest.MonkeyPatch, **state: Any) -> Any:
    """Install the fake modules for a TensorRT release / GPU (``FakeState`` fields); edgedet's
    TensorRT modules are imported fresh against them."""
    fake = fake_tensorrt.FakeState(**state)
    import sys

    for name, module in fake_tensorrt.make_modules(fake, "cuda-python").items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in _OURS:  # not monkeypatch.delitem: its undo would put back the faked modules
        sys.modules.pop(name, None)
    return fake


@pytest.fixture()
def trt_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A "device" with ONNX Runtime and (fake) TensorRT, OpenVINO left out (faster)."""
    import sys

    state = _install(monkeypatch)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the engine cache, ~/.cache/edgedet
    monkeypatch.setattr(registry, "probe", lambda name: REAL_PROBE(name) if name in (
        "onnxruntime", "tensorrt") else {"name": name, "available": False, "version": None,
                                         "devices": [], "reason": f"{name} left out here"})  # fmt: skip
    monkeypatch.setattr(runner, "run_in_subprocess", lambda config, **kw: runner.run_config(config))
    yield state
    for name in _OURS:
        sys.modules.pop(name, None)


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    model = make_tiny_yolov5(tmp_path / "tiny.onnx", batch="N", meta=META, hidden=8)
    return {"model": model, "val": make_val(tmp_path / "val"), "out": tmp_path / "out"}


def _parse(argv: list[str]) -> Any:
    import argparse

    p = argparse.ArgumentParser()
    opt.add_optimize_arguments(p)
    return p.parse_args(argv)


def _engines(home: Path) -> dict[tuple[str, str], set[str]]:
    """(ONNX file sha256, precision) -> builder flags, of every engine in the cache under
    ``home`` (the fake's engine is its magic bytes, then a JSON payload naming the flags)."""
    out: dict[tuple[str, str], set[str]] = {}
    for engine in (home / ".cache" / "edgedet" / "engines").glob("*.engine"):
        side = read_sidecar(engine)
        assert side is not None, f"{engine} has no sidecar"
        rec = side["tensorrt"]
        payload = json.loads(engine.read_bytes()[len(fake_tensorrt._MAGIC):])
        out[(rec["model_sha256"], rec["precision"])] = set(payload["flags"])
    return out


def test_tensorrt_candidates_run_and_the_profile_is_tied_to_trt_and_gpu(
    trt_device: Any, setup: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    cands, skipped = opt.enumerate_candidates()
    trt = {c.key: c for c in cands if c.runtime == "tensorrt"}
    assert set(trt) == {"tensorrt-fp32-float", "tensorrt-fp16-float", "tensorrt-int8-qdq_onnx"}
    assert trt["tensorrt-int8-qdq_onnx"].artifact.calib_runtime == "tensorrt"
    assert {s.key.split("-")[0] for s in skipped} == {"openvino"}

    argv = [str(setup["model"]), "--data", str(setup["val"]), "--images",
            str(setup["val"] / "images"), "--out", str(setup["out"]), "--runtime", "tensorrt",
            "--max-map-drop", "100", *FAST]  # fmt: skip
    rc = opt.run_optimize(_parse(argv))
    text = capsys.readouterr().out
    assert rc == 0, text
    records = {p.stem: json.loads(p.read_text()) for p in (setup["out"] / "candidates").glob("*.json")
               if not p.name.endswith(".detections.json")}  # fmt: skip
    for key in trt:
        assert key in records, text
        assert records[key]["status"] == "ok", records[key].get("reason")
        assert records[key]["runtime"] == "tensorrt"
    assert records["tensorrt-int8-qdq_onnx"]["precision"] == "int8"
    assert records["tensorrt-fp16-float"]["precision"] == "fp16"
    assert records["onnxruntime-fp32-float"]["status"] == "ok"  # the float reference

    # each TensorRT candidate's engine was built from its file with its precision's flags
    build = setup["out"] / "build"
    assert Path(records["tensorrt-int8-qdq_onnx"]["model"]) == build / "tiny_int8_qdq_trt.onnx"
    assert Path(records["tensorrt-fp16-float"]["model"]) == build / "tiny.onnx"
    engines = _engines(setup["out"].parent / "home")
    float_sha, int8_sha = (sha256_file(build / n) for n in ("tiny.onnx", "tiny_int8_qdq_trt.onnx"))
    assert not engines[(float_sha, "fp32")] & {"FP16", "INT8"}
    assert "FP16" in engines[(float_sha, "fp16")] and "INT8" not in engines[(float_sha, "fp16")]
    assert "INT8" in engines[(int8_sha, "int8")]  # TensorRT 10 runs a Q/DQ file with INT8 set
    # the INT8 build is TensorRT's kind of Q/DQ file: int8 activations with zero point 0
    qdq = onnx.load(str(setup["out"] / "build" / "tiny_int8_qdq_trt.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    zero_points = [inits[n.input[2]] for n in qdq.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2]  # fmt: skip
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)

    (profile_file,) = setup["out"].glob("*.deploy.json")
    profile = json.loads(profile_file.read_text())
    assert profile["runtime"] == "tensorrt" and profile["device"] is None
    assert profile["runtime_options"]["max_batch"] == 1  # the engine settings that were timed
    assert profile["target"]["runtime_version"] == fake_tensorrt.FAKE_TRT_VERSION
    assert profile["target"]["accelerators"] == ["Fake GPU"]
    with edgedet.load(setup["out"]) as det:  # no other argument
        assert det.runtime_name == "tensorrt"
        assert det.runtime.cache_hit  # the very engine optimize measured, from the cache
        det(np.zeros((40, 48, 3), np.uint8))

    # another TensorRT release, then another GPU: the profile is foreign
    for change, message in (({"trt_version": "10.4.0"}, "tensorrt 10.3.0 there, 10.4.0 here"),
                            ({"gpu_name": "Other GPU"}, "sees Fake GPU there, Other GPU here")):  # fmt: skip
        _install(monkeypatch, **change)
        with pytest.raises(IncompatibleModelError, match=message):
            edgedet.load(setup["out"])
        model = setup["out"] / profile["model"]
        with pytest.warns(ForeignProfileWarning, match="re-run `edgedet optimize"):
            det = edgedet.load(model)  # the file alone: the default runtime for its suffix
        with det:
            assert det.runtime_name == "onnxruntime"
