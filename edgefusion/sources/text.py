"""Text commands: stdin, a loopback TCP port, a UNIX socket, or a Python call.

One UTF-8 command per line. Terminal control sequences (ANSI colours, cursor moves, window
titles) are removed whole and other control characters dropped; empty, overlong or
undecodable lines are rejected. Each rejection is counted (:attr:`Source.rejected`) and
logged. Lines are split in linear time and none is kept beyond :data:`MAX_LINE_BYTES`,
however much arrives without a newline.

Standard input may be a pipe, a terminal, a regular file (``< commands.txt``) or
``/dev/null`` (a service, cron): files are read to their end, the rest polled so a stop is
honoured. A TCP port listens on loopback only unless the address says
``?allow_remote=1`` (there is no authentication: anyone who reaches the port can send
commands), and takes at most :data:`MAX_CLIENTS` connections at a time; more are refused
and counted as ``too_many_connections``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import queue
import re
import selectors
import socket
import stat
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs

from edgefusion.clock import Clock
from edgefusion.errors import ConfigError, InputError, SourceError
from edgefusion.samples import MAX_COMMAND_CHARS, Command
from edgefusion.sources.base import Source

__all__ = ["MAX_CLIENTS", "MAX_LINE_BYTES", "CallTextSource", "LineSplitter", "SocketTextSource", "StdinTextSource",
           "open_text_source", "sanitize"]

log = logging.getLogger("edgefusion.text")
MAX_LINE_BYTES = 4 * MAX_COMMAND_CHARS
#: connections a TCP or UNIX text source serves at once (each costs a descriptor and a buffer)
MAX_CLIENTS = 16

# ECMA-48 control sequences, removed whole so no residue such as "[31m" is left:
# CSI (ESC [ or 0x9b, parameters, intermediates, a final byte), the string commands OSC,
# DCS, SOS, PM and APC (up to BEL or ST, or the end of the line), and the other escapes.
_CONTROL_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x21-\x2f]*[\x30-\x7e]?"  # (not a space after ESC: "ESC in" is a stray ESC before a word)
)


def sanitize(raw: bytes | str) -> tuple[str | None, str | None]:
    r"""(clean text, None) or (None, rejection reason).

    Example:
        >>> sanitize(b"\x1b[1;31mturn on\x1b[0m the \x1b]0;pwned\x07lights")
        ('turn on the lights', None)
        >>> sanitize(b"\xff"), sanitize(b" \t ")
        ((None, 'not_utf8'), (None, 'empty'))
    """
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not_utf8"
    raw = _CONTROL_SEQUENCE.sub("", raw)
    # whitespace controls (tab, CR) separate words; every other control character is dropped
    text = "".join(" " if c.isspace() else c for c in raw if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))
    text = " ".join(text.split())
    if not text:
        return None, "empty"
    if len(text) > MAX_COMMAND_CHARS:
        return None, "too_long"
    return text, None


class LineSplitter:
    r"""Bytes in, complete lines out, in linear time; a line over ``cap`` bytes is dropped.

    An overlong line is counted once (:attr:`too_long`) however it arrives, and nothing of it
    is kept: the bytes up to its newline are discarded as they come.

    Example:
        >>> lines = LineSplitter(cap=8)
        >>> lines.feed(b"lights on\nok\r\nha"), lines.feed(b"lf"), lines.end(), lines.too_long
        ([b'ok'], [], b'half', 1)
    """

    def __init__(self, cap: int = MAX_LINE_BYTES) -> None:
        self.cap = cap
        self.too_long = 0
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        out = []
        start = 0
        while (i := data.find(b"\n", start)) != -1:
            if not self._discarding:
                self._buf += data[start:i]
                if len(self._buf) > self.cap:
                    self.too_long += 1
                else:
                    out.append(bytes(self._buf).rstrip(b"\r"))
            self._discarding = False
            self._buf.clear()
            start = i + 1
        if not self._discarding:
            self._buf += data[start:]
            if len(self._buf) > self.cap:  # no end in sight: count it now, drop the rest as it comes
                self.too_long += 1
                self._discarding = True
                self._buf.clear()
        return out

    def end(self) -> bytes | None:
        """The last line when the stream ends without a newline (None if there is none)."""
        rest, self._buf = bytes(self._buf).rstrip(b"\r"), bytearray()
        return rest if rest and not self._discarding else None


class _TextSource(Source):
    name = "text"
    reports_watermark = True

    def _polling(self) -> None:
        """About to look for input: whatever comes from now on is stamped at or after now."""
        self.watermark_ns = self.clock.now_ns()

    def _count_too_long(self, n: int) -> None:
        self.rejected["too_long"] += n
        log.warning("text command rejected (too_long): a line over %d bytes", MAX_LINE_BYTES)

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
            self._polling()
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
    """Lines from standard input, or another readable binary stream: a pipe, a terminal, a file, /dev/null."""

    def __init__(self, clock: Clock | None = None, stream: IO[bytes] | None = None, name: str = "text") -> None:
        super().__init__(clock)
        self.name = name
        self.stream = stream if stream is not None else sys.stdin.buffer

    def _chunks(self) -> Iterator[bytes]:
        """What the stream holds, as it arrives; polled where polling works, so a stop is honoured."""
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):  # no descriptor (an in-memory stream): it never blocks
            self._polling()
            while data := self.stream.read(65536):
                yield data
                self._polling()
            return
        sel: selectors.BaseSelector | None = None
        # Regular files always read at once, and epoll refuses them (and /dev/null) with EPERM.
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            sel = selectors.DefaultSelector()
            try:
                sel.register(fd, selectors.EVENT_READ)
            except (OSError, ValueError):
                sel.close()
                sel = None
        try:
            while not self.stop.is_set():
                self._polling()
                if sel is not None and not sel.select(timeout=0.1):
                    continue
                data = os.read(fd, 65536)
                if not data:
                    return
                yield data
        finally:
            if sel is not None:
                sel.close()

    def __iter__(self) -> Iterator[Command]:
        lines = LineSplitter()
        for data in self._chunks():
            yield from self._lines(lines, lines.feed(data))
        last = lines.end()
        yield from self._lines(lines, [last] if last is not None else [])

    def _lines(self, splitter: LineSplitter, lines: list[bytes]) -> Iterator[Command]:
        if splitter.too_long:
            self._count_too_long(splitter.too_long)
            splitter.too_long = 0
        for line in lines:
            cmd = self._accept(line)
            if cmd is not None:
                yield cmd


def _tcp_address(addr: str) -> tuple[str, int, bool]:
    """(host, port, allow_remote) of ``tcp://HOST:PORT[?allow_remote=1]``; ConfigError when it is not one."""
    rest, _, query = addr[len("tcp://") :].partition("?")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"text: expected tcp://HOST:PORT with a port from 0 to 65535, got {addr!r}")
    opts = parse_qs(query)
    unknown = set(opts) - {"allow_remote"}
    if unknown:
        raise ConfigError(f"text: unknown option(s) {sorted(unknown)} in {addr!r}; the one option is allow_remote=1")
    return host, int(port), opts.get("allow_remote", ["0"])[-1] in ("1", "true", "yes")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any interface


