"""Helpers for the service tests: ``edgefusion serve`` as a real subprocess, its HTTP endpoints,
the notify socket a service manager would give it, a blocking test backend, an MJPEG stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def wait_for(cond: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    """Poll ``cond()`` until it is truthy (returned) or ``timeout`` passes (AssertionError naming ``what``)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = cond()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class NotifySocket:
    """The datagram socket a service manager would give us as NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def close(self) -> None:
        self._stop = True
        self._t.join(1)
        self.sock.close()

    def lines(self) -> list[str]:
        return [m for _, m in self.messages]

    def pings(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for t, m in self.messages if m == "WATCHDOG=1" and since <= t <= until]


BLOCKING_BACKEND = '''
import os, time
from edgefusion.backends.null import NullBackend

class BlockingBackend(NullBackend):
    """The null backend, blocked while the file named by EF_BLOCK_FILE exists (a stalled pipeline)."""

    def _infer(self, feeds):
        while os.path.exists(os.environ["EF_BLOCK_FILE"]):
            time.sleep(0.02)
        return super()._infer(feeds)
'''


class Served:
    """``edgefusion serve --config`` in a subprocess, with a notify socket and its log in a file.

    ``backends`` registers extra backends (name -> source of a module defining ``BlockingBackend``
    etc.) before the CLI runs, so a test can make the pipeline misbehave on purpose.
    """

    def __init__(self, tmp: Path, config: str, backends: dict[str, str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.cfg = tmp / "service.toml"
        self.cfg.write_text(config)
        self.notify = NotifySocket(tmp / f"notify-{time.monotonic_ns()}.sock")
        self.log_path = tmp / "service.log"
        args = [sys.executable, "-m", "edgefusion", "serve", "--config", str(self.cfg)]
        if backends:
            reg = "; ".join(f"b.BACKENDS[{name!r}] = 'ef_test_backend:{cls}'" for name, cls in backends.items())
            (tmp / "ef_test_backend.py").write_text(BLOCKING_BACKEND)
            args = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp)!r}); "
                                          f"import edgefusion.backends as b; {reg}; from edgefusion.cli import main; "
                                          f"sys.exit(main(['serve', '--config', {str(self.cfg)!r}]))"]
        full_env = dict(os.environ, NOTIFY_SOCKET=str(self.notify.path), PYTHONPATH=str(REPO), **(env or {}))
        self.started = time.monotonic()
        with open(self.log_path, "w") as err:
            self.proc = subprocess.Popen(args, env=full_env, stdout=subprocess.DEVNULL, stderr=err)
        self.port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text()

    def http(self, path: str) -> tuple[int, str]:
        assert self.port is not None
        return get(self.port, path)

    def readyz(self) -> dict[str, Any]:
        code, body = self.http("/readyz")
        return {"code": code, **json.loads(body)}

    def wait_ready(self, port: int, timeout: float = 60.0) -> dict[str, Any]:
        self.port = port

        def ready() -> dict[str, Any] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode}: {self.log()[-3000:]}")
            r = self.readyz()
            return r if r["code"] == 200 else None

        return wait_for(ready, timeout, "the service to become ready")  # type: ignore[no-any-return]

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, float]:
        """Send ``sig``; the exit status and the seconds it took."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        return rc, time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.notify.close()


class MjpegServer:
    """An HTTP MJPEG stream (multipart/x-mixed-replace) at 30 fps that can be cut and restored.

    While cut, streaming connections are closed and new requests get 503 (as a camera or
    proxy that went away would answer).
    """

    def __init__(self, fps: float = 30.0) -> None:
        import cv2
        import numpy as np

        frames = []
        for i in range(30):
            _ok, jpg = cv2.imencode(".jpg", np.full((120, 160, 3), (i * 8) % 255, np.uint8))
            frames.append(jpg.tobytes())
        outer = self
        self.cut = threading.Event()
        self.served = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.cut.is_set():
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not outer.cut.is_set():
                        b = frames[i % len(frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(b) + b + b"\r\n")
                        outer.served += 1
                        i += 1
                        time.sleep(1 / fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self._t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._t.start()

    def close(self) -> None:
        self.cut.set()
        self.server.shutdown()
        self.server.server_close()
