"""Sweeps: expand models × runtimes × precisions × input sizes × batch sizes into configurations,
from command-line lists or a YAML sweep file, and run them one process each.

A sweep file gives shared settings at the top and each model its own under ``models``::

    data: ../shared/testdata/datasets/coco_tiny_val2017   # relative to this file
    threads: 2
    runtime: [onnxruntime, openvino]        # a value or a list (sweep axes: runtime,
    precision: [null]                       #   precision, imgsz, batch)
    models:
      - model: models/yolox_nano_416.onnx
        family: yolox                       # used only if the file carries no edgedet meta
        names: coco
      - model: models/yolov8n.onnx
        runtime: onnxruntime                # per-model settings win over the top level

Every other key is a `BenchConfig` field (``images``, ``device``, ``aliases``, ``multi_label``,
``min_seconds``...); unknown keys are an error naming the key. ``family`` and ``names`` apply only
to models without edgedet meta (models that carry meta use their own).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError, InvalidInputError

from .records import append_record, write_records
from .runner import BenchConfig, run_in_subprocess

#: Settings that may be lists in a sweep (each combination becomes one configuration).
AXES: tuple[str, ...] = (
    "runtime", "precision", "imgsz", "batch", "tiles", "tta", "ensemble", "views_one_by_one",
)  # fmt: skip
_PLURALS = {"runtimes": "runtime", "precisions": "precision", "batches": "batch"}
_FIELDS = {f.name for f in dataclasses.fields(BenchConfig)}


def has_meta(model: str | Path) -> bool:
    """Whether a model file carries edgedet (or a known foreign) meta; False if unreadable."""
    from edgedet.meta import read_meta

    path = Path(model)
    if not path.is_file():
        return False
    try:
        return read_meta(path) is not None
    except EdgedetError:
        return False


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value) if value else [None]
    return [value]


def expand(
    models: Sequence[Mapping[str, Any] | str],
    defaults: Mapping[str, Any] | None = None,
) -> list[BenchConfig]:
    """Every configuration of a sweep.

    Args:
        models: model paths, or dicts with ``model`` plus per-model settings.
        defaults: settings shared by every model (per-model settings win). The `AXES` may be
            lists; every combination becomes one `BenchConfig`.

    A configuration without a ``runtime`` (or ``auto``) gets the one ``edgedet.load`` would pick
    from the file suffix (.onnx -> onnxruntime, .xml -> openvino, .engine -> tensorrt).

    Raises:
        InvalidInputError: an unknown setting, a missing ``model``, no ``data``, or no runtime
            for the file's suffix.
    """
    base = _normalise(dict(defaults or {}), "sweep settings")
    configs: list[BenchConfig] = []
    for i, entry in enumerate(models):
        spec: dict[str, Any] = {"model": entry} if isinstance(entry, (str, Path)) else dict(entry)
        spec = {**base, **_normalise(spec, f"models[{i}]")}
        if not spec.get("model"):
            raise InvalidInputError(f"models[{i}] has no 'model' path: {dict(spec)}")
        if not spec.get("data"):
            raise InvalidInputError("no dataset: pass --data PATH (or 'data:' in the sweep file)")
        spec["model"] = str(spec["model"])
        spec["data"] = str(spec["data"])
        if spec.get("runtime") in (None, "auto"):  # a deploy profile (`edgedet optimize`)
            from edgedet.deploy import bench_settings

            chosen = bench_settings(spec["model"])
            for key, value in (chosen or {}).items():
                if key == "model" or spec.get(key) in (None, [None], {}):
                    spec[key] = value
        if has_meta(spec["model"]):
            spec["family"] = None
            spec["names"] = None
        axes = [_as_list(spec.pop(a, None)) for a in AXES]
        for values in itertools.product(*axes):
            combo = dict(spec)
            combo.update({a: v for a, v in zip(AXES, values) if v is not None})
            if combo.get("runtime") in (None, "auto"):
                from edgedet.runtimes.registry import resolve_auto

                combo["runtime"] = resolve_auto(combo["model"])
            configs.append(BenchConfig(**combo))
    return configs


def _normalise(settings: dict[str, Any], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = _PLURALS.get(key, key)
        if name not in _FIELDS:
            raise InvalidInputError(
                f"{where}: unknown setting '{key}'; known: {', '.join(sorted(_FIELDS | set(_PLURALS)))}"
            )
        out[name] = value
    return out


def load_sweep_file(
    path: str | Path, cli_defaults: Mapping[str, Any] | None = None
) -> list[BenchConfig]:
    """Read a YAML sweep file (see the module doc). Relative ``model`` / ``data`` paths are
    taken relative to the file. ``cli_defaults`` fill what the file does not set."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"sweep file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise InvalidInputError(f"sweep file {p} is not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list) or not raw["models"]:
        raise InvalidInputError(
            f"sweep file {p}: expected a mapping with a non-empty 'models:' list, got "
            f"{type(raw).__name__}"
        )
    entries = raw.pop("models")

    def resolve(settings: dict[str, Any]) -> dict[str, Any]:
        for key in ("model", "data"):
            if isinstance(settings.get(key), str) and not Path(settings[key]).is_absolute():
                settings[key] = str((p.parent / settings[key]).resolve())
        return settings

    defaults = {**{k: v for k, v in (cli_defaults or {}).items() if v is not None}, **resolve(raw)}
    models: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"model": entry}
        if not isinstance(entry, dict):
            raise InvalidInputError(
                f"sweep file {p}: models[{i}] must be a path or a mapping, got {entry!r}"
            )
        models.append(resolve(dict(entry)))
    return expand(models, defaults)


