"""Thread-safety contract: one detector shared by 4 threads gives, for every frame, the result
the same detector gives for it alone. Every runtime here runs on the shipped sample model: ONNX
Runtime and OpenVINO for real, TensorRT against the repo's fake (labelled so), torch on the
sample converted by edgedet's ONNX->torch converter. The 10,000-frame soak of the same check is
``benchmarks/soak_threads.py`` (run by hand under the heavy lock, not here)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from edgedet.benchmarks.soak_threads import compare_threaded
from edgedet.runtimes.registry import probe, runtime_names

import edgedet
from edgedet.assets import sample_model_path
from edgedet.detector import Detector
from edgedet.meta import read_meta

THREADS = 4


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    from edgedet.data.synthetic import sample_validation_set

    folder = sample_validation_set(tmp_path_factory.mktemp("val"), n=8)
    paths = sorted((folder / "images").rglob("*.png")) or sorted(folder.rglob("*.png"))
    out = [cv2.imread(str(p)) for p in paths[:8]]
    assert len(out) == 8
    return out


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The fake tensorrt / pycuda modules of tests/runtimes/fake_tensorrt.py (not real TensorRT)."""
    from tests.runtimes.test_tensorrt_fake import _OURS, fake_tensorrt

    for name, module in fake_tensorrt.make_modules(fake_tensorrt.FakeState()).items():
        monkeypatch.setitem(sys.modules, name, module)
    for name in _OURS:
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield
    for name in _OURS:
        sys.modules.pop(name, None)


def _detector(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Detector:
    sample = sample_model_path()
    if name == "tensorrt":
        request.getfixturevalue("fake_trt")
        return edgedet.load(sample, runtime="tensorrt", runtime_options={"cache_dir": tmp_path})
    info = probe(name)
    if not info["available"]:
        pytest.skip(f"runtime '{name}' is not usable here: {info['reason']}")
    if name == "torch":
        from edgedet.runtimes.torch_runtime import TorchRuntime

        from edgedet.train.onnx_import import convert_onnx

        meta = read_meta(sample)
        assert meta is not None
        rt = TorchRuntime(convert_onnx(sample), input_shape=(1, 3, 192, 192))
        return Detector(rt, meta)
    return edgedet.load(sample, runtime=name, runtime_options={"threads": 1})


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.fake_tensorrt) if n == "tensorrt" else n
        for n in runtime_names()
    ],
)
def test_shared_detector_matches_sequential(
    name: str, frames: list[np.ndarray], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    det = _detector(name, tmp_path, request)
    with det:
        assert sum(len(det(f)) for f in frames) > 0  # frames with objects: a mix-up shows
        res = compare_threaded(det, frames, threads=THREADS)
    assert res["exceptions"] == 0, res["first_errors"]
    assert res["mismatches"] == 0, f"{name}: {res['mismatches']} of {res['calls']} results differ"


class _RacyRuntime:
    """A runtime that keeps the input in an attribute between two steps, as a shared request
    does: the check above must catch it (a contract test that cannot fail is no test)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, "racy"
        self.inputs, self.outputs = inner.inputs, inner.outputs
        self._feeds: Mapping[str, np.ndarray] = {}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._feeds = feeds
        time.sleep(0.002)
        return self.inner.infer(self._feeds)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()


def test_the_check_catches_a_runtime_that_mixes_threads(frames: list[np.ndarray]) -> None:
    from edgedet.runtimes.ort_runtime import OnnxRuntime

    sample = sample_model_path()
    meta = read_meta(sample)
    assert meta is not None
    det = Detector(_RacyRuntime(OnnxRuntime(sample, threads=1)), meta)
    res = compare_threaded(det, frames, threads=THREADS)
    assert res["mismatches"] > 0
