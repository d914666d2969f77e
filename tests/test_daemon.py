"""A daemon left unattended: real ``edgefusion serve`` subprocesses, real signals, real streams.

Reloads that fail keep the old model, a stalled pipeline stops the watchdog, a dropped
camera stream reconnects, a source that ends exits non-zero, SIGTERM is quick in every
phase, idle HTTP connections cost no threads, and the metrics pass ``promtool``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from serve_kit import MjpegServer, Served, free_port, get, wait_for

from edgefusion.package import BUILTIN_DIR

pytest.importorskip("prometheus_client")


def _config(port: int, results: Path, package: str = "smart_home", camera: str = "synth:smart_home",
            model: str = "", extra: str = "") -> str:
    return f"""
watchdog_s = 0.2
{extra}
[model]
package = "{package}"
threads = 1
{model}
[sources]
retry_initial_s = 0.2
retry_max_s = 1.0
[sources.camera]
uri = "{camera}"
loop = true
max_age_ms = 500
[sinks]
jsonl = "{results}"
[http]
port = {port}
[logging]
json = true
"""


def _count(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _metric(text: str, line_start: str) -> float:
    return float(next(x for x in text.splitlines() if x.startswith(line_start + " ")).rsplit(" ", 1)[1])


def _max_gap(times: list[float]) -> float:
    return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))


@pytest.mark.slow
def test_a_bad_package_reload_keeps_serving_and_the_next_good_one_swaps(tmp_path):
    port, results = free_port(), tmp_path / "results.jsonl"
    pkg = tmp_path / "v2"
    shutil.copytree(BUILTIN_DIR / "smart_home", pkg)
    manifest = json.loads((pkg / "manifest.json").read_text())
    manifest["name"] = "smart_home-v2"
    good_sha = manifest["artifacts"]["fp32"].pop("sha256")  # the case: one sha256 missing
    (pkg / "manifest.json").write_text(json.dumps(manifest))
    svc = Served(tmp_path, _config(port, results))
    try:
        svc.wait_ready(port)
        svc.cfg.write_text(_config(port, results, package=str(pkg)))
        t_hup = time.monotonic()
        svc.send(signal.SIGHUP)
        rz = wait_for(lambda: (r := svc.readyz())["last_reload"].get("ok") is False and r, 30, "the failed reload")
        assert rz["code"] == 200 and rz["ready"] and rz["model"] == "smart_home-attention"
        assert "sha256" in rz["last_reload"]["error"] and "model.package" in rz["last_reload"]["error"]
        n = _count(results)
        wait_for(lambda: _count(results) > n + 10, 5, "results after the failed reload")  # the old model serves
        time.sleep(0.6)
        pings = svc.notify.pings(since=t_hup)
        assert len(pings) >= 3 and _max_gap(pings) < 1.0  # the watchdog was fed all along

        manifest["artifacts"]["fp32"]["sha256"] = good_sha
        (pkg / "manifest.json").write_text(json.dumps(manifest))
        svc.send(signal.SIGHUP)  # the reload thread survived the failure: the next SIGHUP swaps
        rz = wait_for(lambda: (r := svc.readyz())["last_reload"].get("ok") is True and r, 30, "the good reload")
        assert rz["model"] == "smart_home-v2" and rz["ready"]
        metrics = svc.http("/metrics")[1]
        assert _metric(metrics, 'edgefusion_reloads_total{outcome="failed"}') == 1.0
        assert _metric(metrics, 'edgefusion_reloads_total{outcome="ok"}') == 1.0
        rc, took = svc.stop()
    finally:
        svc.close()
    assert rc == 0 and took < 5.0, svc.log()
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    assert {r["model"] for r in rows} == {"smart_home-attention", "smart_home-v2"}
    lines = svc.notify.lines()
    reloading = [i for i, m in enumerate(lines) if m == "RELOADING=1"]
    assert len(reloading) == 2 and all(lines[i + 1].startswith("MONOTONIC_USEC=") for i in reloading)
    assert all("READY=1" in lines[i:] for i in reloading)  # READY=1 again after the failure and the success
    assert "reload failed, the running model stays" in svc.log()


@pytest.mark.slow
def test_a_stalled_pipeline_stops_the_watchdog_and_fails_healthz(tmp_path):
    port, results, block = free_port(), tmp_path / "results.jsonl", tmp_path / "block"
    cfg = _config(port, results, model='backend = "blocking"', extra="stall_s = 1.0")
    svc = Served(tmp_path, cfg, backends={"blocking": "BlockingBackend"}, env={"EF_BLOCK_FILE": str(block)})
    try:
        svc.wait_ready(port)
        wait_for(lambda: len(svc.notify.pings()) >= 5, 5, "watchdog pings")
        assert svc.http("/healthz") == (200, "ok\n")
        block.touch()  # the backend blocks: input keeps coming, nothing comes out
        t_block = time.monotonic()
        wait_for(lambda: svc.http("/healthz")[0] == 503, 5, "/healthz to fail")
        t_fail = time.monotonic()
        time.sleep(1.0)
        code, text = svc.http("/healthz")
        rz = svc.readyz()
        metrics = svc.http("/metrics")[1]
        late = svc.notify.pings(since=t_block + 1.0 + 0.5)
        last = svc.notify.pings(until=time.monotonic())[-1]
        block.unlink()  # unstuck: progress again, pings again
        wait_for(lambda: svc.http("/healthz")[0] == 200, 5, "/healthz to recover")
        t_ok = time.monotonic()
        wait_for(lambda: svc.notify.pings(since=t_ok), 2, "pings to resume")
        rc, took = svc.stop()
    finally:
        svc.close()
    assert t_fail - t_block < 2.0  # the 1 s budget, plus the polling
    assert code == 503 and text.startswith("stalled:"), text
    assert late == [] and last - t_block < 1.5  # pings stopped within the budget (1 s) and one 0.2 s period
    assert not rz["ready"] and "pipeline_stalled" in rz["reasons"] and rz["pipeline"]["stalled"]
    assert _metric(metrics, "edgefusion_pipeline_stalled") == 1.0
    assert rc == 0 and took < 5.0, svc.log()
    assert "pipeline stalled" in svc.log() and "progressing again" in svc.log()


@pytest.mark.slow
def test_a_cut_http_stream_reconnects_and_results_resume(tmp_path):
    port, results = free_port(), tmp_path / "results.jsonl"
    stream = MjpegServer()
    svc = Served(tmp_path, _config(port, results, camera=stream.url))
    try:
        svc.wait_ready(port)
        n = _count(results)
        wait_for(lambda: _count(results) > n + 15, 5, "results from the stream")
        stream.cut.set()
        t_cut = time.monotonic()
        rz = wait_for(lambda: (r := svc.readyz())["code"] == 503 and "camera_reconnecting" in r["reasons"] and r,
                      5, "readiness to report the reconnecting camera")
        camera = rz["streams"]["camera"]
        assert camera["state"] == "reconnecting" and "SourceError" in camera["failing"]
        healthz_during_cut = svc.http("/healthz")
        time.sleep(max(0.0, t_cut + 5.0 - time.monotonic()))
        alive_during_cut = svc.proc.poll() is None
        idle_pings = svc.notify.pings(since=t_cut + 1.0, until=t_cut + 5.0)
        n_cut = _count(results)
        stream.cut.clear()  # restored after 5 s
        wait_for(lambda: svc.readyz()["code"] == 200, 15, "readiness after the stream came back")
        wait_for(lambda: _count(results) > n_cut + 15, 5, "results to resume")
        metrics = svc.http("/metrics")[1]
        rc, _ = svc.stop()
    finally:
        svc.close()
        stream.close()
    assert alive_during_cut and healthz_during_cut == (200, "ok\n")  # waiting for a camera is no stall
    assert len(idle_pings) >= 10 and _max_gap(idle_pings) < 1.0
    assert _metric(metrics, 'edgefusion_source_restarts_total{stream="camera"}') >= 1
    assert rc == 0, svc.log()
    assert "camera: lost the url" in svc.log() and "source camera recovered" in svc.log()


@pytest.mark.slow
def test_a_camera_file_that_ends_ends_the_service_with_status_1(tmp_path):
    import cv2
    import numpy as np

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    for i in range(20):
        writer.write(np.full((120, 160, 3), i * 10, np.uint8))
    writer.release()
    port, results = free_port(), tmp_path / "results.jsonl"
    cfg = _config(port, results, camera=str(clip)).replace("loop = true", "loop = false")
    svc = Served(tmp_path, cfg)
    try:
        rc = svc.proc.wait(timeout=60)
    finally:
        svc.close()
    assert rc == 1, svc.log()
    assert "ended for good" in svc.log() and _count(results) > 0


@pytest.mark.slow
def test_sigterm_during_warm_up_and_twice_in_a_row_stops_quickly(tmp_path):
    port, results = free_port(), tmp_path / "results.jsonl"
    svc = Served(tmp_path, _config(port, results, model="warmup_steps = 100000"))
    try:
        wait_for(lambda: get(port, "/healthz")[0] == 200, 60, "HTTP, up before the model")
        time.sleep(0.5)  # well inside the warm-up (100000 steps)
        rz = json.loads(get(port, "/readyz")[1])
        rc, took = svc.stop()
    finally:
        svc.close()
    assert rz["reasons"] == ["model_loading"] and not rz["ready"]
    assert rc == 0 and took < 3.0, svc.log()
    assert "stopped during start-up" in svc.log()

    (tmp_path / "again").mkdir()
    svc = Served(tmp_path / "again", _config(port, results))
    try:
        svc.wait_ready(port)
        t0 = time.monotonic()
        svc.send(signal.SIGTERM)
        svc.send(signal.SIGTERM)
        rc = svc.proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        svc.close()
    assert rc == 0 and took < 3.0, svc.log()


def _threads_and_fds(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    threads = int(next(x for x in status.splitlines() if x.startswith("Threads:")).split()[1])
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.slow
def test_idle_http_connections_cost_no_threads_and_are_timed_out(tmp_path):
    port, results = free_port(), tmp_path / "results.jsonl"
    cfg = _config(port, results).replace(f"port = {port}", f"port = {port}\nmax_connections = 32\ntimeout_s = 1.0")
    svc = Served(tmp_path, cfg)
    socks: list[socket.socket] = []
    try:
        svc.wait_ready(port)
        threads0, fds0 = _threads_and_fds(svc.proc.pid)
        for _ in range(500):  # half-open requests: connected, nothing sent
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        threads1, fds1 = _threads_and_fds(svc.proc.pid)
        t0 = time.monotonic()
        healthz = svc.http("/healthz")
        took = time.monotonic() - t0
        time.sleep(1.5)  # past the read timeout
        oldest = socks[-1]
        oldest.settimeout(2)
        closed_by_server = oldest.recv(1) == b""
        rc, _ = svc.stop()
    finally:
        for s in socks:
            s.close()
        svc.close()
    assert threads1 <= threads0 + 1, (threads0, threads1)
    assert fds1 <= fds0 + 32 + 2, (fds0, fds1)
    assert healthz == (200, "ok\n") and took < 1.0  # the idle flood does not lock out a health check
    assert closed_by_server and rc == 0


def test_the_metrics_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    from edgefusion.serve.metrics import Metrics

    m = Metrics(lambda: {"frames/queue_full": 3, "sync/sync_skipped": 1}, ("camera", "audio"))
    m.set_model("m", "fp32", "onnxruntime", ("none", "lights_on"))
    m.stage.labels("inference").observe(0.004)
    m.results.inc()
    m.reloads.labels("failed").inc()
    m.stream_age.labels("camera").set(0.01)
    text = m.render()
    p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert b'edgefusion_drops_total{reason="queue_full",where="frames"} 3.0' in text
    assert b'edgefusion_drops_total{reason="too_old",where="frames"} 0.0' in text  # present before the first
    assert b"process_resident_memory_bytes" in text and b"_created" not in text


def _stage(vad: Path, name: str = "vad", gate: str = "speech<0.5:text") -> str:
    return f'[[stages]]\nname = "{name}"\npackage = "{vad}"\ngate = "{gate}"\n'


@pytest.mark.slow
def test_a_reload_applies_changed_stages_and_a_bad_one_keeps_the_old(tmp_path):
    """SIGHUP with [[stages]] changed: the new stage runs from the next step on (its record in every result
    after the swap, none before), a stage whose package is damaged keeps the running ones, and removing the
    stages stops them; nothing is asked to restart for [[stages]]."""
    pytest.importorskip("silero_vad")
    from edgefusion.anymodel import silero_vad_package

    vad = silero_vad_package(tmp_path / "silero_vad").path
    port, results = free_port(), tmp_path / "results.jsonl"
    config = _config(port, results)
    svc = Served(tmp_path, config)
    try:
        svc.wait_ready(port)

        def reload(text: str, ok: bool, n: int) -> dict:
            svc.cfg.write_text(text)
            svc.send(signal.SIGHUP)
            return wait_for(lambda: (r := svc.readyz())["last_reload"].get("ok") is ok and
                            svc.log().count("reloaded in") + svc.log().count("reload failed") == n and r, 30,
                            f"reload {n}")

        rz = reload(config + _stage(vad), True, 1)
        assert rz["last_reload"]["stages"] == ["vad"] and rz["model"] == "smart_home-attention"
        n = _count(results)
        wait_for(lambda: _count(results) > n + 10, 5, "results with the stage")
        broken = tmp_path / "broken_vad"
        shutil.copytree(vad, broken)
        (broken / "model.onnx").write_bytes(b"not a model")
        rz = reload(config + _stage(vad) + _stage(broken, "vad2"), False, 2)
        assert "vad2" in rz["last_reload"]["error"] or "sha256" in rz["last_reload"]["error"]
        n = _count(results)
        wait_for(lambda: _count(results) > n + 10, 5, "results after the failed reload")
        rz = reload(config, True, 3)
        assert rz["last_reload"]["stages"] == []
        n = _count(results)
        wait_for(lambda: _count(results) > n + 10, 5, "results without the stage")
        rc, _ = svc.stop()
    finally:
        svc.close()
    assert rc == 0, svc.log()
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    assert [r["seq"] for r in rows] == list(range(len(rows)))
    with_vad = [i for i, r in enumerate(rows) if "vad" in (r.get("stages") or {})]
    assert with_vad and with_vad == list(range(with_vad[0], with_vad[-1] + 1))  # one run of steps, no gap
    assert with_vad[0] > 0 and with_vad[-1] < len(rows) - 1  # none before the first reload, none after the last
    assert all(set(rows[i]["stages"]) == {"vad"} for i in with_vad)  # the broken vad2 never ran
    assert all("gated" in rows[i]["stages"]["vad"] for i in with_vad)
    assert "restart the service to apply" not in svc.log()


@pytest.mark.slow
def test_the_two_minute_soak_keeps_memory_flat_across_reloads(tmp_path):
    import sys

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "soak.json"
    p = subprocess.run([sys.executable, str(repo / "bench" / "soak.py"), "--duration", "120", "--reload-every", "20",
                        "--out", str(out)], capture_output=True, text=True, timeout=400)
    report = json.loads(out.read_text())
    assert p.returncode == 0 and report["ok"], p.stdout + p.stderr
    assert report["reloads"]["count"] == report["reloads"]["ok"] >= 5
    assert report["rss_mb"]["growth_after_first_reload_pct"] <= 2.0
    assert report["threads"]["start"] == report["threads"]["end"]
    assert report["stop"]["exit_status"] == 0 and report["watchdog"]["max_gap_s"] < 2.0


def test_the_http_server_answers_errors_plainly_and_survives_a_broken_route():
    from edgefusion.errors import ConfigError
    from edgefusion.serve.http import HttpServer

    def broken():
        raise RuntimeError("boom (test)")

    srv = HttpServer("127.0.0.1", 0, {"/ok": lambda: (200, b"fine\n", "text/plain"), "/broken": broken})
    srv.start()
    try:
        def raw(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(request)
                return b"".join(iter(lambda: s.recv(65536), b""))

        assert raw(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"\r\n\r\nfine\n")
        head = raw(b"HEAD /ok HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 5" in head and head.endswith(b"\r\n\r\n")
        assert raw(b"GET /nope HTTP/1.1\r\n\r\n").endswith(b"not found: try /broken or /ok\n")
        assert raw(b"POST /ok HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
        assert raw(b"nonsense\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert raw(b"GET /ok HTTP/1.1\r\nX: " + b"a" * 10000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
        assert raw(b"GET /broken HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500")
        assert raw(b"GET /ok HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")  # still serving
        with pytest.raises(ConfigError, match=r"cannot listen on 127\.0\.0\.1"):
            HttpServer("127.0.0.1", srv.port, {})
    finally:
        srv.close()


@pytest.mark.slow
def test_a_text_port_in_use_makes_the_service_not_ready_until_it_binds(tmp_path):
    """The text socket's port was taken: serve logged a warning, kept retrying, and /readyz said 200 while
    no command could arrive."""
    port, text_port, results = free_port(), free_port(), tmp_path / "results.jsonl"
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", text_port))
    squatter.listen()
    extra = f'[sources.text]\nuri = "tcp://127.0.0.1:{text_port}"\n'
    svc = Served(tmp_path, _config(port, results) + extra)
    svc.port = port  # it never gets ready while the port is taken: poll /readyz directly
    try:
        rz = wait_for(lambda: (r := svc.readyz())["code"] == 503 and "text_reconnecting" in r["reasons"] and r,
                      30, "readiness to report the text port it cannot bind")
        assert rz["streams"]["text"]["failing"] and rz["reasons"] == ["text_reconnecting"], rz
        squatter.close()
        wait_for(lambda: svc.readyz()["code"] == 200, 15, "readiness once the port is free")
        with socket.create_connection(("127.0.0.1", text_port), timeout=5) as c:
            c.sendall(b"turn the lights on\n")
        wait_for(lambda: "turn the lights on" in results.read_text(), 10, "the command in the results")
        rc, _ = svc.stop()
    finally:
        squatter.close()
        svc.close()
    assert rc == 0
