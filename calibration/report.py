"""The calibration report: ``<out>.calibration.json`` and ``.md`` beside the INT8 model, the
console summary of a run, the sensitivity files of the mixed-precision search, and the sweep
table. Functions of the report dict `pipeline.calibrate` fills: no inference here."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edgedet.fileio import atomic_write_bytes

log = logging.getLogger("edgedet.calibration")

NO_LABELS = (
    "no labelled check ran: this INT8 model was checked only against the float model's own "
    "detections on held-out images (fidelity), not against ground truth; pass --val DATA "
    "(with --max-map-drop / --max-class-drop) for a measured mAP budget"
)


def summary_lines(out: Path, report: dict[str, Any]) -> list[str]:
    """What ``edgedet calibrate`` prints after a run: what it wrote, the guard, fidelity,
    latency and accuracy in one line each, and the no-labels note when no labelled check ran."""
    lines: list[str] = []
    lines.append(f"wrote {out} and {report_path(out, '.md')}")
    guard = report.get("label_free_guard")
    if guard and "tries" in guard:
        kept = len(guard["kept_float"])  # the kept candidate's try (the closest if none met)
        tries = guard["tries"] or [{}]
        last = next((t for t in tries if t.get("kept_float") == kept), tries[-1])
        lines.append(
            f"label-free guard: {kept} layer(s) kept float; held-out proxy "
            f"error {last.get('proxy_error')} ({'within' if guard['met'] else 'NOT within'} "
            f"{guard['bound']})"
        )
    fid = report.get("fidelity")
    if fid:
        if fid["map50_95"] is None:
            lines.append(f"fidelity: the float model found nothing on the {fid['images']} held-out images")
        else:
            worst = sorted(fid["per_class_ap"].items(), key=lambda kv: kv[1])[:3]
            lines.append(
                f"fidelity on {fid['images']} held-out images (not calibrated on; INT8 scored "
                f"against the float model's {fid['reference_boxes']} detections): mAP50-95 "
                f"{fid['map50_95']:.3f}, mAP50 {fid['map50']:.3f}; lowest classes: "
                + ", ".join(f"{k} {v:.3f}" for k, v in worst)
            )
    lat = report.get("latency_ms")
    if lat:
        lines.append(
            f"p50 latency on {lat['runtime']} (ms, end to end): float {lat['float_p50']:.1f}, "
            f"int8 {lat['int8_p50']:.1f}"
        )
    if "accuracy" in report:
        acc = report["accuracy"]
        lines.append(
            f"mAP50-95 float {_pct(acc['float']['map50_95'])}% -> int8 "
            f"{_pct(acc['int8']['map50_95'])}% ({acc['retained_pct']}% kept)"
        )
    if not report.get("labelled_check"):
        lines.append(f"NOTE: {NO_LABELS}")
    return lines


def write_sensitivity(out: Path, sens: Any) -> None:
    try:  # the plot is an extra: matplotlib may be missing on a device install
        sens.plot(report_path(out, ".sensitivity.png"))
    except ImportError as err:
        log.warning("no sensitivity plot: %s", err)
    atomic_write_bytes(report_path(out, ".sensitivity.md"), sens.to_markdown().encode())


def report_path(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + ".calibration" + suffix)


def write_report(out: Path, report: dict[str, Any]) -> None:
    """``<out>.calibration.json`` and ``.md`` beside the model, atomically."""
    atomic_write_bytes(
        report_path(out, ".json"), json.dumps(report, indent=2, default=str).encode()
    )
    atomic_write_bytes(report_path(out, ".md"), render_markdown(report).encode())


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100.0 * float(v):.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    from edgedet.protocol import EvalProtocol

    spec = report.get("spec", {})
    images = report.get("images", {})
    lines = [
        f"# INT8 calibration of `{Path(report['model']).name}`",
        "",
        f"- output: `{report['output']}` ({report['runtime']})",
        f"- method: {spec.get('method')} (percentile {spec.get('percentile')}), per-channel weights: "
        f"{spec.get('per_channel')}, symmetric activations: {spec.get('symmetric_activations')}",
        f"- images: {images.get('count')} of {images.get('requested')} requested from {images.get('origin')} "
        f"(seed {images.get('seed')}, sha256 {str(images.get('images_sha256'))[:16]}…)",
        f"- kept in float: {report.get('excluded')}",
    ]
    for w in images.get("warnings", []):
        lines.append(f"- **warning**: {w}")
    lines += _activation_range_lines(report.get("activation_ranges"))
    for s in images.get("skipped", []):
        lines.append(f"- skipped: {s}")
    size = report.get("size_mb")
    if size:
        lines.append(f"- size: float {size['float']} MB, int8 {size['int8']} MB")
    acc = report.get("accuracy")
    if acc:
        f, q = acc["float"], acc["int8"]
        lines += [
            "",
            "| | float | int8 |",
            "|---|---:|---:|",
            f"| mAP50-95 (%) | {_pct(f['map50_95'])} | {_pct(q['map50_95'])} |",
            f"| mAP50 (%) | {_pct(f['map50'])} | {_pct(q['map50'])} |",
            f"| p50 latency (ms, end to end) | {f.get('latency_p50_ms') and round(f['latency_p50_ms'], 1)} | {q.get('latency_p50_ms') and round(q['latency_p50_ms'], 1)} |",
            "",
            f"INT8 keeps {acc['retained_pct']}% of the float mAP50-95 ({acc['map_drop_points']} points lost).",
            *(
                [f"mAP protocol: {EvalProtocol.from_dict(f['protocol']).describe()}."]
                if f.get("protocol")
                else []
            ),
            *(
                [
                    f"95% paired bootstrap interval of the loss over the {d['images']} validation "
                    f"images: [{d['low']:.2f}, {d['high']:.2f}] points (a budget finer than "
                    f"{d['half_width']:.2f} points is judged on noise)."
                ]
                if (d := acc.get("map_drop_interval_points"))
                else []
            ),
            "",
            "| class | float AP | int8 AP | change (points) |",
            "|---|---:|---:|---:|",
        ]
        for name, ap in f["per_class_ap"].items():
            ap8 = q["per_class_ap"].get(name)
            change = "-" if ap is None or ap8 is None else f"{100.0 * (ap8 - ap):+.2f}"
            lines.append(f"| {name} | {_pct(ap)} | {_pct(ap8)} | {change} |")
    lat = report.get("latency_ms")
    if lat:
        lines.append(
            f"- p50 latency (ms, end to end, {lat.get('runtime', '')} on "
            f"{lat.get('images', '?')} held-out images): float {lat['float_p50']:.1f}, "
            f"int8 {lat['int8_p50']:.1f}"
        )
    lines += _guard_and_fidelity_lines(report)
    mixed = report.get("mixed_precision")
    if mixed:
        lines += [
            "",
            f"Mixed precision: kept {len(mixed['kept_float'])} layer(s) float; budget met: {mixed['met']}",
            "",
        ]
        for t in mixed["tries"]:
            lines.append(
                f"- {t['kept_float']} float: mAP {_pct(t['map50_95'])} {'ok' if t['ok'] else '; '.join(t['why'])}"
            )
    return "\n".join(lines) + "\n"


def _activation_range_lines(ranges: dict[str, Any] | None) -> list[str]:
    """What ONNX Runtime's range measurement did (`edgedet.calibration.ort_ranges`)."""
    if not ranges:
        return []
    lines = [
        f"- activation ranges ({ranges.get('tool')}, {ranges.get('method')}, for "
        f"{ranges.get('used_for')}): {ranges.get('tensors_measured')} tensors measured, the "
        f"{ranges.get('rule')}; {ranges.get('tensors_left_out')} tensors of those op types "
        f"not measured"
    ]
    for note in ranges.get("notes", []):
        lines.append(f"- **warning**: {note}")
    return lines


