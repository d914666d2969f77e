"""The run builder shared by run, record, replay and serve: sources from URIs, sinks, the recorder."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from edgefusion import load_package, open_backend
from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.pipeline import PipelineConfig
from edgefusion.runbuild import Recording, RunBuilder
from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.scenarios import generate_timeline, get_scenario
from edgefusion.sinks import CallbackSink, Sink
from edgefusion.sources import (
    AudioFileSource,
    CameraSource,
    MicrophoneSource,
    RetryingSource,
    RetryPolicy,
    SocketTextSource,
    StdinTextSource,
    TimelineSource,
    audio_factory,
    camera_factory,
    text_factory,
)


@pytest.fixture(scope="module")
def timeline():
    return generate_timeline(get_scenario("smart_home"), 1.0, seed=2)


def test_uris_make_the_sources_run_and_serve_accept():
    cam = camera_factory("0", pace=False, max_frames=5)()
    assert isinstance(cam, CameraSource) and cam.kind == "device" and cam.max_frames == 5
    assert camera_factory("rtsp://cam/1")().kind == "url"
    assert audio_factory("none") is None and text_factory("none") is None
    assert audio_factory("default")().device is None  # type: ignore[attr-defined]
    mic = audio_factory("device:hw:1")()
    assert isinstance(mic, MicrophoneSource) and mic.device == "hw:1"
    files = audio_factory("a.wav,,b.flac", pace=False, loop=True)()
    assert isinstance(files, AudioFileSource) and [p.name for p in files.paths] == ["a.wav", "b.flac"]
    assert files.loop and not files.pace
    assert isinstance(text_factory("stdin")(), StdinTextSource)
    assert isinstance(text_factory("tcp://127.0.0.1:0")(), SocketTextSource)
    factory = camera_factory("0")
    assert factory() is not factory()  # a fresh source per call, so a failed one can be reopened
    with pytest.raises(ConfigError, match="unknown scenario 'kitchen'"):
        camera_factory("synth:kitchen")
    with pytest.raises(ConfigError, match="frame limit"):
        camera_factory("synth:smart_home", max_frames=10)


def test_a_looping_timeline_keeps_time_increasing(timeline):
    src = TimelineSource(timeline, loop=True)
    frames = [s.t_ns for s in itertools.islice((s for s in src if isinstance(s, Frame)), 2 * len(timeline.frames))]
    period = 1_000_000_000 // 30
    assert frames[: len(timeline.frames)] == timeline.frame_t_ns.tolist()
    assert all(b > a for a, b in itertools.pairwise(frames))
    assert frames[len(timeline.frames)] == frames[len(timeline.frames) - 1] + period
    assert [s.t_ns for s in TimelineSource(timeline) if isinstance(s, Frame)] == timeline.frame_t_ns.tolist()


def test_a_service_builder_retries_every_stream_it_was_given():
    restarts: list[str] = []
    b = RunBuilder(retry=RetryPolicy(5.0, 5.0, restarts.append))
    b.camera("/nonexistent/clip.mp4")
    assert b.audio("none") is None
    b.text("stdin")
    assert list(b.retrying) == ["camera", "text"] and b.sources == list(b.retrying.values())
    cam = b.retrying["camera"]
    assert isinstance(cam, RetryingSource) and cam.drives_run and not b.retrying["text"].drives_run
    threading.Timer(0.2, cam.stop.set).start()  # a stop ends the 5 s wait at once
    t0 = time.monotonic()
    assert list(cam) == [] and time.monotonic() - t0 < 2.0
    assert restarts == ["camera"] and "SourceError: camera: video file" in (cam.failing or "")
    plain = RunBuilder()
    plain.camera("0")
    assert isinstance(plain.sources[0], CameraSource) and not plain.retrying


def test_recorder_is_the_last_sink_and_tap_and_shares_the_drop_counter(timeline, tmp_path):
    from edgefusion.logs import LogReader

    pkg = load_package("smart_home")
    got, seen, counters = [], [], []

    def counting_sink(drops):
        counters.append(drops)
        return CallbackSink(lambda r: None)

    b = RunBuilder(PipelineConfig(lossless=True))
    b.add_source(TimelineSource(timeline))
    b.add_sink(CallbackSink(got.append))
    b.add_sink(counting_sink)
    b.add_tap(seen.append)
    b.record(Recording(tmp_path / "run.mcap", image_format="raw", run_config={"why": "test"}, package_ref="sh"))
    with open_backend("null", pkg) as be, b.build(pkg, be) as run:
        pipe = run.pipeline
        assert [s.name for s in pipe.sinks] == ["callback", "callback", "recorder"]
        assert pipe.taps[0] == seen.append and pipe.taps[-1] == run.recorder.tap
        assert counters == [pipe.drops] and run.recorder.drops is pipe.drops
        stats = pipe.run()
    inputs = sum(isinstance(s, (Frame, AudioChunk, Command)) for s in seen)
    assert stats.steps == len(got) == len(timeline.frames)
    assert run.recorder.written == inputs + len(got)
    with LogReader(tmp_path / "run.mcap") as r:
        info = r.info()
    assert info.complete and info.metadata["edgefusion"]["package_ref"] == "sh"


class _Failing(Sink):
    name = "failing"

    def write(self, result):
        pass

    def close(self):
        raise EdgeFusionError("disk full (test)")


def test_closing_a_run_closes_every_sink_and_raises_the_first_failure(timeline):
    pkg = load_package("smart_home")
    closed = []

    class Closing(CallbackSink):
        def close(self):
            closed.append(True)

    b = RunBuilder()
    b.add_source(TimelineSource(timeline))
    b.add_sink(_Failing())
    b.add_sink(Closing(print))
    with open_backend("null", pkg) as be:
        with pytest.raises(EdgeFusionError, match="disk full"), b.build(pkg, be):
            pass
        assert closed == [True]
        failures = b.build(pkg, be).close()
    assert [name for name, _ in failures] == ["failing"]


def test_a_sink_that_cannot_be_made_closes_those_already_made(timeline):
    pkg = load_package("smart_home")
    closed = []

    class Closing(CallbackSink):
        def close(self):
            closed.append(True)

    def broken(drops):
        raise ConfigError("cannot open (test)")

    b = RunBuilder()
    b.add_source(TimelineSource(timeline))
    b.add_sink(Closing(print))
    b.add_sink(broken)
    with open_backend("null", pkg) as be, pytest.raises(ConfigError, match="cannot open"):
        b.build(pkg, be)
    assert closed == [True]
    with pytest.raises(ConfigError, match="unknown sink"):
        b.add_sink("csv:out.csv")


def test_the_service_gives_mqtt_and_the_recorder_the_pipeline_drop_counter(tmp_path):
    pytest.importorskip("paho.mqtt.client")
    from edgefusion.serve import Service
    from edgefusion.sources import CallTextSource

    cfg = tmp_path / "service.toml"
    cfg.write_text(f'[sources.camera]\nuri = "0"\n[sinks]\njsonl = "{tmp_path / "r.jsonl"}"\n'
                   f'[sinks.mqtt]\nenabled = true\nport = 1\n[recording]\npath = "{tmp_path / "r.mcap"}"\n'
                   "[queues]\nframe_capacity = 3\n")
    svc = Service(cfg)
    pkg = load_package("smart_home")
    with open_backend("null", pkg) as be, svc._builder(svc.cfg, pkg).build(pkg, be) as run:
        pipe = run.pipeline
        assert [s.name for s in pipe.sinks] == ["jsonl", "mqtt", "recorder"]
        assert pipe.sinks[1].drops is pipe.drops and run.recorder.drops is pipe.drops
        assert [s.name for s in pipe.sources] == ["camera", "text"] and isinstance(pipe.sources[1], CallTextSource)
        assert pipe.sinks[1].commands is pipe.sources[1] and list(svc.sources) == ["camera"]
        assert pipe.taps == [svc._seen, run.recorder.tap] and pipe.frames.capacity == 3


def test_audio_or_text_of_their_own_replace_a_synthesized_cameras(tmp_path):
    """A synth: camera brings audio and typed commands; --audio / --text (and --speech on --audio) replace them,
    so one stream is not fed from two sources with two clocks (replay --check found time going backwards)."""
    import numpy as np
    import soundfile as sf

    from edgefusion.sources.timeline import TimelineSource

    wav = tmp_path / "talk.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    b = RunBuilder(PipelineConfig())
    b.camera("synth:smart_home", pace=False)
    (tl,) = [s for s in b.sources if isinstance(s, TimelineSource)]
    assert tl.own_audio and tl.own_commands
    b.audio(str(wav), pace=False)
    assert not tl.own_audio and tl.own_commands
    b.text("stdin")
    assert not tl.own_commands
    kinds = {type(s).__name__ for s in itertools.islice(tl, 400)}
    assert kinds == {"Frame"}  # its frames only
    alone = RunBuilder(PipelineConfig())
    alone.camera("synth:smart_home", pace=False)
    (tl2,) = alone.sources
    assert {type(s).__name__ for s in itertools.islice(tl2, 400)} >= {"Frame", "AudioChunk"}
