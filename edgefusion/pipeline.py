"""The streaming pipeline: threads and bounded queues around the fusion core.

Threads: one per source, a prepare stage (sync + preprocess), an inference stage
(inference + decoding + smoothing) and a sink worker, so preprocessing overlaps inference.
What a step does is :class:`~edgefusion.core.FusionCore`'s job; this module only moves
samples between threads. Queues are bounded and declare their overflow policy (contract
6): live runs take the latest frame and drop stale ones; lossless runs (replays)
back-pressure the source and drop nothing, and order every input against the frames by
the data, not by thread timing (the source threads: :mod:`edgefusion.inputs`). One stop event ends everything; the first
error in any stage stops the pipeline and is raised from :meth:`Pipeline.run` as
:class:`~edgefusion.errors.PipelineError` (its ``__cause__`` is the original); every join
is bounded.

Example::

    with open_backend("onnxruntime", pkg) as backend:
        pipe = Pipeline(pkg, backend, [TimelineSource(tl)], [JsonlSink("-")],
                        PipelineConfig(lossless=True))
        stats = pipe.run()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgefusion.backends import Backend
from edgefusion.core import FusionCore, Prepared, check_confirms
from edgefusion.engine import STAGES, FusionStep
from edgefusion.errors import EdgeFusionError, PipelineError
from edgefusion.histogram import LatencyHistogram
from edgefusion.inputs import Envelope, Inputs
from edgefusion.package import ModelPackage
from edgefusion.postprocess import PostConfig
from edgefusion.queues import BoundedQueue, DropCounter, DropReason, Overflow, QueueClosed
from edgefusion.samples import Result
from edgefusion.sinks import Sink
from edgefusion.sources.base import Source
from edgefusion.stages import Stage
from edgefusion.sync import SyncConfig

__all__ = ["STAGES", "Pipeline", "PipelineConfig", "PipelineError", "RunStats"]


@dataclass(frozen=True)
class PipelineConfig:
    """Queue sizes and policies. ``lossless`` = back-pressure everywhere, no freshness budget."""

    lossless: bool = False
    frame_capacity: int = 2
    audio_capacity: int = 256
    text_capacity: int = 64
    sink_capacity: int = 256
    frame_max_age_ns: int | None = 250_000_000
    deadline_ns: int | None = None
    #: no frame for this long counts one ``camera_stalled`` sync outcome (steps need a frame)
    stall_timeout_ns: int = 1_000_000_000
    join_timeout_s: float = 2.0
    sync: SyncConfig = field(default_factory=SyncConfig)
    post: PostConfig = field(default_factory=PostConfig)

    @property
    def overflow(self) -> Overflow:
        return Overflow.BLOCK if self.lossless else Overflow.LATEST


@dataclass
class RunStats:
    """What a run did: counts, drops by reason, sync outcomes, latency per stage."""

    steps: int = 0
    results: int = 0
    emitted: int = 0
    wall_s: float = 0.0
    drops: dict[str, int] = field(default_factory=dict)
    sync: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    stopped_by: str = "end_of_stream"


@dataclass
class _Ready:
    env: Envelope
    prepared: Prepared
    ready_ns: int  # monotonic time it entered the "prepared" queue


def _text_source(sources: Sequence[Source]) -> bool | None:
    """Whether commands can arrive: yes with a text or MQTT source, unknown with a log or timeline."""
    names = {s.name for s in sources}
    if names & {"text", "mqtt"} or any(s.delivers_commands for s in sources):
        return True
    return None if names & {"replay", "timeline"} or not names <= {"camera", "audio"} else False


class Pipeline:
    """Runs sources through one model into sinks. Use once: ``run()`` then it is spent."""

    def __init__(self, package: ModelPackage, backend: Backend, sources: Sequence[Source], sinks: Sequence[Sink],
                 config: PipelineConfig | None = None,
                 on_result: Callable[[Result], None] | None = None,
                 taps: Sequence[Callable[[Any], None]] = (), stages: Sequence[Stage] = ()) -> None:
        """``taps`` are called with every raw input sample (the recorder); ``on_result`` with every result;
        ``stages`` run before the main model on each window (:mod:`edgefusion.stages`; the caller owns them)."""
        cfg = self.config = config or PipelineConfig()
        self.sources, self.sinks = list(sources), list(sinks)
        self.on_result = on_result
        self.core = FusionCore(package, backend, cfg.sync, cfg.post, text_source=_text_source(self.sources),
                               stages=stages)
        self.stop_event = threading.Event()
        self.drops = DropCounter()
        self.stats = RunStats()
        self.taps = list(taps)  # shared with the source threads: a tap added before run() is called too
        pol, age = cfg.overflow, None if cfg.lossless else cfg.frame_max_age_ns
        queues: tuple[BoundedQueue[Envelope], ...] = (
            BoundedQueue("frames", cfg.frame_capacity, pol, self.drops, max_age_ns=age, age_of=lambda e: e.recv_ns),
            BoundedQueue("audio", cfg.audio_capacity, pol, self.drops),
            BoundedQueue("text", cfg.text_capacity, pol, self.drops))
        self.inputs = Inputs(cfg.lossless, (queues[0], queues[1], queues[2]), cfg.sync.offsets_ns, self.drops,
                             self.sources, self.taps, self.stats, self.stop_event, self._fail)
        self.frames = self.inputs.frames
        self.prepared: BoundedQueue[_Ready] = BoundedQueue("prepared", 2, cfg.overflow, self.drops)
        self.results: BoundedQueue[Result] = BoundedQueue("sink", cfg.sink_capacity, cfg.overflow, self.drops)
        self.hist = {s: LatencyHistogram() for s in (*STAGES, "sink")}
        self.hist.update({s.timing_key: LatencyHistogram() for s in stages})  # each model its own latency
        self._error: PipelineError | None = None
        self._lock = threading.Lock()  # guards _error and _pending_swap
        self._ran = False
        self._stop_mono: float | None = None
        self._pending_swap: tuple[ModelPackage, Backend, list[Stage] | None, threading.Event] | None = None

    @property
    def step(self) -> FusionStep:
        return self.core.step

    @property
    def backend(self) -> Backend:
        return self.core.backend

    @property
    def package(self) -> ModelPackage:
        return self.core.package

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask every thread to finish (safe from signal handlers and other threads)."""
        if not self.stop_event.is_set():
            self.stats.stopped_by = reason
            self._stop_mono = time.monotonic()
        self.stop_event.set()
        for s in self.sources:
            s.stop.set()

    def swap_model(self, package: ModelPackage, backend: Backend, timeout_s: float = 10.0,
                   stages: Sequence[Stage] | None = None) -> bool:
        """Replace the model between two steps, and with ``stages`` the stages that run before it, both at
        once; sequence numbers continue. True once applied.

        The caller owns the backends and stages: close the old ones after this returns True. Windows
        prepared before the swap keep what the old stages found in them.

        Raises:
            ConfigError: the new model lacks an event label a stage (of ``stages`` when given) confirms;
                nothing is queued.
        """
        check_confirms(self.core.stages if stages is None else stages, package)
        if stages is not None:  # their histograms first: the dict is replaced whole, never changed in place
            self.hist = {**{s.timing_key: LatencyHistogram() for s in stages}, **self.hist}
        done = threading.Event()
        with self._lock:
            self._pending_swap = (package, backend, None if stages is None else list(stages), done)
        return done.wait(timeout_s)

    def cancel_swap(self, backend: Backend) -> bool:
        """Withdraw a swap to ``backend`` that :meth:`swap_model` asked for and the pipeline has not applied.

        True: withdrawn, the pipeline will never use ``backend`` (the caller may close it). False:
        no such swap is pending (it was applied, or another one replaced it).
        """
        with self._lock:
            pending = self._pending_swap
            if pending is not None and pending[1] is backend:
                self._pending_swap = None
                return True
        return False

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._lock:
            if self._error is None:
                self._error = PipelineError(stage, exc)
                self._error.__cause__ = exc
        self.request_stop(f"error in {stage}")

    def run(self, timeout_s: float | None = None) -> RunStats:
        """Run until the triggering sources end, ``request_stop()``, an error, or ``timeout_s``."""
        if self._ran:
            raise EdgeFusionError("a Pipeline runs once; build a new one")
        if self.inputs.drivers_left == 0:
            raise EdgeFusionError("no source triggers fusion steps: add a camera or a timeline source")
        self._ran = True
        t0 = time.monotonic()
        threads = self.inputs.threads()
        stages = [threading.Thread(target=f, name=n, daemon=True) for f, n in (
            (self._prepare_loop, "fusion-prepare"), (self._infer_loop, "fusion-infer"), (self._sink_loop, "sinks"))]
        for t in (*threads, *stages):
            t.start()
        deadline = None if timeout_s is None else t0 + timeout_s
        while any(t.is_alive() for t in stages):
            stages[1].join(0.05)
            if deadline is not None and time.monotonic() > deadline and not self.stop_event.is_set():
                self.request_stop("timeout")
            if self._stop_mono is not None and time.monotonic() - self._stop_mono > self.config.join_timeout_s:
                break  # bounded: whatever is still running is reported by _join below
        self.request_stop(self.stats.stopped_by)  # the trigger ended: stop the other sources too
        end = time.monotonic() + self.config.join_timeout_s
        for t in (*stages, *threads):
            t.join(max(0.0, end - time.monotonic()))
        stuck = [t.name for t in (*stages, *threads) if t.is_alive()]
        if stuck and self._error is None:
            self._fail("shutdown", TimeoutError(f"threads {stuck} did not stop within {self.config.join_timeout_s} s"))
        self.stats.wall_s = time.monotonic() - t0
        self.stats.drops = self.drops.snapshot()
        self.stats.sync = self.core.outcomes
        self.stats.latency_ms = {k: h.summary_ms() for k, h in self.hist.items()}
        if self._error is not None:
            raise self._error
        return self.stats

    def _stopping_too_long(self) -> bool:
        return self._stop_mono is not None and time.monotonic() - self._stop_mono > self.config.join_timeout_s / 2

    def _prepare_loop(self) -> None:
        """Stage 1 (own thread, so it overlaps inference): sync + preprocess."""
        stage, last_frame, stalled = "sync", time.monotonic_ns(), False
        try:
            while self._error is None and not self._stopping_too_long():
                self.inputs.drain(self.core)
                try:
                    env = self.frames.get(timeout=0.02)
                except QueueClosed:
                    break
                if env is None:
                    if not stalled and time.monotonic_ns() - last_frame > self.config.stall_timeout_ns:
                        stalled = True
                        self.core.sync.outcomes["camera_stalled"] += 1
                    continue
                t_deq = last_frame = time.monotonic_ns()
                stalled = False
                self.inputs.drain(self.core, env)  # lossless: the source thread held the frame until it was due
                window = self.core.sync_frame(env.sample)
                t_sync = time.monotonic_ns()
                if window is None:
                    self.drops.add("sync", DropReason.SYNC_SKIPPED)
                    continue
                stage = "preprocess"
                prepared = self.core.preprocess(window, sync_ns=t_sync - t_deq)
                prepared.timings_ns["queue_wait"] = t_deq - env.recv_ns
                stage = "sync"
                self.prepared.put(_Ready(env, prepared, time.monotonic_ns()), self.stop_event)
        except BaseException as exc:
            self._fail(stage, exc)
        finally:
            self.prepared.close()

    def _apply_swap(self) -> None:
        with self._lock:
            pending, self._pending_swap = self._pending_swap, None
        if pending is not None:
            package, backend, stages, done = pending
            if stages is not None:
                self.core.use_stages(stages)  # waits for the preparing thread's stage runs of this window
            self.core.swap(package, backend)
            done.set()

    def _infer_loop(self) -> None:
        """Stage 2: inference + decoding + smoothing, then hand the result to the sink worker."""
        stage = "backend"
        try:
            while self._error is None and not self._stopping_too_long():
                try:
                    item = self.prepared.get(timeout=0.05)
                except QueueClosed:
                    break
                if item is None:
                    continue
                self._apply_swap()
                item.prepared.timings_ns["queue_wait"] += time.monotonic_ns() - item.ready_ns  # both queues
                stage = "backend"
                outs = self.core.infer(item.prepared)
                stage = "postprocess"
                result = self.core.decide(item.prepared, outs)
                timings = result.timings_ns
                timings["end_to_end"] = time.monotonic_ns() - item.env.recv_ns
                hist = self.hist  # a swap of stages replaces the dict whole, new stages' histograms in it
                for k, v in timings.items():
                    hist[k].record(v)
                self.stats.steps += 1
                self.stats.emitted += result.emitted
                if self.config.deadline_ns is not None and timings["end_to_end"] > self.config.deadline_ns:
                    self.drops.add("fusion", DropReason.DEADLINE_MISSED)
                stage = "sink"
                self.results.put(result, self.stop_event if not self.config.lossless else None)
        except BaseException as exc:
            self._fail(stage, exc)
        finally:
            self.results.close()

    def _sink_loop(self) -> None:
        try:
            while True:
                try:
                    r = self.results.get(timeout=0.1)
                except QueueClosed:
                    break
                if r is None:
                    continue
                t0 = time.monotonic_ns()
                for s in self.sinks:
                    s.write(r)
                if self.on_result is not None:
                    self.on_result(r)
                self.hist["sink"].record(time.monotonic_ns() - t0)
                self.stats.results += 1
            for s in self.sinks:
                s.flush()
        except BaseException as exc:
            self._fail("sink", exc)
            self.results.close()
