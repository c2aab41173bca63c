"""One registry of runtimes: a table from name to ``"module:Class"``, imported on demand.

Third parties add runtimes through the ``edgedet.runtimes`` entry-point group (value
``"package.module:Class"``); a name registered twice is an error, never a silent override.

``runtime="auto"`` resolves from the file suffix by `AUTO_BY_SUFFIX`; the detector says what it
chose. A runtime the user asked for that cannot run raises; fallbacks are opt-in
(``runtime=("tensorrt", "onnxruntime")``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from edgedet.errors import InvalidInputError, RuntimeUnavailableError, missing_extra
from edgedet.hints import arg

from . import capabilities as caps
from .capabilities import RuntimeCapabilities


@dataclass(frozen=True)
class RuntimeEntry:
    """Where a runtime lives and what installs it."""

    target: str  # "module:Class"
    package: str  # the heavy library it needs, for the error message
    extra: str  # the edgedet extra that installs it
    #: the runtime's declaration, readable without importing its library (built-ins only;
    #: a plugin's is read from its class, ``capabilities``)
    capabilities: RuntimeCapabilities | None = None


_BUILTIN: dict[str, RuntimeEntry] = {
    "onnxruntime": RuntimeEntry(
        "edgedet.runtimes.ort_runtime:OnnxRuntime", "onnxruntime", "onnxruntime", caps.ONNXRUNTIME
    ),
    "openvino": RuntimeEntry(
        "edgedet.runtimes.openvino_runtime:OpenVinoRuntime", "openvino", "openvino", caps.OPENVINO
    ),
    "tensorrt": RuntimeEntry(
        "edgedet.runtimes.tensorrt_runtime:TensorRTRuntime", "tensorrt and cuda-python", "tensorrt",
        caps.TENSORRT,
    ),
    "torch": RuntimeEntry(
        "edgedet.runtimes.torch_runtime:TorchRuntime", "torch", "train", caps.TORCH
    ),
}

#: The one documented table behind ``runtime="auto"``: model file suffix -> runtime name.
AUTO_BY_SUFFIX: dict[str, str] = {
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".xml": "openvino",
    ".onnx": "onnxruntime",
    ".pt": "torch",
}

_registry: dict[str, RuntimeEntry] | None = None


def _load_registry() -> dict[str, RuntimeEntry]:
    global _registry
    if _registry is None:
        table = dict(_BUILTIN)
        for ep in metadata.entry_points(group="edgedet.runtimes"):
            if ep.name in table:
                raise InvalidInputError(
                    f"runtime '{ep.name}' is registered twice: by edgedet ({table[ep.name].target}) "
                    f"and by entry point {ep.value}; uninstall one of them"
                )
            table[ep.name] = RuntimeEntry(ep.value, ep.value.split(":")[0].split(".")[0], ep.name)
        _registry = table
    return _registry


def register_runtime(name: str, target: str, *, package: str = "", extra: str = "") -> None:
    """Register a runtime at run time (``target`` is ``"module:Class"``); duplicates raise."""
    table = _load_registry()
    if name in table:
        raise InvalidInputError(f"runtime '{name}' is already registered ({table[name].target})")
    table[name] = RuntimeEntry(target, package or target.split(".")[0], extra or name)


def runtime_names() -> list[str]:
    """Every registered runtime name, installed or not."""
    return sorted(_load_registry())


def runtime_class(name: str) -> type[Any]:
    """Import and return the class of runtime ``name``.

    Raises:
        InvalidInputError: no runtime of that name is registered.
        RuntimeUnavailableError: its library is not installed (the message names the extra).
    """
    table = _load_registry()
    if name not in table:
        raise InvalidInputError(
            f"unknown runtime '{name}'; known runtimes: {', '.join(sorted(table))}"
        )
    entry = table[name]
    module_name, _, class_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        if isinstance(err, RuntimeUnavailableError):
            raise
        raise missing_extra(entry.package, entry.extra, f"runtime '{name}'") from err
    return getattr(module, class_name)  # type: ignore[no-any-return]


def runtime_capabilities(name: str) -> RuntimeCapabilities:
    """What runtime ``name`` declares it supports (`RuntimeCapabilities`). Built-in runtimes
    answer without importing their library; a plugin's class is imported and must carry a
    ``capabilities`` attribute."""
    table = _load_registry()
    if name not in table:
        raise InvalidInputError(
            f"unknown runtime '{name}'; known runtimes: {', '.join(sorted(table))}"
        )
    declared = table[name].capabilities
    if declared is None:
        declared = getattr(runtime_class(name), "capabilities", None)
    if not isinstance(declared, RuntimeCapabilities):
        raise InvalidInputError(
            f"runtime '{name}' declares no capabilities: its class needs a `capabilities` "
            "attribute (edgedet.runtimes.capabilities.RuntimeCapabilities)"
        )
    return declared


def resolve_auto(path: str | Path) -> str:
    """The runtime ``"auto"`` picks for a model file, by suffix (see `AUTO_BY_SUFFIX`)."""
    suffix = Path(path).suffix.lower()
    if suffix not in AUTO_BY_SUFFIX:
        raise InvalidInputError(
            f"cannot choose a runtime for '{path}': suffix '{suffix}' is none of "
            f"{', '.join(AUTO_BY_SUFFIX)}; pass {arg('runtime')} explicitly"
        )
    return AUTO_BY_SUFFIX[suffix]


def probe(name: str) -> dict[str, Any]:
    """Whether runtime ``name`` can run here: ``{name, available, version, devices, reason}``."""
    try:
        cls = runtime_class(name)
    except RuntimeUnavailableError as err:
        return {
            "name": name,
            "available": False,
            "version": None,
            "devices": [],
            "reason": str(err),
        }
    info = cls.probe() if hasattr(cls, "probe") else {}
    return {"name": name, "available": True, "reason": "", **info}