def combine_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One record from several rounds of the same configuration (``--repeat``).

    Latency statistics are recomputed over the pooled samples of every round (each record must
    carry ``latency_samples_ns``, which is dropped); ``latency_p50_rounds`` keeps each round's
    p50. Load time and first inference are the median over rounds, peak RSS the maximum,
    throughput the median. Accuracy comes from the first round (later rounds skip the accuracy
    pass: the same model on the same images gives the same detections). If any
    round is not ``ok``, that round's record is returned (with ``rounds_ok`` saying how many
    were).
    """
    import statistics

    from .stats import summarize_ns

    if not rounds:
        raise InvalidInputError("combine_rounds needs at least one record")
    bad = [r for r in rounds if r.get("status") != "ok"]
    if bad:
        rec = dict(bad[0])
        rec.pop("latency_samples_ns", None)
        rec["rounds"] = len(rounds)
        rec["rounds_ok"] = len(rounds) - len(bad)
        return rec
    rec = dict(rounds[0])
    if len(rounds) == 1:
        rec.pop("latency_samples_ns", None)
        return rec
    pooled: dict[str, list[int]] = {}
    for r in rounds:
        samples = r.get("latency_samples_ns")
        if not isinstance(samples, dict):
            raise InvalidInputError(
                "combine_rounds needs records with latency_samples_ns (BenchConfig.keep_samples)"
            )
        for stage, values in samples.items():
            pooled.setdefault(stage, []).extend(values)
    rec["latency_ms"] = {stage: summarize_ns(v) for stage, v in pooled.items()}
    rec.pop("latency_samples_ns", None)
    rec["rounds"] = len(rounds)
    rec["latency_p50_rounds"] = [r["latency_ms"]["e2e"]["p50"] for r in rounds]
    rec["latency_iterations"] = sum(int(r.get("latency_iterations") or 0) for r in rounds)
    rec["latency_seconds"] = sum(float(r.get("latency_seconds") or 0.0) for r in rounds)
    batch = int(rec.get("batch") or 1)
    rec["fps_sequential"] = batch * 1000.0 / rec["latency_ms"]["e2e"]["mean"]
    for key in ("load_s", "first_inference_ms", "throughput_fps", "latency_cpu_cores_used"):
        values = [r[key] for r in rounds if isinstance(r.get(key), (int, float))]
        rec[key] = statistics.median(values) if values else None
    rss = [r["peak_rss_mb"] for r in rounds if isinstance(r.get("peak_rss_mb"), (int, float))]
    rec["peak_rss_mb"] = max(rss) if rss else None
    warnings: list[str] = []
    busy = 0
    for r in rounds:
        for w in r.get("warnings") or []:
            if w.startswith("machine busy"):
                busy += 1
            elif w not in warnings:
                warnings.append(w)
    if busy:
        loads = [
            r["host"]["load_avg"][0]
            for r in rounds
            if isinstance(r.get("host"), dict) and isinstance(r["host"].get("load_avg"), list)
        ]
        span = f"{min(loads):.1f} to {max(loads):.1f}" if loads else "unknown"
        warnings.insert(
            0,
            f"machine busy in {busy} of {len(rounds)} rounds (load average {span} on "
            f"{rec.get('host', {}).get('cores_logical', '?')} logical cores): latencies include "
            "waiting for the CPU; rounds were interleaved and pooled",
        )
    rec["warnings"] = warnings
    if isinstance(rec.get("method"), dict):
        rec["method"] = {
            **rec["method"],
            "rounds": len(rounds),
            "iterations": rec["latency_iterations"],
            "process": "one process per configuration and round; rounds interleaved across "
            "configurations; statistics over the pooled samples",
        }
    return rec


def run_sweep(
    configs: Sequence[BenchConfig],
    out_dir: str | Path,
    *,
    progress: bool = True,
    repeat: int = 1,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    runner: Callable[[BenchConfig], dict[str, Any]] = run_in_subprocess,
) -> list[dict[str, Any]]:
    """Run every configuration (each in its own process) and append its record to
    ``out_dir/records.jsonl``; the file is started afresh.

    ``repeat`` > 1 runs the whole sweep that many times, round after round, so every
    configuration sees the same mix of machine load; each configuration's rounds are then
    pooled by `combine_rounds` and its record written after the last round.
    """
    if repeat < 1:
        raise InvalidInputError(f"repeat must be >= 1, got {repeat}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records_path = out / "records.jsonl"
    write_records(records_path, [])
    if repeat > 1:
        configs = [dataclasses.replace(c, keep_samples=True) for c in configs]
    per_config: list[list[dict[str, Any]]] = [[] for _ in configs]
    records: list[dict[str, Any]] = []

    def one(i: int, round_index: int) -> None:
        config = configs[i] if round_index == 0 else dataclasses.replace(configs[i], accuracy=False)
        per_config[i].append(runner(config))
        if round_index == repeat - 1:
            rec = combine_rounds(per_config[i])
            append_record(records_path, rec)
            records.append(rec)
            if on_record is not None:
                on_record(rec)

    jobs = [(i, k) for k in range(repeat) for i in range(len(configs))]
    if not progress:
        for i, k in jobs:
            one(i, k)
        return records
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]bench"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    ) as bar:
        task = bar.add_task("", total=len(jobs))
        for i, k in jobs:
            label = configs[i].label() + (f" (round {k + 1}/{repeat})" if repeat > 1 else "")
            bar.update(task, description=label)
            one(i, k)
            bar.advance(task)
    return records


def per_model_settings(
    models: list[str], families: list[str] | None, names: list[str] | None
) -> list[dict[str, Any]]:
    """Pair ``--family`` / ``--names`` with the models that carry no meta.

    One value applies to every model without meta; several must be one per such model, in
    ``--model`` order (models with meta use their own and take none).
    """
    bare = [m for m in models if not has_meta(m)]
    entries: list[dict[str, Any]] = [{"model": m} for m in models]
    for key, values in (("family", families), ("names", names)):
        if not values:
            continue
        if len(values) == 1:
            assigned = dict.fromkeys(bare, values[0])
        elif len(values) == len(bare):
            assigned = dict(zip(bare, values))
        else:
            raise EdgedetError(
                f"{len(values)} --{key} values for {len(bare)} model(s) without edgedet meta "
                f"({', '.join(Path(m).name for m in bare) or 'none'}); give one --{key} for all "
                "of them or one per model, in --model order"
            )
        for entry in entries:
            if entry["model"] in assigned:
                entry[key] = assigned[entry["model"]]
    return entries
