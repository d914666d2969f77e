"""Record and replay in MCAP: round trip, determinism, pacing, foreign logs, crashes, slow disks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import TEST_DATA, Ticker

from edgefusion import load_package, open_backend
from edgefusion.cli import main
from edgefusion.logs import LogReader, LogWriter, decode
from edgefusion.logs.recorder import Recorder
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.sources.replay import ReplaySource

ROSBAGS = sorted((TEST_DATA / "mcap" / "rosbag2").glob("*.mcap"))


def _ef(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgefusion", *args], capture_output=True, text=True, timeout=timeout)


def _results_bytes(path) -> bytes:
    """The recorded results without their timings (wall-clock measurements; a repeatable recording has none)."""
    out = []
    with LogReader(path) as r:
        for m in r.messages(topics=["/results"]):
            d = decode(m)
            assert isinstance(d, dict)
            d.pop("timings_ns", None)
            out.append(json.dumps(d, sort_keys=True))
    return "\n".join(out).encode()


@pytest.fixture(scope="module")
def synth_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "synth.mcap"
    assert main(["synth", "--scenario", "smart_home", "--duration", "6", "--seed", "5", "--out", str(path)]) == 0
    return path


def test_round_trip_check_and_byte_identical_replays(synth_log, tmp_path, capsys):
    out1, out2 = tmp_path / "r1.mcap", tmp_path / "r2.mcap"
    assert main(["replay", str(synth_log), "--record", str(out1), "--threads", "1"]) == 0
    assert main(["replay", str(synth_log), "--record", str(out2), "--threads", "1"]) == 0
    b1, b2 = _results_bytes(out1), _results_bytes(out2)
    assert b1 == b2 and b1.count(b"\n") == 6 * 30 - 1
    capsys.readouterr()
    assert main(["replay", str(out1), "--check", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "against recorded results: MATCH: 180 of 180 compared, 0 missing" in out
    assert "against ground truth: action accuracy" in out


def test_check_fails_on_a_different_model(synth_log, tmp_path, capsys):
    rec = tmp_path / "r.mcap"
    assert main(["replay", str(synth_log), "--record", str(rec), "--backend", "null"]) == 0
    assert main(["replay", str(rec), "--check", "--model", "smart_home"]) == 1  # a mismatch, not an input error
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.slow
def test_rate_1_replay_follows_the_log_clock(tmp_path):
    log = tmp_path / "ten.mcap"
    assert main(["synth", "--scenario", "driving", "--duration", "10", "--seed", "1", "--out", str(log)]) == 0
    with LogReader(log) as r:
        frame_times = [m.publish_time_ns for m in r.messages(topics=["/camera"])]
    got = []
    pkg = load_package("driving")
    with open_backend("null", pkg) as be:
        t0 = time.monotonic()
        Pipeline(pkg, be, [ReplaySource(log, rate=1.0)], [], PipelineConfig(lossless=True),
                 on_result=lambda r: got.append(r.t_ns)).run()
        took = time.monotonic() - t0
    span = (frame_times[-1] - frame_times[0]) / 1e9
    assert abs(took - span) <= 0.3, (took, span)
    assert got == frame_times


def test_start_end_and_loop(synth_log):
    with ReplaySource(synth_log, start_s=2.0, end_s=4.0) as src:
        frames = [s for s in src if type(s).__name__ == "Frame"]
    assert len(frames) == 60 and frames[0].t_ns == 2 * 10**9
    src = ReplaySource(synth_log, loop=True)
    with src:
        n, last = 0, -1
        for s in src:
            if type(s).__name__ == "Frame":
                assert s.t_ns > last
                last, n = s.t_ns, n + 1
                if n == 400:
                    break
    assert last > 12 * 10**9  # went around twice, time kept increasing


@pytest.mark.parametrize("path", ROSBAGS, ids=[p.name for p in ROSBAGS])
def test_log_info_lists_foreign_logs(path):
    p = _ef("log", "info", str(path))
    assert p.returncode == 0, p.stderr
    assert "profile 'ros2'" in p.stdout and ("cdr" in p.stdout or "wrong_format" in p.stdout)
    assert "/test_topic" in p.stdout or "/topic" in p.stdout


def test_wrong_encoding_is_refused_clearly():
    bag = TEST_DATA / "mcap" / "rosbag2" / "wrong_rmw_test_0.mcap"
    p = _ef("replay", str(bag), "--model", "smart_home", "--map", "camera=/test_topic")
    assert p.returncode == 2
    assert "topic /test_topic (camera) has schema 'test_msgs/msg/BasicTypes' with message encoding 'wrong_format'" \
        in p.stderr and "Traceback" not in p.stderr
    p = _ef("replay", str(bag), "--model", "smart_home")
    assert p.returncode == 2 and "no camera topic '/camera'" in p.stderr and "wrong_format" in p.stderr


def test_sigkill_while_recording_leaves_a_readable_log(tmp_path):
    out = tmp_path / "crash.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "edgefusion", "record", "--camera",
                             str(TEST_DATA / "video" / "opencv_Megamind.avi"), "--loop", "--no-pace",
                             "--record", str(out), "--image-format", "raw", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while (not out.exists() or out.stat().st_size < 6_000_000) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    p = _ef("log", "info", str(out))
    assert p.returncode == 0, p.stderr
    assert "TRUNCATED (recovered" in p.stdout and "is truncated" in p.stderr
    n_camera = int(next(line.split()[-1] for line in p.stdout.splitlines() if line.startswith("/camera")))
    assert n_camera >= 5
    p = _ef("replay", str(out), "--model", "smart_home", "--backend", "null")
    assert p.returncode == 0, p.stderr
    assert f"replayed {out}: {n_camera} steps" in p.stderr


def test_a_run_that_fails_before_recording_leaves_no_log(tmp_path):
    out = tmp_path / "nothing.mcap"
    p = _ef("record", "--camera", str(tmp_path / "missing.mp4"), "--audio", "none", "--no-pace", "--record", str(out),
            "--backend", "null")
    assert p.returncode == 2 and "missing.mp4 does not exist" in p.stderr, p.stderr
    assert f"removed the empty log {out}: the run failed before it recorded anything" in p.stderr
    assert not out.exists()


def test_replay_refuses_to_record_over_its_own_log(tmp_path):
    log = tmp_path / "a.mcap"
    assert _ef("synth", "--scenario", "smart_home", "--duration", "1", "--out", str(log)).returncode == 0
    before = log.read_bytes()
    p = _ef("replay", str(log), "--record", str(tmp_path / "." / "a.mcap"), "--backend", "null")
    assert p.returncode == 2 and "is the log being replayed" in p.stderr, p.stderr
    assert log.read_bytes() == before


def test_force_keeps_the_earlier_recording_when_the_run_records_nothing(tmp_path):
    out = tmp_path / "keep.mcap"
    out.write_bytes(b"an earlier recording")
    p = _ef("record", "--camera", str(tmp_path / "typo.mp4"), "--audio", "none", "--no-pace", "--record", str(out),
            "--force", "--backend", "null")
    assert p.returncode == 2 and "typo.mp4 does not exist" in p.stderr, p.stderr
    assert f"kept the earlier {out}: nothing was recorded to replace it" in p.stderr
    assert out.read_bytes() == b"an earlier recording" and sorted(x.name for x in tmp_path.iterdir()) == ["keep.mcap"]


def test_replay_refuses_a_hard_link_to_its_own_log(tmp_path):
    log = tmp_path / "a.mcap"
    assert _ef("synth", "--scenario", "smart_home", "--duration", "1", "--out", str(log)).returncode == 0
    (tmp_path / "b.mcap").hardlink_to(log)
    before = log.read_bytes()
    p = _ef("replay", str(log), "--record", str(tmp_path / "b.mcap"), "--force", "--backend", "null")
    assert p.returncode == 2 and "is the log being replayed" in p.stderr, p.stderr
    assert log.read_bytes() == before


class _SlowWriter(LogWriter):
    def write_encoded(self, *a, **k):  # every message, JSON or protobuf, goes through it
        time.sleep(0.02)  # a disk that takes 20 ms per message
        super().write_encoded(*a, **k)


def test_slow_disk_costs_recorded_messages_not_latency(tmp_path):
    pkg = load_package("smart_home")
    with open_backend("null", pkg) as be:
        pipe = Pipeline(pkg, be, [Ticker(n=90, fps=30)], [], PipelineConfig())
        rec = Recorder(_SlowWriter(tmp_path / "slow.mcap"), capacity=16, drops=pipe.drops)
        pipe.sinks.append(rec)
        pipe.taps.append(rec.tap)
        stats = pipe.run()
        rec.close()
    assert stats.steps == 90
    assert stats.drops.get("recorder/queue_full", 0) > 50
    assert stats.latency_ms["end_to_end"]["p99"] < 40
    with LogReader(tmp_path / "slow.mcap") as r:
        assert r.info().complete and r.info().messages == rec.written


def test_quantize_calibrates_on_a_recorded_log(synth_log, tmp_path):
    import shutil

    from edgefusion.package import BUILTIN_DIR

    pkg = tmp_path / "pkg"
    shutil.copytree(BUILTIN_DIR / "smart_home", pkg)
    p = _ef("quantize", str(pkg), "--calibration-data", str(synth_log), "--samples", "48", "--eval-samples", "64",
            "--variants", "int8", "--max-drop", "100", "--quiet", timeout=300)
    assert p.returncode == 0, p.stderr
    prov = json.loads((pkg / "calibration.int8.json").read_text())
    text = json.dumps(prov)
    assert "mcap log" in text and str(synth_log) in text and "48" in text


def test_check_names_a_package_other_than_the_one_that_recorded_the_log(synth_log, tmp_path, capsys):
    import shutil

    from edgefusion.package import load_package

    rec = tmp_path / "r.mcap"
    assert main(["replay", str(synth_log), "--record", str(rec), "--threads", "1", "--end", "2"]) == 0
    capsys.readouterr()
    assert main(["replay", str(rec), "--check", "--threads", "1"]) == 0
    assert "note: the results in this log were recorded with package" not in capsys.readouterr().out
    # the same model under another manifest (a re-export, say): the results match, and the check says whose they are
    copy = tmp_path / "pkg"
    shutil.copytree(load_package("smart_home").path, copy)
    (copy / "manifest.json").write_text((copy / "manifest.json").read_text() + "\n")
    assert main(["replay", str(rec), "--check", "--threads", "1", "--model", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "note: the results in this log were recorded with package 'smart_home-attention'" in out
    assert "MATCH: 60 of 60 compared" in out


@pytest.mark.parametrize("lossless", [True, False])
def test_a_spoken_command_is_written_where_the_run_had_it(tmp_path, lossless):
    """A lossless run applies a spoken command from its time, a live run only from when it arrived
    (decoding takes a few hundred ms): the log puts it there, so a replay's steps have it when the run's
    had it (a live recording with speech never passed replay --check)."""
    import numpy as np

    from edgefusion.samples import Frame, Result, SpokenCommand

    img = np.zeros((4, 4, 3), np.uint8)
    path = tmp_path / f"{lossless}.mcap"
    rec = Recorder(LogWriter(path), lossless=lossless)
    for t in (1, 2):
        rec.tap(Frame(t_ns=t * 10**9, image=img))
    rec.tap(SpokenCommand(t_ns=15 * 10**8, text="lights off", intent="lights_off", confidence=0.9,
                          start_ns=10**9, end_ns=14 * 10**8))  # said by 1.5 s, handed over after the 2-s frame
    for t in (1, 2):
        rec.write(Result(t_ns=t * 10**9, seq=t, action="none", action_score=1.0, scores={}, events=()))
    rec.close()
    with LogReader(path) as r:
        order = [m.topic for m in r.messages(topics=["/camera", "/speech"])]
    assert order == (["/camera", "/speech", "/camera"] if lossless else ["/camera", "/camera", "/speech"])


def test_a_replay_can_leave_out_the_frames_a_recorded_run_dropped(synth_log):
    """replay --check of a live recording replays only the frames that have a recorded result."""
    from edgefusion.samples import Frame

    with ReplaySource(synth_log) as src:
        frames = [s.t_ns for s in src if isinstance(s, Frame)]
    keep = frozenset(frames[::3])
    with ReplaySource(synth_log) as src:
        src.only_frames = keep
        again = [s for s in src]
    assert [s.t_ns for s in again if isinstance(s, Frame)] == sorted(keep)
    assert src.frames_skipped == len(frames) - len(keep) and any(not isinstance(s, Frame) for s in again)


def test_sigterm_stops_a_recorded_replay_cleanly(synth_log, tmp_path):
    """replay had no handler: SIGTERM killed it (exit 143) and left its recording truncated."""
    out = tmp_path / "looped.mcap"
    proc = subprocess.Popen([sys.executable, "-m", "edgefusion", "replay", str(synth_log), "--loop", "--rate", "1",
                             "--threads", "1", "--record", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "(stopped by a signal before the end)" in err and "recorded" in err
    with LogReader(out) as r:
        assert r.info().complete
