"""Adding a label track to a log: a copy with every other record kept as it was.

Schemas, channels (with their metadata), messages (data, log and publish times, sequence
numbers), metadata records and attachments are copied as they are; only the ``/labels``
channel is new (an existing one is replaced). The copy is written beside its destination
and renamed over it when complete, so a failure leaves no half-written log, and the
input itself is only replaced when asked to.

Example:
    >>> import tempfile, os
    >>> from edgefusion.labels import LabelTrack, Span
    >>> from edgefusion.logs import LogReader, LogWriter
    >>> from edgefusion.samples import Command
    >>> d = tempfile.mkdtemp()
    >>> with LogWriter(os.path.join(d, "a.mcap")) as w:
    ...     w.command(Command(t_ns=5, text="lights on"), log_time_ns=5)
    >>> stats = write_labelled(os.path.join(d, "a.mcap"), os.path.join(d, "b.mcap"),
    ...                        LabelTrack([Span(0, 10, "intent", "lights_on")]))
    >>> stats.copied, stats.labels, stats.replaced
    (1, 1, 0)
    >>> len(LogReader(os.path.join(d, "b.mcap")).labels())
    1
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mcap.exceptions import McapError
from mcap.reader import SeekingReader
from mcap.writer import CompressionType, Writer

from edgefusion.errors import ConfigError, InputError
from edgefusion.labels import LabelTrack, Span, parse_spans_csv
from edgefusion.labels.spans_csv import format_problems
from edgefusion.logs.reader import LogReader
from edgefusion.logs.schemas import SCHEMAS, TOPICS
from edgefusion.logs.writer import encode_message
from edgefusion.packaging import publish_mode
from edgefusion.task import Task, load_task

__all__ = ["COVERAGE_MODES", "END_SLACK_NS", "LabelledCopy", "atomic_output", "label_log", "write_labelled"]

COVERAGE_MODES = ("auto", "all", "spans")
#: how far past the log's last message a span may end (a player shows the last frame for one period,
#: the last audio chunk may end after it)
END_SLACK_NS = 1_000_000_000
_TRUNCATED = ("{log} is truncated (its writer was probably killed); labels are added to complete logs only: "
              "replay it with --record to write a complete copy of what it holds")
_DAMAGED = ("{log} is damaged ({gap}{more}); labels are added to intact logs only: replay it with --allow-gaps "
            "--record to write a copy of what can be read")


def _check_intact(r: LogReader, log: Path) -> None:
    """A copy through the ``mcap`` library's reader needs an intact file: complete, every CRC holding."""
    if not r.complete:
        raise InputError(_TRUNCATED.format(log=log))
    gaps = r.verify()
    if gaps:
        more = f"; and {len(gaps) - 1} more" if len(gaps) > 1 else ""
        raise InputError(_DAMAGED.format(log=log, gap=gaps[0].line(), more=more))
_COMPRESSION = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "": CompressionType.NONE}


@dataclass
class LabelledCopy:
    """What :func:`write_labelled` wrote: messages copied, spans written, old spans replaced."""

    path: Path
    copied: int
    labels: int
    replaced: int
    metadata: int
    attachments: int


