"""Percentiles and latency summaries (pure; milliseconds in, rounded figures out)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize_ms(values: Sequence[float], quantiles: Sequence[int] = (50, 95, 99)) -> dict[
    str, float | int | None
]:
    """count, p50/p95/p99 and max of latencies given in milliseconds."""
    ordered = sorted(values)
    out: dict[str, float | int | None] = {"count": len(ordered)}
    for q in quantiles:
        value = percentile(ordered, q)
        out[f"p{q}"] = None if value is None else round(value, 1)
    out["max"] = round(ordered[-1], 1) if ordered else None
    return out


def median(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return percentile(values, 50)
