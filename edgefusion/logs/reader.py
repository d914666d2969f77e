"""Reading MCAP logs, ours and other tools', without trusting them.

A complete file is read through its index (when the index's CRC holds); any other file
record by record from the start, up to its last complete record (a writer that was
killed leaves a torn tail; a warning says how much was recovered). Every chunk's CRC is
checked as it is read: a damaged chunk is skipped and counted as a :class:`Gap` (how many
messages, which log times, at which byte), and :meth:`LogReader.verify` finds them all
before a run starts. Messages of our schemas are decoded into samples by :func:`decode`;
anything that cannot be read is one line with a file offset, never a traceback.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from edgefusion.errors import InputError
from edgefusion.labels import LabelTrack, Span
from edgefusion.logs.decode import SUPPORTED, decode
from edgefusion.logs.scan import ChunkRef, Damage, Gap, McapFile
from edgefusion.logs.schemas import TOPICS

__all__ = ["SUPPORTED", "Gap", "LogInfo", "LogMessage", "LogReader", "decode"]

log = logging.getLogger("edgefusion.logs")
#: message bytes held to merge overlapping chunks into log-time order; past it, file order wins
MAX_HELD_BYTES = 512 << 20


@dataclass(frozen=True)
class LogMessage:
    """One message of a log; ``offset`` is the byte where its record (or its chunk) starts.

    Example:
        >>> LogMessage("/camera", "foxglove.RawImage", "json", 7, 7, b"{}", offset=99).where()
        '/camera message at log time 7 ns (record at byte 99)'
    """

    topic: str
    schema: str
    encoding: str
    log_time_ns: int
    publish_time_ns: int
    data: bytes
    offset: int = -1
    #: the channel's schema record (a ROS 2 message definition, a descriptor set, a JSON schema)
    schema_data: bytes = field(default=b"", repr=False)

    def where(self) -> str:
        """Names the message for an error line: topic, log time and file offset."""
        at = f" (record at byte {self.offset})" if self.offset >= 0 else ""
        return f"{self.topic} message at log time {self.log_time_ns} ns{at}"


@dataclass
class LogInfo:
    """What ``edgefusion log info`` prints."""

    path: str
    profile: str
    library: str
    channels: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    attachments: list[str] = field(default_factory=list)
    complete: bool = True
    recovered_messages: int | None = None
    file_bytes: int = 0
    #: data lost to damage, one dict per damaged chunk or region (offset, start_ns, end_ns, messages, reason)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    #: damage that lost no messages (an index, a header string), one line each
    problems: list[str] = field(default_factory=list)


class LogReader:
    """Reads a log: its messages in log-time order, its labels, what it holds.

    Example::

        with LogReader("run.mcap") as r:
            for msg in r.messages(topics=["/camera"]):
                ...

    Args:
        path: the log.
        warn: log a warning for each damage found (off for a caller that reports :attr:`gaps` itself).

    Raises:
        InputError: the file is missing or is not an MCAP file (one line, with the offset).
    """

    def __init__(self, path: str | Path, warn: bool = True) -> None:
        self.path = Path(path)
        self._warn = log.warning if warn else log.debug
        if not self.path.is_file():
            raise InputError(f"log {self.path} does not exist")
        try:
            self._f: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            self._m = McapFile(self._f, self.path.stat().st_size)
        except Damage as exc:
            self._f.close()
            if exc.what.startswith("not an MCAP file: "):
                raise InputError(f"{self.path} is not an MCAP file ({exc.what[18:]}, byte {exc.offset})") from exc
            raise InputError(f"{self.path}: {exc}") from exc
        except OSError as exc:
            raise InputError(f"cannot read log {self.path}: {exc}") from exc
        self.header_profile, self.header_library = self._m.profile, self._m.library
        #: read through an intact index, with no torn tail (damaged chunks are :attr:`gaps`)
        self.complete = self._m.indexed
        self.recovered_messages: int | None = None
        self._lost: dict[int, Gap] = {g.offset: g for g in self._m.gaps}
        self._verified = False
        self._orphans: dict[tuple[int, int], set[tuple[int, int]]] = {}  # messages on undeclared channels
        for p in self._m.problems:
            self._warn("%s: %s", self.path, p)
        for g in self._m.gaps:
            self._warn("%s: %s", self.path, g.line())

    @property
    def gaps(self) -> list[Gap]:
        """Data lost to damage found so far (all of it after :meth:`verify`), in file order."""
        orphans = [Gap(off, min(ts)[0], max(ts)[0], len(ts), f"messages on channel {cid}, which no channel record "
                                                              "declares") for (off, cid), ts in self._orphans.items()]
        return sorted([*self._lost.values(), *orphans], key=lambda g: g.offset)

    @property
    def truncated_at(self) -> int | None:
        """Where a torn tail begins (the writer was killed), or None."""
        return self._m.truncated_at

    def verify(self) -> list[Gap]:
        """Read every chunk once (checking its CRC) and return every gap in the log."""
        if not self._verified:
            for ref in self._m.chunks:
                self._chunk(ref)
            self._verified = True
        return self.gaps

    def _chunk(self, ref: ChunkRef) -> list[tuple[int, Any]]:
        if ref.offset in self._lost:
            return []
        try:
            return self._m.read_chunk(ref)
        except Damage as exc:
            gap = ref.gap(exc.what)
            self._lost[ref.offset] = gap
            self._warn("%s: %s", self.path, gap.line())
            return []

    def messages(self, topics: list[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[LogMessage]:
        """Messages in log-time order, filtered by topic and time; damaged chunks are skipped (see :attr:`gaps`)."""
        refs = self._m.chunks
        if self._m.indexed:  # chunk times from an index whose CRC held: safe to skip by them
            refs = [c for c in refs if (start_ns is None or c.end_ns >= start_ns)
                    and (end_ns is None or c.start_ns < end_ns)]
        refs = sorted(refs, key=lambda c: (c.start_ns, c.offset))
        heap: list[tuple[int, int, int, Any]] = []
        n = i = seq = held = 0
        wanted = None if topics is None else set(topics)
        while i < len(refs) or heap:
            # open every chunk that may hold a message before the earliest one pending; chunks of
            # ours do not overlap (two are open at most), and lying ones cannot pile up past the cap
            while i < len(refs) and (not heap or (refs[i].start_ns <= heap[0][0] and held < MAX_HELD_BYTES)):
                for off, m in self._chunk(refs[i]):
                    heapq.heappush(heap, (m.log_time, seq, off, m))
                    held += len(m.data)
                    seq += 1
                i += 1
            if not heap:
                continue
            t, _, off, m = heapq.heappop(heap)
            held -= len(m.data)
            n += 1
            ch = self._m.channels.get(m.channel_id)
            if ch is None:
                self._orphans.setdefault((off, m.channel_id), set()).add((t, seq))
                continue
            if wanted is not None and ch.topic not in wanted:
                continue
            if (start_ns is not None and t < start_ns) or (end_ns is not None and t >= end_ns):
                continue
            sch = self._m.schemas.get(ch.schema_id)
            yield LogMessage(ch.topic, sch.name if sch else "", ch.message_encoding, t, m.publish_time, m.data, off,
                             sch.data if sch else b"")
        if self._m.truncated_at is not None and topics is None and start_ns is None and end_ns is None:
            self.recovered_messages = n
            log.warning("%s is truncated at byte %d (its writer was probably killed): recovered %d messages; the "
                        "torn last chunk is lost", self.path, self._m.truncated_at, n)

    def labels(self, topic: str = TOPICS["labels"]) -> LabelTrack | None:
        """The label track on ``topic``, or None when the log has none.

        Raises:
            InputError: the topic holds something else, or a span that is not valid (named by its
                message's log time).
        """
        spans = []
        for m in self.messages(topics=[topic]):
            if m.schema != "edgefusion.Label" or m.encoding != "json":
                raise InputError(f"{self.path}: topic {topic} has schema '{m.schema}' ({m.encoding}); labels are "
                                 "JSON-encoded edgefusion.Label messages")
            try:
                spans.append(Span.from_dict(json.loads(m.data)))
            except (ValueError, TypeError, RecursionError, InputError) as exc:
                raise InputError(f"{self.path}: {m.where()}: {exc}") from exc
        return LabelTrack(spans) if spans else None

    def sample_range(self) -> tuple[int, int] | None:
        """(first, last) time of the log's samples on their own clock; None for an empty log.

        EdgeFusion's writer keeps log times non-decreasing in arrival order, so a sample that
        arrived after a later one (the camera and microphone threads race by milliseconds) has
        a log time after its own time; its publish time is its own time. For our logs the range
        spans both; for other tools' logs it is the log-time range.
        """
        info = self.info()
        if info.start_ns is None or info.end_ns is None:
            return None
        if self.header_profile != "edgefusion":
            return info.start_ns, info.end_ns
        lo, hi = info.start_ns, info.end_ns
        for m in self.messages():
            lo, hi = min(lo, m.publish_time_ns), max(hi, m.publish_time_ns)
        return lo, hi

    def metadata(self) -> dict[str, dict[str, str]]:
        """The log's metadata records by name (without reading its chunks)."""
        return {md.name: dict(md.metadata) for md in self._m.metadata()}

    def info(self) -> LogInfo:
        """Channels, counts, time range, metadata and attachments; every chunk is checked (:meth:`verify`)."""
        gaps = self.verify()
        info = LogInfo(str(self.path), self.header_profile, self.header_library,
                       complete=self.complete and not gaps and not self._m.problems,
                       file_bytes=self.path.stat().st_size, attachments=list(self._m.attachments))
        info.metadata = self.metadata()
        stats = self._m.statistics
        if self._m.indexed and stats is not None:
            counts = stats.channel_message_counts
            for cid, ch in sorted(self._m.channels.items()):
                sch = self._m.schemas.get(ch.schema_id)
                info.channels.append({"topic": ch.topic, "schema": sch.name if sch else "",
                                      "schema_encoding": sch.encoding if sch else "",
                                      "message_encoding": ch.message_encoding, "messages": counts.get(cid, 0)})
            info.messages, info.start_ns, info.end_ns = stats.message_count, stats.message_start_time, \
                stats.message_end_time
            if info.messages == 0:
                info.start_ns = info.end_ns = None
        else:
            per: Counter[tuple[str, str, str, str]] = Counter()
            for m in self.messages():
                per[(m.topic, m.schema, "", m.encoding)] += 1
                info.messages += 1
                info.start_ns = m.log_time_ns if info.start_ns is None else min(info.start_ns, m.log_time_ns)
                info.end_ns = m.log_time_ns if info.end_ns is None else max(info.end_ns, m.log_time_ns)
            info.channels = [{"topic": t, "schema": s, "schema_encoding": e, "message_encoding": me, "messages": c}
                             for (t, s, e, me), c in sorted(per.items())]
            info.recovered_messages = self.recovered_messages
        info.gaps = [dataclasses.asdict(g) for g in self.gaps]
        info.problems = list(self._m.problems)
        return info

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
