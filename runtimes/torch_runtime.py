"""torch: runs a PyTorch module itself, on CPU or CUDA. The reference (oracle) for parity tests
and the runtime the trainers evaluate with. Needs the ``train`` extra; nothing else imports torch.

Thread safety: one `TorchRuntime` may be shared by several threads; ``infer`` holds a lock, since
a user's module may keep per-call state in attributes (YOLO heads cache their grids), and torch
parallelises each call over its own intra-op threads anyway.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgedet.errors import InvalidInputError, ModelLoadError, RuntimeUnavailableError

from .base import RuntimeBase, TensorSpec
from .capabilities import TORCH, RuntimeCapabilities


class TorchRuntime(RuntimeBase):
    """Wraps an ``nn.Module`` (or a TorchScript file) whose forward takes one NCHW float tensor.

    Args:
        model: the module, or a path to a TorchScript ``.pt`` file.
        device: ``cpu`` (default) or ``cuda[:N]``.
        input_name / output_names: tensor names to expose, matching the ONNX export so parity
            tests compare like with like.
        input_shape: the input's shape, ``None`` for dynamic dimensions.

    Safe to share between threads: calls are serialised by a lock.
    """

    name: ClassVar[str] = "torch"
    capabilities: ClassVar[RuntimeCapabilities] = TORCH

    def __init__(
        self,
        model: Any,
        *,
        device: str | None = None,
        input_name: str = "images",
        output_names: Sequence[str] = ("output",),
        input_shape: tuple[int | None, ...] = (None, 3, None, None),
        threads: int | None = None,
    ):
        self.device = torch.device(device or "cpu")
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeUnavailableError(
                f"torch device '{device}' requested but CUDA is not available"
            )
        if threads is not None:
            torch.set_num_threads(threads)
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not path.is_file():
                raise ModelLoadError(f"model file not found: {path}")
            try:
                model = torch.jit.load(str(path), map_location=self.device)
            except RuntimeError as err:
                raise ModelLoadError(f"{path} is not a TorchScript file: {err}") from err
        if not isinstance(model, torch.nn.Module):
            raise InvalidInputError(f"torch runtime needs an nn.Module, got {type(model).__name__}")
        self.module = model.to(self.device).eval()
        self._lock = threading.Lock()
        self.inputs = (TensorSpec(input_name, input_shape, np.dtype(np.float32)),)
        self.outputs = tuple(TensorSpec(n, (), np.dtype(np.float32)) for n in output_names)
        if all(isinstance(d, int) for d in input_shape):
            # A static input: one dry run gives the output shapes decoders validate against.
            shape = tuple(int(d) for d in input_shape if d is not None)
            dry = self.infer({input_name: np.zeros(shape, np.float32)})
            self.outputs = tuple(
                TensorSpec(n, tuple(dry[n].shape), np.dtype(np.float32)) for n in output_names
            )

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        if self._closed:
            raise InvalidInputError("runtime 'torch' is closed")
        if set(feeds) != {self.inputs[0].name}:
            raise InvalidInputError(
                f"runtime 'torch' expects input '{self.inputs[0].name}', got {sorted(feeds)}"
            )

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check_feeds(feeds)
        x = torch.from_numpy(np.ascontiguousarray(feeds[self.inputs[0].name])).to(self.device)
        with self._lock, torch.inference_mode():
            out = self.module(x)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if len(outs) != len(self.outputs):
            raise InvalidInputError(
                f"torch module returned {len(outs)} outputs, expected {len(self.outputs)} "
                f"({[s.name for s in self.outputs]}); pass output_names="
            )
        return {s.name: o.detach().float().cpu().numpy() for s, o in zip(self.outputs, outs)}

    @property
    def precision(self) -> str:
        return "fp32"

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "runtime_version": torch.__version__,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "precision": "fp32",
        }

    @classmethod
    def probe(cls) -> dict[str, Any]:
        devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return {"version": torch.__version__, "devices": devices}

    def close(self) -> None:
        self.module = None  # type: ignore[assignment]
        super().close()
