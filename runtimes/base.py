"""The runtime protocol: numpy in, numpy out.

A runtime wraps one inference library (ONNX Runtime, OpenVINO, TensorRT, torch). It knows
nothing of images or boxes: the detector layer feeds it preprocessed tensors and decodes what it
returns. Optional capabilities (async submission, precision reporting) are separate
runtime-checkable protocols, so no runtime has to stub what it cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output.

    ``shape`` holds ``None`` for a dynamic dimension (batch, or a dynamic image size).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def is_dynamic(self) -> bool:
        return any(d is None for d in self.shape)

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}]:{np.dtype(self.dtype).name}"


@runtime_checkable
class Runtime(Protocol):
    """What every runtime offers. Also a context manager (``close`` on exit)."""

    name: ClassVar[str]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. ``feeds`` maps every input name to an array of its dtype."""
        ...

    def close(self) -> None:
        """Release sessions, buffers, streams. Idempotent."""
        ...

    def __enter__(self) -> Runtime: ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class ReportsPrecision(Protocol):
    """A runtime that can say which precision actually ran (e.g. OpenVINO's bf16 on CPU)."""

    @property
    def precision(self) -> str:
        """A `edgedet.runtimes.capabilities.Precision` other than 'mixed' (INT8 models with
        float fallbacks say 'int8'); one of the runtime's declared ``capabilities.precisions``."""
        ...


@runtime_checkable
class AsyncInfer(Protocol):
    """A runtime that can keep several requests in flight (OpenVINO queue, ORT run_async...).

    ``submit`` returns at once; ``callback(outputs, userdata)`` is called from a runtime thread;
    ``wait_all`` blocks until every submitted request has called back.
    """

    def submit(
        self,
        feeds: Mapping[str, np.ndarray],
        callback: Callable[[dict[str, np.ndarray], Any], None],
        userdata: Any = None,
    ) -> None: ...

    def wait_all(self) -> None: ...


@runtime_checkable
class DescribesItself(Protocol):
    """A runtime that can report its library version and device for benchmark records."""

    def describe(self) -> dict[str, Any]:
        """At least ``runtime``, ``runtime_version``, ``device``; may add threads, providers..."""
        ...


class RuntimeBase:
    """Shared context-manager plumbing; runtimes may inherit it, the protocol does not need it."""

    name: ClassVar[str] = "base"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    _closed: bool = False

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> RuntimeBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            return

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Every input present, rank and fixed dims right; raises InvalidInputError otherwise."""
        from edgedet.errors import InvalidInputError

        if self._closed:
            raise InvalidInputError(f"runtime '{self.name}' is closed; load the model again")
        names = {s.name for s in self.inputs}
        missing = names - set(feeds)
        extra = set(feeds) - names
        if missing or extra:
            raise InvalidInputError(
                f"runtime '{self.name}' expects inputs {sorted(names)}, got {sorted(feeds)}"
            )
        for spec in self.inputs:
            arr = feeds[spec.name]
            ok = len(arr.shape) == len(spec.shape) and all(
                want is None or want == got for want, got in zip(spec.shape, arr.shape)
            )
            if not ok:
                raise InvalidInputError(
                    f"input '{spec.name}' must have shape {spec.describe()}, got {tuple(arr.shape)}"
                )
