"""Compare two benchmark runs (OLD and NEW records) configuration by configuration.

Configurations are matched by `compare_key`: the model's name (file stem), runtime, precision,
dataset, and the input size, batch, threads and device, so the main use, the same model name with a
new file, compares the two. What may differ between matched runs without making them different
configurations is shown as a detail: a changed model file (sha256), host, image count or
evaluation protocol. A regression is:

- mAP50-95 lower by more than ``max_map_drop`` (absolute, e.g. 0.01 = one point);
- p50 end-to-end latency higher by more than ``max_latency_increase`` (a fraction, 0.10 = 10 %)
  *and* outside the spread the two runs measured (`latency_outside_spread`): with per-round
  p50s in both records (``edgedet bench --repeat N``, N >= 2), the new rounds must all be slower
  than every old round; otherwise the new p50 must be above the old run's p90. A larger change
  inside that spread is reported as a detail ("within the measured spread"), not a regression:
  on a noisy machine a 10 % step is what consecutive runs of the same file show;
- a configuration ``ok`` in OLD that is not ``ok`` (or missing) in NEW.

A limit left at None is not checked. When both runs saved their detections (``edgedet bench
--save-detections``) and scored the same images, the mAP difference also gets its 95% paired
bootstrap interval (``map_delta_ci``): an interval holding 0 means the validation images cannot
tell the two runs apart, whatever the limit says. `compare` returns the rows and whether anything regressed;
``edgedet bench compare`` prints them and exits 1 on a regression (for CI on a device farm).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedet.errors import EdgedetError, InvalidInputError

from .plot import point_label
from .records import get_path

#: What `compare_key` matches OLD and NEW records on.
COMPARE_KEY_FIELDS: tuple[str, ...] = (
    "model_name", "runtime", "precision", "dataset", "imgsz", "batch", "threads", "device",
)  # fmt: skip


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
    details: list[str] = field(default_factory=list)  # changed hash, host, images, protocol...

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


def compare_key(record: Mapping[str, Any]) -> tuple[str, ...]:
    """What matches a NEW record to an OLD one (`COMPARE_KEY_FIELDS`): the model's file stem,
    runtime, precision (requested, else what ran), dataset, input size, batch, threads, device."""
    key = []
    for f in COMPARE_KEY_FIELDS:
        v = record.get(f)
        if f == "model_name" and not v:
            v = Path(str(record.get("model") or "")).stem
        if f == "precision":
            v = record.get("precision_requested") or v
        key.append(json.dumps(v, sort_keys=True))
    return tuple(key)


def _details(o: Mapping[str, Any], n: Mapping[str, Any]) -> list[str]:
    """What differs between two matched records without making them different configurations."""
    out = []
    ho, hn = o.get("model_sha256"), n.get("model_sha256")
    if ho and hn and ho != hn:
        out.append(f"model file changed (sha256 {str(ho)[:12]} -> {str(hn)[:12]})")
    host_o, host_n = (get_path(r, "host.name") for r in (o, n))
    if host_o and host_n and host_o != host_n:
        out.append(f"host {host_o} -> {host_n}")
    if o.get("images") != n.get("images"):
        out.append(f"images {o.get('images')} -> {n.get('images')}")
    po, pn = o.get("protocol"), n.get("protocol")
    if isinstance(po, dict) and isinstance(pn, dict) and po != pn:
        changed = sorted(k for k in set(po) | set(pn) if k != "source" and po.get(k) != pn.get(k))
        if changed:
            out.append(
                "evaluation protocol changed ("
                + ", ".join(f"{k} {po.get(k)} -> {pn.get(k)}" for k in changed)
                + "): the mAP difference is not like for like"
            )
    return out


def latency_outside_spread(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[bool, str] | None:
    """Whether NEW's p50 latency is slower than OLD's beyond what the runs measured as their
    spread, and the rule used (see the module docstring); None without the numbers."""
    ro, rn = old.get("latency_p50_rounds"), new.get("latency_p50_rounds")
    if (
        isinstance(ro, list) and isinstance(rn, list) and len(ro) >= 2 and len(rn) >= 2
        and all(isinstance(v, (int, float)) for v in (*ro, *rn))
    ):  # fmt: skip
        return (
            min(rn) > max(ro),
            f"round p50s {min(ro):.2f}-{max(ro):.2f} ms vs {min(rn):.2f}-{max(rn):.2f} ms",
        )
    p90 = _num(old, "latency_ms.e2e.p90")
    p50 = _num(new, "latency_ms.e2e.p50")
    if p90 is None or p50 is None:
        return None
    return p50 > p90, f"new p50 {p50:.2f} ms vs old p90 {p90:.2f} ms"


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
    old_by = {compare_key(r): r for r in old}
    new_by = {compare_key(r): r for r in new}
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
        if o is not None and n is not None:
            d.details = _details(o, n)
        if (
            max_latency_increase is not None
            and d.latency_change is not None
            and d.latency_change > max_latency_increase
        ):
            assert o is not None and n is not None  # a latency change needs both
            spread = latency_outside_spread(o, n)
            if spread is None or spread[0]:
                why = f" ({spread[1]})" if spread else ""
                d.regressions.append(
                    f"p50 latency +{d.latency_change:.1%} > +{max_latency_increase:.0%}{why}"
                )
            else:
                d.details.append(
                    f"p50 latency +{d.latency_change:.1%} is within the measured spread "
                    f"({spread[1]}): not a regression"
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
        "details",
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
            "; ".join(d.details),
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