def _guard_and_fidelity_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    guard = report.get("label_free_guard")
    if guard and "tries" in guard:
        lines += [
            "",
            f"Label-free guard (held-out proxy error bound {guard['bound']}, "
            f"{guard['heldout_images']} held-out images): kept {len(guard['kept_float'])} "
            f"layer(s) float; bound met: {guard['met']}"
            + (f"; range estimator kept: {guard['method']}" if guard.get("method") else ""),
            "",
        ]
        for t in guard["tries"]:
            how = f" ({t['method']})" if t.get("method") else ""
            lines.append(
                f"- {t['kept_float']} float{how}: proxy error {t['proxy_error']:.4f} "
                f"{'ok' if t['ok'] else 'over the bound'}"
            )
    elif guard:
        lines += ["", f"Label-free guard skipped: {guard.get('skipped')}"]
    fid = report.get("fidelity")
    if fid:
        lines += [
            "",
            f"Fidelity on {fid['images']} held-out images (not calibrated on), on "
            f"{fid.get('runtime')}: the INT8 model's detections scored against the float "
            f"model's {fid['reference_boxes']} detections (score >= "
            f"{fid['reference_min_score']}) as ground truth.",
            "",
            f"- mAP50-95 {_pct(fid['map50_95'])}%, mAP50 {_pct(fid['map50'])}%",
        ]
        if fid["per_class_ap"]:
            lines += ["", "| class | fidelity AP (%) |", "|---|---:|"]
            for name, ap in sorted(fid["per_class_ap"].items(), key=lambda kv: kv[1]):
                lines.append(f"| {name} | {_pct(ap)} |")
    if not report.get("labelled_check", True):
        lines += ["", f"**{NO_LABELS[0].upper() + NO_LABELS[1:]}.**"]
    return lines



# -- sweep ----------------------------------------------------------------------------------


def sweep_table(rows: list[dict[str, Any]], outdir: Path) -> tuple[list[dict[str, Any]], str]:
    """The sweep's rows that built, best first, and the Markdown table of all rows; writes
    ``sweep.json`` and ``sweep.md`` into ``outdir`` atomically."""
    ok = [r for r in rows if "error" not in r]
    ok.sort(key=lambda r: (-r["map50_95"], r["p50_ms"] or 0.0))
    table = [
        "| rank | config | images | mAP50-95 (%) | mAP50 (%) | p50 ms | model |",
        "|---:|---|---:|---:|---:|---:|---|",
    ]
    for i, r in enumerate(ok, 1):
        table.append(
            f"| {i} | {r['config']} | {r['images']} | {_pct(r['map50_95'])} | {_pct(r['map50'])} | {r['p50_ms'] and round(r['p50_ms'], 1)} | `{Path(r['path']).name}` |"
        )
    for r in rows:
        if "error" in r:
            table.append(f"| - | {r['config']} | {r['images']} | failed: {r['error'][:80]} | | | |")
    atomic_write_bytes(outdir / "sweep.json", json.dumps(rows, indent=2).encode())
    atomic_write_bytes(outdir / "sweep.md", ("\n".join(table) + "\n").encode())
    return ok, "\n".join(table)
