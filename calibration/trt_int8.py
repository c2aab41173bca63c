"""INT8 for TensorRT: explicit quantization from QDQ ONNX, and the TensorRT 10 entropy
calibrator with a cache that cannot go stale silently.

**Explicit quantization (recommended, the only path in TensorRT 11).** Build the QDQ ONNX model
`edgedet.calibration.ort_int8.quantize_onnx` writes, with *symmetric* activations
(``CalibrationSpec(symmetric_activations=True)``: TensorRT only runs int8 with zero point 0), and
give it to TensorRT with the INT8 flag (``edgedet`` TensorRT runtime: ``precision="int8"``; by
hand: ``trtexec --onnx=model_int8.onnx --int8 --fp16``). TensorRT reads the scales from the Q/DQ
nodes and needs no calibrator. The decode tail stays float as in the ONNX model. `qdq_for_tensorrt`
does that with the right spec.

**Implicit calibration (TensorRT 8.6 / 10.x only; removed in TensorRT 11).**
`make_entropy_calibrator` returns an
``IInt8EntropyCalibrator2`` that feeds a `CalibrationSource` (the deployment preprocessing) to
TensorRT in device memory, and reads/writes a calibration cache whose *file name* holds a key
over everything the cache depends on: the image list hash, the preprocessing (sha256 of the meta
fields that define it, as JSON), the method, the input shape and the TensorRT version. Change any
of them and the old cache is simply not found; a cache whose recorded key does not match its name
is refused with a warning. Written atomically.

It is attached to a build by ``edgedet.runtimes.trt_engine.build_serialized_engine(...,
calibrator=cal)`` (``IBuilderConfig.int8_calibrator`` plus a calibration profile at the source's
batch). TensorRT's pybind11 trampoline (pyInt8.cpp ``getBatch``) catches a Python exception from
``get_batch``, prints it and reads it as "no more batches"; the calibrator keeps the exception
(``calibrator.logic.error``) and the build raises it as a `CalibrationError` afterwards. On
TensorRT 11 (no ``IInt8EntropyCalibrator2``) `make_entropy_calibrator` raises
RuntimeUnavailableError naming the Q/DQ path instead.

The calibrator class is built lazily, when ``tensorrt`` (and a CUDA binding) import, so this module
imports everywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edgedet.errors import CalibrationError, RuntimeUnavailableError, missing_extra
from edgedet.fileio import atomic_write_bytes
from edgedet.meta import ModelMeta

from .source import CalibrationSource
from .spec import CalibrationSpec

log = logging.getLogger("edgedet.calibration")

#: The ModelMeta fields that define preprocessing (and so the calibration data).
PREPROCESS_FIELDS = (
    "input_size",
    "layout",
    "color",
    "scale",
    "mean",
    "std",
    "letterbox",
    "pad_value",
)

CACHE_MAGIC = b"EDGEDET-TRTCALIB1\n"


def preprocessing_hash(meta: ModelMeta) -> str:
    """sha256 of the preprocessing fields of ``meta`` as canonical JSON."""
    data = meta.to_dict()
    fields = {k: data.get(k) for k in PREPROCESS_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cache_key(
    images_sha256: str,
    meta: ModelMeta,
    method: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    trt_version: str = "",
) -> str:
    """A short key over images, preprocessing, method, input shape and TensorRT version."""
    h = hashlib.sha256()
    for part in (
        images_sha256,
        preprocessing_hash(meta),
        method,
        json.dumps(list(input_shape) if input_shape else None),
        trt_version,
    ):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def cache_path(cache_dir: str | Path, model_stem: str, key: str) -> Path:
    return Path(cache_dir) / f"{model_stem}.{key}.calib"


def read_cache(path: Path, key: str) -> bytes | None:
    """The TensorRT calibration table in ``path`` if its header carries ``key``; else None."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    if not data.startswith(CACHE_MAGIC):
        log.warning("calibration cache %s has no edgedet header; ignoring it", path)
        return None
    header, _, body = data[len(CACHE_MAGIC) :].partition(b"\n")
    if header.decode(errors="replace") != key:
        log.warning(
            "calibration cache %s was made for key %s, not %s; ignoring it", path, header[:20], key
        )
        return None
    return body


def write_cache(path: Path, key: str, table: bytes) -> None:
    atomic_write_bytes(path, CACHE_MAGIC + key.encode() + b"\n" + bytes(table))


