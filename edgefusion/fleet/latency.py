"""Latency histograms that travel as JSON and pool by adding (fleet-wide percentiles).

Each recording keeps a :class:`~edgefusion.histogram.LatencyHistogram` of its steps as sparse
bucket counts; the fleet's percentiles come from the sum of them, with the histogram's ~1%
error, whatever the number of recordings.

Example:
    >>> a, b = histogram_json([1_000_000] * 3), histogram_json([3_000_000])
    >>> h = merge([a, b])
    >>> h.count, round(h.percentile(50) / 1e6, 1), round(h.percentile(100) / 1e6, 1)
    (4, 1.0, 3.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from edgefusion.histogram import LatencyHistogram

__all__ = ["histogram_json", "merge", "summary_ms"]


def histogram_json(values_ns: Iterable[int]) -> dict[str, Any]:
    h = LatencyHistogram()
    for v in values_ns:
        h.record(v)
    nz = h.counts.nonzero()[0]
    return {"count": h.count, "total": h.total, "min": h.min, "max": h.max,
            "buckets": {str(int(i)): int(h.counts[i]) for i in nz}}


def merge(parts: Sequence[dict[str, Any]]) -> LatencyHistogram:
    h = LatencyHistogram()
    for p in parts:
        if not p.get("count"):
            continue
        for i, n in p["buckets"].items():
            h.counts[int(i)] += int(n)
        h.count += int(p["count"])
        h.total += int(p["total"])
        h.min = int(p["min"]) if h.min is None else min(h.min, int(p["min"]))
        h.max = max(h.max, int(p["max"]))
    return h


def summary_ms(parts: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pooled ``count``, ``p50``, ``p90``, ``p99``, ``p99.9``, ``max`` and ``mean`` in ms."""
    return merge(parts).summary_ms()
