"""``edgedet optimize``: the fastest configuration within an accuracy budget, measured here.

    edgedet optimize MODEL.onnx --data VAL [--images CALIB] [--max-map-drop 1.0]
        [--runtime onnxruntime,openvino] [--precision fp32,bf16,int8] [--threads 1,2]
        --out DIR

1. **Enumerate** what this device can run (`enumerate_candidates`): every installed runtime
   (`edgedet.runtimes.registry.probe`) x the float precisions it declares as options
   (`RuntimeCapabilities.precision_option`: OpenVINO fp32 / bf16 / fp16, TensorRT fp32 / fp16)
   x the INT8 formats it runs (`int8_formats`: OpenVINO IR from NNCF, the QDQ ONNX file from
   ONNX Runtime's quantizer; plus `ORT_FAST`, a QDQ file with every op quantized so ONNX
   Runtime fuses it into QLinear kernels) x ``--threads``. What is not installed, or a
   precision the runtime cannot run a float model in, is listed as skipped with the reason.
2. **Build** each artifact once (``DIR/build/``): the float model (with edgedet meta written in
   for a foreign model given ``--family``), INT8 models through ``edgedet calibrate`` with its
   self-protecting defaults (the label-free guard).
3. **Measure** each candidate in its own process (`benchmarks.runner.run_in_subprocess`, the
   ``edgedet bench`` method: mAP through `edgedet.scoring.score` under the model's protocol,
   latency through `benchmarks.latency`), and write its record to
   ``DIR/candidates/<key>.json`` atomically. A re-run reuses every record whose configuration
   and model file are unchanged (resume after an interruption). ``--rounds`` re-times every
   candidate in round-robin order; the lowest round's p50 is used (`p50_of`).
4. **Decide** (`decide`): the paired bootstrap interval of each candidate's mAP50-95 loss
   against the float reference (`benchmarks.paired`), then the fastest candidate (end-to-end
   p50) whose loss is within ``--max-map-drop``. A candidate whose interval straddles the budget
   is marked "cannot tell at N images". When none is within budget the most accurate is
   reported and the exit code is 1 (no profile written).
5. **Write** the chosen model file and its deploy profile (`edgedet.deploy`) into ``DIR``,
   ``DIR/optimize.md`` (every candidate and why it lost), ``DIR/optimize.json`` and
   ``DIR/frontier.png`` (the chosen point marked).

Timings are honest only on a quiet machine: run it alone (the records carry the load average).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError, InvalidInputError

#: Resolution of the mAP loss: one COCO mAP point is 0.01 of mAP50-95.
POINTS = 100.0

#: The extra INT8 variant for ONNX Runtime: its CPU provider fuses DQ -> Conv -> Q into
#: QLinearConv only when a conv's *output* is quantized too; the accurate default QDQ file
#: (conv inputs and weights only) runs float convs plus a DequantizeLinear of every weight on
#: every call, so it is slower than float there (docs/optimize.md).
ORT_FAST = "qdq_all"


@dataclass(frozen=True)
class Artifact:
    """A model file to build: ``kind`` ``float`` or ``int8``; INT8 ones are built by
    ``edgedet calibrate --runtime calib_runtime [--scope scope]``."""

    key: str
    kind: str
    calib_runtime: str | None = None
    scope: str = "conv_inputs"
    suffix: str = ".onnx"


@dataclass(frozen=True)
class Candidate:
    """One configuration: ``artifact`` run by ``runtime`` at ``precision`` with ``threads``."""

    key: str
    runtime: str
    precision: str
    artifact: Artifact
    threads: int | None = None
    device: str | None = None
    note: str = ""

    def runtime_options(self) -> dict[str, Any]:
        from edgedet.runtimes.registry import runtime_capabilities

        opts: dict[str, Any] = {}
        caps = runtime_capabilities(self.runtime)
        if self.precision in caps.precision_option and self.artifact.kind == "float":
            opts["precision"] = self.precision
        if self.threads is not None and caps.threads:
            opts["threads"] = self.threads
        if caps.builds_engine:
            # the engine optimize times is a batch-1 build; the profile names the same settings
            # so `edgedet.load(profile)` reuses that engine instead of building a 1..8 one
            opts["max_batch"] = 1
        return opts

    def label(self) -> str:
        fmt = {"float": "", ORT_FAST: " (QDQ, all ops)", "qdq_onnx": " (QDQ)",
               "openvino_ir": " (IR)"}.get(self.artifact.key, "")  # fmt: skip
        t = f" {self.threads}t" if self.threads else ""
        return f"{self.runtime} {self.precision}{fmt}{t}"


@dataclass
class Skipped:
    key: str
    label: str
    reason: str


FLOAT = Artifact("float", "float")


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def enumerate_candidates(
    runtimes: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    threads: Sequence[int | None] = (None,),
    device: str | None = None,
    probe: Callable[[str], Mapping[str, Any]] | None = None,
) -> tuple[list[Candidate], list[Skipped]]:
    """Every configuration this device can run, from the runtimes' declarations.

    ``runtimes`` / ``precisions``: restrict to these (None: all). ``probe``: the registry's
    (a test passes its own to stand for a device with fewer runtimes). Returns the candidates
    and what was left out with the reason."""
    from edgedet.runtimes.registry import probe as registry_probe
    from edgedet.runtimes.registry import runtime_capabilities, runtime_names

    probe = probe or registry_probe
    # candidates are built from an ONNX model: the runtimes that declare they run one
    names = [n for n in runtime_names() if "onnx" in runtime_capabilities(n).model_formats]
    if runtimes:
        unknown = sorted(set(runtimes) - set(names))
        if unknown:
            raise InvalidInputError(
                f"--runtime {','.join(unknown)}: unknown; runtimes: {', '.join(names)}"
            )
        names = [n for n in names if n in runtimes]
    cands: list[Candidate] = []
    skipped: list[Skipped] = []
    for name in names:
        caps = runtime_capabilities(name)
        float_precs = list(caps.precision_option) or ["fp32"]
        float_precs = [p for p in float_precs if p != "int8"]
        combos: list[tuple[str, Artifact, str]] = [(p, FLOAT, "") for p in float_precs]
        for fmt in caps.int8_formats:
            builder = _calib_runtime_for(fmt, name)
            combos.append(("int8", Artifact(fmt, "int8", builder, suffix=_suffix(fmt)), ""))
            if fmt == "qdq_onnx" and caps.int8_fused_scope:
                art = Artifact(ORT_FAST, "int8", builder, scope=caps.int8_fused_scope)
                combos.append(("int8", art, "every op quantized: ORT fuses QLinear kernels"))
        info = probe(name)
        for prec, art, note in combos:
            if precisions and prec not in precisions:
                continue
            for t in threads:
                key = "-".join([name, prec, art.key] + ([f"t{t}"] if t else []))
                cand = Candidate(key, name, prec, art, t if caps.threads else None, device, note)
                if not info.get("available"):
                    skipped.append(Skipped(key, cand.label(), str(info.get("reason"))))
                    continue
                cands.append(cand)
    # one build per artifact and calibrating runtime: drop duplicates of the same key
    seen: set[str] = set()
    unique = [c for c in cands if not (c.key in seen or seen.add(c.key))]  # type: ignore[func-returns-value]
    return unique, skipped


def _calib_runtime_for(fmt: str, runtime: str) -> str:
    """The runtime ``edgedet calibrate`` builds ``fmt`` for: ``runtime`` itself when that is
    its first declared format, else the first runtime whose first format it is."""
    from edgedet.runtimes.registry import runtime_capabilities, runtime_names

    if runtime_capabilities(runtime).int8_format == fmt:
        return runtime
    for n in runtime_names():
        if runtime_capabilities(n).int8_format == fmt and not runtime_capabilities(n).int8_symmetric:
            return n
    return runtime


def _suffix(fmt: str) -> str:
    return ".xml" if fmt == "openvino_ir" else ".onnx"


# -- building -----------------------------------------------------------------------------------


@dataclass
class Settings:
    """What one optimize run was asked for (the parts that change a measurement)."""

    data: str
    images: str | None
    calib_num: int
    val_images: int | None
    budget: float
    min_seconds: float
    latency_images: int
    resamples: int
    rounds: int = 1
    timeout_s: float = 1800.0


def artifact_path(build: Path, stem: str, art: Artifact) -> Path:
    if art.kind == "float":
        return build / f"{stem}.onnx"
    calib = art.calib_runtime or "onnxruntime"
    tag = {"qdq_onnx": "int8_qdq", ORT_FAST: "int8_qdq_all", "openvino_ir": "int8_ov"}.get(
        art.key, f"int8_{art.key}"
    )
    if calib == "tensorrt":
        tag += "_trt"
    return build / f"{stem}_{tag}{art.suffix}"


def _calibration_report(path: Path) -> Path:
    return path.with_name(path.stem + ".calibration.json")


def prepare_float(model: Path, build: Path, family: str | None, names: str | None) -> Path:
    """The float model with edgedet meta inside (copied into ``build``), so every later step
    and the deployed file need no ``--family`` / ``--names``."""
    from edgedet.detector import resolve_meta
    from edgedet.meta import read_meta, write_onnx_meta

    out = build / f"{model.stem}.onnx"
    carried = read_meta(model)
    overrides: dict[str, Any] = {"names": names} if names and carried is None else {}
    meta = resolve_meta(model, None if carried is not None else family, None, overrides)
    if out.is_file() and read_meta(out) == meta:
        return out
    build.mkdir(parents=True, exist_ok=True)
    write_onnx_meta(model, out, meta)  # atomic
    return out


def build_int8(
    float_model: Path, art: Artifact, out: Path, settings: Settings, threads: int | None
) -> tuple[Path, int]:
    """Calibrate ``float_model`` into ``out`` with ``edgedet calibrate``'s defaults (label-free
    guard). Returns the path and calibrate's exit code (1: guard bound not met, model kept).
    An existing output with its calibration report is reused (an earlier run built it)."""
    if out.is_file() and _calibration_report(out).is_file():
        return out, 0
    from edgedet.calibration.command import add_calibrate_arguments, run_calibrate

    parser = argparse.ArgumentParser(prog="edgedet calibrate")
    add_calibrate_arguments(parser)
    source = ["--images", settings.images] if settings.images else ["--data", settings.data]
    argv = [
        str(float_model), *source, "--runtime", art.calib_runtime or "onnxruntime",
        "--num", str(settings.calib_num), "--scope", art.scope, "--no-latency",
        "--threads", str(threads or os.cpu_count() or 1), "--out", str(out),
    ]  # fmt: skip
    rc = run_calibrate(parser.parse_args(argv))
    return out, rc


# -- measuring ----------------------------------------------------------------------------------


def config_for(cand: Candidate, model: Path, settings: Settings, records_dir: Path) -> Any:
    from .runner import BenchConfig

    return BenchConfig(
        model=str(model),
        data=settings.data,
        runtime=cand.runtime,
        # an INT8 file runs as what it is; the runner's precision check is for float options
        precision=None if cand.artifact.kind == "int8" else cand.precision,
        threads=cand.threads,
        device=cand.device,
        images=settings.val_images,
        min_seconds=settings.min_seconds,
        latency_images=settings.latency_images,
        throughput_requests=0,
        save_detections=str(records_dir / f"{cand.key}.detections.json"),
        runtime_options={k: v for k, v in cand.runtime_options().items() if k != "threads"},
    )


def config_hash(config: Any, model_sha: str) -> str:
    return hashlib.sha256((config.to_json() + model_sha).encode()).hexdigest()[:16]


def load_finished(path: Path, chash: str) -> dict[str, Any] | None:
    """The record of a candidate an earlier run finished with the same configuration."""
    if not path.is_file():
        return None
    try:
        rec: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    det = rec.get("detections_file")
    if rec.get("optimize_config_hash") != chash or (det and not Path(det).is_file()):
        return None
    return rec


def save_record(path: Path, record: Mapping[str, Any]) -> None:
    from edgedet.fileio import atomic_write_bytes

    from .records import dumps_record

    atomic_write_bytes(path, dumps_record(record).encode())


# -- deciding -----------------------------------------------------------------------------------


@dataclass
class Verdict:
    """One candidate's outcome. ``drop`` / ``low`` / ``high``: mAP50-95 loss vs the reference
    in points, with its paired interval (None when not measured)."""

    key: str
    label: str
    status: str  # chosen / slower / over_budget / failed / skipped / not_eligible / reference
    reason: str
    p50_ms: float | None = None
    map50_95: float | None = None
    drop: float | None = None
    low: float | None = None
    high: float | None = None
    cannot_tell: bool = False
    note: str = ""
    record: dict[str, Any] = field(default_factory=dict, repr=False)


def _drop_of(record: Mapping[str, Any], ref: Mapping[str, Any]) -> tuple[float, float | None,
                                                                          float | None]:  # fmt: skip
    """(loss, low, high) in points: reference minus this, with the paired interval."""
    vs = (record.get("accuracy") or {}).get("vs_reference") or {}
    diff = vs.get("difference") or {}
    if record is ref:
        return 0.0, 0.0, 0.0
    est = ref["accuracy"]["map50_95"] - record["accuracy"]["map50_95"]
    lo, hi = diff.get("low"), diff.get("high")
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
        return est * POINTS, -hi * POINTS, -lo * POINTS
    return est * POINTS, None, None


def p50_of(record: Mapping[str, Any]) -> float:
    """End-to-end p50 in ms; with several latency rounds, the lowest round's (other processes
    only ever add time, so the quietest round is the closest to what the device can do; every
    round's p50 stays in the record)."""
    rounds = [r for r in record.get("optimize_p50_rounds") or () if isinstance(r, (int, float))]
    if rounds:
        return float(min(rounds))
    return float(record["latency_ms"]["e2e"]["p50"])


