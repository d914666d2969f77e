"""The source interface: a context manager that yields timestamped samples.

A source is opened (``open``), iterated on its own thread (``__iter__`` yields
:class:`Frame`, :class:`AudioChunk` or :class:`Command`), and closed. Blocking calls use
timeouts and check :attr:`Source.stop` so a stop request is honoured within ~0.1 s.
Rejected inputs are counted in :attr:`Source.rejected`.
"""

from __future__ import annotations

import collections
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from edgefusion.clock import Clock, MonotonicClock
from edgefusion.samples import AudioChunk, Command, Frame

__all__ = ["Sample", "Source", "pace_until"]

Sample = Frame | AudioChunk | Command


class Source(ABC):
    """Base of all sources. ``name`` is the stream name (used for clock offsets)."""

    name: str = "source"
    #: the source ends the run when it ends (the camera: it triggers steps)
    drives_run: bool = False
    #: the source may deliver commands (besides text sources: one that listens for spoken commands)
    delivers_commands: bool = False
    #: the source keeps :attr:`watermark_ns` up to date (a lossless run then orders its samples against the frames)
    reports_watermark: bool = False

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or MonotonicClock()
        self.stop = threading.Event()
        self.rejected: collections.Counter[str] = collections.Counter()
        self.info: dict[str, Any] = {}
        #: every sample this source yields from now on is stamped at or after this time (None: not known yet);
        #: set on the source's own thread, only where :attr:`reports_watermark`
        self.watermark_ns: int | None = None

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device or file; raise :class:`~edgefusion.errors.SourceError` on failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release everything; safe to call twice."""

    @abstractmethod
    def __iter__(self) -> Iterator[Sample]: ...

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def pace_until(stop: threading.Event, deadline_ns: int) -> bool:
    """Sleep until ``time.monotonic_ns() >= deadline_ns``; False if stopped first."""
    while True:
        left = deadline_ns - time.monotonic_ns()
        if left <= 0:
            return True
        if stop.wait(min(left / 1e9, 0.1)):
            return False
