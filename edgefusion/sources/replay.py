"""Replay an MCAP log as a source: camera, audio and commands in log-time order, one thread.

Paced on the log's clock (``rate`` 1 = real time, 2 = twice as fast) or as fast as the
pipeline takes it (``rate=None``, the default, lossless). ``start_s``/``end_s`` cut a
window relative to the first message (with ``history``, reading still starts at the first
message, so the steps of the window have the audio, command and smoothing state the whole log
gave them; :attr:`ReplaySource.range_start_ns` is where the window begins); ``loop`` starts
again at the end (time keeps increasing). Foreign logs map their topics with ``mapping={"camera": "/cam/image", ...}``.

A log is untrusted: its chunks are checked (CRC) when it is opened, and a damaged one
refuses the replay - one line with the count and the time range of the messages lost -
unless ``allow_gaps``, which replays the rest. A message that cannot be decoded is one
line with its byte offset (skipped and counted as ``undecodable`` with ``allow_gaps``);
a sample older than the one before it on its stream is dropped and counted as
``time_backwards``, never fed to sync quietly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgefusion.clock import Clock
from edgefusion.errors import InputError, SourceError
from edgefusion.logs import TOPICS, Gap, LogMessage, decode
from edgefusion.logs.bag import BagReader, open_log
from edgefusion.logs.decode import stream_of, supported_for
from edgefusion.logs.reader import LogReader
from edgefusion.samples import AudioChunk, Command, Frame, SpokenCommand
from edgefusion.sources.base import Sample, Source, pace_until

__all__ = ["ReplaySource", "describe_gaps"]

log = logging.getLogger("edgefusion.replay")

STREAMS = ("camera", "audio", "text", "speech")


class ReplaySource(Source):
    """Samples from a log, as the live sources delivered them."""

    name = "replay"
    drives_run = True

    def __init__(self, path: str | Path, clock: Clock | None = None, rate: float | None = None,
                 start_s: float | None = None, end_s: float | None = None, loop: bool = False,
                 mapping: dict[str, str] | None = None, allow_gaps: bool = False, history: bool = False) -> None:
        super().__init__(clock)
        self.allow_gaps, self.history = allow_gaps, history
        if rate is not None and rate <= 0:
            raise InputError(f"replay rate must be positive (or max), got {rate}")
        if start_s is not None and not start_s >= 0:
            raise InputError(f"--start must be 0 or more seconds into the log, got {start_s:g}")
        if end_s is not None and not end_s > (start_s or 0.0):
            raise InputError(f"--end must be later than --start ({start_s or 0:g} s), got {end_s:g}: nothing to "
                             "replay")
        unknown = set(mapping or {}) - set(STREAMS)
        if unknown:
            raise InputError(f"--map: unknown stream(s) {sorted(unknown)}; expected {', '.join(STREAMS)}")
        self.path = Path(path)
        self.rate, self.start_s, self.end_s, self.loop = rate, start_s, end_s, loop
        self.topics = {k: (mapping or {}).get(k, TOPICS[k]) for k in STREAMS}
        self._reader: LogReader | BagReader | None = None
        #: topic -> callback(t_ns, decoded dict), called in log order (e.g. copying /truth into a recording)
        self.passthrough: dict[str, Callable[[int, dict[str, Any]], None]] = {}
        #: when a set of frame times: the other frames are not replayed (``replay --check`` of a live
        #: recording skips the frames its run dropped); :attr:`frames_skipped` counts them
        self.only_frames: frozenset[int] | None = None
        self.frames_skipped = 0

    def open(self) -> None:
        self._reader = open_log(self.path, warn=False)  # its damage is reported below, in one line
        info = self._reader.info()  # reads every chunk once: damage is known before the first sample
        gaps = self._reader.gaps
        if gaps:
            what = describe_gaps(gaps)
            if not self.allow_gaps:
                raise SourceError(f"{self.path}: {what}; replay with --allow-gaps to go on without them")
            log.warning("%s: %s; replaying the rest (--allow-gaps)", self.path, what)
        by_topic = {c["topic"]: c for c in info.channels}
        present = {}
        for stream, topic in self.topics.items():
            ch = by_topic.get(topic)
            if ch is None:
                continue
            if stream_of(ch["schema"], ch["message_encoding"]) != stream:
                raise SourceError(
                    f"{self.path}: topic {topic} ({stream}) has schema '{ch['schema']}' with message encoding "
                    f"'{ch['message_encoding']}'; EdgeFusion replays {', '.join(supported_for(stream))} for "
                    f"{stream}. Map another topic with --map {stream}=/topic")
            present[stream] = topic
        if "camera" not in present:
            listing = ", ".join(f"{c['topic']} ({c['schema']}, {c['message_encoding']})" for c in info.channels)
            # suggest only a mapping that can work: the topics whose type feeds each stream
            usable = {k: [c["topic"] for c in info.channels if stream_of(c["schema"], c["message_encoding"]) == k]
                      for k in STREAMS}
            hint = (f"Use --map {','.join(f'{k}={v[0]}' for k, v in usable.items() if v)}" if usable["camera"] else
                    f"none of them is a camera type EdgeFusion decodes ({', '.join(supported_for('camera'))})")
            raise SourceError(f"{self.path}: no camera topic '{self.topics['camera']}' to drive the replay; "
                              f"channels: {listing or 'none'}. {hint}")
        self.present = present
        self._all_topics = set(by_topic)
        self.first_ns = info.start_ns or 0
        #: log time where the --start window begins (the log's first message without one)
        self.range_start_ns = self.first_ns + int((self.start_s or 0.0) * 1e9)
        self.info = {"path": str(self.path), "topics": present, "complete": info.complete,
                     "messages": info.messages, "duration_s": ((info.end_ns or 0) - self.first_ns) / 1e9,
                     "gaps": len(gaps), "lost_messages": sum(g.messages or 0 for g in gaps),
                     "clock": info.metadata.get("clock", {})}
        if self.start_s and self.start_s >= self.info["duration_s"]:  # --start 0 is the start of any log
            raise SourceError(f"{self.path}: --start {self.start_s:g} s is past the end of the log "
                              f"({self.info['duration_s']:.3f} s long): nothing to replay")

    def __iter__(self) -> Iterator[Sample]:
        if self._reader is None:
            raise InputError("replay: iterate inside 'with source:' (it is not open)")
        start = None if self.start_s is None or self.history else self.range_start_ns
        end = None if self.end_s is None else self.first_ns + int(self.end_s * 1e9)
        origin = start if start is not None else self.first_ns
        shift = 0  # added to all times on a loop, so time keeps increasing
        mono0 = time.monotonic_ns()
        stream_of = {t: s for s, t in self.present.items()}
        topics = list(self.present.values()) + [t for t in self.passthrough if t in self._all_topics]
        newest: dict[str, int] = {}  # stream -> time of its latest sample
        while True:
            last = origin
            for m in self._reader.messages(topics=topics, start_ns=start, end_ns=end):
                if self.stop.is_set():
                    return
                if self.rate is not None:
                    due = mono0 + int((m.log_time_ns + shift - origin) / self.rate)
                    if not pace_until(self.stop, due):
                        return
                s = self._decode(m, stream_of.get(m.topic), shift)
                if s is None:
                    continue
                if self.only_frames is not None and isinstance(s, Frame) and s.t_ns not in self.only_frames:
                    self.frames_skipped += 1
                    continue
                last = m.log_time_ns
                if shift:
                    s = _shifted(s, shift)
                if s.t_ns < newest.get(s.source, s.t_ns):
                    self._reject("time_backwards", f"{m.where()}: its time {s.t_ns} ns is before the previous "
                                                   f"{s.source} sample's ({newest[s.source]} ns); dropped")
                    continue
                newest[s.source] = s.t_ns
                yield s
            if not self.loop:
                return
            shift += last - origin + 1_000_000_000 // 30

    def _decode(self, m: LogMessage, stream: str | None, shift: int) -> Frame | AudioChunk | Command | None:
        """The sample of ``m`` (None for a passthrough topic, or a message skipped with ``allow_gaps``)."""
        try:
            if stream is None:
                d = decode(m)
                if isinstance(d, dict):
                    self.passthrough[m.topic](m.publish_time_ns + shift, d)
                return None
            s = decode(m, stream)
        except InputError as exc:
            if not self.allow_gaps:
                raise SourceError(f"{self.path}: {exc}; replay with --allow-gaps to skip such messages") from exc
            self._reject("undecodable", str(exc))
            return None
        return s if isinstance(s, (Frame, AudioChunk, Command)) else None

    def _reject(self, reason: str, line: str) -> None:
        self.rejected[reason] += 1
        if self.rejected[reason] <= 3:  # the rest are counted in the run's summary
            log.warning("%s: %s", self.path, line)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def describe_gaps(gaps: list[Gap]) -> str:
    """One line for the damage of a log: how many chunks, how many messages, which log times.

    Example:
        >>> describe_gaps([Gap(10, 1_000, 2_000, 5, "CRC"), Gap(90, 3_000, 4_000, None, "torn")]).split(" (")[0]
        '2 damaged chunks or regions lost at least 5 messages, log time 1000 .. 4000 ns'
    """
    n = sum(g.messages or 0 for g in gaps)
    count = f"at least {n}" if any(g.messages is None for g in gaps) else str(n)
    times = [t for g in gaps for t in (g.start_ns, g.end_ns) if t is not None]
    when = f", log time {min(times)} .. {max(times)} ns" if times else ""
    kind = "damaged chunk or region" if len(gaps) == 1 else "damaged chunks or regions"
    return f"{len(gaps)} {kind} lost {count} messages{when} (the first: {gaps[0].line()})"


def _shifted(s: Frame | AudioChunk | Command, dt: int) -> Frame | AudioChunk | Command:
    if isinstance(s, Frame):
        return Frame(t_ns=s.t_ns + dt, image=s.image, source=s.source)
    if isinstance(s, AudioChunk):
        return AudioChunk(t_ns=s.t_ns + dt, samples=s.samples, sample_rate=s.sample_rate, source=s.source)
    if isinstance(s, SpokenCommand):
        return dataclasses.replace(s, t_ns=s.t_ns + dt, start_ns=s.start_ns + dt, end_ns=s.end_ns + dt)
    return Command(t_ns=s.t_ns + dt, text=s.text, source=s.source)
