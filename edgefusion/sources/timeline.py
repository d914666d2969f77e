"""A synthesized scenario timeline as a source: frames, audio chunks and commands in time order.

One thread yields all three modalities interleaved by time, so a lossless run over it is
deterministic. Paced in real time, or as fast as the pipeline takes it (``pace=False``);
``loop`` plays it again and again with time still increasing (demo services).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from edgefusion.clock import Clock
from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.scenarios import FPS, Timeline
from edgefusion.sources.base import Sample, Source, pace_until

__all__ = ["TimelineSource"]

SECOND = 1_000_000_000


class TimelineSource(Source):
    """Replays a :class:`~edgefusion.scenarios.Timeline` (its own clock starts at 0 ns).

    Args:
        timeline: what to play.
        clock: the live clock, read only with ``live``.
        pace: deliver in real time (``speed`` times faster) instead of as fast as taken.
        start_ns: added to every time.
        speed: pacing only: 2.0 delivers the timeline twice as fast (60 fps).
        loop: start again at the end, each pass one frame period after the last one.
        live: stamp the samples on ``clock`` (each pass starts at the clock's time, never before the last
            pass ended) instead of from ``start_ns``: a synthesized camera beside live sources, whose
            samples (a command typed over TCP) carry that clock's times, so sync can pair them.

    ``own_audio`` / ``own_commands`` (attributes, True): deliver the timeline's audio / typed commands; a run
    that takes them from another source (``--audio``, ``--text``, ``--speech``) turns them off
    (:class:`~edgefusion.runbuild.RunBuilder`), so that one stream is not fed twice.
    """

    name = "timeline"
    drives_run = True

    def __init__(self, timeline: Timeline, clock: Clock | None = None, pace: bool = False,
                 start_ns: int = 0, speed: float = 1.0, loop: bool = False, live: bool = False) -> None:
        super().__init__(clock)
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.timeline = timeline
        self.pace = pace
        self.speed = speed
        self.start_ns = start_ns
        self.loop = loop
        self.live = live
        self.own_audio = True
        self.own_commands = True
        self.info = {"scenario": timeline.scenario, "seed": timeline.seed, "frames": len(timeline.frames)}

    def __iter__(self) -> Iterator[Sample]:
        tl = self.timeline
        if not len(tl.frame_t_ns):
            return
        span = int(tl.frame_t_ns[-1]) + SECOND // FPS
        base = self.clock.now_ns() if self.live else self.start_ns
        while True:
            yield from self._one_pass(base)
            if not self.loop or self.stop.is_set():
                return
            base = max(base + span, self.clock.now_ns()) if self.live else base + span

    def _one_pass(self, base: int) -> Iterator[Sample]:
        tl = self.timeline
        rate = tl.audio_rate
        cmds = sorted(tl.commands, key=lambda c: c.t_ns)
        ci = 0
        sent = 0
        mono0 = time.monotonic_ns()
        for t_ns, img in zip(tl.frame_t_ns.tolist(), tl.frames):
            if self.stop.is_set():
                return
            if self.pace and not pace_until(self.stop, mono0 + int(t_ns / self.speed)):
                return
            end = min(len(tl.audio), int(t_ns * rate // SECOND))
            if end > sent and self.own_audio:
                yield AudioChunk(t_ns=base + sent * SECOND // rate, samples=tl.audio[sent:end],
                                 sample_rate=rate, source="audio")
                sent = end
            while ci < len(cmds) and cmds[ci].t_ns <= t_ns:
                if self.own_commands:
                    yield Command(t_ns=base + cmds[ci].t_ns, text=cmds[ci].text, source="text")
                ci += 1
            yield Frame(t_ns=base + t_ns, image=img, source="camera")