@contextlib.contextmanager
def atomic_output(dst: Path) -> Iterator[IO[bytes]]:
    """A file object whose content becomes ``dst`` when the block ends without an error."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish_mode(Path(tmp), like=dst)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_labelled(src: str | Path, dst: str | Path, track: LabelTrack, topic: str = TOPICS["labels"]) -> LabelledCopy:
    """Copy the log ``src`` to ``dst`` with ``track`` on ``topic`` (replacing a track already there).

    ``dst`` may be ``src`` itself: the copy replaces it only once it is complete.

    Raises:
        InputError: ``src`` is not a complete MCAP log, or ``dst`` cannot be written.
    """
    src, dst = Path(src), Path(dst)
    with LogReader(src) as r:  # the clear messages for a missing, non-MCAP or damaged file
        _check_intact(r, src)
    try:
        with open(src, "rb") as f, atomic_output(dst) as out:
            return _copy(SeekingReader(f), out, dst, track, topic)
    except (McapError, EOFError, ValueError, AssertionError) as exc:
        raise InputError(f"{src}: cannot copy the log ({type(exc).__name__}: {exc})") from exc
    except OSError as exc:
        raise InputError(f"cannot write {dst}: {exc}") from exc


def _copy(reader: SeekingReader, out: IO[bytes], dst: Path, track: LabelTrack, topic: str) -> LabelledCopy:
    header = reader.get_header()
    summary = reader.get_summary()
    assert summary is not None  # a complete log has one
    kinds = {ci.compression for ci in summary.chunk_indexes}
    w = Writer(out, compression=_COMPRESSION.get(kinds.pop() if len(kinds) == 1 else "zstd", CompressionType.ZSTD))
    w.start(profile=header.profile, library=header.library)
    schemas = {sid: w.register_schema(s.name, s.encoding, s.data) for sid, s in sorted(summary.schemas.items())}
    channels: dict[int, int] = {}
    for cid, ch in sorted(summary.channels.items()):
        if ch.topic != topic:
            channels[cid] = w.register_channel(ch.topic, ch.message_encoding, schemas.get(ch.schema_id, 0),
                                               dict(ch.metadata))
    label_schema = w.register_schema("edgefusion.Label", "jsonschema", SCHEMAS["edgefusion.Label"])
    label_channel = w.register_channel(topic, "json", label_schema)
    replaced = copied = 0
    spans = [(s.start_ns, i, encode_message(s.to_dict())) for i, s in enumerate(track)]
    pending = iter(spans)
    nxt = next(pending, None)
    for _, channel, m in reader.iter_messages(log_time_order=True):
        while nxt is not None and nxt[0] <= m.log_time:
            w.add_message(label_channel, log_time=nxt[0], data=nxt[2], publish_time=nxt[0], sequence=nxt[1])
            nxt = next(pending, None)
        if channel.id not in channels:
            replaced += 1
            continue
        w.add_message(channels[channel.id], log_time=m.log_time, data=m.data, publish_time=m.publish_time,
                      sequence=m.sequence)
        copied += 1
    while nxt is not None:  # spans after the last message
        w.add_message(label_channel, log_time=nxt[0], data=nxt[2], publish_time=nxt[0], sequence=nxt[1])
        nxt = next(pending, None)
    n_meta = n_att = 0
    for md in reader.iter_metadata():
        w.add_metadata(md.name, dict(md.metadata))
        n_meta += 1
    for a in reader.iter_attachments():
        w.add_attachment(create_time=a.create_time, log_time=a.log_time, name=a.name, media_type=a.media_type,
                         data=a.data)
        n_att += 1
    w.finish()
    return LabelledCopy(dst, copied, len(spans), replaced, n_meta, n_att)


def label_log(log: str | Path, spans: str | Path, task: Task | str | Path, out: str | Path | None = None,
              coverage: str = "auto", in_place: bool = False, source: str = "human",
              force: bool = False) -> tuple[LabelledCopy, LabelTrack]:
    """``edgefusion label``: a copy of ``log`` with the spans of a span file as its ``/labels`` track.

    Args:
        log: the MCAP log (complete).
        spans: the CSV span file (times in seconds from the log's first sample, see
            :meth:`~edgefusion.logs.LogReader.sample_range`).
        task: the task whose labels the spans must name (a Task, a built-in name or a path).
        out: where the copy goes (default ``<log stem>.labelled.mcap`` beside the log).
        coverage: ``all`` (the whole log is labelled: an event without a span is absent),
            ``spans`` (only the span file's coverage rows), ``auto`` (``spans`` when the file
            has coverage rows, else ``all``).
        in_place: replace ``log`` itself (once the copy is complete).
        source: who labelled the spans.
        force: replace the copy ``out`` if it exists (refused otherwise).

    Raises:
        InputError: bad rows or labels (every one named), spans outside the log, a log that
            is not a complete MCAP file.
        ConfigError: contradicting options; a copy that exists without ``force``.
    """
    task = task if isinstance(task, Task) else load_task(task)
    if coverage not in COVERAGE_MODES:
        raise ConfigError(f"--coverage must be one of {', '.join(COVERAGE_MODES)}, got {coverage!r}")
    log = Path(log)
    if in_place and out is not None:
        raise ConfigError("--in-place replaces the log itself: give either --in-place or --out, not both")
    dst = log if in_place else Path(out) if out is not None else log.with_name(f"{log.stem}.labelled.mcap")
    if not in_place and dst.resolve() == log.resolve():
        raise ConfigError(f"--out {dst} is the input log; pass --in-place to replace it")
    if not in_place and not force and dst.exists():
        raise ConfigError(f"--out {dst} exists; choose another path or pass --force to replace it")
    if not dst.parent.is_dir():
        raise ConfigError(f"--out {dst}: the folder {dst.parent} does not exist")
    with LogReader(log) as r:
        _check_intact(r, log)
        span = r.sample_range()
    if span is None:
        raise InputError(f"{log} holds no messages: there is nothing to label")
    start_ns, end_ns = span
    track = parse_spans_csv(spans, task, source)
    length = end_ns - start_ns
    problems = [f"{s.where()}: {why}" for s in sorted(track, key=lambda s: s.row or 0)
                if (why := _outside(s, length))]
    if problems:
        raise InputError(format_problems(str(spans), problems, len(track), "span"))
    rows = track.of("coverage")
    if coverage == "spans" and not rows:
        raise InputError(f"{spans}: --coverage spans but the file has no coverage row; add rows such as "
                         "'0,60,coverage,' or use --coverage all")
    spans_out = list(track)
    if coverage == "all" or (coverage == "auto" and not rows):
        spans_out = [s for s in spans_out if s.kind != "coverage"] + [Span(0, length + 1, "coverage", "", source)]
    final = LabelTrack(spans_out).shifted(start_ns)
    return write_labelled(log, dst, final), final


def _outside(span: Span, length_ns: int) -> str | None:
    if span.start_ns > length_ns:
        return (f"span {span.start_ns / 1e9:.3f}–{span.end_ns / 1e9:.3f} s starts after the log ends "
                f"({length_ns / 1e9:.3f} s)")
    if span.end_ns > length_ns + END_SLACK_NS:
        return (f"span {span.start_ns / 1e9:.3f}–{span.end_ns / 1e9:.3f} s ends after the log "
                f"({length_ns / 1e9:.3f} s long; a span may end at most {END_SLACK_NS / 1e9:g} s past its last "
                "message)")
    return None
