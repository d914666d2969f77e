"""A source that survives its device: reopened with exponential backoff after a failure.

A long-running service must not stop because a camera was unplugged, a network stream
dropped or a file vanished for a moment: the failing stream is rebuilt from its factory
while the other streams keep running, and :attr:`RetryingSource.state` and
:attr:`RetryingSource.failing` say whether it is streaming or reconnecting, and why
(readiness reports both). Live camera sources never end by themselves (a failed read
raises), so only a file ends a retried stream. A :class:`~edgefusion.errors.ConfigError`
(a malformed address, an unknown scenario) is not transient: retrying cannot fix it, so
it ends the run with the reason instead of being retried forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.sources.base import Sample, Source

__all__ = ["RetryPolicy", "RetryingSource"]

log = logging.getLogger(__name__)

#: while a stream keeps failing the same way, a reminder is logged this often (each attempt is debug)
REMIND_S = 60.0


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

    A normal end of stream (a file) ends it; a stop request ends it at once, also while it
    waits; a :class:`~edgefusion.errors.ConfigError` is raised, not retried.

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
        >>> retried = RetryingSource(commands, "text", False, initial_s=0.1, max_s=1.0)
        >>> [c.text for c in retried], retried.state
        (['turn left'], 'ended')
    """

    def __init__(self, factory: Callable[[], Source], name: str, drives_run: bool, initial_s: float, max_s: float,
                 on_restart: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.factory, self.name, self.drives_run = factory, name, drives_run
        self.initial_s, self.max_s, self.on_restart = initial_s, max_s, on_restart
        #: why the stream is down (None while it streams)
        self.failing: str | None = None
        #: ``connecting`` (no sample yet), ``streaming``, ``reconnecting`` (after a failure) or ``ended``
        self.state = "connecting"
        #: failures so far (each followed by a reopen)
        self.failures = 0

    def __iter__(self) -> Iterator[Sample]:
        delay = self.initial_s
        last_reason, last_logged = "", 0.0
        try:
            while not self.stop.is_set():
                try:
                    src = self.factory()
                    src.stop = self.stop  # one stop event: a stop request reaches the inner source too
                    with src:
                        self.info = dict(src.info)
                        if getattr(src, "ready_when_open", False) and self.failing:
                            # a listening socket is working once it is bound, before anything arrives
                            delay, last_reason = self._recovered("listening"), ""
                        for sample in src:
                            if self.state != "streaming":
                                delay, last_reason = self._recovered("streaming"), ""
                            yield sample
                        self.rejected.update(src.rejected)
                    return  # a normal end of stream
                except ConfigError:
                    raise  # not transient: retrying a malformed address would only hide it
                except (EdgeFusionError, OSError, RuntimeError, ValueError) as exc:
                    self.failing = f"{type(exc).__name__}: {exc}"
                    self.state = "reconnecting"
                    self.failures += 1
                    now = time.monotonic()
                    if self.failing != last_reason or now - last_logged >= REMIND_S:
                        log.warning("source %s failed (%s); retrying with backoff (%.1f s now, up to %.1f s)",
                                    self.name, self.failing, delay, self.max_s)
                        last_reason, last_logged = self.failing, now
                    else:
                        log.debug("source %s still failing (%s); retrying in %.1f s", self.name, self.failing, delay)
                    if self.on_restart:
                        self.on_restart(self.name)
                    if self.stop.wait(delay):
                        return
                    delay = min(self.max_s, delay * 2)
        finally:
            self.state = "ended"

    def _recovered(self, state: str) -> float:
        """The stream works again (now in ``state``): clear the failure, say so if there was one, and return
        the backoff to start from next time."""
        if self.failing:
            log.info("source %s recovered after %d failures", self.name, self.failures)
        self.failing, self.state = None, state
        return self.initial_s
