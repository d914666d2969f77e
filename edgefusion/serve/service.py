"""``edgefusion serve``: the runtime as a long-running service.

- Starts from a TOML config; HTTP ``/healthz`` at once, ``/readyz`` once the model is
  warm and every required stream is fresh, ``/metrics`` (Prometheus).
- SIGTERM/SIGINT: in-flight steps finish, sinks flush, exit 0. SIGHUP: the config is read
  again and its model loaded and warmed up *beside* the running one, checked, then
  swapped between two steps (sequence numbers continue); if anything fails the old model
  keeps running and the failure is reported (log, ``/readyz``, metrics).
- systemd: READY=1 when ready, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 on shutdown.
- A source that fails (camera unplugged, file gone) is reopened with backoff while the
  others keep running; readiness reflects it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.backends import Backend, open_backend
from edgefusion.config import ServiceConfig, load, pipeline_config
from edgefusion.errors import EdgeFusionError
from edgefusion.package import ModelPackage, load_package
from edgefusion.pipeline import STAGES, Pipeline
from edgefusion.queues import DropCounter
from edgefusion.runbuild import Recording, RunBuilder
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow, Result
from edgefusion.serve.logfmt import setup_logging
from edgefusion.serve.metrics import HealthServer, Metrics
from edgefusion.serve.notify import Notifier, watchdog_interval_s
from edgefusion.sinks import JsonlSink, Sink
from edgefusion.sources import CallTextSource, RetryingSource, RetryPolicy

__all__ = ["Service"]

log = logging.getLogger("edgefusion.serve")
MS = 1_000_000


class Service:
    """One service instance; :meth:`run` blocks until stopped and returns the exit status."""

    def __init__(self, config_path: str | Path) -> None:
        self.config_path = Path(config_path)
        self.cfg: ServiceConfig = load(self.config_path)
        self.run_id = uuid.uuid4().hex[:12]
        self.metrics = Metrics()
        self.notifier = Notifier()
        self.last_seen: dict[str, int] = {}
        self.warm = False
        self.last_reload: dict[str, Any] = {}
        self.pipe: Pipeline | None = None
        self.sources: dict[str, RetryingSource] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()

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

    @staticmethod
    def _warm_up(pkg: ModelPackage, be: Backend, steps: int) -> None:
        """A few steps on synthetic windows; outputs must be finite and of the declared shapes."""
        rng = np.random.default_rng(0)
        builder = pkg.feed_builder()
        for i in range(max(1, steps)):
            img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            audio = (rng.standard_normal(16000) * 0.05).astype(np.float32)
            w = FusionWindow(t_ns=i, image=img, audio=audio, command="turn on the lights" if i % 2 else None)
            outs = be.infer(builder.build([w])[0])
            for o in pkg.outputs:
                v = outs[o.name]
                if v.shape != (1, len(o.labels)) or not np.all(np.isfinite(v)):
                    raise EdgeFusionError(f"model check failed: output '{o.name}' has shape {v.shape} (expected "
                                          f"(1, {len(o.labels)})) or non-finite values")

    # -- sources and sinks ------------------------------------------------------------

    def _builder(self, cfg: ServiceConfig, pkg: ModelPackage) -> RunBuilder:
        """The run: every configured stream retried on failure, the sinks, the recorder."""
        s = cfg.sources
        retry = RetryPolicy(s.retry_initial_s, s.retry_max_s, lambda n: self.metrics.source_restarts.labels(n).inc())
        b = RunBuilder(pipeline_config(cfg), retry=retry)
        b.camera(s.camera.uri, pace=s.camera.pace, loop=s.camera.loop)
        b.audio(s.audio.uri, loop=s.audio.loop)
        b.text(s.text.uri)
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
        return b

    def _mqtt_sink(self, cfg: ServiceConfig, pkg: ModelPackage, drops: DropCounter,
                   commands: CallTextSource | None) -> Sink:
        from edgefusion.serve.mqtt import MqttSink

        self.mqtt = MqttSink(cfg.sinks.mqtt, pkg.output("multilabel_logits").labels, pkg.name, drops, commands)
        return self.mqtt

    # -- readiness, metrics -----------------------------------------------------------

    def _seen(self, sample: Any) -> None:
        kind = "camera" if isinstance(sample, Frame) else "audio" if isinstance(sample, AudioChunk) else \
            "text" if isinstance(sample, Command) else "other"
        self.last_seen[kind] = time.monotonic_ns()

    def ready(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic_ns()
        s = self.cfg.sources
        streams = {}
        ok = self.warm
        for name, required, budget in (("camera", s.camera.required, s.camera.max_age_ms),
                                       ("audio", s.audio.required and s.audio.uri != "none", s.audio.max_age_ms)):
            seen = self.last_seen.get(name)
            age_ms = None if seen is None else round((now - seen) / MS, 1)
            fresh = age_ms is not None and age_ms <= budget
            src = self.sources.get(name)
            streams[name] = {"required": required, "age_ms": age_ms, "fresh": fresh,
                             "failing": src.failing if src else None}
            ok = ok and (fresh or not required)
        self.metrics.ready.set(1 if ok else 0)
        pkg = self.pipe.package.name if self.pipe else None
        return ok, {"model": pkg, "warm": self.warm, "streams": streams, "last_reload": self.last_reload,
                    "run_id": self.run_id}

    def _on_result(self, r: Result) -> None:
        m = self.metrics
        for s in STAGES:
            m.stage.labels(s).observe(r.timings_ns.get(s, 0) / 1e9)
        m.results.inc()
        if r.emitted:
            m.actions.labels(r.action).inc()

    def _refresh_gauges(self) -> None:
        if self.pipe is None:
            return
        for key, n in self.pipe.drops.snapshot().items():
            where, _, reason = key.partition("/")
            self.metrics.drops.labels(where, reason).set(n)
        now = time.monotonic_ns()
        for k, t in self.last_seen.items():
            self.metrics.stream_age.labels(k).set((now - t) / 1e9)
        if getattr(self, "mqtt", None) is not None:
            self.metrics.mqtt_buffered.set(self.mqtt.buffered)

    # -- lifecycle --------------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Readiness -> READY=1 once; watchdog pings; reloads (off the signal handler)."""
        interval = watchdog_interval_s(self.cfg.watchdog_s)
        next_ping = time.monotonic()
        announced = False
        while not self._stop.is_set():
            if not announced and self.ready()[0]:
                self.notifier.send("READY=1", f"STATUS=serving {self.pipe.package.name if self.pipe else ''}")
                log.info("ready")
                announced = True
            if interval and time.monotonic() >= next_ping:
                self.notifier.send("WATCHDOG=1")
                next_ping = time.monotonic() + interval
            if self._reload.is_set():
                self._reload.clear()
                self.reload()
            self._stop.wait(0.05)

    def reload(self) -> None:
        """Load the configured model beside the running one, check it, swap; keep the old on failure."""
        assert self.pipe is not None
        t0 = time.monotonic()
        self.notifier.send("RELOADING=1")
        try:
            cfg = load(self.config_path)
            pkg, be = self._open_model(cfg)
        except (EdgeFusionError, OSError, ValueError, RuntimeError) as exc:
            self.metrics.reloads.labels("failed").inc()
            self.last_reload = {"ok": False, "error": str(exc), "at_s": round(time.monotonic() - t0, 3)}
            log.error("reload failed, the running model stays: %s", exc)
            self.notifier.send("READY=1", "STATUS=reload failed; serving the previous model")
            return
        old = self.pipe.backend
        if not self.pipe.swap_model(pkg, be):
            be.close()
            self.metrics.reloads.labels("failed").inc()
            self.last_reload = {"ok": False, "error": "the pipeline did not take the new model within 10 s"}
            log.error("reload failed: swap not applied")
            return
        old.close()
        self.metrics.reloads.labels("ok").inc()
        self.metrics.model.info({"name": pkg.name, "variant": cfg.model.variant, "backend": cfg.model.backend})
        self.last_reload = {"ok": True, "model": pkg.name, "seconds": round(time.monotonic() - t0, 3)}
        log.info("reloaded: now serving %s", pkg.name)
        self.notifier.send("READY=1", f"STATUS=serving {pkg.name}")

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        self.notifier.send("STOPPING=1")
        self._stop_requested = True
        if self.pipe is not None:
            self.pipe.request_stop("signal")

    def run(self) -> int:
        setup_logging(self.cfg.logging.level, self.cfg.logging.json, self.run_id)
        # handlers first: a SIGHUP or SIGTERM during start-up must not kill the process
        self._stop_requested = False
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        cfg = self.cfg
        http = None
        if cfg.http.enabled:
            http = HealthServer(cfg.http.host, cfg.http.port, self.metrics, self.ready, self._refresh_gauges)
            http.start()
            log.info("http on %s:%d (/healthz /readyz /metrics)", cfg.http.host, http.port)
        pkg, be = self._open_model(cfg)
        self.metrics.model.info({"name": pkg.name, "variant": cfg.model.variant, "backend": cfg.model.backend})
        run = self._builder(cfg, pkg).build(pkg, be, on_result=self._on_result)
        pipe = self.pipe = run.pipeline
        self.warm = True
        if self._stop_requested:
            pipe.request_stop("signal")
        keeper = threading.Thread(target=self._housekeeping, name="sinks-housekeeping", daemon=True)
        keeper.start()
        status = 0
        try:
            stats = pipe.run()
            log.info("stopped (%s): %d steps, drops %s", stats.stopped_by, stats.steps, stats.drops or "none")
        except EdgeFusionError as exc:
            log.error("%s", exc)
            status = 1
        finally:
            self.notifier.send("STOPPING=1")
            self._stop.set()
            keeper.join(2)
            for name, failure in run.close():
                log.error("closing sink %s: %s", name, failure)
                status = 1
            pipe.backend.close()
            if http is not None:
                http.close()
        return status