class CalibratorLogic:
    """What the TensorRT calibrator does, without TensorRT: batches from a source copied to
    device buffers, and the keyed cache. The TensorRT class delegates to it.

    ``device`` provides ``alloc(nbytes) -> int`` and ``copy_htod(ptr, array)`` (cuda-python in
    production, a fake in tests).
    """

    def __init__(
        self,
        source: CalibrationSource,
        meta: ModelMeta,
        method: str,
        cache_file: Path,
        key: str,
        device: Any,
    ) -> None:
        self.source = source
        self.meta = meta
        self.method = method
        self.cache_file = cache_file
        self.key = key
        self.device = device
        self.batch_size = source.batch_size
        self._iter = iter(source)
        self._buffers: dict[str, int] = {}
        self.batches_served = 0
        #: The first exception ``get_batch`` raised (TensorRT swallows it; the build re-raises).
        self.error: BaseException | None = None

    def get_batch_size(self) -> int:
        return self.batch_size

    def get_batch(self, names: list[str]) -> list[int] | None:
        feeds = next(self._iter, None)
        if feeds is None:
            return None
        pointers: list[int] = []
        for name in names:
            if name not in feeds:
                raise CalibrationError(
                    f"TensorRT asks for input {name!r}; the calibration source feeds {sorted(feeds)}"
                )
            arr = np.ascontiguousarray(feeds[name], dtype=np.float32)
            if arr.shape[0] != self.batch_size:  # last, short batch: pad by repeating
                reps = [arr] + [arr[-1:]] * (self.batch_size - arr.shape[0])
                arr = np.ascontiguousarray(np.concatenate(reps, axis=0))
            if name not in self._buffers:
                self._buffers[name] = self.device.alloc(arr.nbytes)
            self.device.copy_htod(self._buffers[name], arr)
            pointers.append(int(self._buffers[name]))
        self.batches_served += 1
        return pointers

    def read_calibration_cache(self) -> bytes | None:
        table = read_cache(self.cache_file, self.key)
        if table is not None:
            log.info("using calibration cache %s", self.cache_file)
        return table

    def write_calibration_cache(self, cache: Any) -> None:
        write_cache(self.cache_file, self.key, bytes(cache))
        log.info("wrote calibration cache %s", self.cache_file)


class _CudaDevice:
    """Device buffers for the calibrator through `edgedet.runtimes.cuda_binding` (cuda-python
    or pycuda); needs a current CUDA context while TensorRT calibrates."""

    def __init__(self) -> None:
        from edgedet.runtimes.cuda_binding import load_backend

        self.cuda = load_backend("TensorRT INT8 calibration")
        self._allocs: list[Any] = []

    def alloc(self, nbytes: int) -> int:
        mem = self.cuda.mem_alloc(nbytes)
        self._allocs.append(mem)
        return mem.ptr

    def copy_htod(self, ptr: int, array: np.ndarray) -> None:
        self.cuda.htod(ptr, array)


def make_entropy_calibrator(
    source: CalibrationSource,
    meta: ModelMeta,
    *,
    cache_dir: str | Path,
    model_stem: str,
    input_shape: tuple[int, ...] | None = None,
    device: Any = None,
) -> Any:
    """A ``tensorrt.IInt8EntropyCalibrator2`` over ``source`` with a keyed cache in
    ``cache_dir``. Needs ``tensorrt`` (8.6 / 10.x) and, unless ``device`` is given, cuda-python
    (or pycuda) with a current CUDA context."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise missing_extra("tensorrt", "tensorrt", "TensorRT INT8 calibration") from err
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        # TensorRT 11 removed pyInt8.cpp (docs: "Removed Python APIs and Replacements",
        # docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
        # tensorrt-10x-to-11x-python-api-reference.html: int8_calibrator -> Q/DQ nodes).
        raise RuntimeUnavailableError(
            f"TensorRT {getattr(trt, '__version__', '?')} has no implicit INT8 calibrator "
            "(IInt8EntropyCalibrator2 was removed in TensorRT 11): quantize the ONNX model with "
            "Q/DQ nodes instead (edgedet.calibration.ort_int8 with qdq_for_tensorrt) and build "
            "the engine from that model"
        )
    if device is None:
        device = _CudaDevice()
    key = cache_key(
        source.report.images_sha256,
        meta,
        "entropy2",
        input_shape=input_shape,
        trt_version=str(getattr(trt, "__version__", "")),
    )
    logic = CalibratorLogic(
        source, meta, "entropy2", cache_path(cache_dir, model_stem, key), key, device
    )

    class EdgedetEntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.logic = logic

        def get_batch_size(self) -> int:
            return logic.get_batch_size()

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                return logic.get_batch(names)
            except BaseException as err:  # TensorRT prints and drops it: keep it for the build
                if logic.error is None:
                    logic.error = err
                raise

        def read_calibration_cache(self) -> bytes | None:
            return logic.read_calibration_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            logic.write_calibration_cache(cache)

    return EdgedetEntropyCalibrator()


def qdq_for_tensorrt(spec: CalibrationSpec) -> CalibrationSpec:
    """The spec TensorRT's explicit quantization needs: symmetric int8 activations, 8-bit
    weights, per-channel weights."""
    return spec.replace(symmetric_activations=True, reduce_range=False, per_channel=True)
