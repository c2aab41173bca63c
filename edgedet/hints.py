"""What an error tells the user to type: install commands for extras, and option names.

Two things every edgedet message gets right through this module:

- `install_command`: edgedet is installed from a checkout or a wheel, not from the package index,
  so ``pip install "edgedet[train]"`` cannot be run. The command names how *this* install was made
  (read from the ``direct_url.json`` pip records, PEP 610) or, when that is unknown, both forms.
- `arg`: the library's errors name the keyword argument (``family=...``) when called from Python
  and the flag (``--family ...``) when raised under the ``edgedet`` command, which sets the
  mapping with `cli_flags` for the subcommand it runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlparse

#: Packages each extra must provide before a command that needs it starts (import names).
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torch_pruning"),
    "onnxruntime": ("onnxruntime",),
    "openvino": ("openvino",),
    "calibrate": ("onnxruntime", "openvino", "nncf", "matplotlib", "sympy"),
    "bench": ("faster_coco_eval", "matplotlib", "psutil"),
    "tensorrt": ("tensorrt",),  # + cuda-python or pycuda, checked by the runtime
    "track": ("supervision",),
}

_JETSON_NOTE = (
    "; on a Jetson, TensorRT comes with JetPack: create the venv with --system-site-packages "
    "and pip install the cuda-python of JetPack's CUDA major (README, 'TensorRT and Jetson')"
)


def _install_origin() -> tuple[str, str] | None:
    """('checkout', dir) or ('wheel', file) for this install of edgedet, when pip recorded it."""
    # every "edgedet" distribution on the path: run from a checkout's root, its build leftover
    # (``edgedet.egg-info``) comes first and has no direct_url.json; pip's record is further on
    texts = [d.read_text("direct_url.json") for d in metadata.distributions(name="edgedet")]
    text = next((t for t in texts if t), None)
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        return None
    url = urlparse(str(info.get("url", "")))
    if url.scheme != "file":
        return None
    path = unquote(url.path)
    if "dir_info" in info and Path(path, "pyproject.toml").is_file():
        return "checkout", path
    if path.endswith(".whl") and Path(path).is_file():
        return "wheel", path
    return None


def install_command(extra: str) -> str:
    """The command that adds ``extra`` to this install, runnable as written.

    >>> "pip install" in install_command("train")
    True
    """
    origin = _install_origin()
    if origin is not None and origin[0] == "checkout":
        cmd = f'pip install -e "{origin[1]}[{extra}]"'
    elif origin is not None:
        cmd = f'pip install "{origin[1]}[{extra}]"'
    else:
        cmd = (
            f'pip install -e ".[{extra}]" (in the edgedet checkout) or '
            f'pip install "edgedet-VERSION-py3-none-any.whl[{extra}]" (from a wheel)'
        )
    return cmd + (_JETSON_NOTE if extra == "tensorrt" else "")


def missing_packages(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found here (nothing is imported)."""
    missing = []
    for name in EXTRA_PACKAGES[extra]:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


# -- option names: keyword argument or command-line flag -------------------------------------------

#: Keyword arguments whose flag has another name than ``--`` + the keyword with dashes.
KWARG_TO_DEST: dict[str, str] = {
    "score_threshold": "conf",
    "iou_threshold": "iou",
    "class_names": "names",
    "aliases": "alias",
}

_FLAGS: ContextVar[Mapping[str, str] | None] = ContextVar("edgedet_cli_flags", default=None)


@contextlib.contextmanager
def cli_flags(dest_to_flag: Mapping[str, str]) -> Iterator[None]:
    """While active, `arg` names the flags of the running subcommand (argparse dest -> flag)."""
    token = _FLAGS.set(dict(dest_to_flag))
    try:
        yield
    finally:
        _FLAGS.reset(token)


def arg(name: str, python: str = "...", cli: str | None = None) -> str:
    """How the user gives option ``name``: ``name=...`` in Python, ``--flag ...`` on the CLI.

    ``python`` is the value as Python source (``"'fp16'"``, ``"(h, w)"``); ``cli`` the value as
    typed after the flag (default: ``python`` without quotes). Under `cli_flags` a keyword with
    no flag in the running subcommand keeps its Python form.

    >>> arg("precision", "'fp16'")
    "precision='fp16'"
    >>> with cli_flags({"precision": "--precision", "names": "--names"}):
    ...     arg("precision", "'fp16'"), arg("class_names", "'coco'"), arg("family")
    ('--precision fp16', '--names coco', 'family=...')
    """
    flags = _FLAGS.get()
    if flags:
        flag = flags.get(KWARG_TO_DEST.get(name, name)) or flags.get(name)
        if flag:
            return f"{flag} {python.strip(chr(39)) if cli is None else cli}"
    return f"{name}={python}"


#: Model files that have no metadata slot: their meta lives in a ``<stem>.edgedet.json`` sidecar.
SIDECAR_SUFFIXES = (".xml", ".engine", ".plan")


def import_command(path: str | Path | None, family: str = "F") -> str:
    """The ``edgedet import`` command that gives the model at ``path`` its meta, as a user types it.

    >>> import_command("m/yolox.onnx", "yolox")
    'edgedet import m/yolox.onnx --family yolox --out m/yolox_edgedet.onnx'
    >>> import_command("model.xml")
    'edgedet import model.xml --family F'
    """
    if path is None:
        return f"edgedet import MODEL.onnx --family {family} --out OUT.onnx"
    p = Path(path)
    if p.suffix.lower() in SIDECAR_SUFFIXES:
        return f"edgedet import {p} --family {family}"
    return f"edgedet import {p} --family {family} --out {p.with_name(p.stem + '_edgedet.onnx')}"
