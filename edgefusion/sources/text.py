"""Text commands: stdin, a loopback TCP port, a UNIX socket, or a Python call.

One UTF-8 command per line. Control characters are stripped; empty, overlong or
undecodable lines are rejected. Each rejection is counted (:attr:`Source.rejected`) and
logged.
"""

from __future__ import annotations

import logging
import os
import queue
import selectors
import socket
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from edgefusion.clock import Clock
from edgefusion.errors import ConfigError, InputError, SourceError
from edgefusion.samples import MAX_COMMAND_CHARS, Command
from edgefusion.sources.base import Source

__all__ = ["CallTextSource", "SocketTextSource", "StdinTextSource", "open_text_source", "sanitize"]

log = logging.getLogger("edgefusion.text")
MAX_LINE_BYTES = 4 * MAX_COMMAND_CHARS


def sanitize(raw: bytes | str) -> tuple[str | None, str | None]:
    """(clean text, None) or (None, rejection reason)."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not_utf8"
    # whitespace controls (tab, CR) separate words; every other control character is dropped
    text = "".join(" " if c.isspace() else c for c in raw if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    text = " ".join(text.split())
    if not text:
        return None, "empty"
    if len(text) > MAX_COMMAND_CHARS:
        return None, "too_long"
    return text, None


class _TextSource(Source):
    name = "text"

    def _accept(self, raw: bytes | str) -> Command | None:
        text, reason = sanitize(raw)
        if reason:
            self.rejected[reason] += 1
            log.warning("text command rejected (%s): %r", reason, raw[:80])
            return None
        return Command(t_ns=self.clock.now_ns(), text=text or "", source=self.name)


class CallTextSource(_TextSource):
    """Commands sent from Python: ``source.send("turn on the lights")``."""

    def __init__(self, clock: Clock | None = None, name: str = "text") -> None:
        super().__init__(clock)
        self.name = name
        self._q: queue.Queue[str | None] = queue.Queue()

    def send(self, text: str) -> None:
        self._q.put(text)

    def end(self) -> None:
        """No more commands: the iterator finishes."""
        self._q.put(None)

    def __iter__(self) -> Iterator[Command]:
        while not self.stop.is_set():
            try:
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            cmd = self._accept(item)
            if cmd is not None:
                yield cmd


class StdinTextSource(_TextSource):
    """Lines from standard input (or another readable stream with a file descriptor)."""

    def __init__(self, clock: Clock | None = None, stream: IO[bytes] | None = None, name: str = "text") -> None:
        super().__init__(clock)
        self.name = name
        self.stream = stream if stream is not None else sys.stdin.buffer

    def __iter__(self) -> Iterator[Command]:
        fd = self.stream.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        buf = b""
        try:
            while not self.stop.is_set():
                if not sel.select(timeout=0.1):
                    continue
                data = os.read(fd, 4096)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    cmd = self._accept(line)
                    if cmd is not None:
                        yield cmd
        finally:
            sel.close()


class SocketTextSource(_TextSource):
    """A listening TCP (``tcp://127.0.0.1:PORT``) or UNIX (``unix:///path``) socket; many clients."""

    def __init__(self, address: str, clock: Clock | None = None, name: str = "text") -> None:
        super().__init__(clock)
        self.name = name
        self.address = address
        self._server: socket.socket | None = None
        self.port: int | None = None

    def open(self) -> None:
        addr = self.address
        try:
            if addr.startswith("tcp://"):
                host, _, port = addr[len("tcp://") :].rpartition(":")
                if not host or not port.isdigit():
                    raise ConfigError(f"text: expected tcp://HOST:PORT, got {addr!r}")
                srv = socket.create_server((host, int(port)))
                self.port = srv.getsockname()[1]
            elif addr.startswith("unix://"):
                path = Path(addr[len("unix://") :])
                if path.exists():
                    path.unlink()
                srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                srv.bind(str(path))
                srv.listen()
            else:
                raise ConfigError(f"text: unknown address {addr!r}; expected tcp://HOST:PORT or unix:///PATH")
        except OSError as exc:
            raise SourceError(f"text: cannot listen on {addr}: {exc}") from exc
        srv.setblocking(False)
        self._server = srv
        self.info = {"address": addr, "port": self.port}

    def __iter__(self) -> Iterator[Command]:
        srv = self._server
        if srv is None:
            raise InputError("text: iterate inside 'with source:' (it is not open)")
        sel = selectors.DefaultSelector()
        sel.register(srv, selectors.EVENT_READ, None)
        buffers: dict[socket.socket, bytes] = {}
        discarding: set[socket.socket] = set()  # inside an overlong line: drop bytes up to its newline
        try:
            while not self.stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    if key.fileobj is srv:
                        conn, _addr = srv.accept()
                        conn.setblocking(False)
                        sel.register(conn, selectors.EVENT_READ, None)
                        buffers[conn] = b""
                        continue
                    conn = key.fileobj  # type: ignore[assignment]
                    try:
                        data = conn.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(conn)
                        conn.close()
                        buffers.pop(conn, None)
                        discarding.discard(conn)
                        continue
                    if conn in discarding:
                        if b"\n" not in data:
                            continue
                        data = data.split(b"\n", 1)[1]
                        discarding.discard(conn)
                    buf = buffers[conn] + data
                    *lines, buf = buf.split(b"\n")
                    if len(buf) > MAX_LINE_BYTES:  # a line with no end in sight: count it once, drop the rest
                        self.rejected["too_long"] += 1
                        log.warning("text command rejected (too_long): a line over %d bytes", MAX_LINE_BYTES)
                        discarding.add(conn)
                        buf = b""
                    buffers[conn] = buf
                    for line in lines:
                        cmd = self._accept(line.rstrip(b"\r"))
                        if cmd is not None:
                            yield cmd
        finally:
            for conn in list(buffers):
                conn.close()
            sel.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            if self.address.startswith("unix://"):
                Path(self.address[len("unix://") :]).unlink(missing_ok=True)


def open_text_source(spec: str, clock: Clock | None = None) -> _TextSource:
    """``stdin``, ``tcp://127.0.0.1:PORT`` or ``unix:///PATH``."""
    if spec in ("stdin", "-"):
        return StdinTextSource(clock)
    return SocketTextSource(spec, clock)
