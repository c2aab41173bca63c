"""``frontier.png``: mAP50-95 against p50 end-to-end latency, one point per configuration.

The Pareto frontier (configurations no other one beats on both accuracy and latency) is drawn
as a step line and its points labelled in bold with a black edge; colour says the runtime; a
vertical bar is the mAP's 95% bootstrap interval when the record has one, and a note under the
plot says so. Labels are placed so that none overlaps another (`place_labels`), with a leader
line when one had to move away from its point. matplotlib is imported
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
    drawn = draw_frontier(records, title=title)
    if drawn is None:
        return None
    fig = drawn[0]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(out)
    return out


def draw_frontier(
    records: Sequence[Mapping[str, Any]], *, title: str | None = None
) -> tuple[Any, Any, list[Any]] | None:
    """The frontier figure: (matplotlib Figure, its Axes, the point labels), None with no ok
    record. Labels are placed so that no two overlap (`place_labels`)."""
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
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError as err:
        raise missing_extra("matplotlib", "bench", "the frontier plot") from err

    hosts = {r["host"].get("name") for r in recs if isinstance(r.get("host"), dict)}
    with_host = len(hosts) > 1
    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)  # a renderer to measure the labels with (place_labels)
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
            s=40,
            zorder=3,
            edgecolors=["black" if i in front else "none" for i in idx],
            linewidths=1.2,
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
    fidx = pareto_front(pts)
    ax.step(
        [pts[i][0] for i in fidx],
        [pts[i][1] for i in fidx],
        where="post",
        color="gray",
        linestyle="--",
        linewidth=1,
        zorder=2,
    )
    ax.set_xlabel("p50 end-to-end latency (ms, lower is better)")
    ax.set_ylabel("mAP50-95 (higher is better)")
    datasets = sorted({str(r.get("dataset")) for r in recs})
    ax.set_title(title or f"accuracy vs latency on {', '.join(datasets)}")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.12, y=0.12)  # room for the labels of the outermost points
    # The legend is built from proxies: a scatter's own handle would show the edge colour of
    # its first point, so a runtime's entry looked like a frontier point (issue 16).
    handles = [
        Line2D([], [], marker="o", linestyle="none", color=colors[rt], label=rt) for rt in runtimes
    ]
    handles.append(
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="white",
               markeredgecolor="black", label="on the Pareto frontier (bold label)")
    )  # fmt: skip
    handles.append(Line2D([], [], color="gray", linestyle="--", label="Pareto frontier"))
    resamples = sorted({int(ci["resamples"]) for r in recs
                        if isinstance(ci := get_path(r, "accuracy.map50_95_ci"), Mapping)
                        and isinstance(ci.get("resamples"), int)})  # fmt: skip
    if any(ci is not None for _, ci in bars):
        handles.append(
            Line2D([], [], color="gray", marker="|", markersize=11, markeredgewidth=1.2,
                   linestyle="none", label="95% bootstrap interval of mAP")
        )  # fmt: skip
    legend = ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.85)
    note = (
        "Error bars: 95% percentile bootstrap interval of mAP50-95 over the validation images"
        + (f" ({', '.join(map(str, resamples))} resamples)" if resamples else "")
        + ". Latency: median per frame, batch 1, decoded frame to detections."
        if any(ci is not None for _, ci in bars)
        else "No mAP intervals in these records (bench --bootstrap 0). Latency: median per "
        "frame, batch 1, decoded frame to detections."
    )
    fig.text(0.01, 0.01, note, fontsize=7, color="dimgray", ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    texts = [point_label(r, with_host) + f" ({r.get('runtime')})" for r in recs]
    fig.canvas.draw()  # settle the layout: boxes below are measured in final pixels
    renderer = fig.canvas.get_renderer()
    e = legend.get_window_extent(renderer)
    avoid = [(e.x0, e.y0, e.x1, e.y1)]
    for i, ci in bars:  # the interval bars, as thin boxes
        if ci is not None:
            (x, lo), (_, hi) = ax.transData.transform([(pts[i][0], ci[0]), (pts[i][0], ci[1])])
            avoid.append((x - 1.5, lo, x + 1.5, hi))
    labels = place_labels(
        fig, ax, pts, texts, bold=[i in front for i in range(len(pts))], avoid=avoid
    )
    return fig, ax, labels


#: Candidate label offsets in points, tried in order: beside the point first, then further out
#: (with a leader line back to the point).
_OFFSETS: tuple[tuple[float, float], ...] = tuple(
    (dx * r, dy * r)
    for r in (1.0, 2.2, 3.4, 4.6)
    for dx, dy in ((6, 4), (6, -10), (-6, 4), (-6, -10), (0, 12), (0, -18), (14, 0), (-14, 0))
)


def place_labels(
    fig: Any, ax: Any, points: Sequence[tuple[float, float]], texts: Sequence[str],
    *, bold: Sequence[bool] = (), avoid: Sequence[tuple[float, float, float, float]] = (),
) -> list[Any]:  # fmt: skip
    """Annotate each point so that no label overlaps another label, a point, a box of ``avoid``
    (display pixels x0, y0, x1, y1: the legend, the interval bars) or leaves the axes.

    Greedy placement in display coordinates: each label (most accurate first) takes the first
    offset of `_OFFSETS` where its rendered box is clear; a label placed away from its point
    gets a leader line. (adjustText does this iteratively; a benchmark plot has a few dozen
    points at most, and this keeps matplotlib the only plotting dependency.) When no candidate
    is clear the least-overlapping one is used.
    """
    renderer = fig.canvas.get_renderer()
    area = ax.get_window_extent(renderer)
    marks = [ax.transData.transform(p) for p in points]
    point_boxes = [(x - 4, y - 4, x + 4, y + 4) for x, y in marks]
    taken: list[tuple[float, float, float, float]] = []

    def overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    order = sorted(range(len(points)), key=lambda i: (-points[i][1], points[i][0]))
    labels: list[Any] = [None] * len(points)
    scale = fig.dpi / 72.0  # offsets are in points; boxes in pixels
    for i in order:
        best: tuple[float, Any] | None = None
        for k, (dx, dy) in enumerate(_OFFSETS):
            ann = ax.annotate(
                texts[i], points[i], textcoords="offset points", xytext=(dx, dy),
                ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom",
                fontsize=7, fontweight="bold" if i < len(bold) and bold[i] else "normal",
                arrowprops={"arrowstyle": "-", "color": "gray", "lw": 0.6} if k >= 8 else None,
                annotation_clip=False,
            )  # fmt: skip
            e = ann.get_window_extent(renderer)
            box = (e.x0 - 1, e.y0 - 1, e.x1 + 1, e.y1 + 1)
            outside = max(0.0, area.x0 - box[0]) + max(0.0, box[2] - area.x1)
            outside += max(0.0, area.y0 - box[1]) + max(0.0, box[3] - area.y1)
            cost = sum(overlap(box, t) for t in taken)
            cost += sum(overlap(box, p) for j, p in enumerate(point_boxes) if j != i)
            cost += 0.5 * sum(overlap(box, a) for a in avoid)
            cost += 1000.0 * outside + 1e-3 * k * scale
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann)
            else:
                ann.remove()
            if cost < 1.0:
                break
        assert best is not None
        e = best[1].get_window_extent(renderer)
        taken.append((e.x0 - 1, e.y0 - 1, e.x1 + 1, e.y1 + 1))
        labels[i] = best[1]
    return labels
