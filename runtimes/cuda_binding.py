"""The CUDA calls the TensorRT runtime needs, over cuda-python or pycuda.

TensorRT's Python API takes device pointers and a stream handle as plain ints; something else
must allocate memory, copy, and hold a CUDA context. Two bindings can:

- **cuda-python** (``cuda.bindings.driver``, the CUDA driver API; preferred): prebuilt wheels for
  x86-64 and aarch64, the binding NVIDIA's own TensorRT samples use since 10.13 ("use
  cuda-python instead of PyCUDA", TensorRT CHANGELOG; samples/python/common_runtime.py). Every
  call returns ``(CUresult, value...)``; `_check` turns a non-success into `CudaError`.
  Calls (CUDA Driver API reference, docs.nvidia.com/cuda/cuda-driver-api): ``cuInit``,
  ``cuDeviceGetCount``, ``cuDeviceGet``, ``cuDeviceGetName``, ``cuDeviceGetAttribute``,
  ``cuDeviceTotalMem``, ``cuDevicePrimaryCtxRetain`` / ``Release``, ``cuCtxPushCurrent`` /
  ``cuCtxPopCurrent`` / ``cuCtxGetCurrent`` / ``cuCtxGetDevice``, ``cuStreamCreate`` /
  ``Synchronize`` / ``Destroy``, ``cuMemAlloc`` / ``cuMemFree``, ``cuMemHostAlloc`` /
  ``cuMemFreeHost``, ``cuMemcpyHtoD(Async)`` / ``cuMemcpyDtoHAsync``.
- **pycuda** (``pycuda.driver``; used when cuda-python is not installed): compiles from source
  (needs ``nvcc`` on PATH and the Python headers), same driver calls behind its own classes.

``EDGEDET_CUDA_BINDING=pycuda`` (or ``cuda-python``) forces one. Both keep the same model: the
device's *primary* context (shared with the CUDA runtime, torch, cupy), pushed around each call
by the caller, so any thread can use it.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

import numpy as np

from edgedet.errors import missing_extra


class CudaError(RuntimeError):
    """A CUDA driver call failed (cuda-python); pycuda raises its own ``pycuda.driver.Error``."""


class CudaPython:
    """cuda-python's driver API (``cuda.bindings.driver``)."""

    name = "cuda-python"

    def __init__(self, driver: Any) -> None:
        self.drv = driver
        self.errors: tuple[type[BaseException], ...] = (CudaError,)

    def _check(self, result: Any, what: str) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _e, text = self.drv.cuGetErrorString(err)
            raise CudaError(f"{what} failed: {text.decode() if isinstance(text, bytes) else text}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _device(self, index: int) -> Any:
        return self._check(self.drv.cuDeviceGet(int(index)), f"cuDeviceGet({index})")

    def _attr(self, index: int, attr: str) -> int:
        attribute = getattr(self.drv.CUdevice_attribute, attr)
        return int(self._check(self.drv.cuDeviceGetAttribute(attribute, self._device(index)), attr))

    def init(self) -> None:
        self._check(self.drv.cuInit(0), "cuInit")

    def device_count(self) -> int:
        return int(self._check(self.drv.cuDeviceGetCount(), "cuDeviceGetCount"))

    def device_name(self, index: int) -> str:
        raw = self._check(self.drv.cuDeviceGetName(256, self._device(index)), "cuDeviceGetName")
        return bytes(raw).split(b"\0")[0].decode(errors="replace")

    def compute_capability(self, index: int) -> tuple[int, int]:
        return (
            self._attr(index, "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR"),
            self._attr(index, "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR"),
        )

    def sm_count(self, index: int) -> int:
        return self._attr(index, "CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT")

    def total_memory(self, index: int) -> int:
        return int(self._check(self.drv.cuDeviceTotalMem(self._device(index)), "cuDeviceTotalMem"))

    def primary_context(self, index: int) -> PrimaryContext:
        dev = self._device(index)
        ctx = self._check(self.drv.cuDevicePrimaryCtxRetain(dev), "cuDevicePrimaryCtxRetain")
        return PrimaryContext(self, dev, ctx)

    def current_device(self) -> int | None:
        ctx = self._check(self.drv.cuCtxGetCurrent(), "cuCtxGetCurrent")
        if ctx is None or int(ctx) == 0:
            return None
        return int(self._check(self.drv.cuCtxGetDevice(), "cuCtxGetDevice"))

    def pop(self) -> None:
        self._check(self.drv.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def stream(self) -> Stream:
        return Stream(self, self._check(self.drv.cuStreamCreate(0), "cuStreamCreate"))

    def mem_alloc(self, nbytes: int) -> DeviceMemory:
        ptr = self._check(self.drv.cuMemAlloc(max(int(nbytes), 1)), "cuMemAlloc")
        return DeviceMemory(self, ptr)

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A numpy array over page-locked host memory (``cuMemHostAlloc``); freed by
        `free_pinned` (the caller keeps the array until then)."""
        dt = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dt.itemsize, 1)
        ptr = int(self._check(self.drv.cuMemHostAlloc(nbytes, 0), "cuMemHostAlloc"))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        arr = np.frombuffer(raw, np.uint8, count=nbytes)[: int(np.prod(shape)) * dt.itemsize]
        out = arr.view(dt).reshape(shape)
        _PINNED[id(out)] = ptr
        return out

    def free_pinned(self, array: np.ndarray) -> None:
        ptr = _PINNED.pop(id(array), None)
        if ptr is not None:
            self._check(self.drv.cuMemFreeHost(ptr), "cuMemFreeHost")

    def htod_async(self, dst: DeviceMemory, src: np.ndarray, stream: Stream) -> None:
        self._check(
            self.drv.cuMemcpyHtoDAsync(dst.ptr, src.ctypes.data, src.nbytes, stream.raw),
            "cuMemcpyHtoDAsync",
        )

    def dtoh_async(self, dst: np.ndarray, src: DeviceMemory, stream: Stream) -> None:
        self._check(
            self.drv.cuMemcpyDtoHAsync(dst.ctypes.data, src.ptr, dst.nbytes, stream.raw),
            "cuMemcpyDtoHAsync",
        )

    def htod(self, dst_ptr: int, src: np.ndarray) -> None:
        src = np.ascontiguousarray(src)
        self._check(self.drv.cuMemcpyHtoD(dst_ptr, src.ctypes.data, src.nbytes), "cuMemcpyHtoD")


#: id(pinned array) -> host pointer, for cuMemFreeHost.
_PINNED: dict[int, int] = {}


class PrimaryContext:
    """A retained primary context: ``push()`` makes it current on this thread; ``release()``."""

    def __init__(self, backend: Any, device: Any, handle: Any) -> None:
        self.backend = backend
        self.device = device
        self.handle = handle

    def push(self) -> None:
        if self.backend.name == "pycuda":
            self.handle.push()
        else:
            self.backend._check(self.backend.drv.cuCtxPushCurrent(self.handle), "cuCtxPushCurrent")

    def release(self) -> None:
        if self.backend.name == "pycuda":
            self.handle.detach()  # primary context: cuDevicePrimaryCtxRelease
        else:
            self.backend._check(
                self.backend.drv.cuDevicePrimaryCtxRelease(self.device), "cuDevicePrimaryCtxRelease"
            )


class Stream:
    def __init__(self, backend: Any, raw: Any) -> None:
        self.backend = backend
        self.raw = raw

    @property
    def handle(self) -> int:
        """The ``cudaStream_t`` as an int, what ``execute_async_v3(stream_handle)`` takes."""
        return int(self.raw.handle) if self.backend.name == "pycuda" else int(self.raw)

    def synchronize(self) -> None:
        if self.backend.name == "pycuda":
            self.raw.synchronize()
        else:
            self.backend._check(self.backend.drv.cuStreamSynchronize(self.raw), "cuStreamSynchronize")

    def destroy(self) -> None:
        if self.backend.name != "pycuda":
            self.backend._check(self.backend.drv.cuStreamDestroy(self.raw), "cuStreamDestroy")


class DeviceMemory:
    def __init__(self, backend: Any, raw: Any) -> None:
        self.backend = backend
        self.raw = raw

    @property
    def ptr(self) -> int:
        return int(self.raw)

    def __int__(self) -> int:
        return self.ptr

    def free(self) -> None:
        if self.backend.name == "pycuda":
            self.raw.free()
        else:
            self.backend._check(self.backend.drv.cuMemFree(self.raw), "cuMemFree")


class Pycuda:
    """pycuda's driver API (``pycuda.driver``), with the same methods as `CudaPython`."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self.cuda = driver
        self.errors: tuple[type[BaseException], ...] = (driver.Error,)

    def init(self) -> None:
        self.cuda.init()

    def device_count(self) -> int:
        return int(self.cuda.Device.count())

    def device_name(self, index: int) -> str:
        return str(self.cuda.Device(index).name())

    def compute_capability(self, index: int) -> tuple[int, int]:
        major, minor = self.cuda.Device(index).compute_capability()
        return int(major), int(minor)

    def sm_count(self, index: int) -> int:
        attr = self.cuda.device_attribute.MULTIPROCESSOR_COUNT
        return int(self.cuda.Device(index).get_attribute(attr))

    def total_memory(self, index: int) -> int:
        return int(self.cuda.Device(index).total_memory())

    def primary_context(self, index: int) -> PrimaryContext:
        dev = self.cuda.Device(index)
        return PrimaryContext(self, dev, dev.retain_primary_context())

    def current_device(self) -> int | None:
        if self.cuda.Context.get_current() is None:
            return None
        dev = self.cuda.Context.get_device()
        return next(i for i in range(self.device_count()) if self.cuda.Device(i) == dev)

    def pop(self) -> None:
        self.cuda.Context.pop()

    def stream(self) -> Stream:
        return Stream(self, self.cuda.Stream())

    def mem_alloc(self, nbytes: int) -> DeviceMemory:
        return DeviceMemory(self, self.cuda.mem_alloc(max(int(nbytes), 1)))

    def pinned_empty(self, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)  # type: ignore[no-any-return]

    def free_pinned(self, array: np.ndarray) -> None:
        return None  # pycuda frees page-locked arrays with the array

    def htod_async(self, dst: DeviceMemory, src: np.ndarray, stream: Stream) -> None:
        self.cuda.memcpy_htod_async(dst.raw, src, stream.raw)

    def dtoh_async(self, dst: np.ndarray, src: DeviceMemory, stream: Stream) -> None:
        self.cuda.memcpy_dtoh_async(dst, src.raw, stream.raw)

    def htod(self, dst_ptr: int, src: np.ndarray) -> None:
        self.cuda.memcpy_htod(dst_ptr, np.ascontiguousarray(src))


def load_backend(what: str = "runtime 'tensorrt'") -> CudaPython | Pycuda:
    """cuda-python if it imports (or ``EDGEDET_CUDA_BINDING`` says which), else pycuda; a
    RuntimeUnavailableError naming the extra when neither is installed."""
    forced = os.environ.get("EDGEDET_CUDA_BINDING", "").strip().lower()
    if forced != "pycuda":
        try:
            from cuda.bindings import driver

            return CudaPython(driver)
        except ImportError as err:
            if forced:
                raise missing_extra("cuda-python", "tensorrt", what) from err
    try:
        import pycuda.driver as pycuda_driver
    except ImportError as err:
        raise missing_extra("cuda-python (or pycuda)", "tensorrt", what) from err
    return Pycuda(pycuda_driver)
