"""A source that survives its device: reopened with exponential backoff after a failure.

A long-running service must not stop because a camera was unplugged or a file vanished
for a moment: the failing stream is rebuilt from its factory while the other streams keep
running, and :attr:`RetryingSource.failing` says why it is down (readiness reports it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edgefusion.errors import EdgeFusionError
from edgefusion.sources.base import Sample, Source

__all__ = ["RetryPolicy", "RetryingSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How to reopen a failed source: first delay, cap of the doubling delay, and who to tell.

    Example:
        >>> RetryPolicy(initial_s=0.5, max_s=10.0).max_s
        10.0
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    #: called with the stream name on every failure (e.g. a restart counter)
    on_restart: Callable[[str], None] | None = None


class RetryingSource(Source):
    """Reopens the source built by ``factory`` after a failure, with exponential backoff.

    A normal end of stream ends it; a stop request ends it at once, also while it waits.

    Args:
        factory: builds a fresh, unopened source (called again after each failure).
        name: the stream name (``camera``, ``audio``, ``text``).
        drives_run: whether this stream triggers fusion steps (the camera).
        initial_s: delay before the first retry; doubled after each failure.
        max_s: the longest delay.
        on_restart: called with ``name`` on every failure.

    Example:
        >>> from edgefusion.sources import CallTextSource
        >>> def commands():
        ...     src = CallTextSource()
        ...     src.send("turn left")
        ...     src.end()
        ...     return src
        >>> [c.text for c in RetryingSource(commands, "text", False, initial_s=0.1, max_s=1.0)]
        ['turn left']
    """

    def __init__(self, factory: Callable[[], Source], name: str, drives_run: bool, initial_s: float, max_s: float,
                 on_restart: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.factory, self.name, self.drives_run = factory, name, drives_run
        self.initial_s, self.max_s, self.on_restart = initial_s, max_s, on_restart
        self.failing: str | None = None

    def __iter__(self) -> Iterator[Sample]:
        delay = self.initial_s
        while not self.stop.is_set():
            try:
                src = self.factory()
                src.stop = self.stop  # one stop event: a stop request reaches the inner source too
                with src:
                    self.info = dict(src.info)
                    for sample in src:
                        if self.failing:
                            log.info("source %s recovered", self.name)
                            self.failing, delay = None, self.initial_s
                        yield sample
                    self.rejected.update(src.rejected)
                return  # a normal end of stream
            except (EdgeFusionError, OSError, RuntimeError, ValueError) as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                log.warning("source %s failed (%s); retrying in %.1f s", self.name, self.failing, delay)
                if self.on_restart:
                    self.on_restart(self.name)
                if self.stop.wait(delay):
                    return
                delay = min(self.max_s, delay * 2)