def busy_note(record: Mapping[str, Any]) -> str:
    """Says so when the timed process used much less CPU than its threads could."""
    used = record.get("latency_cpu_cores_used")
    want = record.get("threads_used") or (record.get("host") or {}).get("cores_logical")
    if isinstance(used, (int, float)) and isinstance(want, int) and used < 0.75 * want:
        return (f"the timed process used {used:.2f} of {want} cores (a busy machine, or a "
                "model too small to keep them busy)")  # fmt: skip
    return ""


def decide(
    entries: Sequence[tuple[Candidate, dict[str, Any]]],
    reference: dict[str, Any],
    budget: float,
    eligible: Callable[[Candidate], bool] = lambda c: True,
) -> tuple[Verdict | None, list[Verdict]]:
    """Pick the fastest eligible ok candidate whose loss (point estimate) is at most ``budget``
    points. Returns (chosen or None, a verdict per entry saying why each other one lost)."""
    verdicts: list[Verdict] = []
    for cand, rec in entries:
        v = Verdict(cand.key, cand.label(), "", "", record=rec)
        if rec.get("status") != "ok":
            v.status = str(rec.get("status") or "failed")
            v.reason = str(rec.get("reason") or "no record")
            verdicts.append(v)
            continue
        v.p50_ms = p50_of(rec)
        v.map50_95 = float(rec["accuracy"]["map50_95"])
        v.drop, v.low, v.high = _drop_of(rec, reference)
        v.cannot_tell = v.low is not None and v.high is not None and v.low <= budget < v.high
        v.note = busy_note(rec)
        if not eligible(cand):
            v.status, v.reason = "not_eligible", "left out by --runtime / --precision"
        elif v.drop > budget + 1e-9:
            v.status = "over_budget"
            v.reason = f"loses {v.drop:.2f} points > budget {budget:g}"
        else:
            v.status = "within"
        verdicts.append(v)
    within = [v for v in verdicts if v.status == "within"]
    chosen = min(within, key=lambda v: (v.p50_ms, v.drop)) if within else None
    for v in verdicts:
        if v.status != "within":
            continue
        if v is chosen:
            v.status, v.reason = "chosen", "fastest within the budget"
        else:
            fast, slow = float(chosen.p50_ms or 0.0), float(v.p50_ms or 0.0)  # type: ignore[union-attr]
            v.status = "slower"
            v.reason = (
                f"within budget but slower: {slow:.2f} ms vs {fast:.2f} ms "
                f"({slow / fast if fast else math.inf:.2f}x)"
            )
    for v in verdicts:
        if v.note:
            v.reason += f"; {v.note}"
        if v.cannot_tell:
            v.reason += (
                f"; cannot tell: the loss interval [{v.low:.2f}, {v.high:.2f}] spans the budget "
                "(more --data images would decide)"
            )
    return chosen, verdicts


