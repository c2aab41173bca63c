"""The results table ``edgedet bench`` prints: fits an 80-column terminal, with a legend.

The compact table keeps what a reader compares (model, runtime, precision, mAP with its interval,
latency percentiles, throughput) and folds the rest: settings that are the same in every row
(input size, batch, threads) move to a line under the table, columns that differ stay. A row
that was skipped or failed says so in its mAP cell and its reason is listed below. ``--wide``
prints every column (`edgedet.benchmarks.report.print_table`); ``results.md`` / ``results.csv``
always have them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .records import get_path
from .report import _fmt, _hosts, _precision, print_table, wide_console

#: Settings shown as a column only when rows differ in them: (header, record path, format).
FOLDABLE: tuple[tuple[str, str, str], ...] = (
    ("imgsz", "imgsz", "size"),
    ("batch", "batch", "s"),
    ("threads", "threads", "s"),
)

STATUS_STYLE = {"ok": "", "skipped": "yellow", "failed": "red"}


def _map_cell(r: Mapping[str, Any], note: int | None) -> str:
    if r.get("status") != "ok":
        return f"{r.get('status')} [{note}]"
    value = get_path(r, "accuracy.map50_95")
    if value is None:
        return "–"
    ci = get_path(r, "accuracy.map50_95_ci")
    low, high = (ci.get("low"), ci.get("high")) if isinstance(ci, dict) else (None, None)
    if low is None or high is None:
        return f"{value:.3f}"
    # 0.305 (.267–.351): the interval without its leading zeros keeps the row in 80 columns
    return f"{value:.3f} ({low:.3f}–{high:.3f})".replace("(0.", "(.").replace("–0.", "–.")


def _latency_cell(r: Mapping[str, Any]) -> str:
    values = [get_path(r, f"latency_ms.e2e.{q}") for q in ("p50", "p90", "p99")]
    if any(v is None for v in values):
        return "–"
    return "/".join(f"{v:.1f}" for v in values)


def _legend(records: Sequence[Mapping[str, Any]], folded: list[tuple[str, str]]) -> list[str]:
    requests = sorted({int(r["throughput_requests"]) for r in records if r.get("throughput_requests")})
    fps = (
        f"fps: frames per second with {'/'.join(map(str, requests))} requests in flight through "
        "the runtime's async API (throughput, so it can exceed 1000 / p50)"
        if requests
        else "fps: async throughput (– not measured)"
    )
    lines = [
        "mAP50-95 (95% CI): COCO mAP on the --data images, with a 95% bootstrap interval over "
        "the images.",
        "p50/p90/p99 ms: end-to-end latency per frame, decoded BGR frame to Detections, "
        "at the deployment thresholds (--conf / --iou); percentiles over every timed iteration.",
        f"{fps}.",
    ]
    if folded:
        same = " · ".join(f"{h} {v}" for h, v in folded)
        lines.append(f"Same in every row: {same}.")
    if any(r.get("threads") is None for r in records):
        used = sorted({str(r["threads_used"]) for r in records if r.get("threads_used") is not None})
        lines.append(
            "threads –: not set, the runtime chose its own"
            + (f" (it reported {', '.join(used)})" if used else "")
            + "; set it with --threads."
        )
    lines.append("--wide shows every column; results.md and results.csv hold them all.")
    return lines


def print_results(
    records: Sequence[Mapping[str, Any]], console: Any = None, *, wide: bool = False
) -> None:
    """Print the bench results: the compact table and its legend, or with ``wide`` every column.

    ``console`` is a rich Console (default: the terminal's width; 80 columns when not a
    terminal, unless ``COLUMNS`` says otherwise).
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if wide:
        print_table(records, console or wide_console())
        return
    console = console or Console()
    folded: list[tuple[str, str]] = []
    shown: list[tuple[str, str, str]] = []
    for header, path, spec in FOLDABLE:
        values = {_fmt(get_path(r, path), spec) for r in records}
        if len(values) == 1:
            folded.append((header, values.pop()))
        else:
            shown.append((header, path, spec))
    table = Table(
        box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, padding=(0, 1),
        title="edgedet bench", title_justify="left",
    )  # fmt: skip
    multi_host = len(_hosts(records)) > 1
    if multi_host:
        table.add_column("host", overflow="ellipsis", max_width=12)
    table.add_column("model", overflow="ellipsis", max_width=18, ratio=1)
    table.add_column("runtime", no_wrap=True)
    table.add_column("prec", no_wrap=True)
    for header, _, _ in shown:
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("mAP50-95 (95% CI)", justify="right", no_wrap=True)
    table.add_column("p50/p90/p99 ms", justify="right", no_wrap=True)
    table.add_column("fps", justify="right", no_wrap=True)
    notes = [r for r in records if r.get("status") != "ok"]
    for r in records:
        note = next((i for i, n in enumerate(notes, 1) if n is r), None)
        row = [
            *([str(get_path(r, "host.name") or "?")] if multi_host else []),
            str(r.get("model_name")),
            str(r.get("runtime")),
            str(_precision(r) or "–"),
            *(_fmt(get_path(r, path), spec) for _, path, spec in shown),
            _map_cell(r, note),
            _latency_cell(r),
            _fmt(r.get("throughput_fps"), ".0f"),
        ]
        table.add_row(*row, style=STATUS_STYLE.get(str(r.get("status"))) or None)
    console.print(table)
    console.print()
    for line in _legend(records, folded):
        console.print(line, style="dim", markup=False, highlight=False)
    # Reasons as footnotes of the rows they belong to; one warning said once for every row.
    for i, r in enumerate(notes, 1):
        console.print(f"[{i}] {_label(r)}: {r.get('reason')}", markup=False, highlight=False)
    said: dict[str, list[str]] = {}
    for r in records:
        for w in r.get("warnings") or []:
            said.setdefault(str(w), []).append(_label(r))
    for text, labels in said.items():
        console.print(f"warning ({'; '.join(labels)}): {text}", markup=False, highlight=False)


def _label(r: Mapping[str, Any]) -> str:
    return f"{r.get('model_name')} {r.get('runtime')} {_precision(r) or ''}".strip()
