"""Deploy profiles: the configuration ``edgedet optimize`` chose, measured on one device.

A profile is a small JSON file, ``<stem>.deploy.json``, beside the model file it names (the
chosen candidate, copied into ``optimize``'s output folder). It says how to run that file
(runtime, device, runtime options such as ``precision`` and ``threads``), what optimize measured
(mAP50-95 and its loss against the float reference with the paired interval, end-to-end p50
latency) and the device it measured on (`device_fingerprint`: CPU model and the instruction-set
flags that decide which kernels run, GPU, runtime versions).

`edgedet.load` reads it (`resolve_profile`):

- ``load("out/")`` or ``load("out/model.deploy.json")`` (asked for by name): the profile's
  runtime and settings are used; a profile measured on another device (`foreign_reasons`) is an
  `IncompatibleModelError` telling the user to re-run optimize here.
- ``load("out/model.onnx")`` with no runtime, device or runtime options given: the profile
  beside the file is used the same way; a foreign one is not used (a `ForeignProfileWarning`
  says why and the model loads with the plain defaults, so a copied model keeps working).

Stdlib only: this module is part of the device-side install.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import IncompatibleModelError, ModelLoadError

log = logging.getLogger("edgedet.deploy")

PROFILE_SUFFIX = ".deploy.json"
PROFILE_VERSION = 1

#: CPU flags (as /proc/cpuinfo spells them) that change which kernels a runtime picks: a
#: profile measured with one set is foreign on a CPU with another.
SPEED_FLAGS: tuple[str, ...] = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2",
)  # fmt: skip

#: Python distributions that provide each runtime (the first installed one is recorded).
RUNTIME_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-cu13"),
    "torch": ("torch",),
}


class ForeignProfileWarning(UserWarning):
    """A deploy profile beside a model was measured on another device and was not used."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def cpu_flags(root: str | Path = "/") -> list[str]:
    """The `SPEED_FLAGS` this CPU has (sorted), from ``/proc/cpuinfo`` (x86 ``flags``, Arm
    ``Features``); empty where it cannot be read."""
    text = _read(Path(root, "proc/cpuinfo")) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have = set(value.split())
            return sorted(f for f in SPEED_FLAGS if f in have)
    return []


def _cpu_model(root: str | Path) -> str:
    text = _read(Path(root, "proc/cpuinfo")) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or "unknown"


def gpus(root: str | Path = "/") -> list[str]:
    """NVIDIA GPU models the driver lists (``/proc/driver/nvidia``), or a Jetson board's model."""
    found: list[str] = []
    base = Path(root, "proc/driver/nvidia/gpus")
    if base.is_dir():
        for info in sorted(base.glob("*/information")):
            for line in (_read(info) or "").splitlines():
                if line.startswith("Model:"):
                    found.append(line.split(":", 1)[1].strip())
    board = _read(Path(root, "proc/device-tree/model"))
    if board and ("jetson" in board.lower() or "nvidia" in board.lower()):
        found.append(board.replace("\x00", "").strip())
    return found


