"""A latency histogram with bounded memory (HDR-style log buckets, ~1% relative error).

Written here because the established HDR histogram packages for Python are either
unmaintained or need a C build; this needs only numpy and ~40 lines.

Example:
    >>> h = LatencyHistogram()
    >>> for v in range(1, 1001):
    ...     h.record(v * 1000)
    >>> p50 = h.percentile(50)  # the true median is 500 us; buckets are ~1% wide
    >>> abs(p50 / 1e3 - 500) <= 5
    True
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["LatencyHistogram"]


class LatencyHistogram:
    """Counts of values (ns) in buckets growing by ``1 + precision``; exact min/max/mean."""

    def __init__(self, precision: float = 0.01, max_ns: int = 3_600 * 10**9) -> None:
        self.base = 1.0 + precision
        self.n_buckets = int(math.log(max_ns) / math.log(self.base)) + 2
        self.counts = np.zeros(self.n_buckets, np.int64)
        self.count = 0
        self.total = 0
        self.min = None  # type: int | None
        self.max = 0

    def _bucket(self, v: int) -> int:
        return 0 if v <= 1 else min(self.n_buckets - 1, int(math.log(v) / math.log(self.base)) + 1)

    def record(self, v_ns: int) -> None:
        v = max(0, int(v_ns))
        self.counts[self._bucket(v)] += 1
        self.count += 1
        self.total += v
        self.min = v if self.min is None else min(self.min, v)
        self.max = max(self.max, v)

    def percentile(self, q: float) -> float:
        """Value (ns) at percentile ``q`` (0-100); NaN when empty."""
        if self.count == 0:
            return float("nan")
        rank = max(1, math.ceil(q / 100 * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        if i == 0:
            return float(self.min or 0)
        mid = self.base ** (i - 0.5)  # geometric middle of the bucket
        return float(min(max(mid, self.min or 0), self.max))

    def summary_ms(self) -> dict[str, float]:
        if self.count == 0:
            return {"count": 0}
        p = {f"p{str(q).replace('.0', '')}": round(self.percentile(q) / 1e6, 4) for q in (50.0, 90.0, 99.0, 99.9)}
        return {"count": self.count, **p, "max": round(self.max / 1e6, 4),
                "mean": round(self.total / self.count / 1e6, 4)}