# -- the command --------------------------------------------------------------------------------


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="float ONNX model")
    parser.add_argument("--data", required=True, help="labelled validation dataset (mAP)")
    parser.add_argument(
        "--images",
        help="calibration images for INT8 (folder or dataset; default: the --data images, "
        "which makes the INT8 mAP optimistic)",
    )
    parser.add_argument(
        "--max-map-drop", type=float, default=1.0,
        help="budget: mAP50-95 points a candidate may lose against the float reference (default 1)",
    )  # fmt: skip
    parser.add_argument("--runtime", help="only these runtimes, comma-separated (default: all here)")
    parser.add_argument("--precision", help="only these precisions, comma-separated: fp32,fp16,bf16,int8")
    parser.add_argument("--threads", help="thread counts to try, comma-separated (default: runtime's)")
    parser.add_argument("--device", help="runtime device (default: the runtime's)")
    parser.add_argument("--family", help="decoder family, for models without edgedet meta")
    parser.add_argument("--names", help="class names for models without meta: coco, a file, a,b,c")
    parser.add_argument("--calib-num", type=int, default=64, help="calibration images (default 64)")
    parser.add_argument("--val-images", type=int, help="score on this many --data images (default all)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="latency: at least this long per candidate")
    parser.add_argument("--latency-images", type=int, default=8, help="latency: images cycled")
    parser.add_argument(
        "--rounds", type=int, default=3,
        help="latency rounds, interleaved over the candidates; the lowest round's p50 decides "
        "(default 3)",
    )  # fmt: skip
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the loss interval")
    parser.add_argument("--fresh", action="store_true", help="ignore finished candidates of an earlier run")
    parser.add_argument("--out", required=True, help="output folder: the chosen model + its deploy profile")


def _settings(args: argparse.Namespace) -> Settings:
    try:
        budget = float(args.max_map_drop)
    except (TypeError, ValueError):
        budget = math.nan
    if not (math.isfinite(budget) and budget >= 0):
        raise InvalidInputError(f"--max-map-drop must be a finite number >= 0, got {budget}")
    for flag, value, low in (("--calib-num", args.calib_num, 1), ("--val-images", args.val_images, 1),
                             ("--latency-images", args.latency_images, 1),
                             ("--resamples", args.resamples, 10), ("--rounds", args.rounds, 1)):  # fmt: skip
        if value is not None and value < low:
            raise InvalidInputError(f"{flag} must be >= {low}, got {value}")
    if not Path(args.data).exists():
        raise InvalidInputError(f"--data {args.data}: not found")
    if args.images and not Path(args.images).exists():
        raise InvalidInputError(f"--images {args.images}: not found")
    return Settings(
        data=str(args.data), images=args.images, calib_num=args.calib_num,
        val_images=args.val_images, budget=budget, min_seconds=args.min_seconds,
        latency_images=args.latency_images, resamples=args.resamples, rounds=args.rounds,
    )  # fmt: skip


def _threads(value: str | None) -> list[int | None]:
    items = _split(value)
    if not items:
        return [None]
    try:
        out = [int(t) for t in items]
    except ValueError as err:
        raise InvalidInputError(f"--threads must be whole numbers, got {value!r}") from err
    if any(t < 1 for t in out):
        raise InvalidInputError(f"--threads must be >= 1, got {value!r}")
    return list(dict.fromkeys(out))


def _reference(cands: Sequence[Candidate], default_runtime: str) -> Candidate:
    """The float reference: fp32 on ``default_runtime`` (what ``edgedet.load(model)`` uses with
    no flags: ONNX Runtime for an .onnx file) when it runs here, else the first fp32."""
    floats = [c for c in cands if c.artifact.kind == "float" and c.precision == "fp32"]
    if not floats:
        raise InvalidInputError("no runtime here runs the float model in fp32: nothing to compare to")
    default = [c for c in floats if c.runtime == default_runtime]
    return (default or floats)[0]


def run_optimize(args: argparse.Namespace) -> int:
    """``edgedet optimize``; returns 0 (a profile written), 1 (nothing within the budget)."""
    from rich.console import Console

    from . import paired

    console = Console(stderr=False, highlight=False)
    model = Path(args.model)
    if not model.is_file():
        raise InvalidInputError(f"model file not found: {model}")
    if model.suffix.lower() != ".onnx":
        raise InvalidInputError(f"optimize needs a float ONNX model, got {model.name}")
    settings = _settings(args)
    only_rt, only_prec = _split(args.runtime), _split(args.precision)
    if only_prec:
        from edgedet.runtimes.capabilities import normalize_precision

        only_prec = [normalize_precision(p, what="--precision") for p in only_prec]
    threads = _threads(args.threads)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} exists and is not a folder")
    build, records_dir = out / "build", out / "candidates"

    # every runtime is enumerated (the reference must be measurable even when --runtime leaves
    # it out); --runtime / --precision decide what may be chosen
    cands, skipped = enumerate_candidates(None, None, threads, args.device)
    if not cands:
        raise InvalidInputError(
            "no runtime here can run the model: " + "; ".join(f"{s.label}: {s.reason}" for s in skipped)
        )
    from edgedet.runtimes.registry import resolve_auto

    ref = _reference(cands, resolve_auto(model))

    def eligible(c: Candidate) -> bool:
        return (not only_rt or c.runtime in only_rt) and (not only_prec or c.precision in only_prec)

    todo = [c for c in cands if c is ref or eligible(c)]
    if only_rt:
        unknown = sorted({r for r in only_rt} - {c.runtime for c in cands} - {s.key.split("-")[0] for s in skipped})
        if unknown:
            raise InvalidInputError(f"--runtime {','.join(unknown)}: not a runtime edgedet knows")
    if not [c for c in todo if eligible(c)]:
        raise InvalidInputError(
            "--runtime / --precision leave no candidate that runs here; candidates: "
            + ", ".join(c.label() for c in cands)
            + "".join(f"; not here: {s.label} ({_brief(s.reason, 80)})" for s in skipped
                      if eligible(Candidate(s.key, s.key.split("-")[0], s.key.split("-")[1],
                                            FLOAT)))
        )
    records_dir.mkdir(parents=True, exist_ok=True)  # the arguments are good: start writing
    console.print(f"[bold]optimize[/bold] {model.name}: {len(todo)} candidates "
                  f"({len(skipped)} not possible here), budget {settings.budget:g} mAP points")  # fmt: skip
    by_reason: dict[str, list[str]] = {}
    for s in skipped:
        by_reason.setdefault(s.reason, []).append(s.label)
    for reason, labels in by_reason.items():
        console.print(f"  not possible here: {', '.join(labels)}: {_brief(reason)}")

    float_model = prepare_float(model, build, args.family, args.names)
    entries: list[tuple[Candidate, dict[str, Any]]] = []
    built: dict[Path, tuple[str | None, int]] = {}
    for i, cand in enumerate(todo, 1):
        rec_path = records_dir / f"{cand.key}.json"
        head = f"[{i}/{len(todo)}] {cand.label()}"
        path = artifact_path(build, float_model.stem, cand.artifact)
        if cand.artifact.kind == "int8" and path not in built:
            done = path.is_file() and _calibration_report(path).is_file()
            console.print(f"{head}: " + (f"INT8 build {path.name} from an earlier run" if done
                                         else f"building INT8 ({cand.artifact.key}) ..."))  # fmt: skip
            try:
                _, rc = build_int8(float_model, cand.artifact, path, settings, cand.threads)
                built[path] = (None, rc)
            except EdgedetError as err:
                built[path] = (f"INT8 build failed: {err}", 2)
        err_text = built.get(path, (None, 0))[0]
        if err_text:
            entries.append((cand, {"status": "failed", "reason": err_text}))
            console.print(f"{head}: [red]failed[/red] {err_text}")
            continue
        from edgedet.deploy import sha256_file

        unquantized = _unquantized(cand, path)
        if unquantized:
            entries.append((cand, {"status": "skipped", "reason": unquantized}))
            console.print(f"{head}: skipped ({unquantized})")
            continue
        config = config_for(cand, path, settings, records_dir)
        chash = config_hash(config, sha256_file(path))
        found = None if args.fresh else load_finished(rec_path, chash)
        if found is not None:
            rec = found
            console.print(f"{head}: finished in an earlier run (resumed)")
        else:
            console.print(f"{head}: measuring ...")
            from .runner import run_in_subprocess

            rec = run_in_subprocess(config, timeout_s=settings.timeout_s)
            rec["optimize_config_hash"] = chash
            rec["optimize_key"] = cand.key
            if rec.get("status") == "ok" and cand.artifact.kind == "int8" and rec.get(
                "precision"
            ) not in ("int8", "mixed"):
                rec["status"] = "skipped"
                rec["reason"] = (
                    f"{cand.runtime} runs the INT8 build in {rec.get('precision')}, not int8"
                )
            if cand.artifact.kind == "int8":
                rec["calibrate_exit_code"] = built.get(path, (None, 0))[1]
            save_record(rec_path, rec)
        entries.append((cand, rec))
        _print_line(console, head, rec)

    _latency_rounds(console, entries, settings, records_dir)
    ref_rec = next(r for c, r in entries if c is ref)
    if ref_rec.get("status") != "ok":
        raise EdgedetError(f"the float reference ({ref.label()}) could not be measured: "
                           f"{ref_rec.get('reason')}")  # fmt: skip
    ordered = [ref_rec] + [r for c, r in entries if c is not ref]
    for r in ordered:  # recomputed from the saved detections on every run
        if isinstance(r.get("accuracy"), dict):
            r["accuracy"].pop("vs_reference", None)
    notes = paired.add_intervals(ordered, resamples=settings.resamples)
    for n in notes:
        console.print(f"  interval: {n}")
    chosen, verdicts = decide(entries, ref_rec, settings.budget, eligible)
    for v in verdicts:
        if v.record.get("calibrate_exit_code") == 1:
            v.reason += ("; its calibration guard did not reach the proxy bound (the closest "
                         "INT8 model was kept)")  # fmt: skip
    for s in skipped:
        verdicts.append(Verdict(s.key, s.label, "skipped", s.reason))
    summary = _summary(model, settings, ref, chosen, verdicts)
    from .optimize_report import write_outputs

    chosen_cand = next((c for c, _ in entries if chosen and c.key == chosen.key), None)
    chosen_model = artifact_path(build, model.stem, chosen_cand.artifact) if chosen_cand else None
    written = write_outputs(out, summary, verdicts, chosen, entries, chosen_model)
    _print_table(console, verdicts, settings)
    if chosen is None:
        best = max((v for v in verdicts if v.map50_95 is not None and v.status != "not_eligible"),
                   key=lambda v: float(v.map50_95 or 0.0), default=None)  # fmt: skip
        console.print(
            f"[red]no candidate is within {settings.budget:g} mAP points[/red] of the float "
            f"reference; most accurate: "
            + (f"{best.label} (mAP50-95 {float(best.map50_95 or 0) * POINTS:.2f}, loses "
               f"{float(best.drop or 0):.2f})" if best else "none measured")
            + f". Report: {written['report']}"
        )
        return 1
    console.print(
        f"[green]chose {chosen.label}[/green]: e2e p50 {chosen.p50_ms:.2f} ms, mAP50-95 "
        f"{(chosen.map50_95 or 0) * POINTS:.2f} (loses {chosen.drop:.2f} points"
        + (f", [{chosen.low:.2f}, {chosen.high:.2f}]" if chosen.low is not None else "")
        + f"). Profile: {written['profile']}; load it with edgedet.load({str(out)!r})"
    )
    return 0


