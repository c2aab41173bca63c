"""Loading torch files without running code from them.

``torch.load(weights_only=False)`` unpickles: a ``.pth`` from a model zoo can run whatever it
carries while it loads. edgedet never does that. Every checkpoint or model file it reads
(``prune`` / ``distill`` / ``qat`` / ``export`` MODEL and ``--teacher``, ``train --from`` /
``--resume``, ``prune --resume``, distillation and QAT checkpoints) goes through
`load_torch_file`:

1. the pickle inside the file is disassembled, not run
   (``torch.serialization.get_unsafe_globals_in_checkpoint``), and every class or function it
   names must be on edgedet's allow-list (`allowed_globals`): edgedet's own classes, the
   ``torch.nn`` layer classes its models are built from, and numpy's array rebuild (for the
   saved random state). Anything else is refused with `ModelLoadError` naming the file and the
   globals, before a single object is built;
2. the file is then read with ``torch.load(weights_only=True)`` inside
   ``torch.serialization.safe_globals(...)`` for just those names, so torch's restricted
   unpickler is the guarantee even if step 1 missed something (it refuses any other global and
   any call that is not a class of the allow-list or torch's own tensor rebuilds).

Classes on the allow-list are only *constructed* (``cls.__new__`` then ``__setstate__``, or
``cls(*args)``): no function of the file's choosing is called.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError, ModelLoadError

# edgedet modules whose classes may appear in its own checkpoints (models, their layers, the
# dataclasses saved with them)
_EDGEDET_MODULES = (
    "edgedet.train.models.net",
    "edgedet.train.onnx_import",
    "edgedet.train.rewrite",
    "edgedet.train.prune",
    "edgedet.train.qat",
    "edgedet.train.distill",
    "edgedet.train.trainer",
    "edgedet.train.augment",
    "edgedet.train.losses",
    "edgedet.train.assigner",
    "edgedet.train.reconstruct",
)

# Classes of optional packages that edgedet's checkpoints hold, imported from these fixed modules
# (never from a name in the file) only when a file names them: NNCF's quantizer config in QAT
# checkpoints carries this enum. NNCF itself rebuilds quantizers only from ``nncf.*`` modules.
_OPTIONAL = {
    "nncf.common.quantization.structs.QuantizationScheme": (
        "nncf.common.quantization.structs", "QuantizationScheme",
    ),
}  # fmt: skip

_HOW_TO = (
    "edgedet reads torch files with weights_only=True and only its own classes, so no code in a "
    "file runs while it loads. Give a checkpoint written by edgedet (train, prune, distill, qat), "
    "or, for a model from elsewhere that you trust, export it to ONNX yourself "
    "(torch.onnx.export) and pass the .onnx file"
)


def _key(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


@functools.cache
def allowed_globals() -> dict[str, Any]:
    """Every global edgedet's own checkpoints may name, by ``module.qualname``.

    Built from objects edgedet imports itself; a name in a file is looked up here and never
    imported, so reading a file's globals imports nothing the file chose."""
    import numpy as np
    import torch
    from torch import nn

    allowed: dict[str, Any] = {}
    for mod_name in _EDGEDET_MODULES:
        mod = importlib.import_module(mod_name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and obj.__module__ == mod_name:
                allowed[_key(obj)] = obj
    # the layer classes models are built from (constructed by __new__ + __setstate__ only)
    for obj in vars(nn).values():
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            allowed[_key(obj)] = obj
    allowed[_key(nn.Parameter)] = nn.Parameter
    # numpy arrays (np.random.get_state() in training checkpoints)
    multiarray = getattr(np, "_core", None) or np.core
    reconstruct = multiarray.multiarray._reconstruct
    allowed[f"{multiarray.__name__}.multiarray._reconstruct"] = reconstruct
    allowed[_key(np.ndarray)] = np.ndarray
    allowed[_key(np.dtype)] = np.dtype
    for obj in vars(np.dtypes).values():  # Float32DType, UInt32DType...: built by numpy.dtype
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            allowed[_key(obj)] = obj
    allowed[_key(torch.Size)] = torch.Size
    return allowed


def load_torch_file(
    path: str | Path, error: type[EdgedetError] = ModelLoadError, what: str = "torch file"
) -> Any:
    """Read a torch file written by edgedet without running anything it contains.

    ``what`` names the kind of file in messages ("edgedet checkpoint", ...).
    Raises ``error`` (a `ModelLoadError` by default) naming the file when it is not a readable
    torch file, or when it names classes or functions outside `allowed_globals` (refused before
    it is unpickled). Tensors are loaded onto the CPU."""
    import torch

    p = Path(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(p)
    except Exception as err:  # not a zip / legacy torch file: RuntimeError, UnpicklingError...
        raise error(
            f"{p} is not a readable {what} ({type(err).__name__}: {_short(err)}). " + _HOW_TO
        ) from err
    allowed = dict(allowed_globals())
    for name in names:
        if name in _OPTIONAL:
            mod_name, attr = _OPTIONAL[name]
            # not installed: refused below, as the package that wrote it is missing
            with contextlib.suppress(ImportError):
                allowed[name] = getattr(importlib.import_module(mod_name), attr)
    refused = sorted(n for n in names if n not in allowed)
    if refused:
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise error(f"{p} refused before loading: it names {shown}, which edgedet checkpoints "
                    f"never hold. {_HOW_TO}")  # fmt: skip
    try:
        with torch.serialization.safe_globals(list(allowed.values())):
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError...
        raise error(
            f"{p} is not a readable {what} ({type(err).__name__}: {_short(err)}). "
            + _HOW_TO
        ) from err


def _short(err: BaseException, limit: int = 300) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return text if len(text) <= limit else text[:limit] + "…"
