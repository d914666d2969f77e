"""systemd's notification protocol (sd_notify): READY, WATCHDOG, STOPPING, STATUS.

Written here because it is one datagram on a UNIX socket named by ``NOTIFY_SOCKET``; the
PyPI packages for it are unmaintained (last release 2017) and systemd's own Python
bindings need libsystemd at build time.

Example:
    >>> Notifier(socket_path="").send("READY=1")   # no NOTIFY_SOCKET: a no-op
    False
"""

from __future__ import annotations

import os
import socket

__all__ = ["Notifier", "watchdog_interval_s"]


class Notifier:
    """Sends state lines to the service manager, if there is one."""

    def __init__(self, socket_path: str | None = None) -> None:
        path = os.environ.get("NOTIFY_SOCKET", "") if socket_path is None else socket_path
        if path.startswith("@"):  # abstract namespace
            path = "\0" + path[1:]
        self.path = path
        self.sent: list[str] = []

    def send(self, *lines: str) -> bool:
        if not self.path:
            return False
        msg = "\n".join(lines).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(msg, self.path)
            except OSError:
                return False
        self.sent.extend(lines)
        return True


def watchdog_interval_s(configured_s: float = 0.0) -> float:
    """How often to send WATCHDOG=1: half of systemd's WATCHDOG_USEC, or the configured interval; 0 = never."""
    if configured_s > 0:
        return configured_s
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if usec.isdigit() and (not pid or pid == str(os.getpid())):
        return int(usec) / 1e6 / 2
    return 0.0
