"""Careful MCAP reading: bounded records, checked CRCs, and one line with a file offset per problem.

The ``mcap`` library's readers trust the file they read: a torn footer raises ``struct.error``,
a flipped byte in a string ``UnicodeDecodeError``, and a zeroed chunk is either read as if
nothing happened (CRC checks are off by default) or, with them on, ends the whole read. This
module walks the records itself (parsing each one with the library's record classes), so a
damaged chunk costs its own messages - counted, with their time range, as a :class:`Gap` -
and nothing else; and no record makes it allocate more than the file holds (a chunk may
inflate to at most :data:`MAX_CHUNK_BYTES`).

The summary (index) is used when its CRC holds; otherwise the data section is walked record
by record from the start, which is also how a log whose writer was killed is read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import IO

from mcap.opcode import Opcode
from mcap.records import (
    AttachmentIndex,
    Channel,
    ChunkIndex,
    Footer,
    Message,
    MessageIndex,
    Metadata,
    MetadataIndex,
    Schema,
    Statistics,
)

from edgefusion.logs.mcapparts import MAGIC, MAX_CHUNK_BYTES, ChunkRef, Damage, Gap
from edgefusion.logs.mcapparts import find_all as _find_all
from edgefusion.logs.mcapparts import inflate as _inflate
from edgefusion.logs.mcapparts import parse as _parse

__all__ = ["ChunkRef", "Damage", "Gap", "McapFile"]

_FOOTER_BYTES = 1 + 8 + 8 + 8 + 4  # opcode, length, summary_start, summary_offset_start, summary_crc
_KNOWN = {int(op) for op in Opcode}
# Least body length of each record, so a lying length cannot make a parser read past its record.
_MIN_BODY = {Opcode.MESSAGE: 22, Opcode.CHUNK: 8 + 8 + 8 + 4 + 4 + 8, Opcode.FOOTER: 20, Opcode.DATA_END: 4}


class McapFile:
    """The structure of one MCAP file, read without trusting it.

    Args:
        f: the open file (binary, seekable).
        size: its size in bytes.

    Raises:
        Damage: the file does not start with an MCAP magic and header (it is not an MCAP file).

    Example:
        >>> import io
        >>> McapFile(io.BytesIO(b"not mcap"), 8)
        Traceback (most recent call last):
        ...
        edgefusion.logs.mcapparts.Damage: byte 0: not an MCAP file: no MCAP magic at its start
    """

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size = f, size
        self.problems: list[str] = []  #: one line per damage found outside the chunks
        self.gaps: list[Gap] = []  #: data lost, found so far (walking; chunks as they are read)
        self.schemas: dict[int, Schema] = {}
        self.channels: dict[int, Channel] = {}
        self.statistics: Statistics | None = None
        self.chunks: list[ChunkRef] = []
        self.metadata_at: list[tuple[int, int]] = []  # (offset, length)
        self.attachments: list[str] = []
        self.indexed = False  #: the summary is there, intact, and lists the chunks
        self.truncated_at: int | None = None  #: where a torn tail begins (the writer was killed)
        if size < len(MAGIC) or self._read(0, len(MAGIC)) != MAGIC:
            raise Damage(0, "not an MCAP file: no MCAP magic at its start")
        self.profile, self.library, first = self._header()
        self._no_index = ""
        if not self._summary():
            self._walk(first)
            if self.truncated_at is None and self._no_index:  # a torn tail explains itself
                self.problems.append(self._no_index)

    # -- raw access ---------------------------------------------------------------------

    def _read(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)

    def _record(self, offset: int, limit: int | None = None) -> tuple[int, int, int]:
        """(opcode, body length, offset after the record) at ``offset``; Damage if it does not fit."""
        end_of_data = self.size if limit is None else limit
        head = self._read(offset, 9)
        if len(head) < 9:
            raise Damage(offset, "torn record header (the file ends inside it)")
        op, length = struct.unpack("<BQ", head)
        if offset + 9 + length > end_of_data:
            raise Damage(offset, f"record of {length} bytes runs past the end of the file")
        if length < _MIN_BODY.get(op, 0):  # type: ignore[call-overload]
            raise Damage(offset, f"opcode 0x{op:02x} record of only {length} bytes")
        return op, length, offset + 9 + length

    def _header(self) -> tuple[str, str, int]:
        op, length, nxt = self._record(8)
        if op != Opcode.HEADER:
            raise Damage(8, f"not an MCAP file: the first record has opcode 0x{op:02x}, not a header")
        body = self._read(17, length)
        strings = ["", ""]
        pos = 0
        for i in range(2):
            if pos + 4 > len(body):
                break
            (n,) = struct.unpack_from("<I", body, pos)
            # a flipped bit here loses nothing: say so and read on
            strings[i] = body[pos + 4 : pos + 4 + n].decode("utf-8", errors="replace")
            pos += 4 + n
        if pos > len(body) or any("\ufffd" in s for s in strings):
            self.problems.append(f"byte 8: the header's profile or library string is damaged ({strings})")
        return strings[0], strings[1], nxt

    # -- summary --------------------------------------------------------------------------

    def _summary(self) -> bool:
        """Read the summary if the footer and its CRC hold; True when it lists the chunks."""
        if self.size < 8 + 9 + _FOOTER_BYTES + 8 or self._read(self.size - 8, 8) != MAGIC:
            return False
        at = self.size - 8 - _FOOTER_BYTES
        raw = self._read(at, _FOOTER_BYTES)
        if raw[0] != Opcode.FOOTER or struct.unpack_from("<Q", raw, 1)[0] != 20:
            self._no_index = f"byte {at}: no intact footer; read without the index"
            return False
        footer: Footer = _parse(Footer, raw[9:], at)
        if footer.summary_start == 0:
            return False  # a valid file without a summary
        if not 8 <= footer.summary_start <= at:
            self.problems.append(f"byte {at}: the footer points outside the file; read without the index")
            return False
        summary = self._read(footer.summary_start, at - footer.summary_start)
        crc = zlib.crc32(raw[:-4], zlib.crc32(summary))
        if footer.summary_crc not in (0, crc):
            self.problems.append(f"byte {footer.summary_start}: the summary (index) fails its CRC; read without it")
            return False
        found = self._summary_records(footer.summary_start, at)
        if found is None:
            return False
        self.indexed = bool(self.chunks) or (self.statistics is not None and self.statistics.message_count == 0)
        return self.indexed

    def _summary_records(self, start: int, end: int) -> bool | None:
        off, chunks = start, []
        try:
            while off < end:
                op, length, nxt = self._record(off, end)
                body = self._read(off + 9, length)
                if op == Opcode.SCHEMA:
                    s = _parse(Schema, body, off)
                    self.schemas[s.id] = s
                elif op == Opcode.CHANNEL:
                    c = _parse(Channel, body, off)
                    self.channels[c.id] = c
                elif op == Opcode.STATISTICS:
                    self.statistics = _parse(Statistics, body, off)
                elif op == Opcode.CHUNK_INDEX:
                    chunks.append(_parse(ChunkIndex, body, off))
                elif op == Opcode.METADATA_INDEX:
                    mi = _parse(MetadataIndex, body, off)
                    self.metadata_at.append((mi.offset, mi.length))
                elif op == Opcode.ATTACHMENT_INDEX:
                    self.attachments.append(_parse(AttachmentIndex, body, off).name)
                off = nxt
        except Damage as exc:
            self.problems.append(f"{exc} (in the summary); read without it")
            self.schemas, self.channels, self.statistics = {}, {}, None
            self.metadata_at, self.attachments = [], []
            return None
        for ci in sorted(chunks, key=lambda c: c.chunk_start_offset):
            ref = ChunkRef(ci.chunk_start_offset, ci.chunk_length, ci.message_start_time, ci.message_end_time)
            self.chunks.append(ref)
            for mi_off in ci.message_index_offsets.values():
                self._message_index(ref, mi_off)
        return True

    def _message_index(self, ref: ChunkRef, offset: int) -> None:
        try:
            op, length, _ = self._record(offset)
            if op != Opcode.MESSAGE_INDEX:
                raise Damage(offset, "not a message index")
            mi: MessageIndex = _parse(MessageIndex, self._read(offset + 9, length), offset)
        except Damage:
            return  # only a count for a report is lost
        if mi.records:
            ts = [t for t, _ in mi.records]
            ref.index[mi.channel_id] = (len(ts), min(ts), max(ts))

    # -- walking the data section ---------------------------------------------------------

    def _walk(self, off: int) -> None:
        """Find chunks, loose messages, schemas, channels and metadata record by record."""
        last: ChunkRef | None = None
        lost: list[tuple[ChunkRef, str]] = []
        while off < self.size:
            try:
                op, length, nxt = self._record(off)
                if op not in _KNOWN and op < 0x80:  # 0x80 and up are private records: skipped by design
                    raise Damage(off, f"unknown opcode 0x{op:02x}")
            except Damage as exc:
                if off + 9 > self.size or "past the end" in exc.what:
                    self.truncated_at = off
                    break
                resync = self._resync(off)
                # the message indexes after the lost stretch still say what it held
                last = ChunkRef(off, (resync or self.size) - off, 0, 0)
                lost.append((last, f"{exc.what}; {last.length} bytes skipped"))
                if resync is None:
                    break
                off = resync
                continue
            if op in (Opcode.DATA_END, Opcode.FOOTER):
                break
            try:
                last = self._walk_record(op, off, length, last)
            except Damage as exc:
                self.problems.append(str(exc))
            off = nxt
        else:
            self.truncated_at = off  # no data end record: the writer stopped between two records
        self.gaps += [ref.gap(why) if ref.index else Gap(ref.offset, None, None, None, why) for ref, why in lost]

    def _walk_record(self, op: int, off: int, length: int, last: ChunkRef | None) -> ChunkRef | None:
        if op == Opcode.CHUNK:
            start, end = struct.unpack("<QQ", self._read(off + 9, 16))
            ref = ChunkRef(off, 9 + length, start, end)
            self.chunks.append(ref)
            return ref
        if op == Opcode.MESSAGE_INDEX and last is not None:
            mi: MessageIndex = _parse(MessageIndex, self._read(off + 9, length), off)
            if mi.records:
                ts = [t for t, _ in mi.records]
                last.index[mi.channel_id] = (len(ts), min(ts), max(ts))
            return last
        if op == Opcode.MESSAGE:
            (log_time,) = struct.unpack("<Q", self._read(off + 15, 8))
            self.chunks.append(ChunkRef(off, 9 + length, log_time, log_time, loose=True))
        elif op == Opcode.SCHEMA:
            s = _parse(Schema, self._read(off + 9, length), off)
            self.schemas[s.id] = s
        elif op == Opcode.CHANNEL:
            c = _parse(Channel, self._read(off + 9, length), off)
            self.channels[c.id] = c
        elif op == Opcode.METADATA:
            self.metadata_at.append((off, 9 + length))
        elif op == Opcode.ATTACHMENT:
            name_len = struct.unpack("<I", self._read(off + 25, 4))[0] if length >= 20 else 0
            self.attachments.append(self._read(off + 29, min(name_len, length)).decode("utf-8", "replace"))
        return None

    def _resync(self, off: int) -> int | None:
        """After garbage at ``off``: the offset of the next plausible chunk or message index, or None."""
        pos, window = off + 1, 1 << 20
        while pos < self.size:
            block = self._read(pos, window)
            hits = sorted(i for op in (Opcode.CHUNK, Opcode.MESSAGE_INDEX) for i in _find_all(block, op))
            for i in hits:
                if self._plausible(pos + i, block[i]):
                    return pos + i
            pos += window
        return None

    def _plausible(self, at: int, op: int) -> bool:
        head = self._read(at, 9 + 36)
        if len(head) < 15:
            return False
        length = struct.unpack_from("<Q", head, 1)[0]
        if at + 9 + length > self.size:
            return False
        if op == Opcode.MESSAGE_INDEX:
            n = struct.unpack_from("<I", head, 11)[0]
            return length == 6 + n and n % 16 == 0
        if len(head) < 45:
            return False
        start, end, usize, _crc, clen = struct.unpack_from("<QQQII", head, 9)
        return (start <= end and usize <= MAX_CHUNK_BYTES and clen <= 4
                and head[41 : 41 + clen] in (b"", b"zstd", b"lz4"))

    # -- reading ------------------------------------------------------------------------------

    def read_chunk(self, ref: ChunkRef) -> list[tuple[int, Message]]:
        """The (record offset, message) pairs of a chunk, in log-time order; its schemas and
        channels are learnt on the way. Raises Damage when the chunk cannot be trusted."""
        op, length, _ = self._record(ref.offset)
        body = self._read(ref.offset + 9, length)
        if ref.loose:
            if op != Opcode.MESSAGE:
                raise Damage(ref.offset, "expected a message record")
            return [(ref.offset, _parse(Message, body, ref.offset, length))]
        if op != Opcode.CHUNK:
            raise Damage(ref.offset, f"expected a chunk, found opcode 0x{op:02x}")
        usize, crc, clen = struct.unpack_from("<QII", body, 16)
        compression = body[32 : 32 + clen].decode("utf-8", "replace")
        pos = 32 + clen
        if pos + 8 > len(body):
            raise Damage(ref.offset, "chunk header runs past its record")
        (dlen,) = struct.unpack_from("<Q", body, pos)
        if pos + 8 + dlen > len(body):
            raise Damage(ref.offset, "chunk data runs past its record")
        data = _inflate(compression, body[pos + 8 : pos + 8 + dlen], usize, ref.offset)
        if crc != 0 and zlib.crc32(data) != crc:
            raise Damage(ref.offset, "chunk fails its CRC check (damaged on disk or in transfer)")
        out = []
        inner = 0
        while inner < len(data):
            if inner + 9 > len(data):
                raise Damage(ref.offset, f"a record inside the chunk is torn at {inner}")
            iop, ilen = struct.unpack_from("<BQ", data, inner)
            rec = data[inner + 9 : inner + 9 + ilen]
            if inner + 9 + ilen > len(data) or ilen < _MIN_BODY.get(iop, 0):  # type: ignore[call-overload]
                raise Damage(ref.offset, f"a record inside the chunk at {inner} has a wrong length")
            if iop == Opcode.MESSAGE:
                out.append((ref.offset, _parse(Message, rec, ref.offset, ilen)))
            elif iop == Opcode.SCHEMA:
                s = _parse(Schema, rec, ref.offset)
                self.schemas.setdefault(s.id, s)
            elif iop == Opcode.CHANNEL:
                c = _parse(Channel, rec, ref.offset)
                self.channels.setdefault(c.id, c)
            inner += 9 + ilen
        out.sort(key=lambda p: p[1].log_time)  # stable: file order among equal times
        return out

    def metadata(self) -> Iterator[Metadata]:
        for off, _length in self.metadata_at:
            try:
                op, length, _ = self._record(off)
                if op != Opcode.METADATA:
                    raise Damage(off, "the metadata index points at something else")
                yield _parse(Metadata, self._read(off + 9, length), off)
            except Damage as exc:
                self.problems.append(str(exc))
