"""Markdown for the compression reports (``OUT.report.md`` of ``edgedet prune / distill /
qat``) and the latency verdict they carry. Pure functions of the report dicts: no torch."""

from __future__ import annotations

from typing import Any


def latency_verdict(before_ms: float, after_ms: float, min_speedup: float = 1.05) -> dict[str, Any]:
    speedup = before_ms / after_ms if after_ms > 0 else float("nan")
    faster = speedup >= min_speedup
    note = (
        f"{speedup:.2f}x faster on ONNX Runtime CPU"
        if faster
        else f"NOT faster on ONNX Runtime CPU ({speedup:.2f}x): fewer MACs did not buy speed here"
    )
    return {"speedup": speedup, "faster": faster, "note": note}


def report_markdown(report: dict[str, Any], title: str = "Pruning report") -> str:
    """A short human-readable summary of a `prune` report."""
    lines = [
        f"# {title}",
        "",
        "| | before | after | kept |",
        "|---|---|---|---|",
        f"| MACs | {report['macs_before'] / 1e6:.1f}M | {report['macs_after'] / 1e6:.1f}M "
        f"| {report['macs_kept']:.1%} |",
        f"| params | {report['params_before'] / 1e6:.3f}M | {report['params_after'] / 1e6:.3f}M "
        f"| {report['params_kept']:.1%} |",
    ]
    if "latency_before" in report:
        b, a = report["latency_before"]["p50_ms"], report["latency_after"]["p50_ms"]
        lines.append(f"| p50 latency (ORT CPU) | {b:.2f} ms | {a:.2f} ms | {a / b:.1%} |")
        lines += ["", report.get("note", "")]
    fit = report.get("latency_model")
    if "latency_estimate_kept" in report:
        lines.append(
            f"- estimated convolution latency kept: {report['latency_estimate_kept']:.1%}"
            + (
                f" (ONNX Runtime profile fit: {fit['per_mmac']:.4f} ms/MMAC + "
                f"{fit['per_melement']:.4f} ms per million elements moved, R^2 {fit['r2']:.2f};"
                f" MACs alone R^2 {fit['r2_macs_only']:.2f})"
                if fit
                else ""
            )
        )
    for k in ("map_before", "map_after"):
        if k in report:
            lines.append(f"- {k}: {report[k]:.4f}")
    before, after = report.get("eval_before"), report.get("eval_after")
    if before and after:
        lines += [
            "",
            "| | before | after | kept |",
            "|---|---|---|---|",
            f"| mAP50-95 | {before['map50_95']:.4f} | {after['map50_95']:.4f} "
            f"| {after['map50_95'] / max(before['map50_95'], 1e-12):.1%} |",
            f"| mAP50 | {before['map50']:.4f} | {after['map50']:.4f} "
            f"| {after['map50'] / max(before['map50'], 1e-12):.1%} |",
        ]
    kept = map_kept_line(report)
    if kept:
        lines += ["", kept]
    for rec in report.get("reconstruction", []):
        rows = rec["layers"]
        fitted = [r for r in rows if r["fitted"]]
        if rows:
            b = sum(r["before"] for r in rows) / len(rows)
            a = sum(r["after"] for r in rows) / len(rows)
            lines.append(
                f"- stage {rec['stage']} least-squares reconstruction: {len(fitted)} of "
                f"{len(rows)} convolutions refitted, mean relative output error {b:.4f} -> {a:.4f}"
            )
    lines += ["", "## Channels per convolution (before -> after)", ""]
    for name, (b0, a0) in report["channels"].items():
        if b0 != a0:
            lines.append(f"- `{name}`: {b0} -> {a0}")
    return "\n".join(lines) + "\n"


def map_kept_line(report: dict[str, Any]) -> str:
    """One markdown line: the share of float mAP50-95 kept with its 95% paired bootstrap
    interval (``report["map_kept"]``, see `compress.evaluate_pair`), or why it is
    missing, then the evaluation protocol both were scored with; empty without a validation
    run."""
    kept = report.get("map_kept")
    if not kept:
        return ""
    proto = ""
    if report.get("protocol"):
        from edgedet.protocol import EvalProtocol

        proto = f"\n- mAP protocol: {EvalProtocol.from_dict(report['protocol']).describe()}"
    if kept.get("reason"):
        return f"- share of float mAP50-95 kept: no interval ({kept['reason']}){proto}"
    if kept.get("estimate") is None or kept.get("low") is None:
        return f"- share of float mAP50-95 kept: undefined (float mAP is 0){proto}"
    return (
        f"- share of float mAP50-95 kept: {kept['estimate']:.1%} "
        f"[{kept['low']:.1%}, {kept['high']:.1%}], 95% paired bootstrap over "
        f"{kept['images']} validation images (an interval this wide is what they resolve)"
        f"{proto}"
    )
