"""Regressions for the hostile inputs that were found (issue 12): one test per finding, named after it.

Each one is an input that once ended in a traceback, ran code, lost data without a word, or
gave a different answer on each run. The generated cases are in ``test_fuzz.py``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from edgefusion.cli import main
from edgefusion.errors import ConfigError, InputError
from edgefusion.logs import LogReader, LogWriter
from edgefusion.logs.reader import LogMessage, decode
from edgefusion.logs.recorder import Recorder
from edgefusion.samples import AudioChunk, Command, Frame, Result
from edgefusion.sources import SocketTextSource, StdinTextSource
from edgefusion.sources.replay import ReplaySource
from edgefusion.sources.text import sanitize

IMG = np.zeros((8, 8, 3), np.uint8)
MS = 1_000_000


def _ef(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "edgefusion", *args], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _log(path: Path, frames: int = 30, command_first: bool = False, camera: bool = True) -> Path:
    """A small log of ours: frames at 30 fps, audio, a command, truth and a label span."""
    from edgefusion.labels import Span

    with LogWriter(path) as w:
        if command_first:
            w.command(Command(t_ns=0, text="turn on the lights"), 0)
        w.label(Span(0, frames * 33 * MS, "coverage", "", "synth"))
        for i in range(frames):
            t = i * 33 * MS
            w.audio(AudioChunk(t_ns=t, samples=np.full(528, 0.01 * (i % 7), np.float32), sample_rate=16000), t)
            if camera:
                w.frame(Frame(t_ns=t, image=IMG + i), t)
            w.truth(t, "none", [], t)
            if i == frames // 2:
                w.command(Command(t_ns=t + 1, text="lock the door"), t + 1)
        w.metadata("edgefusion", {"package_ref": "smart_home"})
    return path


# -- code execution ----------------------------------------------------------------------


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.slow
def test_bench_torch_fp32_refuses_a_crafted_checkpoint_without_running_its_code(pkg_copy, tmp_path):
    torch = pytest.importorskip("torch")
    import hashlib

    marker = tmp_path / "code_ran"
    torch.save({"model_config": {"channels": [8]}, "payload": _RunsCode(str(marker))}, pkg_copy / "checkpoint.pt")
    manifest = json.loads((pkg_copy / "manifest.json").read_text())
    data = (pkg_copy / "checkpoint.pt").read_bytes()  # the attacker writes the manifest too: hashes agree
    manifest["sources"]["checkpoint"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    (pkg_copy / "manifest.json").write_text(json.dumps(manifest))
    p = _ef("bench", str(pkg_copy), "--configs", "torch:fp32", "--duration", "1", "--warmup", "0", "--no-plots",
            "--out", str(tmp_path / "bench"))
    assert not marker.exists()
    assert "refused to load the checkpoint" in p.stderr and "Traceback" not in p.stderr


# -- text on stdin -------------------------------------------------------------------------


def test_text_stdin_reads_a_regular_file_and_dev_null(tmp_path):
    cmds = tmp_path / "commands.txt"
    cmds.write_bytes(b"turn on the lights\n\nlock the door")  # no newline at the end: still a command
    with open(cmds, "rb") as f, StdinTextSource(stream=f) as src:
        assert [c.text for c in src] == ["turn on the lights", "lock the door"]
    assert src.rejected == {"empty": 1}
    with open(os.devnull, "rb") as f, StdinTextSource(stream=f) as src:
        assert list(src) == []


def test_text_stdin_caps_a_60_mb_line_without_a_newline_in_linear_time():
    stream = io.BytesIO(b"x" * 60_000_000 + b"\nturn left\n")
    t0 = time.process_time()
    with StdinTextSource(stream=stream) as src:
        got = [c.text for c in src]
    took = time.process_time() - t0
    assert got == ["turn left"] and src.rejected == {"too_long": 1}
    assert took < 3.0, took  # quadratic buffering took minutes


# -- tracebacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"\xff\xfe\x00[sources]", "uri = '\udcff'".encode("utf-8", "surrogatepass"),
                                     b"a = " + b"[" * 5000 + b"1" + b"]" * 5000, b"\x89PNG\r\n\x1a\n\x00\x00",
                                     b"[sources.camera]\nuri = 3\n[[", b"x" * (2 << 20)],
                         ids=["binary", "not_utf8", "nested_5000_deep", "png", "toml_error", "over_1_mib"])
@pytest.mark.parametrize("command", [["config", "check"], ["config", "show"]])
def test_config_that_is_binary_not_utf8_or_nested_5000_deep_is_one_error_line(tmp_path, capsys, content, command):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    assert main([*command, str(path)]) == 2
    assert str(path) in _one_error_line(capsys.readouterr().err)


def test_mcap_shorter_than_a_footer_torn_or_flipped_is_one_line_with_an_offset(tmp_path, capsys):
    good = _log(tmp_path / "good.mcap", frames=4).read_bytes()
    cases = {f"first_{n}_bytes": good[:n] for n in (0, 1, 7, 8, 9, 16, 20, 21, 40)}
    cases["torn_footer"] = good[:-12]
    flipped = bytearray(good)
    flipped[8 + 9 + 4 : 8 + 9 + 14] = b"\xff" * 10  # inside the header's profile string
    cases["flipped_header_string"] = bytes(flipped)
    for name, data in cases.items():
        path = tmp_path / f"{name}.mcap"
        path.write_bytes(data)
        status = main(["log", "info", str(path)])
        err = capsys.readouterr().err
        assert "Traceback" not in err, name
        if status != 0:
            assert status == 2 and "byte " in _one_error_line(err), (name, err)


@pytest.mark.parametrize("content", [b"[1, 2]", b"{}", b"\x00\x01binary", b'{"format_version": 1, "inputs": "x"}'],
                         ids=["json_list", "empty_object", "binary", "inputs_a_string"])
def test_manifest_that_is_a_list_binary_or_incomplete_is_one_error_from_the_cli(pkg_copy, capsys, content):
    (pkg_copy / "manifest.json").write_bytes(content)
    assert main(["info", str(pkg_copy)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_info_into_a_closed_pipe_is_quiet():
    p = subprocess.Popen([sys.executable, "-m", "edgefusion", "info", "smart_home"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader goes away before a line is written (as `| head` does, sooner)
    err = p.stderr.read()
    assert p.wait(60) == 141 and err == b""


# -- silent loss and trust ------------------------------------------------------------------------


def _zero_a_chunk(src: Path, dst: Path) -> tuple[int, int]:
    from edgefusion.logs.scan import McapFile

    with open(src, "rb") as f:
        chunks = McapFile(f, src.stat().st_size).chunks
    assert len(chunks) >= 3
    c = chunks[1]
    data = bytearray(src.read_bytes())
    data[c.offset + 60 : c.offset + c.length] = bytes(c.length - 60)
    dst.write_bytes(bytes(data))
    return c.offset, c.messages or 0


def test_a_zeroed_chunk_is_reported_by_log_info_and_refused_by_replay_unless_allow_gaps(tmp_path, capsys):
    src = tmp_path / "src.mcap"
    with LogWriter(src, chunk_size=4096) as w:
        for i in range(60):
            w.frame(Frame(t_ns=i * 33 * MS, image=IMG), i * 33 * MS)
    bad = tmp_path / "zeroed.mcap"
    offset, lost = _zero_a_chunk(src, bad)
    assert main(["log", "info", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "DAMAGED" in out and f"LOST at byte {offset}: {lost} messages, log time" in out
    assert f"{60 - lost} readable messages of 60 written over" in out  # the total counted the lost ones
    assert main(["replay", str(bad), "--model", "smart_home", "--backend", "null"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"lost {lost} messages" in line and "--allow-gaps" in line
    assert main(["replay", str(bad), "--model", "smart_home", "--backend", "null", "--allow-gaps"]) == 0
    assert f"replayed {bad}: {60 - lost} steps" in capsys.readouterr().err


def _msg(schema: str, payload: dict) -> LogMessage:
    return LogMessage("/x", schema, "json", 5, 5, json.dumps(payload).encode(), offset=1234)


@pytest.mark.parametrize(("schema", "payload", "expected"), [
    ("foxglove.RawImage", {"encoding": "bgr8", "width": -4, "height": 2, "data": ""}, "width must be"),
    ("foxglove.RawImage", {"encoding": "bgr8", "width": 100000, "height": 100000, "data": ""}, "width must be"),
    ("foxglove.RawImage", {"encoding": "bgr8", "width": 4, "height": 2, "data": "AAAA"}, "needs 24 bytes"),
    ("foxglove.RawAudio", {"format": "pcm-s16", "sample_rate": 16000, "number_of_channels": 0, "data": ""},
     "number_of_channels must be"),
    ("foxglove.RawAudio", {"format": "pcm-s16", "sample_rate": -1, "data": ""}, "sample_rate must be"),
    ("edgefusion.Command", {"text": "hi", "timestamp": {"sec": -5, "nsec": 0}}, "sec must be"),
    ("edgefusion.Command", {"text": "hi", "timestamp": {"sec": 10**12, "nsec": 0}}, "sec must be"),
    ("edgefusion.Command", {"text": "hi", "timestamp": {"sec": 1, "nsec": 10**10}}, "nsec must be"),
    ("edgefusion.Truth", {"action": "none", "events": 3}, "events must be"),
])
def test_decode_refuses_negative_width_zero_channels_and_absurd_times(schema, payload, expected):
    with pytest.raises(InputError, match=expected) as exc:
        decode(_msg(schema, payload))
    assert "(record at byte 1234)" in str(exc.value) and "\n" not in str(exc.value)


def test_replay_drops_and_counts_samples_that_go_back_in_time(tmp_path):
    path = tmp_path / "back.mcap"
    with LogWriter(path) as w:
        for t in (0, 33, 66, 10, 99):  # the fourth frame claims a time before the third
            w.frame(Frame(t_ns=t * MS, image=IMG), t * MS)
    with ReplaySource(path) as src:
        times = [s.t_ns // MS for s in src]
    assert times == [0, 33, 66, 99] and src.rejected == {"time_backwards": 1}


def test_a_log_without_a_camera_is_refused_by_replay(tmp_path, capsys):
    path = _log(tmp_path / "nocam.mcap", frames=5, camera=False)
    assert main(["replay", str(path), "--backend", "null"]) == 2
    assert "no camera topic '/camera'" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(("key", "value"), [("max_tokens", 10**9), ("size", 100_000), ("size", -1), ("n_fft", 0)])
def test_manifest_declared_sizes_beyond_limits_are_refused_before_allocating(pkg_copy, capsys, key, value):
    manifest = json.loads((pkg_copy / "manifest.json").read_text())
    for spec in manifest["inputs"]:
        if key in spec.get("preprocess", {}):
            spec["preprocess"][key] = value
    (pkg_copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["info", str(pkg_copy)]) == 2
    assert f"preprocess.{key}: expected an int" in capsys.readouterr().err


# -- determinism -----------------------------------------------------------------------------------


def test_two_replays_record_byte_identical_files(tmp_path):
    log = _log(tmp_path / "in.mcap", frames=45, command_first=True)
    outs = [tmp_path / f"r{i}.mcap" for i in range(2)]
    for out in outs:
        assert main(["replay", str(log), "--record", str(out), "--threads", "1"]) == 0
    assert outs[0].read_bytes() == outs[1].read_bytes()  # cmp
    with LogReader(outs[0]) as r:
        topics = [m.topic for m in r.messages()]
    assert topics.count("/results") == 45 and topics.count("/truth") == 45 and "/labels" in topics


def test_recorder_writes_each_result_after_its_frame_whatever_the_thread_timing(tmp_path):
    frames = [Frame(t_ns=i * 33 * MS, image=IMG) for i in range(6)]
    audio = [AudioChunk(t_ns=i * 33 * MS, samples=np.zeros(528, np.float32), sample_rate=16000) for i in range(6)]
    results = [Result(seq=i, t_ns=f.t_ns, action="none", action_score=1.0, events=(), scores={})
               for i, f in enumerate(frames)]
    files = []
    for lag in (0, 1, 3, 6):  # results arrive 0, 1, 3 or 6 frames after their frame was tapped
        rec = Recorder(LogWriter(tmp_path / f"lag{lag}.mcap"), lossless=True, repeatable=True)
        for i in range(6 + lag):
            if i < 6:
                rec.tap(audio[i])
                rec.tap(frames[i])
                rec.truth(frames[i].t_ns, {"action": "none", "events": []})
            if i >= lag:
                rec.write(results[i - lag])
        rec.close()
        files.append((tmp_path / f"lag{lag}.mcap").read_bytes())
    assert all(f == files[0] for f in files)
    with LogReader(tmp_path / "lag3.mcap") as r:
        order = [m.topic for m in r.messages()]
    assert order[:4] == ["/audio", "/camera", "/results", "/truth"]


# -- sockets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["tcp://0.0.0.0:0", "tcp://[::]:0", "tcp://example.org:0"])
def test_tcp_text_source_refuses_every_interface_without_allow_remote(address):
    with pytest.raises(ConfigError, match="allow_remote=1"):
        SocketTextSource(address).open()
    src = SocketTextSource("tcp://0.0.0.0:0?allow_remote=1")
    with src:
        assert src.port


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:70000", "tcp://127.0.0.1:-1", "tcp://127.0.0.1:0?x=1"])
def test_tcp_text_source_port_out_of_range_is_one_config_error(address):
    with pytest.raises(ConfigError):
        SocketTextSource(address).open()


def test_tcp_text_source_caps_its_connections():
    with SocketTextSource("tcp://127.0.0.1:0", max_clients=3) as src:
        got: list[str] = []
        t = threading.Thread(target=lambda: got.extend(c.text for c in src))
        t.start()
        conns = [socket.create_connection(("127.0.0.1", src.port)) for _ in range(8)]  # type: ignore[arg-type]
        time.sleep(0.5)
        for c in conns:
            c.sendall(b"lock the door\n")
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
        src.stop.set()
        t.join(5)
        for c in conns:
            c.close()
    assert got == ["lock the door"] * 3 and src.rejected == {"too_many_connections": 5}


@pytest.mark.parametrize("raw", [b"\x1b[31mlights on\x1b[0m", b"lights\x1b]0;title\x07 on",
                                 "\u009b1;2Hlights on".encode(), b"lights\x1bP+q\x1b\\ on", b"\x1b[38;5;196mlights on",
                                 b"lights on\x1b[?25l", b"\x1b(Blights on", b"lights \xe2\x80\xaeon"])
def test_sanitize_leaves_no_ansi_residue(raw):
    text, reason = sanitize(raw)
    assert reason is None and text == "lights on", text
    assert "[" not in text and ";" not in text


# -- exit codes ---------------------------------------------------------------------------------------------


def test_exit_codes_tell_a_mismatch_an_input_error_and_a_runtime_failure_apart(tmp_path, capsys):
    log = _log(tmp_path / "in.mcap", frames=10)
    rec = tmp_path / "rec.mcap"
    assert main(["replay", str(log), "--record", str(rec), "--backend", "null"]) == 0
    assert main(["replay", str(rec), "--check", "--threads", "1"]) == 1  # the real model disagrees with null
    assert main(["replay", str(tmp_path / "missing.mcap")]) == 2
    if Path("/dev/full").exists():  # a disk that is full: the run fails, not its input
        assert main(["replay", str(log), "--backend", "null", "--out", "jsonl:/dev/full"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    help_text = _ef("--help").stdout
    assert "exit status:" in help_text and "1  a check found a mismatch" in help_text


def test_no_test_reads_the_shared_folder():
    offenders = [p.name for p in (REPO / "tests").glob("*.py")
                 if p.name != Path(__file__).name
                 and any(s in p.read_text() for s in ('"shared"', "../shared", "SHARED_DATA"))]
    assert offenders == []
