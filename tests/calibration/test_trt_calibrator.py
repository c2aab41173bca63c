"""TensorRT entropy calibrator logic and its keyed cache, against a tiny fake ``tensorrt``
module (real TensorRT needs an NVIDIA GPU): marked ``fake_tensorrt``. The fake provides only
``__version__`` and an ``IInt8EntropyCalibrator2`` base class; device memory is a dict."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from edgedet.calibration.source import CalibrationSource
from edgedet.calibration.spec import CalibrationSpec
from edgedet.calibration.trt_int8 import (
    CACHE_MAGIC,
    cache_key,
    make_entropy_calibrator,
    preprocessing_hash,
    qdq_for_tensorrt,
    read_cache,
)

pytestmark = pytest.mark.fake_tensorrt


class FakeDevice:
    def __init__(self) -> None:
        self.memory: dict[int, np.ndarray] = {}
        self.next = 0x1000

    def alloc(self, nbytes: int) -> int:
        ptr = self.next
        self.next += nbytes + 256
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        return ptr

    def copy_htod(self, ptr: int, array: np.ndarray) -> None:
        self.memory[ptr][:] = np.frombuffer(array.tobytes(), np.uint8)


@pytest.fixture()
def fake_trt(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"  # type: ignore[attr-defined]

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt


def test_calibrator_batches_and_cache(
    fake_trt, tiny_detector, image_dir: Path, tmp_path: Path
) -> None:
    src = CalibrationSource(tiny_detector, images=image_dir, num=5, batch_size=2)
    dev = FakeDevice()
    cal = make_entropy_calibrator(
        src,
        tiny_detector.meta,
        cache_dir=tmp_path,
        model_stem="tiny",
        input_shape=(2, 3, 32, 32),
        device=dev,
    )
    assert isinstance(cal, fake_trt.IInt8EntropyCalibrator2)
    assert cal.get_batch_size() == 2
    assert cal.read_calibration_cache() is None
    ptrs = [cal.get_batch(["images"]) for _ in range(4)]
    assert ptrs[0] is not None and ptrs[2] is not None and ptrs[3] is None  # 3 batches (2+2+1)
    first = CalibrationSource(tiny_detector, images=image_dir, num=5, batch_size=2).get_next()
    assert first is not None
    # the last batch was padded to the batch size; the buffer holds the last fed batch
    assert dev.memory[ptrs[0][0]].nbytes == first["images"].nbytes
    with pytest.raises(Exception, match="TensorRT asks for input 'x'"):
        cal.logic._iter = iter(src)
        cal.get_batch(["x"])
    cal.write_calibration_cache(b"TRT-TABLE")
    files = list(tmp_path.glob("tiny.*.calib"))
    assert len(files) == 1 and files[0].read_bytes().startswith(CACHE_MAGIC)
    assert cal.read_calibration_cache() == b"TRT-TABLE"
    # a second calibrator over the same images / preprocessing / method finds the cache
    again = make_entropy_calibrator(
        src,
        tiny_detector.meta,
        cache_dir=tmp_path,
        model_stem="tiny",
        input_shape=(2, 3, 32, 32),
        device=dev,
    )
    assert again.read_calibration_cache() == b"TRT-TABLE"


def test_cache_key_covers_images_preprocessing_method(tiny_detector) -> None:
    meta = tiny_detector.meta
    base = cache_key("a" * 64, meta, "entropy2", input_shape=(1, 3, 32, 32), trt_version="10.3")
    assert base == cache_key(
        "a" * 64, meta, "entropy2", input_shape=(1, 3, 32, 32), trt_version="10.3"
    )
    changed = [
        cache_key("b" * 64, meta, "entropy2", input_shape=(1, 3, 32, 32), trt_version="10.3"),
        cache_key(
            "a" * 64,
            meta.replace(pad_value=0),
            "entropy2",
            input_shape=(1, 3, 32, 32),
            trt_version="10.3",
        ),
        cache_key(
            "a" * 64,
            meta.replace(color="BGR"),
            "entropy2",
            input_shape=(1, 3, 32, 32),
            trt_version="10.3",
        ),
        cache_key("a" * 64, meta, "minmax", input_shape=(1, 3, 32, 32), trt_version="10.3"),
        cache_key("a" * 64, meta, "entropy2", input_shape=(4, 3, 32, 32), trt_version="10.3"),
        cache_key("a" * 64, meta, "entropy2", input_shape=(1, 3, 32, 32), trt_version="10.4"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    # class names do not change preprocessing
    assert preprocessing_hash(meta) == preprocessing_hash(meta.replace(class_names=("x", "y")))


def test_new_images_miss_the_old_cache(
    fake_trt, tiny_detector, image_dir: Path, tmp_path: Path
) -> None:
    dev = FakeDevice()
    a = CalibrationSource(tiny_detector, images=image_dir, num=4, seed=0)
    b = CalibrationSource(tiny_detector, images=image_dir, num=4, seed=1)
    cal_a = make_entropy_calibrator(
        a, tiny_detector.meta, cache_dir=tmp_path, model_stem="m", device=dev
    )
    cal_a.write_calibration_cache(b"A")
    cal_b = make_entropy_calibrator(
        b, tiny_detector.meta, cache_dir=tmp_path, model_stem="m", device=dev
    )
    assert cal_b.read_calibration_cache() is None
    # a cache file renamed to another key is refused, not trusted
    path_a = cal_a.logic.cache_file
    path_a.rename(cal_b.logic.cache_file)
    assert read_cache(cal_b.logic.cache_file, cal_b.logic.key) is None


def test_missing_tensorrt_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tiny_detector, image_dir: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    src = CalibrationSource(tiny_detector, images=image_dir, num=2)
    with pytest.raises(ImportError, match=r"the 'tensorrt' extra\): pip install .+\[tensorrt\]"):
        make_entropy_calibrator(src, tiny_detector.meta, cache_dir=tmp_path, model_stem="m")


def test_qdq_spec_for_tensorrt() -> None:
    spec = qdq_for_tensorrt(CalibrationSpec(reduce_range=True))
    assert spec.symmetric_activations and spec.per_channel and not spec.reduce_range
