"""The watchdog, fed by pipeline progress rather than by a timer.

A timer thread that pings systemd whatever the pipeline does reports a hung pipeline as
alive. Here pings go out only while the pipeline makes progress, or while it is
legitimately idle: no input is waiting (the camera reconnects with backoff, a live
stream is silent). A frame that arrived after the last progress and stays unanswered
for longer than the stall budget means the pipeline is stuck: the pings stop (systemd
restarts the service after ``WatchdogSec``) and ``/healthz`` fails.

*Progress* is anything that shows the pipeline took its input: a result delivered to the
sinks, a frame skipped by sync, a frame dropped as too old when taken. *Input* is a frame
delivered by the camera.

Example:
    >>> clock = [0.0]
    >>> det = StallDetector(budget_s=2.0, now=lambda: clock[0])
    >>> det.update(progress=0, inputs=1)      # a frame arrives
    >>> clock[0] = 1.0; det.update(progress=1, inputs=1); det.stalled_for()
    0.0
    >>> det.update(progress=1, inputs=2)      # another frame, then nothing comes out
    >>> clock[0] = 3.5; det.update(progress=1, inputs=2); det.stalled()
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from edgefusion.serve.notify import Notifier

__all__ = ["StallDetector", "Watchdog"]

log = logging.getLogger("edgefusion.serve")


class StallDetector:
    """Tells a stuck pipeline from an idle one, from two counters polled now and then.

    Args:
        budget_s: how long input may wait without any progress before the pipeline counts as stalled.
        now: the clock (monotonic seconds).
    """

    def __init__(self, budget_s: float, now: Callable[[], float] = time.monotonic) -> None:
        self.budget_s = budget_s
        self.now = now
        self._progress = 0
        self._inputs = 0
        self._waiting_since: float | None = None  # when input first waited unanswered

    def update(self, progress: int, inputs: int) -> None:
        """Record the current totals of progress and input."""
        t = self.now()
        moved, fed = progress != self._progress, inputs != self._inputs
        self._progress, self._inputs = progress, inputs
        if moved:
            self._waiting_since = None
        elif fed and self._waiting_since is None:
            self._waiting_since = t

    def stalled_for(self) -> float:
        """Seconds that input has waited without progress (0.0 when idle or progressing)."""
        return 0.0 if self._waiting_since is None else max(0.0, self.now() - self._waiting_since)

    def stalled(self) -> bool:
        return self.stalled_for() > self.budget_s


class Watchdog:
    """Sends ``WATCHDOG=1`` every ``interval_s`` while the pipeline is not stalled.

    Args:
        notifier: where the pings go (no-op without a service manager).
        interval_s: the ping period (0: no pings, the stall is still detected and reported).
        budget_s: the stall budget (see :class:`StallDetector`).

    Example:
        >>> dog = Watchdog(Notifier(socket_path=""), interval_s=0.0, budget_s=5.0)
        >>> dog.tick(progress=0, inputs=0)
        >>> dog.stalled, dog.pings
        (False, 0)
    """

    def __init__(self, notifier: Notifier, interval_s: float, budget_s: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.notifier, self.interval_s = notifier, interval_s
        self.detector = StallDetector(budget_s, now)
        self.now = now
        self.stalled = False
        self.pings = 0
        self._next_ping = now()

    def tick(self, progress: int, inputs: int) -> None:
        """Poll the counters; ping when due and not stalled; log entering and leaving a stall."""
        self.detector.update(progress, inputs)
        stalled = self.detector.stalled()
        if stalled and not self.stalled:
            log.error("pipeline stalled: input has waited %.1f s without progress (budget %.1f s); watchdog pings "
                      "stop and /healthz fails", self.detector.stalled_for(), self.detector.budget_s)
        elif self.stalled and not stalled:
            log.warning("pipeline progressing again; watchdog pings resume")
        self.stalled = stalled
        t = self.now()
        if self.interval_s and not stalled and t >= self._next_ping:
            self.notifier.send("WATCHDOG=1")
            self.pings += 1
            self._next_ping = t + self.interval_s

    def health(self) -> tuple[bool, str]:
        """(alive, a line for ``/healthz``)."""
        if self.stalled:
            return False, (f"stalled: input has waited {self.detector.stalled_for():.1f} s without pipeline progress "
                           f"(budget {self.detector.budget_s:.1f} s)")
        return True, "ok"
