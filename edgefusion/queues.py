"""Bounded queues that declare what happens when they are full (DESIGN.md contract 6).

- ``LATEST`` (latest-wins): a full queue drops its oldest item; items older than the
  freshness budget are dropped when taken. The live default: a stale frame is worse
  than a dropped one.
- ``BLOCK`` (back-pressure): ``put`` waits for room; nothing is dropped. Lossless replay.
- ``REJECT``: a full queue refuses the new item.

Every drop is counted by reason in a shared :class:`DropCounter`.

Example:
    >>> drops = DropCounter()
    >>> q = BoundedQueue("frames", 2, Overflow.LATEST, drops)
    >>> for i in range(3):
    ...     _ = q.put(i)
    >>> q.get(timeout=0), dict(drops.snapshot())
    (1, {'frames/queue_full': 1})
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["BoundedQueue", "DropCounter", "DropReason", "Overflow", "QueueClosed"]

T = TypeVar("T")


class Overflow(str, enum.Enum):
    LATEST = "latest"
    BLOCK = "block"
    REJECT = "reject"


class DropReason(str, enum.Enum):
    QUEUE_FULL = "queue_full"
    TOO_OLD = "too_old"
    DEADLINE_MISSED = "deadline_missed"
    SYNC_SKIPPED = "sync_skipped"
    REJECTED_INPUT = "rejected_input"


class QueueClosed(Exception):
    """Raised by ``get`` on a closed, empty queue."""


class DropCounter:
    """Thread-safe counts keyed ``"<where>/<reason>"``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, where: str, reason: DropReason | str, n: int = 1) -> None:
        key = f"{where}/{reason.value if isinstance(reason, DropReason) else reason}"
        with self._lock:
            self._counts[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class BoundedQueue(Generic[T]):
    """A bounded FIFO with a declared overflow policy and an optional freshness budget."""

    def __init__(self, name: str, capacity: int, overflow: Overflow, drops: DropCounter,
                 max_age_ns: int | None = None, age_of: Callable[[T], int] | None = None,
                 now_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if capacity < 1:
            raise ValueError(f"queue '{name}': capacity must be >= 1, got {capacity}")
        self.name, self.capacity, self.overflow = name, capacity, Overflow(overflow)
        self.drops = drops
        self.max_age_ns, self.age_of, self.now_ns = max_age_ns, age_of, now_ns
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.high_water = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: T, stop: threading.Event | None = None, poll_s: float = 0.05) -> bool:
        """Add ``item``; returns False if it was rejected (REJECT policy, or stopped/closed while blocked)."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                if self.overflow is Overflow.LATEST:
                    self._items.popleft()
                    self.drops.add(self.name, DropReason.QUEUE_FULL)
                elif self.overflow is Overflow.REJECT:
                    self.drops.add(self.name, DropReason.QUEUE_FULL)
                    return False
                else:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(poll_s)
            if self._closed:
                return False
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest fresh item, or None after ``timeout`` s; QueueClosed when closed and empty."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                while self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()
                    if self.max_age_ns is not None and self.age_of is not None and \
                            self.now_ns() - self.age_of(item) > self.max_age_ns:
                        self.drops.add(self.name, DropReason.TOO_OLD)
                        continue
                    return item
                if self._closed:
                    raise QueueClosed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining if remaining is not None else 0.1)

    def close(self) -> None:
        """No more puts; getters drain what is left, then see QueueClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
