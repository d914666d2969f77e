"""Soak: ``edgefusion serve`` at real time for a long while, with a SIGHUP reload every few minutes.

Starts the service as a real subprocess on a looped synthesized camera (30 fps, the real
model on one thread, niced so it shares the machine politely), reloads its model every
``--reload-every`` seconds and samples, every ``--sample-every`` seconds: resident memory
(VmRSS), threads, open file descriptors, CPU time and the results delivered
(``/metrics``). It listens as systemd would on a ``NOTIFY_SOCKET`` for the watchdog pings.
At the end it sends SIGTERM and times the stop.

Memory is judged cycle by cycle: the peak RSS of the first reload cycle (from the end of
the first reload to the second) against the peak of the last cycle. Growth above
``--max-growth-pct`` (2 %), a failed reload, a sample interval without new results, a
watchdog gap above twice its period, or a non-zero exit fail the soak (``"ok": false``,
exit status 1). Writes JSON (default ``bench/results/soak.json``).

    python bench/soak.py                                    # 1 h, a reload every 5 min
    python bench/soak.py --duration 120 --reload-every 20   # the CI's 2-minute version
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode()


def _proc(pid: int) -> dict[str, float]:
    """RSS (MiB), threads, open fds and CPU seconds of ``pid`` from /proc."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {"rss_mb": round(int(status["VmRSS"].split()[0]) / 1024, 2), "threads": int(status["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "cpu_s": (int(stat[11]) + int(stat[12])) / TICKS}


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + labels + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class _Notify:
    """Collects the watchdog pings a service manager would receive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings: list[float] = []
        self.lines: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.splitlines():
                self.lines.append(line)
                if line == "WATCHDOG=1":
                    self.pings.append(time.monotonic())

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()


def _config(port: int, package: str, watchdog_s: float) -> str:
    return f"""
