"""Summary statistics of timing samples: every sample counts, none is clipped as an outlier.

A slow iteration on a robot is a real slow iteration (a page fault, a thermal step, another
process): dropping it would flatter the tail the robot actually sees. So p99 and max are kept
as measured, and the mean includes them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgedet.errors import InvalidInputError

#: The statistics every timing summary holds, in this order.
STAT_KEYS: tuple[str, ...] = ("p50", "p90", "p99", "mean", "std", "min", "max")


def summarize_ns(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / mean / std / min / max of durations in nanoseconds, in milliseconds.

    Percentiles use numpy's default (linear interpolation between closest ranks); ``std`` is the
    population standard deviation (``ddof=0``). Nothing is clipped or trimmed.

    Raises:
        InvalidInputError: no samples, or a negative duration.
    """
    arr = np.asarray(samples_ns, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise InvalidInputError("cannot summarize an empty list of timings; run at least once")
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(
            f"timings must be finite non-negative durations in nanoseconds; got min={arr.min()!r}"
        )
    ms = arr / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
        "max": float(ms.max()),
    }
