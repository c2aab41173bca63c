"""``frontier.png``: mAP50-95 against p50 end-to-end latency, one point per configuration.

The Pareto frontier (configurations no other one beats on both accuracy and latency) is drawn
as a step line and its points labelled in bold; colour says the runtime; a vertical bar is the
mAP's 95% bootstrap interval when the record has one. matplotlib is imported
lazily with the Agg backend, so this works on a headless robot and costs nothing until used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgedet.errors import missing_extra

from .records import get_path


def point_of(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """(p50 e2e latency in ms, mAP50-95) of an ``ok`` record with both numbers, else None."""
    if record.get("status") != "ok":
        return None
    lat = get_path(record, "latency_ms.e2e.p50")
    acc = get_path(record, "accuracy.map50_95")
    if not isinstance(lat, (int, float)) or not isinstance(acc, (int, float)):
        return None
    return float(lat), float(acc)


def interval_of(record: Mapping[str, Any]) -> tuple[float, float] | None:
    """(low, high) of the record's mAP50-95 bootstrap interval, or None without one."""
    ci = get_path(record, "accuracy.map50_95_ci")
    if not isinstance(ci, Mapping):
        return None
    low, high = ci.get("low"), ci.get("high")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    return float(low), float(high)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points on the frontier (lower latency and higher accuracy are better),
    sorted by latency. A point is on it if no other point is at least as fast and at least as
    accurate and strictly better in one."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def point_label(record: Mapping[str, Any], with_host: bool = False) -> str:
    parts = [str(record.get("model_name") or Path(str(record.get("model", "?"))).stem)]
    prec = record.get("precision")
    if record.get("status") != "ok":  # what was asked for; nothing ran
        prec = record.get("precision_requested") or prec
    if prec:
        parts.append(str(prec))
    if record.get("batch", 1) not in (1, None):
        parts.append(f"b{record['batch']}")
    if with_host:
        host = record.get("host")
        if isinstance(host, dict) and host.get("name"):
            parts.append(f"@{host['name']}")
    return " ".join(parts)


def plot_frontier(
    records: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None
) -> Path | None:
    """Write the accuracy/latency plot to ``path``; None (nothing written) with no ok record."""
    pts: list[tuple[float, float]] = []
    recs: list[Mapping[str, Any]] = []
    for r in records:
        p = point_of(r)
        if p is not None:
            pts.append(p)
            recs.append(r)
    if not pts:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure
    except ImportError as err:
        raise missing_extra("matplotlib", "bench", "the frontier plot") from err

    hosts = {r["host"].get("name") for r in recs if isinstance(r.get("host"), dict)}
    with_host = len(hosts) > 1
    fig = Figure(figsize=(8, 5.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    runtimes = sorted({str(r.get("runtime")) for r in recs})
    colors = {rt: f"C{i % 10}" for i, rt in enumerate(runtimes)}
    front = set(pareto_front(pts))
    for rt in runtimes:
        idx = [i for i, r in enumerate(recs) if str(r.get("runtime")) == rt]
        ax.scatter(
            [pts[i][0] for i in idx],
            [pts[i][1] for i in idx],
            color=colors[rt],
            label=rt,
            s=40,
            zorder=3,
            edgecolors=["black" if i in front else "none" for i in idx],
        )
    # mAP's 95% bootstrap interval as a vertical bar where the record has one: on a small
    # validation set it is often wider than the gaps between the points.
    bars = [(i, interval_of(r)) for i, r in enumerate(recs)]
    for rt in runtimes:
        mine = [(i, ci) for i, ci in bars if ci is not None and str(recs[i].get("runtime")) == rt]
        if not mine:
            continue
        ax.errorbar(
            [pts[i][0] for i, _ in mine],
            [pts[i][1] for i, _ in mine],
            yerr=[
                [max(0.0, pts[i][1] - lo) for i, (lo, _) in mine],
                [max(0.0, hi - pts[i][1]) for i, (_, hi) in mine],
            ],
            fmt="none",
            ecolor=colors[rt],
            elinewidth=1,
            capsize=3,
            alpha=0.6,
            zorder=2,
        )
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    dx = (max(xs) - min(xs)) or 1.0
    dy = (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    for i, (r, (x, y)) in enumerate(zip(recs, pts)):
        # Stack labels of points that sit close together instead of printing them on top.
        near = sum(abs(x - px) < 0.3 * dx and abs(y - py) < 0.04 * dy for px, py in placed)
        placed.append((x, y))
        right_half = x > min(xs) + 0.5 * dx  # labels point inwards so they stay on the plot
        ax.annotate(
            point_label(r, with_host) + f" ({r.get('runtime')})",
            (x, y),
            textcoords="offset points",
            xytext=(-5 if right_half else 5, 4 - 11 * near),
            ha="right" if right_half else "left",
            fontsize=7,
            fontweight="bold" if i in front else "normal",
        )
    fidx = pareto_front(pts)
    fx = [pts[i][0] for i in fidx]
    fy = [pts[i][1] for i in fidx]
    ax.step(
        fx,
        fy,
        where="post",
        color="gray",
        linestyle="--",
        linewidth=1,
        label="Pareto frontier",
        zorder=2,
    )
    ax.set_xlabel("p50 end-to-end latency (ms, lower is better)")
    ax.set_ylabel("mAP50-95 (higher is better)")
    datasets = sorted({str(r.get("dataset")) for r in recs})
    ax.set_title(title or f"accuracy vs latency on {', '.join(datasets)}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(out)
    return out
