"""Reading MCAP logs, ours and other tools', with the ``mcap`` library.

A complete file is read through its index. A file whose writer was killed (no summary,
a torn last chunk) is read from the start up to its last complete record, with a
warning that says how much was recovered. Messages of our schemas are decoded into
samples; an unknown message encoding is refused with a message that says what is
supported.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, SeekingReader
from mcap.records import Header
from mcap.stream_reader import StreamReader

from edgefusion.errors import InputError
from edgefusion.labels import LabelTrack, Span
from edgefusion.logs.schemas import TOPICS, from_time, unb64
from edgefusion.samples import AudioChunk, Command, Frame

__all__ = ["SUPPORTED", "LogInfo", "LogMessage", "LogReader", "decode"]

log = logging.getLogger("edgefusion.logs")

#: schema name -> the stream it feeds, for JSON-encoded messages
SUPPORTED = {
    "foxglove.RawImage": "camera",
    "foxglove.CompressedImage": "camera",
    "foxglove.RawAudio": "audio",
    "edgefusion.Command": "text",
    "edgefusion.Result": "results",
    "edgefusion.Truth": "truth",
    "edgefusion.Label": "labels",
}


@dataclass(frozen=True)
class LogMessage:
    topic: str
    schema: str
    encoding: str
    log_time_ns: int
    publish_time_ns: int
    data: bytes


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


class LogReader:
    """Random access to a complete log, sequential recovery of a truncated one.

    Example::

        with LogReader("run.mcap") as r:
            for msg in r.messages(topics=["/camera"]):
                ...
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"log {self.path} does not exist")
        self._f: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self.complete = True
        self._summary: Any = None
        self.header_profile = self.header_library = ""
        try:
            reader = SeekingReader(self._f)
            header = reader.get_header()
            self.header_profile, self.header_library = header.profile, header.library
            self._summary = reader.get_summary()
            if self._summary is None:
                self.complete = False
        except (McapError, EOFError, ValueError, OSError) as exc:
            self.complete = False
            log.debug("no usable summary in %s: %s", self.path, exc)
        if self._summary is None and self.header_profile == "":
            self._read_header()

    def _read_header(self) -> None:
        self._f.seek(0)
        try:
            rec = next(iter(StreamReader(self._f).records))
        except (McapError, EOFError, ValueError, StopIteration) as exc:
            raise InputError(f"{self.path} is not an MCAP file ({type(exc).__name__}: {exc})") from exc
        if isinstance(rec, Header):
            self.header_profile, self.header_library = rec.profile, rec.library

    def messages(self, topics: list[str] | None = None, start_ns: int | None = None,
                 end_ns: int | None = None) -> Iterator[LogMessage]:
        """Messages in log-time order (file order for a truncated log), filtered by topic and time."""
        if self.complete:
            self._f.seek(0)
            it = SeekingReader(self._f).iter_messages(topics=topics, starting_at=start_ns, ending_before=end_ns)
            for schema, channel, m in it:
                yield LogMessage(channel.topic, schema.name if schema else "", channel.message_encoding,
                                 m.log_time, m.publish_time, m.data)
            return
        yield from self._recover(topics, start_ns, end_ns)

    def _recover(self, topics: list[str] | None, start_ns: int | None, end_ns: int | None) -> Iterator[LogMessage]:
        self._f.seek(0)
        n = 0
        last_t = None
        try:
            # file order: sorting by log time would buffer everything and yield nothing before the tear
            for schema, channel, m in NonSeekingReader(self._f).iter_messages(log_time_order=False):
                n += 1
                last_t = m.log_time
                if topics is not None and channel.topic not in topics:
                    continue
                if (start_ns is not None and m.log_time < start_ns) or (end_ns is not None and m.log_time >= end_ns):
                    continue
                yield LogMessage(channel.topic, schema.name if schema else "", channel.message_encoding,
                                 m.log_time, m.publish_time, m.data)
        except (McapError, EOFError, ValueError, AssertionError) as exc:
            log.warning("%s is truncated (%s; its writer was probably killed): recovered %d messages up to log "
                        "time %s ns; the torn last chunk is lost", self.path, type(exc).__name__, n, last_t)
            self.recovered_messages = n

    recovered_messages: int | None = None

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
            except (ValueError, RecursionError, InputError) as exc:
                raise InputError(f"{self.path}: {topic} message at log time {m.log_time_ns} ns: {exc}") from exc
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

    def info(self) -> LogInfo:
        info = LogInfo(str(self.path), self.header_profile, self.header_library, complete=self.complete,
                       file_bytes=self.path.stat().st_size)
        if self.complete and self._summary is not None:
            s = self._summary
            stats = s.statistics
            counts = stats.channel_message_counts if stats else {}
            for cid, ch in sorted(s.channels.items()):
                sch = s.schemas.get(ch.schema_id)
                info.channels.append({"topic": ch.topic, "schema": sch.name if sch else "",
                                      "schema_encoding": sch.encoding if sch else "",
                                      "message_encoding": ch.message_encoding, "messages": counts.get(cid, 0)})
            if stats:
                info.messages, info.start_ns, info.end_ns = stats.message_count, stats.message_start_time, \
                    stats.message_end_time
            self._f.seek(0)
            reader = SeekingReader(self._f)
            info.metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
            info.attachments = [a.name for a in reader.iter_attachments()]
            return info
        per: Counter[tuple[str, str, str, str]] = Counter()
        for m in self._recover(None, None, None):
            per[(m.topic, m.schema, "", m.encoding)] += 1
            info.messages += 1
            info.start_ns = m.log_time_ns if info.start_ns is None else min(info.start_ns, m.log_time_ns)
            info.end_ns = m.log_time_ns if info.end_ns is None else max(info.end_ns, m.log_time_ns)
        info.channels = [{"topic": t, "schema": s, "schema_encoding": e, "message_encoding": me, "messages": c}
                         for (t, s, e, me), c in sorted(per.items())]
        info.recovered_messages = self.recovered_messages
        return info

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode(m: LogMessage, source: str | None = None) -> Frame | AudioChunk | Command | dict[str, Any]:
    """A sample (Frame, AudioChunk, Command) or, for results and truth, the JSON dict."""
    if m.encoding != "json":
        raise InputError(
            f"topic {m.topic}: message encoding '{m.encoding}' (schema '{m.schema}') is not supported; EdgeFusion "
            f"replays JSON-encoded {', '.join(sorted(SUPPORTED))}")
    kind = SUPPORTED.get(m.schema)
    if kind is None:
        raise InputError(f"topic {m.topic}: schema '{m.schema}' is not supported; supported: {sorted(SUPPORTED)}")
    msg = json.loads(m.data)
    t = from_time(msg.get("timestamp", {})) if "timestamp" in msg else m.publish_time_ns
    if m.schema == "foxglove.RawImage":
        if msg.get("encoding") != "bgr8":
            raise InputError(f"topic {m.topic}: image encoding '{msg.get('encoding')}' is not supported (bgr8 is)")
        img = np.frombuffer(unb64(msg["data"]), np.uint8).reshape(msg["height"], msg["width"], 3)
        return Frame(t_ns=t, image=img.copy(), source=source or "camera")
    if m.schema == "foxglove.CompressedImage":
        decoded = cv2.imdecode(np.frombuffer(unb64(msg["data"]), np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise InputError(f"topic {m.topic}: a {msg.get('format')} image could not be decoded")
        return Frame(t_ns=t, image=np.asarray(decoded, np.uint8), source=source or "camera")
    if m.schema == "foxglove.RawAudio":
        if msg.get("format") != "pcm-s16":
            raise InputError(f"topic {m.topic}: audio format '{msg.get('format')}' is not supported (pcm-s16 is)")
        x = np.frombuffer(unb64(msg["data"]), "<i2").astype(np.float32) / np.float32(32768.0)
        ch = int(msg.get("number_of_channels", 1))
        if ch > 1:
            x = x.reshape(-1, ch).mean(axis=1).astype(np.float32)
        return AudioChunk(t_ns=t, samples=x, sample_rate=int(msg["sample_rate"]), source=source or "audio")
    if m.schema == "edgefusion.Command":
        return Command(t_ns=t, text=msg["text"], source=source or "text")
    return msg