def _latency_rounds(console: Any, entries: Sequence[tuple[Candidate, dict[str, Any]]],
                    settings: Settings, records_dir: Path) -> None:  # fmt: skip
    """Rounds 2.. of the latency pass, interleaved over the measured candidates (a machine that
    gets busy for a minute then slows every candidate a little, not one a lot); each record
    keeps its p50 per round in ``optimize_p50_rounds`` (saved, so a resumed run continues)."""
    from .runner import BenchConfig, run_in_subprocess

    ok = [(c, r) for c, r in entries if r.get("status") == "ok"]
    for rnd in range(2, settings.rounds + 1):
        for cand, rec in ok:
            p50s = rec.setdefault("optimize_p50_rounds", [rec["latency_ms"]["e2e"]["p50"]])
            if len(p50s) >= rnd:
                continue  # an earlier run measured this round
            config = BenchConfig(**{**rec["config"], "accuracy": False, "save_detections": None})
            again = run_in_subprocess(config, timeout_s=settings.timeout_s)
            if again.get("status") != "ok":
                console.print(f"round {rnd} {cand.label()}: {again.get('status')} "
                              f"({_brief(str(again.get('reason')))})")  # fmt: skip
                continue
            p50s.append(again["latency_ms"]["e2e"]["p50"])
            rec.setdefault("optimize_rounds_cpu_cores_used", []).append(
                again.get("latency_cpu_cores_used")
            )
            save_record(records_dir / f"{cand.key}.json", rec)
            console.print(f"round {rnd} {cand.label()}: e2e p50 {p50s[-1]:.2f} ms")


