"""The service's small HTTP server: one thread, a cap on connections, read and write timeouts.

A thread per connection lets anyone who opens sockets and sends nothing grow the process
by a thread each (500 half-open requests made 510 threads). Here one asyncio loop on one
thread serves every connection; at most ``max_connections`` are open at once, a request
must arrive within ``timeout_s``, and a response that cannot be written within
``timeout_s`` is abandoned. At the cap, a new connection evicts the oldest one still
waiting for its request (a flood of idle sockets cannot lock out a health check), or is
closed at once if every open one is being answered. Requests are tiny GETs answered with
``Connection: close``, so the parser is a few lines.

Example:
    >>> import urllib.request
    >>> srv = HttpServer("127.0.0.1", 0, {"/hi": lambda: (200, b"hello\\n", "text/plain")})
    >>> srv.start()
    >>> urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/hi", timeout=5).read()
    b'hello\\n'
    >>> srv.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from edgefusion.errors import ConfigError

__all__ = ["HttpServer", "Route"]

log = logging.getLogger("edgefusion.http")

#: a route answers (status, body, content type)
Route = Callable[[], tuple[int, bytes, str]]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
MAX_HEADER_BYTES = 8192


class HttpServer:
    """Serves ``routes`` (path -> :data:`Route`) on ``host:port`` from one background thread.

    Args:
        host, port: where to listen (port 0: any free port, see :attr:`port`).
        routes: the paths it answers; anything else is a 404 naming them.
        max_connections: connections open at once; beyond it the oldest idle one is evicted (counted in
            :attr:`evicted`), or the new one refused when none is idle (:attr:`refused`).
        timeout_s: the time a client has to send its request, and the server to write its answer.

    Raises:
        ConfigError: the address cannot be listened on (in use, not local, ...).
    """

    def __init__(self, host: str, port: int, routes: dict[str, Route], max_connections: int = 64,
                 timeout_s: float = 5.0) -> None:
        self.routes, self.max_connections, self.timeout_s = routes, max_connections, timeout_s
        try:
            self._sock = socket.create_server((host, port))
        except OSError as exc:
            raise ConfigError(f"http: cannot listen on {host}:{port}: {exc}") from exc
        self.port: int = self._sock.getsockname()[1]
        self.open_connections = 0
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._idle: dict[asyncio.StreamWriter, None] = {}  # open, request not read yet; oldest first
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._run, name="sinks-http", daemon=True)
        self._started = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def _run(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._handle, sock=self._sock, limit=MAX_HEADER_BYTES))
        self._started.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            tasks = asyncio.all_tasks(loop)
            for t in tasks:
                t.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            if not self._idle:
                self.refused += 1
                writer.transport.abort()
                return
            oldest = next(iter(self._idle))
            del self._idle[oldest]
            oldest.transport.abort()  # its reader sees the connection end and releases its slot
            self.evicted += 1
        self.open_connections += 1
        self._idle[writer] = None
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
            except asyncio.TimeoutError:
                self.timed_out += 1
                return
            except asyncio.LimitOverrunError:
                await self._reply(writer, 431, b"request headers too large\n", "text/plain")
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            finally:
                self._idle.pop(writer, None)
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await self._reply(writer, 400, b"bad request line\n", "text/plain")
            elif parts[0] not in ("GET", "HEAD"):
                await self._reply(writer, 405, b"only GET\n", "text/plain")
            else:
                code, body, ctype = self._route(parts[1].split("?", 1)[0])
                await self._reply(writer, code, b"" if parts[0] == "HEAD" else body, ctype, len(body))
        finally:
            self.open_connections -= 1
            writer.close()

    def _route(self, path: str) -> tuple[int, bytes, str]:
        route = self.routes.get(path)
        if route is None:
            names = " or ".join(sorted(self.routes))
            return 404, f"not found: try {names}\n".encode(), "text/plain"
        try:
            return route()
        except Exception as exc:  # a broken route must not take the server down
            log.exception("http %s failed", path)
            return 500, f"internal error: {type(exc).__name__}: {exc}\n".encode(), "text/plain"

    async def _reply(self, writer: asyncio.StreamWriter, code: int, body: bytes, ctype: str,
                     length: int | None = None) -> None:
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        try:
            await asyncio.wait_for(writer.drain(), self.timeout_s)
        except (asyncio.TimeoutError, ConnectionError):
            self.timed_out += 1

    def close(self) -> None:
        """Stop serving and join the thread (bounded)."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(2)
        else:
            self._sock.close()
