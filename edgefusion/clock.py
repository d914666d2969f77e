"""Clocks: where the pipeline reads "now" (DESIGN.md contract 1).

Live runs use :class:`MonotonicClock`; replays and tests use :class:`ManualClock`, which
only moves when told to. Logic never calls ``time.time()``.

Example:
    >>> c = ManualClock(start_ns=5)
    >>> c.advance(10)
    >>> c.now_ns()
    15
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


class Clock(Protocol):
    def now_ns(self) -> int: ...


class MonotonicClock:
    """``time.monotonic_ns()``: never jumps with wall-clock changes."""

    def now_ns(self) -> int:
        return time.monotonic_ns()


class ManualClock:
    """A clock set by its owner (log time in replays, test time in tests). Thread-safe."""

    def __init__(self, start_ns: int = 0) -> None:
        self._t = int(start_ns)
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._t

    def set(self, t_ns: int) -> None:
        with self._lock:
            self._t = max(self._t, int(t_ns))

    def advance(self, dt_ns: int) -> None:
        with self._lock:
            self._t += int(dt_ns)
