"""The sources' side of the pipeline: one thread per source, each sample routed to its bounded queue.

Live runs: every source delivers as fast as it can and the queues' freshness policy decides.

Lossless runs order every input against the frames by the data alone, never by thread timing:

- A frame is held (before it is tapped and queued) until every *independent* source (a
  separate audio stream, a text source: not the one that yields the frames) has delivered
  everything stamped up to the frame's time, or has ended. Audio knows this from its chunks'
  ends; a text source says so in :attr:`~edgefusion.sources.Source.watermark_ns`.
- An independent source is held back in turn (back-pressure) until a frame needs what it
  holds: audio until the frames reach the end of what it has delivered, a command until a
  frame is at or after its time. So a separate audio file never runs ahead of the frames
  by more than one chunk and one frame, far less than sync's ring buffer keeps, and no
  audio is lost to the buffer's span (it used to run up to the audio queue, 12.8 s, ahead).
- The prepare thread hands a frame's sync only what its own source delivered *before* it
  (a replay's single thread runs a few frames ahead; what follows the frame waits for the
  next one).

The taps (the recorder) therefore see each frame after exactly the inputs its step had, so
a recording of a lossless run replays to the same results, and two lossless runs over the
same files write the same recording.

What a lossless run never hands to a frame is counted: a command held past the last frame
as ``text/after_last_frame``. A separate audio file is read only as far as the frames need
it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgefusion.queues import BoundedQueue, DropCounter, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.sources.base import Source

__all__ = ["Envelope", "Inputs"]

SECOND = 1_000_000_000
_POLL_S = 0.002  # text sources move their watermark without telling: how often a held frame looks again


@dataclass
class Envelope:
    sample: Any
    recv_ns: int  # monotonic host time when the source delivered it
    source: int = 0  # id() of the source that delivered it
    n: int = 0  # its place in that source's order


class Inputs:
    """One thread per source; in lossless runs, the ordering of inputs against frames (module doc)."""

    def __init__(self, lossless: bool, queues: tuple[BoundedQueue[Envelope], BoundedQueue[Envelope],
                                                     BoundedQueue[Envelope]], offsets_ns: dict[str, int],
                 drops: DropCounter, sources: list[Source], taps: list[Callable[[Any], None]], stats: Any,
                 stop: threading.Event, fail: Callable[[str, BaseException], None]) -> None:
        self.frames, self.audio, self.text = queues
        self.lossless, self.drops = lossless, drops
        self.sources, self.taps, self.stats, self.stop, self.fail = sources, taps, stats, stop, fail
        self.drivers_left = sum(1 for s in sources if s.drives_run)
        self._lock = threading.Lock()
        self._offsets = offsets_ns
        self._cond = threading.Condition()
        # lossless: the independent sources and what each has delivered (sync clock: everything stamped up to
        # the mark is queued; None: nothing yet); audio marks come from the chunks, text marks from the source
        indep = [s for s in sources if lossless and not s.drives_run]
        self._audio = {id(s) for s in indep if s.name == "audio"}
        self._text = {id(s): s for s in indep if id(s) not in self._audio and s.reports_watermark}
        self._marks: dict[int, int | None] = {i: None for i in (*self._audio, *self._text)}
        self._held_at: dict[int, int] = {}  # a text source holding a command back: that command's time
        self._next_frame: int | None = None  # the time of the frame the driving source holds (sync clock)
        self._held: list[Envelope] = []  # taken from the queues, not yet due for a frame (lossless)

    def _off(self, source: str) -> int:
        return int(self._offsets.get(source, 0))

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self._loop, args=(s,), name=f"source-{s.name}", daemon=True)
                for s in self.sources]

    def _loop(self, src: Source) -> None:
        stage, n = "source open", 0
        try:
            with src:
                self.stats.sources[src.name] = dict(src.info)
                stage = "source read"
                for sample in src:
                    if self.stop.is_set():
                        break
                    q = self.frames if isinstance(sample, Frame) else self.audio if isinstance(sample, AudioChunk) \
                        else self.text if isinstance(sample, Command) else None
                    if q is None:
                        raise TypeError(f"source '{src.name}' yielded {type(sample).__name__}, not a sample")
                    if self._marks and not self._wait_due(src, sample):
                        break
                    for tap in self.taps:
                        tap(sample)
                    q.put(Envelope(sample, time.monotonic_ns(), id(src), n), self.stop)
                    n += 1
                    if isinstance(sample, AudioChunk) and id(src) in self._audio:
                        end = sample.t_ns + len(sample.samples) * SECOND // int(sample.sample_rate)
                        self._mark(id(src), end + self._off(sample.source))
                self.stats.sources[src.name] = dict(src.info)
        except BaseException as exc:
            self.fail(stage, exc)
        finally:
            self.stats.rejected[src.name] = dict(src.rejected)
            with self._cond:
                self._marks.pop(id(src), None)  # ended: nothing more to wait for
                self._cond.notify_all()
            if src.drives_run:
                with self._lock:
                    self.drivers_left -= 1
                    if self.drivers_left == 0:
                        self.frames.close()

    # -- lossless ordering ------------------------------------------------------------

    def _mark(self, key: int, value: int) -> None:
        with self._cond:
            if key in self._marks:
                self._marks[key] = value
            self._cond.notify_all()

    def _wait_due(self, src: Source, sample: Any) -> bool:
        """Hold ``sample`` until the frames need it (module doc); False when the run stopped first."""
        key = id(src)
        if isinstance(sample, Frame):
            t = sample.t_ns + self._off(sample.source)
            with self._cond:
                self._next_frame = t if self._next_frame is None else max(self._next_frame, t)
                self._cond.notify_all()
                while not self.stop.is_set() and self._behind(t):
                    self._cond.wait(_POLL_S)
            return not self.stop.is_set()
        if key in self._audio:  # audio, and what its thread says between chunks (a spoken command)
            with self._cond:
                while not self.stop.is_set() and not self._audio_due(key):
                    self._cond.wait(0.05)
            return not self.stop.is_set()
        if key in self._text and isinstance(sample, Command):
            t = sample.t_ns + self._off(sample.source)
            with self._cond:
                self._held_at[key] = t
                while not self.stop.is_set() and (self._next_frame is None or self._next_frame < t):
                    self._cond.wait(0.05)
                del self._held_at[key]
            if self.stop.is_set():
                self.drops.add("text", "after_last_frame")
                return False
        return True

    def _audio_due(self, key: int) -> bool:
        """Is a frame waiting for audio past what this stream has delivered? (under _cond)"""
        mark, frame = self._marks.get(key), self._next_frame
        return frame is not None and (mark is None or mark < frame)

    def _behind(self, t: int) -> bool:
        """Has some independent source not yet delivered everything stamped up to ``t``? (under _cond)"""
        for key, src in self._text.items():
            if key in self._marks:
                held = self._held_at.get(key)
                w = src.watermark_ns
                # a source holding a command back delivers nothing before it; else all before its watermark
                self._marks[key] = held - 1 if held is not None else None if w is None else \
                    w - 1 + self._off(src.name)
        return any(m is None or m < t for m in self._marks.values())

    def drain(self, core: Any, frame: Envelope | None = None) -> None:
        """Hand queued audio chunks and commands to sync (they only wait for the next frame).

        Lossless runs hand over only what is due for ``frame`` (none without one): what its own
        source delivered after it waits for a later frame.
        """
        for q in (self.audio, self.text):
            try:
                while (env := q.get(timeout=0)) is not None:
                    if self.lossless:
                        self._held.append(env)
                    else:
                        core.add(env.sample)
            except QueueClosed:
                pass
        if frame is None or not self._held:
            return
        later = []
        for env in self._held:
            if env.source == frame.source and env.n > frame.n:
                later.append(env)
            else:
                core.add(env.sample)
        self._held = later
