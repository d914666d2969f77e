"""Lossless runs order every input against the frames by the data, never by thread timing.

A separate audio file used to run up to its queue (12.8 s) ahead of the camera while sync
keeps 4 s: most frames of a real-length run found their audio gone (``masked_audio_stale``).
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from conftest import TEST_DATA

from edgefusion import load_package, open_backend
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.samples import Command, Frame
from edgefusion.sinks import CallbackSink
from edgefusion.sources import Source

sf = pytest.importorskip("soundfile")

VIDEO = TEST_DATA / "video" / "opencv_Megamind.avi"  # 270 frames at 23.976 fps: 11.26 s
SPEECH = TEST_DATA / "audio" / "speech_commands"


@pytest.fixture(scope="module")
def pkg():
    return load_package("smart_home")


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory):
    """Real recordings (Speech Commands clips) back to back for as long as the video: 12 s."""
    clips = [sf.read(SPEECH / f"{w}_1000ms.wav", dtype="float32")[0] for w in ("yes", "noise", "no", "silence")]
    path = tmp_path_factory.mktemp("audio") / "spoken.wav"
    sf.write(path, np.concatenate([clips[i % 4] for i in range(12)]), 16000, subtype="PCM_16")
    return path


def _file_run(pkg, wav):
    from edgefusion.runbuild import RunBuilder

    got: list = []
    builder = RunBuilder(PipelineConfig(lossless=True))
    builder.camera(str(VIDEO), pace=False)
    builder.audio(str(wav), pace=False)
    builder.add_sink(CallbackSink(got.append))
    with open_backend("onnxruntime", pkg, threads=1) as be, builder.build(pkg, be) as run:
        stats = run.pipeline.run()
    return stats, [{k: v for k, v in r.to_dict().items() if k != "timings_ns"} for r in got]


def test_a_separate_real_length_audio_file_is_never_lost_to_the_sync_buffer(pkg, long_wav):
    first, results = _file_run(pkg, long_wav)
    assert first.drops == {}
    # every frame found its audio; those of the first second have no whole window yet (audio partial)
    assert first.sync.get("masked_audio_stale", 0) == 0, first.sync
    assert first.sync["ok"] == 247 and first.sync["masked_audio_partial"] == 23, first.sync
    second, again = _file_run(pkg, long_wav)
    assert second.sync == first.sync and again == results  # the same windows, so the same results


def test_a_recording_of_it_replays_to_a_match_and_two_runs_write_the_same_bytes(long_wav, tmp_path, capsys):
    from edgefusion.cli import main

    logs = []
    for name in ("a", "b"):
        logs.append(tmp_path / f"{name}.mcap")
        rc = main(["record", "--camera", str(VIDEO), "--audio", str(long_wav), "--no-pace", "--lossless",
                   "--image-format", "raw", "--threads", "1", "--record", str(logs[-1]),
                   "--out", f"jsonl:{tmp_path / 'out.jsonl'}"])
        assert rc == 0, capsys.readouterr().err
    assert logs[0].read_bytes() == logs[1].read_bytes()
    capsys.readouterr()
    rc = main(["replay", str(logs[0]), "--check", "--threads", "1", "--out", f"jsonl:{tmp_path / 'replay.jsonl'}"])
    out = capsys.readouterr()
    assert rc == 0 and "against recorded results: MATCH: 270 of 270 compared" in out.out, out
    replayed = [json.loads(line) for line in (tmp_path / "replay.jsonl").read_text().splitlines()]
    assert sum("audio" in r["missing"] for r in replayed) == 23  # only the first second's: no whole window yet


class _Replayish(Source):
    """One thread, like a replay of a live recording: a command stamped before frame 5 arrives after it."""

    name = "replay"
    drives_run = True

    def __iter__(self):
        img = np.zeros((32, 32, 3), np.uint8)
        for i in range(12):
            t = i * 33_333_333
            yield Frame(t_ns=t, image=img)
            if i == 5:
                yield Command(t_ns=t - 1, text="turn on the lights")


def test_a_frame_sees_only_what_its_own_source_delivered_before_it(pkg):
    """The replay's thread runs ahead; what follows a frame in the log waits for the next frame."""
    for _ in range(5):
        got: list = []
        with open_backend("null", pkg) as be:
            Pipeline(pkg, be, [_Replayish()], [CallbackSink(got.append)], PipelineConfig(lossless=True)).run()
        assert [r.seq for r in got if r.command] == list(range(6, 12))


class _SlowCommands(Source):
    """An independent command source that is slow to deliver its second command (it says how far it got)."""

    name = "text"
    reports_watermark = True

    def __iter__(self):
        for t, text in ((100_000_000, "turn on the lights"), (200_000_000, "lock the door")):
            self.watermark_ns = t  # nothing before t is still to come
            if t == 200_000_000:
                time.sleep(0.3)  # the camera's frames would run past 0.2 s meanwhile
            yield Command(t_ns=t, text=text)


class _Frames(Source):
    name = "camera"
    drives_run = True

    def __iter__(self):
        img = np.zeros((32, 32, 3), np.uint8)
        for i in range(30):
            yield Frame(t_ns=i * 20_000_000, image=img)


def test_commands_of_an_independent_text_source_meet_the_frames_at_their_time(pkg):
    got: list = []
    with open_backend("null", pkg) as be:
        Pipeline(pkg, be, [_Frames(), _SlowCommands()], [CallbackSink(got.append)],
                 PipelineConfig(lossless=True)).run()
    expected = [None] * 5 + ["turn on the lights"] * 5 + ["lock the door"] * 20  # frames every 20 ms
    assert [r.command for r in got] == expected


def test_text_sources_report_how_far_they_have_read():
    from edgefusion.clock import ManualClock
    from edgefusion.sources import CallTextSource

    src = CallTextSource(clock=ManualClock(7))
    assert src.reports_watermark and src.watermark_ns is None
    src.send("lights on")
    src.end()
    with src:
        cmds = list(src)
    assert [c.t_ns for c in cmds] == [7] and src.watermark_ns == 7
