"""``edgefusion serve``: the runtime as a long-running service that can be left unattended.

- Starts from a TOML config checked as ``config check`` does (every problem at once, exit
  2). HTTP at once: ``/healthz`` (liveness: 503 once the pipeline stalls), ``/readyz``
  (200 once the model is warm, every required stream fresh and required sinks connected;
  otherwise 503 with the reasons, e.g. ``camera_reconnecting``), ``/metrics``.
- SIGTERM/SIGINT: in-flight steps finish, sinks flush, exit 0; also during the model's
  warm-up, which stops between two steps. The handlers only record the signal (a handler
  that takes a lock can deadlock against the code it interrupted); the service's own
  thread acts on it within 50 ms.
- SIGHUP: the config is read and checked again and its model loaded and warmed up
  *beside* the running one, on a thread of its own, then swapped between two steps
  (sequence numbers continue). Whatever fails, the old model keeps serving, the failure
  is logged, counted and shown in ``/readyz`` (``last_reload``). Only ``[model]`` is
  applied by a reload; other changes are named in the log and wait for a restart.
- systemd: READY=1 once the model is warm and the pipeline runs (a camera still
  reconnecting shows in STATUS and ``/readyz``, not as a start-up timeout and restart
  loop); RELOADING=1 with MONOTONIC_USEC, then READY=1 again whatever the outcome;
  WATCHDOG=1 only while the pipeline makes progress (:mod:`edgefusion.serve.watchdog`);
  STOPPING=1 on shutdown.
- Streams that fail (camera unplugged, stream dropped) are reopened with backoff while
  the others keep running. A configured source that ends for good (a file without
  ``loop``) ends the service with status 1, so ``Restart=on-failure`` acts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.backends import Backend, open_backend
from edgefusion.config import ServiceConfig, pipeline_config, speech_config
from edgefusion.engine import FusionStep
from edgefusion.errors import EdgeFusionError
from edgefusion.package import ModelPackage, load_package
from edgefusion.pipeline import STAGES, Pipeline, RunStats
from edgefusion.queues import DropCounter
from edgefusion.runbuild import Recording, RunBuilder
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow, Result
from edgefusion.serve.check import load_checked
from edgefusion.serve.http import HttpServer
from edgefusion.serve.logfmt import setup_logging
from edgefusion.serve.memory import limit_arenas
from edgefusion.serve.metrics import Metrics
from edgefusion.serve.notify import Notifier, watchdog_interval_s
from edgefusion.serve.reload import Reloader
from edgefusion.serve.watchdog import Watchdog
from edgefusion.sinks import JsonlSink, Sink
from edgefusion.sources import CallTextSource, RetryingSource, RetryPolicy
from edgefusion.stages import Stage, open_stages, result_events

__all__ = ["Service"]

log = logging.getLogger("edgefusion.serve")
MS = 1_000_000
#: drops that show the pipeline took a frame without producing a result (progress for the watchdog)
CONSUMED = ("sync/sync_skipped", "frames/too_old")


class _Stopped(EdgeFusionError):
    """A stop was requested while a model was being loaded."""


class Service:
    """One service instance; :meth:`run` blocks until stopped and returns the exit status.

    Raises:
        ConfigError: the config has problems (all of them, one line each).
    """

    def __init__(self, config_path: str | Path, foxglove: str | None = None) -> None:
        self.config_path = Path(config_path)
        self.foxglove = foxglove  # [HOST:]PORT of the live view (edgefusion.liveview), or None
        self.cfg: ServiceConfig = load_checked(self.config_path)
        self.run_id = uuid.uuid4().hex[:12]
        streams = ("camera", *(n for n, u in (("audio", self.cfg.sources.audio.uri),
                                              ("text", self.cfg.sources.text.uri)) if u != "none"))
        self.metrics = Metrics(lambda: self.pipe.drops.snapshot() if self.pipe else {}, streams)
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.notifier, watchdog_interval_s(self.cfg.watchdog_s), self.cfg.stall_s)
        self.last_seen: dict[str, int] = {}
        self.frames_in = 0  # camera frames delivered (the watchdog's input)
        self.results_out = 0  # results delivered to the sinks (its progress)
        self.warm = False
        self.last_reload: dict[str, Any] = {}
        self.pipe: Pipeline | None = None
        #: the stages in use ([[stages]]), open until the service ends or a reload replaces them
        self.stages_open = contextlib.ExitStack()
        self.stages: list[Stage] = []
        self.sources: dict[str, RetryingSource] = {}
        self.mqtt: Any = None
        self._stop = threading.Event()  # the service's own threads end
        self.reloader = Reloader(self)
        self._signals: list[int] = []  # appended by the handlers, acted on by the housekeeping thread
        self._stopping = False
        self._status = ""

    # -- model ------------------------------------------------------------------------

    def _open_model(self, cfg: ServiceConfig) -> tuple[ModelPackage, Backend]:
        m = cfg.model
        pkg = load_package(m.package)
        be = open_backend(m.backend, pkg, variant=m.variant, threads=m.threads)
        try:
            self._warm_up(pkg, be, m.warmup_steps)
        except BaseException:
            be.close()
            raise
        return pkg, be

    def _warm_up(self, pkg: ModelPackage, be: Backend, steps: int) -> None:
        """A few steps on synthetic windows; outputs must be finite and read as the manifest declares."""
        rng = np.random.default_rng(0)
        step = FusionStep(pkg, be)
        for i in range(max(1, steps)):
            if self._stopping:
                raise _Stopped("stopped while warming up the model")
            img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            audio = (rng.standard_normal(16000) * 0.05).astype(np.float32)
            w = FusionWindow(t_ns=i, image=img, audio=audio, command="turn on the lights" if i % 2 else None)
            feeds, info = step.preprocess(w)
            outs = step.infer(feeds, w.t_ns)
            for o in pkg.outputs:
                v = outs.get(o.name)
                if v is None or (v.dtype.kind == "f" and not np.all(np.isfinite(v))):
                    raise EdgeFusionError(f"model check failed: output '{o.name}' is "
                                          f"{'missing' if v is None else 'not finite'}")
            try:
                step.postprocess(outs, info)  # shapes that disagree with the labels fail here
            except EdgeFusionError as exc:
                raise EdgeFusionError(f"model check failed: {exc}") from exc

    # -- sources and sinks ------------------------------------------------------------

    def _builder(self, cfg: ServiceConfig, pkg: ModelPackage) -> RunBuilder:
        """The run: every configured stream retried on failure, the sinks, the recorder."""
        s = cfg.sources
        retry = RetryPolicy(s.retry_initial_s, s.retry_max_s, lambda n: self.metrics.source_restarts.labels(n).inc())
        b = RunBuilder(pipeline_config(cfg), retry=retry)
        b.camera(s.camera.uri, pace=s.camera.pace, loop=s.camera.loop)
        b.audio(s.audio.uri, loop=s.audio.loop)
        b.text(s.text.uri)
        if s.speech.enabled:
            from edgefusion.sources.speech import speech_task

            b.speech(speech_task(pkg), speech_config(cfg))
        self.sources = b.retrying
        b.add_tap(self._seen)
        if cfg.sinks.jsonl:
            b.add_sink(JsonlSink(cfg.sinks.jsonl, only_emitted=cfg.sinks.jsonl_only_actions))
        if cfg.sinks.mqtt.enabled:
            commands = CallTextSource(name="text") if cfg.sinks.mqtt.commands else None
            if commands is not None:
                b.add_source(commands)
            b.add_sink(lambda drops: self._mqtt_sink(cfg, pkg, drops, commands))
        if cfg.recording.path:
            b.record(Recording(cfg.recording.path, image_format=cfg.recording.image_format,
                               run_config={"config": str(self.config_path)}, package_ref=cfg.model.package))
        if self.foxglove:
            b.live_view(self.foxglove)
        return b

    def _mqtt_sink(self, cfg: ServiceConfig, pkg: ModelPackage, drops: DropCounter,
                   commands: CallTextSource | None) -> Sink:
        from edgefusion.serve.mqtt import MqttSink

        events = result_events(pkg.output("multilabel_logits").labels, self.stages)  # a detector stage's too
        self.mqtt = MqttSink(cfg.sinks.mqtt, events, pkg.name, drops, commands)
        return self.mqtt  # type: ignore[no-any-return]

    # -- readiness, health, metrics ---------------------------------------------------

    def _seen(self, sample: Any) -> None:
        kind = "camera" if isinstance(sample, Frame) else "audio" if isinstance(sample, AudioChunk) else \
            "text" if isinstance(sample, Command) else "other"
        self.last_seen[kind] = time.monotonic_ns()
        if kind == "camera":
            self.frames_in += 1

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """(ready?, details): what ``/readyz`` answers; ``reasons`` names everything that is not ready."""
        now = time.monotonic_ns()
        s = self.cfg.sources
        reasons = [] if self.warm else ["model_loading"]
        streams = {}
        for name, required, budget in (("camera", s.camera.required, s.camera.max_age_ms),
                                       ("audio", s.audio.required and s.audio.uri != "none", s.audio.max_age_ms)):
            seen = self.last_seen.get(name)
            age_ms = None if seen is None else round((now - seen) / MS, 1)
            fresh = age_ms is not None and age_ms <= budget
            src = self.sources.get(name)
            state = src.state if src else "none"
            streams[name] = {"required": required, "age_ms": age_ms, "fresh": fresh, "state": state,
                             "failing": src.failing if src else None, "failures": src.failures if src else 0}
            if required and not fresh and self.warm:
                reasons.append(f"{name}_reconnecting" if state == "reconnecting" else
                               f"{name}_stale" if seen is not None else f"{name}_waiting")
        text = self.sources.get("text")
        if text is not None:  # no age to judge by (commands come when they come): only whether it opened
            streams["text"] = {"required": True, "state": text.state, "failing": text.failing,
                               "failures": text.failures}
            if text.failing is not None and self.warm:
                reasons.append("text_reconnecting")  # e.g. its port is taken: commands cannot arrive
        sinks = {}
        if self.mqtt is not None:
            sinks["mqtt"] = h = self.mqtt.health()
            if self.cfg.sinks.mqtt.required and not h["connected"]:
                reasons.append("mqtt_disconnected")
        if self.watchdog.stalled:
            reasons.append("pipeline_stalled")
        if self._stopping:
            reasons.append("stopping")
        ok = not reasons
        self.metrics.ready.set(1 if ok else 0)
        pkg = self.pipe.package.name if self.pipe else None
        return ok, {"model": pkg, "warm": self.warm, "reasons": reasons, "streams": streams, "sinks": sinks,
                    "pipeline": {"stalled": self.watchdog.stalled,
                                 "stalled_for_s": round(self.watchdog.detector.stalled_for(), 1)},
                    "last_reload": self.last_reload, "run_id": self.run_id}

    def _routes(self) -> dict[str, Any]:
        def healthz() -> tuple[int, bytes, str]:
            alive, line = self.watchdog.health()
            return (200 if alive else 503), line.encode() + b"\n", "text/plain"

        def readyz() -> tuple[int, bytes, str]:
            ok, details = self.ready()
            return (200 if ok else 503), json.dumps({"ready": ok, **details}).encode() + b"\n", "application/json"

        def metrics() -> tuple[int, bytes, str]:
            self._refresh_gauges()
            return 200, self.metrics.render(), "text/plain; version=0.0.4; charset=utf-8"

        return {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics}

    def _on_result(self, r: Result) -> None:
        m = self.metrics
        for s in STAGES:
            m.stage.labels(s).observe(r.timings_ns.get(s, 0) / 1e9)
        for s, ns in r.timings_ns.items():  # the models before the main one: stage:<name>
            if s.startswith("stage:"):
                m.stage.labels(s).observe(ns / 1e9)
        m.results.inc()
        if r.emitted:
            m.actions.labels(r.action).inc()
        self.results_out += 1

    def _progress(self) -> int:
        drops = self.pipe.drops.snapshot() if self.pipe else {}
        return self.results_out + sum(drops.get(k, 0) for k in CONSUMED)

    def _refresh_gauges(self) -> None:
        self.ready()
        now = time.monotonic_ns()
        for k, t in list(self.last_seen.items()):
            self.metrics.stream_age.labels(k).set((now - t) / 1e9)
        if self.mqtt is not None:
            h = self.mqtt.health()
            self.metrics.mqtt_buffered.set(h["buffered"])
            self.metrics.mqtt_connected.set(1 if h["connected"] else 0)

    # -- signals and the service's own threads ----------------------------------------

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)  # nothing else: see the module docstring

    def _dispatch_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGHUP:
                log.info("SIGHUP: reloading %s", self.config_path)
                self.reloader.request()
                continue
            if not self._stopping:
                log.info("signal %s: draining", signal.Signals(signum).name)
                self.notifier.send("STOPPING=1")
                self._stopping = True
            if self.pipe is not None:
                self.pipe.request_stop("signal")

    def _housekeeping(self) -> None:
        """Signals, watchdog pings, systemd status; survives any error (logged and counted)."""
        next_status = 0.0
        while not self._stop.wait(0.05):
            try:
                self._dispatch_signals()
                if self.pipe is None:
                    continue
                self.watchdog.tick(self._progress(), self.frames_in)
                self.metrics.stalled.set(1 if self.watchdog.stalled else 0)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + 1.0
                    self._update_status()
            except Exception:
                self.metrics.housekeeping_errors.inc()
                log.exception("housekeeping error (the service continues)")

    def _update_status(self) -> None:
        ok, details = self.ready()
        status = f"serving {details['model']}" if ok else f"serving {details['model']}, not ready: " \
                                                          f"{', '.join(details['reasons'])}"
        if status != self._status:
            self._status = status
            self.notifier.send(f"STATUS={status}")

    def reload(self) -> bool:
        """Load the configured model beside the running one, check it, swap; keep the old one on failure."""
        return self.reloader.reload()

    # -- lifecycle --------------------------------------------------------------------

    def _exit_status(self, stats: RunStats) -> int:
        log.info("stopped (%s): %d steps, drops %s", stats.stopped_by, stats.steps, stats.drops or "none")
        if stats.stopped_by == "signal":
            return 0
        log.error("the camera source ended for good (%s, %s); a service needs a live source or loop = true. "
                  "Exiting with status 1", stats.stopped_by, self.cfg.sources.camera.uri)
        return 1

    def run(self) -> int:
        limit_arenas()  # before any thread starts: flat memory across reloads (see serve/memory.py)
        setup_logging(self.cfg.logging.level, self.cfg.logging.json, self.run_id)
        # handlers first: a SIGHUP or SIGTERM during start-up must not kill the process
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        keeper = threading.Thread(target=self._housekeeping, name="sinks-housekeeping", daemon=True)
        keeper.start()
        cfg, http, status = self.cfg, None, 0
        closing = contextlib.ExitStack()
        try:
            if cfg.http.enabled:
                http = HttpServer(cfg.http.host, cfg.http.port, self._routes(), cfg.http.max_connections,
                                  cfg.http.timeout_s)
                http.start()
                log.info("http on %s:%d (/healthz /readyz /metrics)", cfg.http.host, http.port)
            try:
                pkg, be = self._open_model(cfg)
            except _Stopped:
                log.info("stopped during start-up")
                return 0
            self.metrics.set_model(pkg.name, cfg.model.variant, cfg.model.backend, pkg.output("class_logits").labels)
            # the stages in use, closed after the pipeline (in the finally); a reload replaces them
            closing.callback(lambda: self.stages_open.close())
            stages = self.stages = self.stages_open.enter_context(open_stages(cfg.stages))
            run = self._builder(cfg, pkg).build(pkg, be, on_result=self._on_result, stages=stages)
            pipe = self.pipe = run.pipeline
            self.warm = True
            self.notifier.send("READY=1", f"STATUS=serving {pkg.name}")
            log.info("ready: serving %s", pkg.name)
            if self._stopping:
                pipe.request_stop("signal")
            self.reloader.start()
            try:
                status = self._exit_status(pipe.run())
            except EdgeFusionError as exc:
                log.error("%s", exc)
                status = 1
            finally:
                self._stopping = True  # a reload warming up a model gives up
                self._stop.set()
                self.reloader.join(2)
                for name, failure in run.close():
                    log.error("closing sink %s: %s", name, failure)
                    status = 1
                pipe.backend.close()
        finally:
            closing.close()
            self.notifier.send("STOPPING=1")
            self._stop.set()
            keeper.join(2)
            if http is not None:
                http.close()
        return status
