"""What ``edgedet optimize`` writes into ``--out``: the chosen model file and its deploy profile
(`edgedet.deploy`), ``optimize.json``, ``optimize.md`` (every candidate and why it lost) and
``frontier.png`` (accuracy against latency, the chosen point marked)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgedet.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from .optimize import Candidate, Verdict

POINTS = 100.0


def verdict_order(v: Verdict) -> tuple[int, float]:
    """Sort key for reports: chosen first, then slower, over budget, ..., each by p50."""
    rank = {"chosen": 0, "slower": 1, "over_budget": 2, "not_eligible": 3, "failed": 4,
            "skipped": 5}.get(v.status, 4)  # fmt: skip
    return rank, v.p50_ms if v.p50_ms is not None else math.inf


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def install_model(src: Path, out: Path) -> Path:
    """Copy the chosen model (an ``.xml`` with its ``.bin`` and edgedet sidecar) into ``out``."""
    from edgedet.meta import sidecar_path

    dst = out / src.name
    if src.suffix == ".xml":
        _copy_atomic(src.with_suffix(".bin"), dst.with_suffix(".bin"))  # .bin before .xml
    _copy_atomic(src, dst)
    side = sidecar_path(src)
    if side.is_file():
        _copy_atomic(side, sidecar_path(dst))
    report = src.with_name(src.stem + ".calibration.md")
    if report.is_file():
        _copy_atomic(report, out / report.name)
    return dst


def _measured(chosen: Verdict, summary: Mapping[str, Any]) -> dict[str, Any]:
    rec = chosen.record
    return {
        "map50_95": chosen.map50_95,
        "map_drop_points": chosen.drop,
        "map_drop_interval_points": [chosen.low, chosen.high],
        "budget_points": summary["budget_points"],
        "reference": summary["reference"],
        "e2e_p50_ms": chosen.p50_ms,
        "latency_ms": rec.get("latency_ms"),
        "dataset": rec.get("dataset_path"),
        "images": rec.get("images"),
        "protocol": rec.get("protocol"),
        "precision_run": rec.get("precision"),
        "runtime_version": rec.get("runtime_version"),
    }


def write_outputs(
    out: Path,
    summary: dict[str, Any],
    verdicts: Sequence[Verdict],
    chosen: Verdict | None,
    entries: Sequence[tuple[Candidate, dict[str, Any]]],
    chosen_model: Path | None,
) -> dict[str, Path | None]:
    """Write everything; a previous run's profile in ``out`` is removed first (``out`` holds one
    profile, so ``edgedet.load(out)`` is unambiguous). ``chosen_model`` is the chosen candidate's
    built model file (None when nothing was chosen). Returns the paths written."""
    from edgedet.deploy import PROFILE_SUFFIX, new_profile, profile_path_for, write_profile

    for old in out.glob("*" + PROFILE_SUFFIX):
        old.unlink()
    written: dict[str, Path | None] = {"profile": None, "model": None}
    if chosen is not None:
        cand = next(c for c, _ in entries if c.key == chosen.key)
        assert chosen_model is not None, "a chosen candidate comes with its model file"
        model = install_model(chosen_model, out)
        opts = cand.runtime_options()
        profile = new_profile(model, cand.runtime, cand.device, opts, cand.precision,
                              _measured(chosen, summary))  # fmt: skip
        written["model"] = model
        written["profile"] = write_profile(profile_path_for(model), profile)
    report = out / "optimize.md"
    atomic_write_bytes(report, render_markdown(summary, verdicts).encode())
    atomic_write_bytes(out / "optimize.json", json.dumps(summary, indent=2, default=str).encode())
    written["report"] = report
    written["plot"] = plot(out / "frontier.png", verdicts, chosen, summary)
    return written


def _fmt(v: float | None, scale: float = 1.0) -> str:
    return "" if v is None else f"{v * scale:.2f}"


def _share(record: Mapping[str, Any]) -> str:
    """Pre- plus post-processing p50 as a share of inference p50 (first latency round)."""
    lat = record.get("latency_ms") or {}
    try:
        pre, post, inf = (float(lat[k]["p50"]) for k in ("preprocess", "postprocess", "infer"))
    except (KeyError, TypeError, ValueError):
        return ""
    return f"{(pre + post) / inf * 100:.1f}%" if inf > 0 else ""


def render_markdown(summary: Mapping[str, Any], verdicts: Sequence[Verdict]) -> str:
    dev = summary["device"]
    lines = [
        f"# edgedet optimize: {Path(summary['model']).name}",
        "",
        f"- data: `{summary['data']}`; calibration images: `{summary['calibration_images']}`",
        f"- budget: mAP50-95 loss of at most {summary['budget_points']:g} points against "
        f"{summary['reference']} (point estimate; the 95% paired bootstrap interval is shown)",
        f"- device: {dev.get('cpu_model')} ({dev.get('cores')} cores; flags "
        f"{', '.join(dev.get('cpu_flags') or []) or 'none'}); GPUs: "
        f"{', '.join(dev.get('gpus') or []) or 'none'}",
        f"- chosen: **{summary['chosen'] or 'nothing within the budget'}**",
        "",
        "| candidate | mAP50-95 | loss, points [95% CI] | e2e p50 ms | pre+post / infer | "
        "outcome |",
        "|---|---:|---|---:|---:|---|",
    ]
    for v in sorted(verdicts, key=verdict_order):
        loss = _fmt(v.drop) + (f" [{v.low:.2f}, {v.high:.2f}]" if v.low is not None else "")
        reason = v.reason.replace("|", "/").replace("\n", " ")[:300]
        lines.append(f"| {v.label} | {_fmt(v.map50_95, POINTS)} | {loss} | {_fmt(v.p50_ms)} | "
                     f"{_share(v.record)} | **{v.status}**: {reason} |")  # fmt: skip
    lines += [
        "",
        "Latency: end to end (preprocess + inference + postprocess) per image at the deployment "
        "thresholds, the `edgedet bench` method, one process per candidate. A loss interval that "
        "spans the budget means the validation set cannot tell whether the candidate is within "
        "it.",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, verdicts: Sequence[Verdict], chosen: Verdict | None,
         summary: Mapping[str, Any]) -> Path | None:  # fmt: skip
    """The frontier of the measured candidates with the chosen one ringed (None without
    matplotlib or without a measured candidate)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return None
    from .plot import draw_frontier

    records = []
    for v in verdicts:
        if v.record.get("status") == "ok":
            rec = dict(v.record)
            rec["model_name"] = v.label
            rec["precision"] = None
            records.append(rec)
    drawn = draw_frontier(records, title=f"optimize {Path(summary['model']).name}: "
                          f"budget {summary['budget_points']:g} points")  # fmt: skip
    if drawn is None:
        return None
    fig, ax, _ = drawn
    if chosen is not None and chosen.p50_ms is not None and chosen.map50_95 is not None:
        ax.scatter([chosen.p50_ms], [chosen.map50_95], s=260, facecolors="none",
                   edgecolors="red", linewidths=2, label="chosen", zorder=5)  # fmt: skip
        ax.legend(loc="lower right")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path