class SocketTextSource(_TextSource):
    """A listening TCP (``tcp://127.0.0.1:PORT``) or UNIX (``unix:///path``) socket; several clients.

    Args:
        address: ``tcp://HOST:PORT`` (loopback unless ``?allow_remote=1`` is added or
            ``allow_remote`` is set) or ``unix:///PATH``.
        max_clients: connections served at once; more are closed at once and counted.
    """

    #: bound is working: a retrying wrapper stops reporting a failure once it is open (commands come when they come)
    ready_when_open = True

    def __init__(self, address: str, clock: Clock | None = None, name: str = "text", allow_remote: bool = False,
                 max_clients: int = MAX_CLIENTS) -> None:
        super().__init__(clock)
        self.name = name
        self.address = address
        self.allow_remote = allow_remote
        self.max_clients = max_clients
        self._server: socket.socket | None = None
        self.port: int | None = None

    def open(self) -> None:
        addr = self.address
        try:
            if addr.startswith("tcp://"):
                host, port, remote = _tcp_address(addr)
                if not (remote or self.allow_remote or _loopback(host)):
                    raise ConfigError(
                        f"text: {addr} would take commands from the network, without authentication; listen on "
                        f"loopback (tcp://127.0.0.1:{port}) or, to mean it, add ?allow_remote=1 to the address")
                srv = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
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
        except (OSError, OverflowError, UnicodeError) as exc:  # socket.gaierror is an OSError
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
        clients: dict[socket.socket, LineSplitter] = {}
        try:
            while not self.stop.is_set():
                self._polling()
                for key, _ in sel.select(timeout=0.1):
                    if key.fileobj is srv:
                        self._accept_client(srv, sel, clients)
                        continue
                    conn = key.fileobj
                    assert isinstance(conn, socket.socket)
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        data = b""
                    lines = clients[conn]
                    if not data:
                        sel.unregister(conn)
                        conn.close()
                        del clients[conn]
                        last = lines.end()
                        data_lines = [last] if last is not None else []
                    else:
                        data_lines = lines.feed(data)
                    if lines.too_long:
                        self._count_too_long(lines.too_long)
                        lines.too_long = 0
                    for line in data_lines:
                        cmd = self._accept(line)
                        if cmd is not None:
                            yield cmd
        finally:
            for conn in clients:
                conn.close()
            sel.close()

    def _accept_client(self, srv: socket.socket, sel: selectors.BaseSelector,
                       clients: dict[socket.socket, LineSplitter]) -> None:
        try:
            conn, _addr = srv.accept()
        except OSError as exc:  # EMFILE and the like: this connection is lost, the source goes on
            self.rejected["accept_failed"] += 1
            log.warning("text: cannot accept a connection on %s: %s", self.address, exc)
            return
        if len(clients) >= self.max_clients:
            conn.close()
            self.rejected["too_many_connections"] += 1
            if self.rejected["too_many_connections"] <= 3:
                log.warning("text: %s already serves %d connections; refused one more (counted as "
                            "too_many_connections)", self.address, self.max_clients)
            return
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ, None)
        clients[conn] = LineSplitter()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            if self.address.startswith("unix://"):
                Path(self.address[len("unix://") :]).unlink(missing_ok=True)


def open_text_source(spec: str, clock: Clock | None = None) -> _TextSource:
    """``stdin``, ``tcp://127.0.0.1:PORT[?allow_remote=1]`` or ``unix:///PATH``."""
    if spec in ("stdin", "-"):
        return StdinTextSource(clock)
    return SocketTextSource(spec, clock)
