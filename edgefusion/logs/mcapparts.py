"""The pieces of careful MCAP reading: damage, gaps, chunk references, bounded parsing and inflation.

Example:
    >>> Gap(4242, 10, 20, 3, "chunk fails its CRC check").line()
    'the data at byte 4242: 3 messages (log time 10 .. 20 ns) lost: chunk fails its CRC check'
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mcap.data_stream import ReadDataStream

__all__ = ["MAGIC", "MAX_CHUNK_BYTES", "ChunkRef", "Damage", "Gap", "find_all", "inflate", "parse"]

MAGIC = b"\x89MCAP0\r\n"
#: a chunk may inflate to at most this many bytes (writers use ~1-4 MiB; a lie here is a memory bomb)
MAX_CHUNK_BYTES = 256 << 20


class Damage(Exception):
    """A record that cannot be read; ``offset`` is where it starts in the file."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"byte {offset}: {what}")
        self.offset, self.what = offset, what


@dataclass(frozen=True)
class Gap:
    """Messages lost to a damaged chunk or region: where, which log times, how many."""

    offset: int
    start_ns: int | None
    end_ns: int | None
    messages: int | None
    reason: str

    def line(self) -> str:
        """One line for a person: where, how many messages, which log times, why."""
        n = "an unknown number of messages" if self.messages is None else f"{self.messages} messages"
        when = "" if self.start_ns is None else f" (log time {self.start_ns} .. {self.end_ns} ns)"
        return f"the data at byte {self.offset}: {n}{when} lost: {self.reason}"


@dataclass
class ChunkRef:
    """A chunk (or a message outside any chunk: ``loose``) of the data section."""

    offset: int
    length: int  # of the whole record, opcode and length field included
    start_ns: int
    end_ns: int
    loose: bool = False
    #: per channel: (count, first log time, last log time), from the message indexes after the chunk
    index: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def messages(self) -> int | None:
        return sum(c for c, _, _ in self.index.values()) if self.index else (1 if self.loose else None)

    def gap(self, reason: str) -> Gap:
        times = [t for _, lo, hi in self.index.values() for t in (lo, hi)]
        lo, hi = (min(times), max(times)) if times else (self.start_ns, self.end_ns)
        return Gap(self.offset, lo, hi, self.messages, reason)


def parse(cls: Any, body: bytes, offset: int, *args: int) -> Any:
    """``cls.read`` on a record body; any failure is :class:`Damage` at ``offset``."""
    stream = ReadDataStream(io.BytesIO(body))
    try:
        rec = cls.read(stream, *args)
    except Exception as exc:  # struct.error, UnicodeDecodeError, the library's EndOfFile, ...
        raise Damage(offset, f"{cls.__name__} record unreadable ({type(exc).__name__}: {exc})") from exc
    if stream.count > len(body):  # pragma: no cover - ReadDataStream raises first
        raise Damage(offset, f"{cls.__name__} record runs past its length")
    return rec


def find_all(block: bytes, byte: int) -> Iterator[int]:
    i = block.find(bytes([byte]))
    while i != -1:
        yield i
        i = block.find(bytes([byte]), i + 1)


def inflate(compression: str, data: bytes, size: int, offset: int) -> bytes:
    if size > MAX_CHUNK_BYTES:
        raise Damage(offset, f"chunk claims {size} bytes uncompressed (more than {MAX_CHUNK_BYTES})")
    try:
        if compression == "":
            out = data
        elif compression == "zstd":
            import zstandard

            # a stream reader with a read limit: the frame header's own size claim is not trusted
            out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read(size + 1)
        elif compression == "lz4":
            import lz4.frame

            out = lz4.frame.LZ4FrameDecompressor().decompress(data, max_length=size + 1)
        else:
            raise Damage(offset, f"chunk compression {compression!r} is not supported (zstd, lz4 or none are)")
    except ImportError as exc:
        raise Damage(offset, f"chunk compression {compression!r} needs a module that is not installed "
                             f"({exc.name}); install it with: pip install 'edgefusion[mcap]'") from exc
    except Damage:
        raise
    except Exception as exc:  # zstd.ZstdError, RuntimeError from lz4: a damaged stream
        raise Damage(offset, f"chunk does not decompress ({compression}: {exc})") from exc
    if len(out) != size:
        raise Damage(offset, f"chunk inflates to {len(out)} bytes, its header says {size}")
    return bytes(out)