def runtime_version(runtime: str) -> str | None:
    """The installed version of ``runtime``'s Python package (not imported), or None."""
    for dist in RUNTIME_DISTRIBUTIONS.get(runtime, (runtime,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def device_fingerprint(runtime: str, root: str | Path = "/") -> dict[str, Any]:
    """What decides whether a measurement made here holds on another device.

    ``cpu_flags`` (the `SPEED_FLAGS` present), ``machine`` (architecture), ``gpus``,
    ``runtime`` and ``runtime_version`` are compared (`foreign_reasons`); ``cpu_model`` and
    ``cores`` are recorded for the reader. For a runtime that runs only on an accelerator
    (`uses_gpu`, e.g. TensorRT) the runtime itself is asked (`runtime_report`):
    ``runtime_version`` is then the version of the library it imports (``tensorrt.__version__``,
    which an engine must match) and ``accelerators`` the device names it sees (CUDA's)."""
    import os

    fingerprint: dict[str, Any] = {
        "machine": platform.machine(),
        "cpu_model": _cpu_model(root),
        "cpu_flags": cpu_flags(root),
        "cores": os.cpu_count(),
        "gpus": gpus(root),
        "runtime": runtime,
        "runtime_version": runtime_version(runtime),
    }
    if uses_gpu(runtime, None):
        report = runtime_report(runtime)
        if report.get("version"):
            fingerprint["runtime_version"] = str(report["version"])
        fingerprint["accelerators"] = [str(d) for d in report.get("devices") or ()]
    return fingerprint


def runtime_report(runtime: str) -> dict[str, Any]:
    """The runtime's own probe (`edgedet.runtimes.registry.probe`: ``version``, ``devices``,
    ``available``); empty when its library does not import here."""
    from .errors import EdgedetError
    from .runtimes.registry import probe

    try:
        info = probe(runtime)
    except EdgedetError:
        return {}
    return dict(info) if info.get("version") is not None or info.get("devices") else {}


def uses_gpu(runtime: str, device: str | None) -> bool:
    """True when the profile runs on an accelerator: its device names one, or its runtime
    declares no CPU device (`RuntimeCapabilities.devices`, e.g. TensorRT: cuda, dla)."""
    if (device or "").lower().startswith(("cuda", "gpu", "dla", "tensorrt")):
        return True
    from .errors import EdgedetError
    from .runtimes.registry import runtime_capabilities

    try:
        return "cpu" not in runtime_capabilities(runtime).devices
    except EdgedetError:  # a runtime this install does not know: judge by the device alone
        return False


@dataclass(frozen=True)
class DeployProfile:
    """One optimize result. ``model``: the model file's name, relative to the profile's folder.
    ``runtime_options``: keyword options of the runtime (``precision``, ``threads``...).
    ``measured``: what optimize measured (mAP50-95 as a fraction, its drop in points with the
    interval, e2e p50 ms, dataset, images). ``target``: `device_fingerprint` of the device."""

    model: str
    runtime: str
    device: str | None = None
    runtime_options: dict[str, Any] = field(default_factory=dict)
    precision: str | None = None
    model_sha256: str | None = None
    measured: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    edgedet_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "edgedet_profile": PROFILE_VERSION,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "runtime": self.runtime,
            "device": self.device,
            "runtime_options": dict(self.runtime_options),
            "precision": self.precision,
            "measured": dict(self.measured),
            "target": dict(self.target),
            "created": self.created,
            "edgedet_version": self.edgedet_version,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> DeployProfile:
        if not isinstance(raw, Mapping) or raw.get("edgedet_profile") != PROFILE_VERSION:
            raise ModelLoadError(
                f"{where} is not an edgedet deploy profile (version {PROFILE_VERSION}); "
                "write one with `edgedet optimize`"
            )
        model, runtime = raw.get("model"), raw.get("runtime")
        if not isinstance(model, str) or not model or Path(model).name != model:
            raise ModelLoadError(f"{where}: 'model' must be a file name beside it, got {model!r}")
        if not isinstance(runtime, str) or not runtime:
            raise ModelLoadError(f"{where}: 'runtime' must be a runtime name, got {runtime!r}")
        opts = raw.get("runtime_options") or {}
        if not isinstance(opts, Mapping):
            raise ModelLoadError(f"{where}: 'runtime_options' must be an object, got {opts!r}")
        target = raw.get("target") or {}
        if not isinstance(target, Mapping):
            raise ModelLoadError(f"{where}: 'target' must be an object, got {target!r}")
        device = raw.get("device")
        return cls(
            model=model,
            runtime=runtime,
            device=str(device) if device is not None else None,
            runtime_options=dict(opts),
            precision=raw.get("precision"),
            model_sha256=raw.get("model_sha256"),
            measured=dict(raw.get("measured") or {}),
            target=dict(target),
            created=str(raw.get("created") or ""),
            edgedet_version=str(raw.get("edgedet_version") or ""),
        )


def profile_path_for(model_path: str | Path) -> Path:
    """``out/yolov8n_int8.onnx`` -> ``out/yolov8n_int8.deploy.json``."""
    p = Path(model_path)
    return p.with_name(p.stem + PROFILE_SUFFIX)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a model file (read whole: model files fit in memory)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_profile(path: str | Path, profile: DeployProfile) -> Path:
    """Write ``profile`` as JSON, atomically."""
    from .fileio import atomic_write_bytes

    atomic_write_bytes(path, json.dumps(profile.to_dict(), indent=2, sort_keys=True).encode())
    return Path(path)


def read_profile(path: str | Path) -> DeployProfile:
    """Read and validate a profile file. Raises `ModelLoadError` naming the file."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except OSError as err:
        raise ModelLoadError(f"cannot read deploy profile {p}: {err}") from err
    except ValueError as err:
        raise ModelLoadError(f"deploy profile {p} is not valid JSON: {err}") from err
    return DeployProfile.from_dict(raw, str(p))


def new_profile(model_path: str | Path, runtime: str, device: str | None,
                runtime_options: Mapping[str, Any], precision: str | None,
                measured: Mapping[str, Any]) -> DeployProfile:  # fmt: skip
    """A profile for ``model_path`` measured here now (fingerprint and model hash filled)."""
    from . import __version__

    return DeployProfile(
        model=Path(model_path).name,
        runtime=runtime,
        device=device,
        runtime_options=dict(runtime_options),
        precision=precision,
        model_sha256=sha256_file(model_path),
        measured=dict(measured),
        target=device_fingerprint(runtime),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        edgedet_version=__version__,
    )


def foreign_reasons(
    profile: DeployProfile, here: Mapping[str, Any] | None = None
) -> list[str]:
    """Why ``profile``'s measurement does not hold on this device (empty: it does).

    Compared: architecture, the `SPEED_FLAGS` of the CPU, the runtime's version, the GPUs
    when the profile runs on one, and the devices an accelerator-only runtime sees. ``here``: this device's `device_fingerprint` (computed when
    None)."""
    now = dict(here) if here is not None else device_fingerprint(profile.runtime)
    then = profile.target
    reasons: list[str] = []
    if then.get("machine") != now.get("machine"):
        reasons.append(f"architecture {then.get('machine')} there, {now.get('machine')} here")
    flags_then, flags_now = set(then.get("cpu_flags") or ()), set(now.get("cpu_flags") or ())
    if flags_then != flags_now:
        missing = sorted(flags_then - flags_now)
        extra = sorted(flags_now - flags_then)
        parts = [f"lacks {', '.join(missing)}" if missing else "",
                 f"adds {', '.join(extra)}" if extra else ""]  # fmt: skip
        reasons.append(
            f"CPU flags differ (this CPU {'; '.join(p for p in parts if p)}; measured on "
            f"{then.get('cpu_model', 'unknown')})"
        )
    if then.get("runtime_version") != now.get("runtime_version"):
        reasons.append(
            f"{profile.runtime} {then.get('runtime_version')} there, "
            f"{now.get('runtime_version') or 'not installed'} here"
        )
    if uses_gpu(profile.runtime, profile.device) and list(then.get("gpus") or ()) != list(
        now.get("gpus") or ()
    ):
        reasons.append(f"GPU {then.get('gpus') or 'none'} there, {now.get('gpus') or 'none'} here")
    seen_then, seen_now = then.get("accelerators"), now.get("accelerators")
    if (seen_then is not None or seen_now is not None) and list(seen_then or ()) != list(
        seen_now or ()
    ):
        reasons.append(
            f"{profile.runtime} sees {', '.join(seen_then or ()) or 'no device'} there, "
            f"{', '.join(seen_now or ()) or 'no device'} here"
        )
    return reasons


def find_profile(path: Path) -> tuple[Path | None, bool]:
    """``(profile file, asked for by name)`` for what was passed to `edgedet.load`: the file
    itself when it is a profile, the one profile in a folder, or the one beside a model."""
    if path.is_dir():
        found = sorted(path.glob("*" + PROFILE_SUFFIX))
        if len(found) != 1:
            raise ModelLoadError(
                f"{path} is a folder: expected exactly one *{PROFILE_SUFFIX} deploy profile in "
                f"it (written by `edgedet optimize --out`), found {len(found)}"
            )
        return found[0], True
    if path.name.endswith(PROFILE_SUFFIX):
        return path, True
    beside = profile_path_for(path)
    return (beside, False) if beside.is_file() else (None, False)


@dataclass(frozen=True)
class ResolvedLoad:
    """What `edgedet.load` runs after reading a profile (or not)."""

    model: Path
    runtime: Any
    device: str | None
    runtime_options: dict[str, Any] | None
    profile: DeployProfile | None = None
    profile_path: Path | None = None


def resolve_profile(
    path: Path,
    runtime: Any,
    device: str | None,
    runtime_options: Mapping[str, Any] | None,
) -> ResolvedLoad:
    """Apply the deploy profile for ``path`` (see the module docstring for the rules)."""
    plain = ResolvedLoad(path, runtime, device, dict(runtime_options) if runtime_options else None)
    profile_file, asked = find_profile(path)
    if profile_file is None:
        return plain
    if not asked and (runtime != "auto" or device is not None or runtime_options):
        log.info("deploy profile %s not used: runtime settings were given", profile_file)
        return plain
    profile = read_profile(profile_file)
    model = profile_file.parent / profile.model
    reasons = foreign_reasons(profile)
    if model.is_file() and profile.model_sha256 and sha256_file(model) != profile.model_sha256:
        reasons.append(f"{model.name} changed since it was measured (sha256 differs)")
    if reasons:
        message = (
            f"deploy profile {profile_file} is foreign here: {'; '.join(reasons)}. Its choice "
            f"({profile.runtime} {profile.precision or ''}) was measured on another device; "
            "re-run `edgedet optimize MODEL --data VAL --out DIR` on this device"
        )
        if asked:
            raise IncompatibleModelError(message)
        warnings.warn(message + "; loading with the default settings instead",
                      ForeignProfileWarning, stacklevel=3)  # fmt: skip
        return plain
    if not model.is_file():
        raise ModelLoadError(f"deploy profile {profile_file} names {model.name}, which is missing")
    opts = {**profile.runtime_options, **dict(runtime_options or {})}
    log.info("using deploy profile %s: %s %s %s", profile_file, profile.runtime,
             profile.precision, opts)  # fmt: skip
    return ResolvedLoad(
        model,
        profile.runtime if runtime == "auto" else runtime,
        device if device is not None else profile.device,
        opts,
        profile,
        profile_file,
    )


def bench_settings(model: str | Path) -> dict[str, Any] | None:
    """``edgedet bench`` settings from the deploy profile that applies to ``model`` (the same
    rules as `resolve_profile` with no runtime settings given): ``model`` (the profile's file),
    ``runtime``, ``device``, ``precision``, ``threads`` and the other ``runtime_options``.
    None when no profile applies."""
    path = Path(model)
    if not path.exists():
        return None
    chosen = resolve_profile(path, "auto", None, None)
    if chosen.profile is None:
        return None
    opts = dict(chosen.runtime_options or {})
    precision = opts.pop("precision", None)
    threads = opts.pop("threads", None)
    return {
        "model": str(chosen.model),
        "runtime": chosen.runtime,
        "device": chosen.device,
        "precision": precision,
        "threads": threads,
        "runtime_options": opts,
    }
