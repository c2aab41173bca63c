"""Compare two benchmark runs (OLD and NEW records) configuration by configuration.

Configurations are matched by `records.config_key` (model hash, runtime, device, requested
precision, input size, batch, threads, dataset, image count, host). A regression is:

- mAP50-95 lower by more than ``max_map_drop`` (absolute, e.g. 0.01 = one point);
- p50 end-to-end latency higher by more than ``max_latency_increase`` (a fraction, 0.10 = 10 %);
- a configuration ``ok`` in OLD that is not ``ok`` (or missing) in NEW.

A limit left at None is not checked. When both runs saved their detections (``edgedet bench
--save-detections``) and scored the same images, the mAP difference also gets its 95% paired
bootstrap interval (``map_delta_ci``): an interval holding 0 means the validation images cannot
tell the two runs apart, whatever the limit says. `compare` returns the rows and whether anything regressed;
``edgedet bench compare`` prints them and exits 1 on a regression (for CI on a device farm).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError, InvalidInputError

from .plot import point_label
from .records import config_key, get_path


@dataclass
class Difference:
    """One configuration in OLD and/or NEW."""

    label: str
    old_status: str | None
    new_status: str | None
    old_map: float | None = None
    new_map: float | None = None
    old_p50: float | None = None
    new_p50: float | None = None
    regressions: list[str] = field(default_factory=list)
    map_delta_ci: tuple[float, float] | None = None  # paired bootstrap, 95%

    @property
    def map_delta(self) -> float | None:
        if self.old_map is None or self.new_map is None:
            return None
        return self.new_map - self.old_map

    @property
    def latency_change(self) -> float | None:
        if self.old_p50 is None or self.new_p50 is None or self.old_p50 <= 0:
            return None
        return self.new_p50 / self.old_p50 - 1.0


def _num(record: Mapping[str, Any] | None, path: str) -> float | None:
    if record is None:
        return None
    v = get_path(record, path)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def compare(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    *,
    max_map_drop: float | None = None,
    max_latency_increase: float | None = None,
    bootstrap: int = 0,
) -> tuple[list[Difference], bool]:
    """Match OLD and NEW records and flag regressions. Returns (rows, regressed). With
    ``bootstrap`` > 0 resamples, pairs with saved detections get ``map_delta_ci``."""
    if max_map_drop is not None and max_map_drop < 0:
        raise InvalidInputError(f"max_map_drop must be >= 0 (absolute mAP), got {max_map_drop}")
    if max_latency_increase is not None and max_latency_increase < 0:
        raise InvalidInputError(
            f"max_latency_increase must be >= 0 (a fraction, 0.1 = 10%), got {max_latency_increase}"
        )
    old_by = {config_key(r): r for r in old}
    new_by = {config_key(r): r for r in new}
    keys = list(old_by) + [k for k in new_by if k not in old_by]
    rows: list[Difference] = []
    for key in keys:
        o = old_by.get(key)
        n = new_by.get(key)
        ref = n if n is not None else o
        assert ref is not None  # every key comes from one of the two
        label = f"{point_label(ref)} {ref.get('runtime')}"
        if ref.get("imgsz") is not None:
            size = ref["imgsz"]
            label += f" {size[0] if isinstance(size, list) else size}"
        d = Difference(
            label,
            o.get("status") if o else None,
            n.get("status") if n else None,
            _num(o, "accuracy.map50_95"),
            _num(n, "accuracy.map50_95"),
            _num(o, "latency_ms.e2e.p50"),
            _num(n, "latency_ms.e2e.p50"),
        )
        if o is not None and o.get("status") == "ok":
            if n is None:
                d.regressions.append("missing in NEW")
            elif n.get("status") != "ok":
                d.regressions.append(f"now {n.get('status')}: {n.get('reason', '')}".strip())
        if max_map_drop is not None and d.map_delta is not None and -d.map_delta > max_map_drop:
            d.regressions.append(f"mAP50-95 dropped {-d.map_delta:.4f} > {max_map_drop:g}")
        if (
            max_latency_increase is not None
            and d.latency_change is not None
            and d.latency_change > max_latency_increase
        ):
            d.regressions.append(
                f"p50 latency +{d.latency_change:.1%} > +{max_latency_increase:.0%}"
            )
        if bootstrap > 0 and o is not None and n is not None:
            d.map_delta_ci = _paired_delta(o, n, bootstrap)
        rows.append(d)
    return rows, any(r.regressions for r in rows)


def _paired_delta(
    old: Mapping[str, Any], new: Mapping[str, Any], resamples: int
) -> tuple[float, float] | None:
    """95% paired bootstrap interval of NEW - OLD mAP50-95, or None when the two records did not
    save detections (or those files are gone), were not scored on the same images in the same
    way (`paired.pairing_key`), or the bootstrap failed (a moved dataset, say): the comparison
    itself never fails for want of it."""
    from .paired import paired_bootstrap, pairing_key

    files = [r.get("detections_file") for r in (old, new)]
    if not all(isinstance(f, str) and Path(f).is_file() for f in files):
        return None
    if any(r.get("status") != "ok" for r in (old, new)):
        return None
    if pairing_key(old) != pairing_key(new) or not old.get("class_names"):
        return None
    try:
        result = paired_bootstrap([old, new], resamples=resamples)
    except (EdgedetError, OSError, ValueError, MemoryError):
        return None
    ci = result.differences["1"]
    return ci.low, ci.high


def _f(v: float | None, spec: str) -> str:
    return "–" if v is None else format(v, spec)


def difference_rows(rows: Sequence[Difference]) -> tuple[list[str], list[list[str]]]:
    header = [
        "configuration",
        "old",
        "new",
        "mAP old",
        "mAP new",
        "Δ mAP",
        "Δ 95% CI",
        "p50 old ms",
        "p50 new ms",
        "Δ p50",
        "regression",
    ]
    body = [
        [
            d.label,
            d.old_status or "–",
            d.new_status or "–",
            _f(d.old_map, ".4f"),
            _f(d.new_map, ".4f"),
            _f(d.map_delta, "+.4f"),
            "–"
            if d.map_delta_ci is None
            else f"{d.map_delta_ci[0]:+.4f} to {d.map_delta_ci[1]:+.4f}",
            _f(d.old_p50, ".2f"),
            _f(d.new_p50, ".2f"),
            _f(d.latency_change, "+.1%"),
            "; ".join(d.regressions),
        ]
        for d in rows
    ]
    return header, body


def print_differences(rows: Sequence[Difference], console: Any = None) -> None:
    from rich.table import Table

    from .report import wide_console

    header, body = difference_rows(rows)
    table = Table(title="edgedet bench compare")
    for h in header:
        table.add_column(h, overflow="fold")
    for d, row in zip(rows, body):
        table.add_row(*row, style="red" if d.regressions else None)
    (console or wide_console()).print(table)