watchdog_s = {watchdog_s}
[model]
package = "{package}"
threads = 1
[sources.camera]
uri = "synth:{package}"
loop = true
[http]
port = {port}
[logging]
json = true
"""


def soak(duration_s: float, reload_every_s: float, sample_every_s: float, package: str, nice: int,
         max_growth_pct: float, watchdog_s: float = 1.0) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="edgefusion-soak-"))
    port = _free_port()
    cfg = tmp / "service.toml"
    cfg.write_text(_config(port, package, watchdog_s))
    notify = _Notify(tmp / "notify.sock")
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO)))
    log_path = tmp / "service.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "edgefusion", "serve", "--config", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=log_file, preexec_fn=lambda: os.nice(nice))
    samples: list[dict[str, Any]] = []
    reloads: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        while _get_status(port) != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become ready: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        t0 = time.monotonic()
        next_sample, next_reload = t0, t0 + reload_every_s
        while time.monotonic() - t0 < duration_s and proc.poll() is None:
            now = time.monotonic()
            if now >= next_reload:
                reloads.append(_reload(proc, port, t0))
                next_reload += reload_every_s
            if time.monotonic() >= next_sample:
                text = _get(port, "/metrics")[1]
                samples.append({"t_s": round(time.monotonic() - t0, 1), **_proc(proc.pid),
                                "results": int(_metric(text, "edgefusion_results_total"))})
                next_sample += sample_every_s
            time.sleep(0.2)
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
        stop_s = time.monotonic() - t_stop
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    return _summary(samples, reloads, notify.pings, rc, stop_s, duration_s, reload_every_s, max_growth_pct,
                    watchdog_s, log_path)


def _get_status(port: int) -> int | None:
    try:
        return _get(port, "/readyz", timeout=2)[0]
    except OSError:
        return None


def _reloads(port: int) -> tuple[float, float]:
    text = _get(port, "/metrics")[1]
    return (_metric(text, "edgefusion_reloads_total", '{outcome="ok"}'),
            _metric(text, "edgefusion_reloads_total", '{outcome="failed"}'))


def _reload(proc: subprocess.Popen[bytes], port: int, t0: float) -> dict[str, Any]:
    """SIGHUP, then wait for a reload counter to move; its outcome and how long it took."""
    ok0, failed0 = _reloads(port)
    sent = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    while time.monotonic() - sent < 120:
        ok, failed = _reloads(port)
        if ok > ok0 or failed > failed0:
            return {"t_s": round(sent - t0, 1), "ok": failed == failed0, "seconds": round(time.monotonic() - sent, 2)}
        time.sleep(0.1)
    return {"t_s": round(sent - t0, 1), "ok": False, "seconds": None}


def _summary(samples: list[dict[str, Any]], reloads: list[dict[str, Any]], pings: list[float], rc: int,
             stop_s: float, duration_s: float, reload_every_s: float, max_growth_pct: float, watchdog_s: float,
             log_path: Path) -> dict[str, Any]:
    done = [r["t_s"] + (r["seconds"] or 0) for r in reloads]
    first = [s["rss_mb"] for s in samples if len(done) >= 2 and done[0] <= s["t_s"] < reloads[1]["t_s"]]
    last = [s["rss_mb"] for s in samples if reloads and s["t_s"] >= done[-1]]
    growth = None if not first or not last else round((max(last) - max(first)) / max(first) * 100, 2)
    stalls = [b["t_s"] for a, b in itertools.pairwise(samples) if b["results"] <= a["results"]]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    cpu = (samples[-1]["cpu_s"] - samples[0]["cpu_s"]) / max(1e-9, samples[-1]["t_s"] - samples[0]["t_s"]) \
        if len(samples) > 1 else 0.0
    results = samples[-1]["results"] - samples[0]["results"] if samples else 0
    problems = []
    if growth is None:
        problems.append("too short: needs at least two reloads and samples after them")
    elif growth > max_growth_pct:
        problems.append(f"RSS grew {growth} % from the first reload cycle to the last (limit {max_growth_pct} %)")
    problems += [f"reload {i} failed" for i, r in enumerate(reloads) if not r["ok"]]
    problems += [f"no new results in the sample interval ending at {t} s" for t in stalls]
    if gaps and max(gaps) > 2 * watchdog_s:
        problems.append(f"a watchdog gap of {max(gaps):.2f} s (period {watchdog_s} s)")
    if rc != 0:
        problems.append(f"exit status {rc}")
    return {
        "ok": not problems, "problems": problems, "duration_s": duration_s, "reload_every_s": reload_every_s,
        "reloads": {"count": len(reloads), "ok": sum(r["ok"] for r in reloads),
                    "seconds_max": max((r["seconds"] or 0 for r in reloads), default=0)},
        "rss_mb": {"at_ready": samples[0]["rss_mb"] if samples else None,
                   "first_cycle_peak": max(first) if first else None, "last_cycle_peak": max(last) if last else None,
                   "max": max(s["rss_mb"] for s in samples) if samples else None,
                   "growth_after_first_reload_pct": growth, "limit_pct": max_growth_pct},
        "threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"]} if samples else {},
        "fds": {"start": samples[0]["fds"], "end": samples[-1]["fds"]} if samples else {},
        "results": results, "results_per_s": round(results / max(1e-9, samples[-1]["t_s"]), 1) if samples else 0,
        "cpu_percent": round(100 * cpu, 1),
        "watchdog": {"period_s": watchdog_s, "pings": len(pings), "max_gap_s": round(max(gaps), 3) if gaps else None},
        "stop": {"exit_status": rc, "seconds": round(stop_s, 2)},
        "samples": samples, "reload_log": reloads, "service_log": str(log_path),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--duration", type=float, default=3600.0, help="seconds to run (default 3600)")
    ap.add_argument("--reload-every", type=float, default=300.0, help="seconds between SIGHUPs (default 300)")
    ap.add_argument("--sample-every", type=float, default=None, help="seconds between samples (default: 10, or "
                                                                    "2 for runs under 10 minutes)")
    ap.add_argument("--package", default="smart_home", help="the built-in package served (default smart_home)")
    ap.add_argument("--nice", type=int, default=10, help="niceness of the service (default 10)")
    ap.add_argument("--max-growth-pct", type=float, default=2.0, help="RSS growth allowed (default 2)")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "soak.json"), help="where the JSON goes")
    a = ap.parse_args()
    every = a.sample_every or (2.0 if a.duration < 600 else 10.0)
    report = soak(a.duration, a.reload_every, every, a.package, a.nice, a.max_growth_pct)
    from edgefusion.benchmark.report import machine_facts

    report = {"bench": "soak", "machine": machine_facts(), **report}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    rss = report["rss_mb"]
    print(f"soak {'ok' if report['ok'] else 'FAILED'}: {a.duration:.0f} s, {report['reloads']['ok']}/"
          f"{report['reloads']['count']} reloads ok, RSS {rss['first_cycle_peak']} -> {rss['last_cycle_peak']} MiB "
          f"({rss['growth_after_first_reload_pct']} %), {report['results_per_s']} results/s, "
          f"cpu {report['cpu_percent']} %, stop {report['stop']['seconds']} s (status {report['stop']['exit_status']})"
          f"; wrote {out}")
    for p in report["problems"]:
        print(f"  problem: {p}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