def _unquantized(cand: Candidate, path: Path) -> str:
    """Why an INT8 ONNX build cannot be an INT8 candidate (empty: it can): calibration kept
    every layer float (e.g. a model whose only convs read the image)."""
    if cand.artifact.kind != "int8" or path.suffix.lower() != ".onnx":
        return ""
    from edgedet.meta import is_quantized_onnx

    if is_quantized_onnx(path):
        return ""
    return "the INT8 build has no quantized layer: calibration kept every layer float"


def _brief(text: str, limit: int = 110) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _print_line(console: Any, head: str, rec: Mapping[str, Any]) -> None:
    if rec.get("status") == "ok":
        console.print(
            f"{head}: mAP50-95 {rec['accuracy']['map50_95'] * POINTS:.2f}, "
            f"e2e p50 {rec['latency_ms']['e2e']['p50']:.2f} ms"
        )
    else:
        console.print(f"{head}: {rec.get('status')} ({_brief(str(rec.get('reason')), 200)})")


def _print_table(console: Any, verdicts: Sequence[Verdict], settings: Settings) -> None:
    from rich.table import Table

    table = Table("candidate", "mAP50-95", f"loss [95% CI] (budget {settings.budget:g})",
                  "e2e p50 ms", "outcome")  # fmt: skip
    from .optimize_report import verdict_order

    for v in sorted(verdicts, key=verdict_order):
        if v.status == "skipped" and not v.record:
            continue  # not possible here: listed above the table
        loss = "" if v.drop is None else f"{v.drop:.2f}" + (
            f" [{v.low:.2f}, {v.high:.2f}]" if v.low is not None else "")
        table.add_row(v.label, "" if v.map50_95 is None else f"{v.map50_95 * POINTS:.2f}", loss,
                      "" if v.p50_ms is None else f"{v.p50_ms:.2f}",
                      _brief(f"{v.status}: {v.reason}", 120))  # fmt: skip
    console.print(table)


def _summary(model: Path, settings: Settings, ref: Candidate, chosen: Verdict | None,
             verdicts: Sequence[Verdict]) -> dict[str, Any]:  # fmt: skip
    from edgedet.deploy import device_fingerprint

    return {
        "model": str(model),
        "data": settings.data,
        "calibration_images": settings.images or f"{settings.data} (the validation images)",
        "budget_points": settings.budget,
        "reference": ref.label(),
        "chosen": chosen.key if chosen else None,
        "device": device_fingerprint(ref.runtime),
        "candidates": [
            {k: getattr(v, k) for k in ("key", "label", "status", "reason", "p50_ms", "map50_95",
                                        "drop", "low", "high", "cannot_tell")}
            for v in verdicts
        ],
    }

