"""Render benchmark records: a console table (rich), ``results.md``, ``results.csv`` and the
frontier plot. Everything here reads records only, so results from several devices (several
``records.jsonl``) render together, one row per configuration and host.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.fileio import atomic_write_bytes

from .records import get_path
from .stats import STAT_KEYS

#: (header, dotted path in the record, format) of the summary table.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("model", "model_name", "s"),
    ("runtime", "runtime", "s"),
    ("precision", "precision", "s"),
    ("imgsz", "imgsz", "size"),
    ("batch", "batch", "s"),
    ("threads", "threads", "s"),
    ("status", "status", "s"),
    ("mAP50-95", "accuracy.map50_95", ".3f"),
    ("95% CI", "accuracy.map50_95_ci", "ci"),
    ("mAP50", "accuracy.map50", ".3f"),
    ("p50 ms", "latency_ms.e2e.p50", ".1f"),
    ("p90 ms", "latency_ms.e2e.p90", ".1f"),
    ("p99 ms", "latency_ms.e2e.p99", ".1f"),
    ("infer p50", "latency_ms.infer.p50", ".1f"),
    ("load s", "load_s", ".2f"),
    ("RSS MB", "peak_rss_mb", ".0f"),
    ("fps", "throughput_fps", ".1f"),
)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if spec == "size":
        if isinstance(value, (list, tuple)):
            return "x".join(str(v) for v in value) if len(set(value)) > 1 else str(value[0])
        return str(value)
    if spec == "s":
        return str(value)
    if spec == "ci":  # an interval dict from edgedet.eval.bootstrap
        low, high = (value.get(k) if isinstance(value, dict) else None for k in ("low", "high"))
        return "–" if low is None or high is None else f"{low:.3f}–{high:.3f}"
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def _hosts(records: Sequence[Mapping[str, Any]]) -> list[str]:
    names = []
    for r in records:
        host = r.get("host")
        name = host.get("name") if isinstance(host, dict) else None
        if name and name not in names:
            names.append(str(name))
    return names


def _precision(record: Mapping[str, Any]) -> Any:
    """The precision that ran (ok records) or the one asked for (skipped / failed ones)."""
    if record.get("status") == "ok":
        return record.get("precision")
    return record.get("precision_requested") or record.get("precision")


def table_rows(
    records: Sequence[Mapping[str, Any]], *, with_reason: bool = True
) -> tuple[list[str], list[list[str]]]:
    """Header and formatted rows of the summary table (a ``host`` column with several hosts,
    a ``reason`` column when something was skipped or failed and ``with_reason``)."""
    multi_host = len(_hosts(records)) > 1
    any_reason = with_reason and any(r.get("status") != "ok" for r in records)
    header = [c[0] for c in COLUMNS]
    if multi_host:
        header.insert(0, "host")
    if any_reason:
        header.append("reason")
    rows = []
    for r in records:
        row = [
            _fmt(_precision(r) if h == "precision" else get_path(r, path), spec)
            for h, path, spec in COLUMNS
        ]
        if multi_host:
            row.insert(0, str(get_path(r, "host.name") or "?"))
        if any_reason:
            row.append(str(r.get("reason") or ""))
        rows.append(row)
    return header, rows


def wide_console() -> Any:
    """A rich console at least 180 columns wide (tables stay readable in logs and pipes)."""
    import shutil

    from rich.console import Console

    return Console(width=max(shutil.get_terminal_size((180, 40)).columns, 180))


def print_table(records: Sequence[Mapping[str, Any]], console: Any = None) -> None:
    """The summary table on the terminal (rich); reasons and warnings are listed below it."""

    from rich.table import Table

    if console is None:
        console = wide_console()
    header, rows = table_rows(records, with_reason=False)
    table = Table(title="edgedet bench", show_lines=False)
    for h in header:
        table.add_column(
            h,
            justify="left" if h in ("host", "model", "runtime") else "right",
            no_wrap=h in ("host", "model", "runtime"),
            min_width=len(h),
        )
    status_style = {"ok": "green", "skipped": "yellow", "failed": "red"}
    for r, row in zip(records, rows):
        table.add_row(*row, style=status_style.get(str(r.get("status"))))
    console.print(table)
    for r in records:
        label = f"{r.get('model_name')} {r.get('runtime')} {_precision(r) or ''}".strip()
        if r.get("status") != "ok":
            console.print(
                f"{r.get('status')} {label}: {r.get('reason')}", markup=False, highlight=False
            )
        for w in r.get("warnings") or []:
            console.print(f"warning {label}: {w}", markup=False, highlight=False)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _protocol_lines(ok: Sequence[Mapping[str, Any]]) -> list[str]:
    """``## Evaluation protocol``: how each model's mAP detections were made (one line per
    distinct model and protocol; `edgedet.protocol`)."""
    from edgedet.protocol import EvalProtocol

    out: list[str] = []
    seen: set[str] = set()
    for r in ok:
        raw = r.get("protocol")
        if not isinstance(raw, dict):
            continue
        try:
            proto = EvalProtocol.from_dict(raw)
        except ValueError:
            continue
        line = (
            f"- {r.get('model_name')} ({r.get('family')}): {proto.describe()}; deployment "
            f"score {proto.deploy_score_threshold:g}, IoU {proto.deploy_iou_threshold:g}"
            + (f". Source: {_md_escape(proto.source)}" if proto.source else "")
        )
        if line not in seen:
            seen.add(line)
            out.append(line)
    return ["", "## Evaluation protocol", "", *out] if out else []


def render_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """``results.md``: summary table, per-class AP and safety recall, hosts and method."""
    header, rows = table_rows(records)
    lines = ["# edgedet bench results", ""]
    lines += _md_table(header, rows)
    ok = [r for r in records if r.get("status") == "ok" and isinstance(r.get("accuracy"), dict)]
    paired = [r for r in ok if isinstance(r["accuracy"].get("vs_reference"), dict)]
    if paired:
        lines += [
            "",
            "## Against the reference (paired bootstrap over images)",
            "",
            "Configurations scored on the same images (same dataset, image count, class names "
            "and aliases) are compared with the first of them that ran, on the same "
            f"{paired[0]['accuracy']['vs_reference']['resamples']} resamples of the images: 95% "
            'percentile intervals of the difference and of the ratio of mAP50-95. "share '
            'higher" is the share of resamples in which the configuration scored above its '
            "reference (ties count half), not a probability. An interval that holds 0 (or 100%) "
            "means these images cannot tell the two apart; it does not mean they are equal.",
            "",
        ]
        body = []
        for r in paired:
            v = r["accuracy"]["vs_reference"]
            d, q = v["difference"], v["ratio"]
            body.append(
                [
                    str(r.get("model_name")),
                    str(r.get("runtime")),
                    str(r.get("precision")),
                    str(v.get("reference")),
                    _fmt(d.get("estimate"), "+.4f"),
                    "–" if d.get("low") is None else f"{d['low']:+.4f} to {d['high']:+.4f}",
                    _fmt(None if q.get("estimate") is None else 100 * q["estimate"], ".1f"),
                    "–" if q.get("low") is None else f"{100 * q['low']:.1f}–{100 * q['high']:.1f}",
                    _fmt(v.get("p_higher"), ".2f"),
                ]
            )
        hdr = ["model", "runtime", "precision", "reference", "Δ mAP", "Δ 95% CI", "% of ref"]
        lines += _md_table([*hdr, "% 95% CI", "share higher"], body)
    reasons = [r for r in ok if r["accuracy"].get("interval_reason")]
    if reasons:
        lines += ["", "No mAP interval:", ""]
        lines += [
            f"- {r.get('model_name')} {r.get('runtime')}: {_md_escape(r['accuracy']['interval_reason'])}"
            for r in reasons
        ]
    per_class: list[str] = []
    for r in ok:
        for name, ap in (r["accuracy"].get("per_class_ap") or {}).items():
            if ap is not None and name not in per_class:
                per_class.append(name)
    if ok and per_class and len(per_class) <= 16:
        lines += ["", "## Per-class AP (IoU 0.50:0.95)", ""]
        hdr = ["model", "runtime", "precision", *per_class]
        body = [
            [
                str(r.get("model_name")),
                str(r.get("runtime")),
                str(r.get("precision")),
                *[_fmt(r["accuracy"]["per_class_ap"].get(c), ".3f") for c in per_class],
            ]
            for r in ok
        ]
        lines += _md_table(hdr, body)
    safety: list[str] = []
    for r in ok:
        for name in r["accuracy"].get("safety_recall") or {}:
            if name not in safety:
                safety.append(name)
    if safety:
        lines += ["", "## Safety-class recall at the deployment threshold", ""]
        hdr = ["model", "runtime", "precision", "P", "R", "F1", *safety]
        body = [
            [
                str(r.get("model_name")),
                str(r.get("runtime")),
                str(r.get("precision")),
                _fmt(r["accuracy"].get("precision"), ".3f"),
                _fmt(r["accuracy"].get("recall"), ".3f"),
                _fmt(r["accuracy"].get("f1"), ".3f"),
                *[_fmt((r["accuracy"].get("safety_recall") or {}).get(c), ".3f") for c in safety],
            ]
            for r in ok
        ]
        lines += _md_table(hdr, body)
    mapping_lines: list[str] = []
    seen_models: set[tuple[str, str]] = set()
    for r in ok:
        acc = r["accuracy"]
        key = (str(r.get("model_name")), str(r.get("dataset")))
        cmap = acc.get("class_map") or {}
        renamed = {m: d for m, d in cmap.items() if m != d}
        unmapped = acc.get("unmapped_dataset_classes") or []
        if key in seen_models or not (renamed or unmapped):
            continue
        seen_models.add(key)
        pairs = ", ".join(f"{m} → {d}" for m, d in renamed.items()) or "names equal"
        mapping_lines.append(
            f"- {key[0]} on {key[1]}: {pairs}; dataset classes without a model class "
            f"(their boxes are ignored): {', '.join(unmapped) or 'none'}; "
            f"{len(acc.get('unmapped_model_classes') or [])} model classes without a dataset class "
            "(their detections are dropped)"
        )
    if mapping_lines:
        lines += ["", "## Class mapping", "", *mapping_lines]
    lines += _protocol_lines(ok)
    lines += ["", "## Hosts", ""]
    seen: set[str] = set()
    for r in records:
        host = r.get("host")
        if not isinstance(host, dict) or str(host.get("name")) in seen:
            continue
        seen.add(str(host.get("name")))
        facts = ", ".join(
            f"{k}: {host[k]}"
            for k in (
                "name",
                "cpu_model",
                "cores_logical",
                "governor",
                "load_avg",
                "board",
                "power_mode",
                "os",
            )
            if k in host
        )
        lines.append(f"- {facts}")
    method = next((r.get("method") for r in ok if r.get("method")), None)
    if method:
        lines += ["", "## Method", ""]
        lines.append(
            f"Latency: {method.get('warmup')} warm-up iterations, then at least "
            f"{method.get('min_iterations')} iterations and {method.get('min_seconds')} s "
            f"(cap {method.get('max_seconds')} s) over {method.get('latency_images')} dataset "
            f"images decoded beforehand, timed with {method.get('clock')}; percentiles over every "
            f"iteration ({method.get('outliers')}); {method.get('process')}. Latency thresholds: "
            f"{method.get('latency_thresholds')}. Accuracy pass thresholds: "
            f"{method.get('accuracy_thresholds')}, evaluated with {method.get('eval_backend')}."
            + (f" {method['rounds']} rounds per configuration." if method.get("rounds") else "")
        )
    warned = [(r, w) for r in records for w in r.get("warnings") or []]
    if warned:
        lines += ["", "## Warnings", ""]
        lines += [
            f"- {r.get('model_name')} {r.get('runtime')} {_precision(r) or ''}: {_md_escape(w)}"
            for r, w in warned
        ]
    power = [r for r in ok if isinstance(r.get("power"), dict)]
    if power and not any(r["power"].get("measured") for r in power):
        lines += ["", f"Power: not measured ({power[0]['power'].get('reason')})."]
    elif power:
        lines += ["", "## Energy", ""]
        body = [
            [
                str(r.get("model_name")),
                str(r.get("runtime")),
                _fmt(r["power"].get("mean_power_mw"), ".0f"),
                _fmt(r["power"].get("energy_per_inference_mj"), ".2f"),
                "yes" if r["power"].get("throttled") else "no",
            ]
            for r in power
            if r["power"].get("measured")
        ]
        lines += _md_table(["model", "runtime", "mean mW", "mJ / image", "throttled"], body)
    return "\n".join(lines) + "\n"


def csv_columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    cols = [
        "host.name",
        "model",
        "model_name",
        "model_sha256",
        "family",
        "runtime",
        "runtime_version",
        "device",
        "precision",
        "imgsz",
        "batch",
        "threads",
        "dataset",
        "images",
        "status",
        "reason",
    ]
    cols += [
        f"latency_ms.{stage}.{k}"
        for stage in ("e2e", "preprocess", "infer", "postprocess")
        for k in STAT_KEYS
    ]
    cols += ["load_s", "first_inference_ms", "peak_rss_mb", "throughput_fps", "fps_sequential"]
    cols += [
        f"accuracy.{k}"
        for k in (
            "map50_95",
            "map50",
            "map75",
            "map_small",
            "map_medium",
            "map_large",
            "precision",
            "recall",
            "f1",
            "map50_95_ci.low",
            "map50_95_ci.high",
            "vs_reference.reference",
            "vs_reference.difference.estimate",
            "vs_reference.difference.low",
            "vs_reference.difference.high",
            "vs_reference.ratio.estimate",
            "vs_reference.ratio.low",
            "vs_reference.ratio.high",
            "vs_reference.p_higher",
        )
    ]
    extra: list[str] = []
    for r in records:
        acc = r.get("accuracy")
        if isinstance(acc, dict):
            for group in ("per_class_ap", "safety_recall"):
                for name in acc.get(group) or {}:
                    key = f"accuracy.{group}.{name}"
                    if key not in extra:
                        extra.append(key)
    cols += extra
    cols += ["power.measured", "power.energy_per_inference_mj", "edgedet_version", "timestamp"]
    return cols


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``results.csv``: one row per record, dotted column names, empty cells for missing values."""
    cols = csv_columns(records)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in records:
        row = []
        for c in cols:
            if c.startswith("accuracy.per_class_ap.") or c.startswith("accuracy.safety_recall."):
                group, name = c.split(".", 2)[1:]
                acc = r.get("accuracy") if isinstance(r.get("accuracy"), dict) else {}
                v = (acc.get(group) or {}).get(name) if acc else None
            else:
                v = get_path(r, c)
            if isinstance(v, (list, tuple)):
                v = "x".join(str(x) for x in v)
            row.append("" if v is None else v)
        w.writerow(row)
    return buf.getvalue()


def write_reports(
    records: Sequence[Mapping[str, Any]], out_dir: str | Path, *, plot: bool = True
) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv`` and (with an ok record) ``frontier.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    atomic_write_bytes(out / "results.md", render_markdown(records).encode())
    written["markdown"] = out / "results.md"
    atomic_write_bytes(out / "results.csv", render_csv(records).encode())
    written["csv"] = out / "results.csv"
    if plot:
        from .plot import plot_frontier

        png = plot_frontier(records, out / "frontier.png")
        if png is not None:
            written["plot"] = png
    return written
