"""The streaming pipeline: sources -> sync -> preprocess -> backend -> postprocess -> sinks.

Threads: one per source, a prepare stage (sync + preprocess), an inference stage
(backend + postprocess) and a sink worker, so preprocessing overlaps inference. Queues are bounded and
declare their overflow policy (contract 6): live runs take the latest frame and drop
stale ones; lossless runs (replays) back-pressure the source and drop nothing. One stop
event ends everything; the first error in any stage stops the pipeline and is raised
from :meth:`Pipeline.run` as :class:`PipelineError` (its ``__cause__`` is the original);
every join is bounded.

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
from dataclasses import dataclass, field, replace
from typing import Any

from edgefusion.backends import Backend
from edgefusion.clock import Clock, MonotonicClock
from edgefusion.engine import FusionStep
from edgefusion.errors import EdgeFusionError, PipelineError
from edgefusion.histogram import LatencyHistogram
from edgefusion.package import ModelPackage
from edgefusion.postprocess import PostConfig, PostProcessor
from edgefusion.queues import BoundedQueue, DropCounter, DropReason, Overflow, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame, Result
from edgefusion.sinks import Sink
from edgefusion.sources.base import Source
from edgefusion.sync import SyncConfig, Synchronizer

__all__ = ["STAGES", "Pipeline", "PipelineConfig", "PipelineError", "RunStats"]

STAGES = ("queue_wait", "sync", "preprocess", "inference", "postprocess", "end_to_end")


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
class _Envelope:
    sample: Any
    recv_ns: int  # monotonic host time when the source delivered it


@dataclass
class _Prepared:
    env: _Envelope
    window: Any
    command_t_ns: int | None
    feeds: dict[str, Any]
    timings: dict[str, int]
    ready_ns: int
    step: FusionStep


class Pipeline:
    """Runs sources through one model into sinks. Use once: ``run()`` then it is spent."""

    def __init__(self, package: ModelPackage, backend: Backend, sources: Sequence[Source], sinks: Sequence[Sink],
                 config: PipelineConfig | None = None, clock: Clock | None = None,
                 on_result: Callable[[Result], None] | None = None,
                 taps: Sequence[Callable[[Any], None]] = ()) -> None:
        self.config = config or PipelineConfig()
        self.clock = clock or MonotonicClock()
        self.package, self.backend = package, backend
        self.sources, self.sinks = list(sources), list(sinks)
        self.on_result = on_result
        self.taps = list(taps)  # called with every raw input sample (the recorder)
        self.stop_event = threading.Event()
        self.drops = DropCounter()
        cfg = self.config
        pol = cfg.overflow
        age = None if cfg.lossless else cfg.frame_max_age_ns
        self.frames: BoundedQueue[_Envelope] = BoundedQueue(
            "frames", cfg.frame_capacity, pol, self.drops, max_age_ns=age, age_of=lambda e: e.recv_ns)
        self.audio: BoundedQueue[_Envelope] = BoundedQueue("audio", cfg.audio_capacity, pol, self.drops)
        self.text: BoundedQueue[_Envelope] = BoundedQueue("text", cfg.text_capacity, pol, self.drops)
        self.prepared: BoundedQueue[_Prepared] = BoundedQueue("prepared", 2, pol, self.drops)
        self.results: BoundedQueue[Result] = BoundedQueue("sink", cfg.sink_capacity, pol, self.drops)
        self.sync = Synchronizer(cfg.sync)
        self.step = FusionStep(package, backend)
        self.post = PostProcessor(cfg.post, self.step.event_out.labels)
        self.hist = {s: LatencyHistogram() for s in (*STAGES, "sink")}
        self._error: PipelineError | None = None
        self._error_lock = threading.Lock()
        self._drivers_left = sum(1 for s in self.sources if s.drives_run)
        self._driver_lock = threading.Lock()
        self.stats = RunStats()
        self._ran = False
        self._stop_mono: float | None = None
        self._swap_lock = threading.Lock()
        self._pending_swap: tuple[ModelPackage, Backend, FusionStep, threading.Event] | None = None

    # -- control ----------------------------------------------------------------------

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask every thread to finish (safe from signal handlers and other threads)."""
        if not self.stop_event.is_set():
            self.stats.stopped_by = reason
            self._stop_mono = time.monotonic()
        self.stop_event.set()
        for s in self.sources:
            s.stop.set()

    def swap_model(self, package: ModelPackage, backend: Backend, timeout_s: float = 10.0) -> bool:
        """Replace the model between two steps; sequence numbers continue. True once applied.

        The caller owns both backends: close the old one after this returns True.
        """
        step = FusionStep(package, backend)
        done = threading.Event()
        with self._swap_lock:
            self._pending_swap = (package, backend, step, done)
        return done.wait(timeout_s)

    def _apply_swap(self) -> None:
        with self._swap_lock:
            pending, self._pending_swap = self._pending_swap, None
        if pending is None:
            return
        package, backend, step, done = pending
        step.seq = self.step.seq
        if step.event_out.labels != self.step.event_out.labels:
            self.post = PostProcessor(self.config.post, step.event_out.labels)
        self.package, self.backend, self.step = package, backend, step
        done.set()

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = PipelineError(stage, exc)
                self._error.__cause__ = exc
        self.request_stop(f"error in {stage}")

    def run(self, timeout_s: float | None = None) -> RunStats:
        """Run until the triggering sources end, ``request_stop()``, an error, or ``timeout_s``."""
        if self._ran:
            raise EdgeFusionError("a Pipeline runs once; build a new one")
        if self._drivers_left == 0:
            raise EdgeFusionError("no source triggers fusion steps: add a camera or a timeline source")
        self._ran = True
        t0 = time.monotonic()
        threads = [threading.Thread(target=self._source_loop, args=(s,), name=f"source-{s.name}", daemon=True)
                   for s in self.sources]
        preparer = threading.Thread(target=self._prepare_loop, name="fusion-prepare", daemon=True)
        worker = threading.Thread(target=self._infer_loop, name="fusion-infer", daemon=True)
        sinker = threading.Thread(target=self._sink_loop, name="sinks", daemon=True)
        for t in (*threads, preparer, worker, sinker):
            t.start()
        deadline = None if timeout_s is None else t0 + timeout_s
        while preparer.is_alive() or worker.is_alive() or sinker.is_alive():
            worker.join(0.05)
            if deadline is not None and time.monotonic() > deadline and not self.stop_event.is_set():
                self.request_stop("timeout")
            if self._stop_mono is not None and time.monotonic() - self._stop_mono > self.config.join_timeout_s:
                break  # bounded: whatever is still running is reported by _join below
        self.request_stop(self.stats.stopped_by)  # the trigger ended: stop the other sources too
        self._join([preparer, worker, sinker, *threads], "shutdown")
        self.stats.wall_s = time.monotonic() - t0
        self._finish_stats()
        if self._error is not None:
            raise self._error
        return self.stats

    def _join(self, threads: list[threading.Thread], what: str) -> None:
        end = time.monotonic() + self.config.join_timeout_s
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck and self._error is None:
            self._fail(what, TimeoutError(f"threads {stuck} did not stop within {self.config.join_timeout_s} s"))

    # -- threads ----------------------------------------------------------------------

    def _source_loop(self, src: Source) -> None:
        stage = "source open"
        try:
            with src:
                self.stats.sources[src.name] = dict(src.info)
                stage = "source read"
                for sample in src:
                    if self.stop_event.is_set():
                        break
                    env = _Envelope(sample, time.monotonic_ns())
                    q = self.frames if isinstance(sample, Frame) else \
                        self.audio if isinstance(sample, AudioChunk) else \
                        self.text if isinstance(sample, Command) else None
                    if q is None:
                        raise TypeError(f"source '{src.name}' yielded {type(sample).__name__}, not a sample")
                    for tap in self.taps:
                        tap(sample)
                    q.put(env, self.stop_event)
                self.stats.sources[src.name] = dict(src.info)
        except BaseException as exc:
            self._fail(stage, exc)
        finally:
            self.stats.rejected[src.name] = dict(src.rejected)
            if src.drives_run:
                with self._driver_lock:
                    self._drivers_left -= 1
                    if self._drivers_left == 0:
                        self.frames.close()

    def _drain_side_streams(self) -> None:
        for q, add in ((self.audio, self.sync.add_audio), (self.text, self.sync.add_command)):
            while True:
                try:
                    env = q.get(timeout=0)
                except QueueClosed:
                    break
                if env is None:
                    break
                add(env.sample)

    def _stopping_too_long(self) -> bool:
        return self._stop_mono is not None and time.monotonic() - self._stop_mono > self.config.join_timeout_s / 2

    def _prepare_loop(self) -> None:
        """Stage 1 (own thread, so it overlaps inference): sync + preprocess."""
        stage = "sync"
        last_frame = time.monotonic_ns()
        stalled = False
        try:
            while self._error is None and not self._stopping_too_long():
                self._drain_side_streams()
                try:
                    env = self.frames.get(timeout=0.02)
                except QueueClosed:
                    break
                if env is None:
                    if not stalled and time.monotonic_ns() - last_frame > self.config.stall_timeout_ns:
                        stalled = True
                        self.sync.outcomes["camera_stalled"] += 1
                    continue
                t_deq = last_frame = time.monotonic_ns()
                stalled = False
                self._drain_side_streams()
                stage = "sync"
                window, info = self.sync.on_frame(env.sample)
                t_sync = time.monotonic_ns()
                if window is None:
                    self.drops.add("sync", DropReason.SYNC_SKIPPED)
                    continue
                stage = "preprocess"
                step = self.step
                feeds = step.preprocess(window)
                t_pre = time.monotonic_ns()
                timings = {"queue_wait": t_deq - env.recv_ns, "sync": t_sync - t_deq, "preprocess": t_pre - t_sync}
                self.prepared.put(_Prepared(env, window, info.command_t_ns, feeds, timings, t_pre, step),
                                  self.stop_event)
        except BaseException as exc:
            self._fail(stage, exc)
        finally:
            self.prepared.close()

    def _infer_loop(self) -> None:
        """Stage 2: backend + postprocess, then hand the result to the sink worker."""
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
                if item.step is not self.step:  # prepared for the model just replaced
                    stage = "preprocess"
                    item.feeds = self.step.preprocess(item.window)
                t_start = time.monotonic_ns()
                stage = "backend"
                outs = self.backend.infer(item.feeds)
                t_inf = time.monotonic_ns()
                stage = "postprocess"
                raw = self.step.postprocess(item.window, outs)
                sm = self.post.update(raw.scores, raw.action, item.command_t_ns)
                t_post = time.monotonic_ns()
                timings = dict(item.timings)
                timings["queue_wait"] += t_start - item.ready_ns  # both queues: frames and prepared
                timings.update(inference=t_inf - t_start, postprocess=t_post - t_inf,
                               end_to_end=t_post - item.env.recv_ns)
                result = replace(raw, action=sm.action, events=sm.events, emitted=sm.emitted, timings_ns=timings)
                for k, v in timings.items():
                    self.hist[k].record(v)
                self.stats.steps += 1
                self.stats.emitted += sm.emitted
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

    def _finish_stats(self) -> None:
        self.stats.drops = self.drops.snapshot()
        self.stats.sync = dict(sorted(self.sync.outcomes.items()))
        self.stats.latency_ms = {k: h.summary_ms() for k, h in self.hist.items()}
