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

import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.backends import Backend, open_backend
from edgefusion.config import ServiceConfig, load
from edgefusion.errors import EdgeFusionError
from edgefusion.package import ModelPackage, load_package
from edgefusion.pipeline import STAGES, Pipeline, PipelineConfig
from edgefusion.postprocess import PostConfig
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow, Result
from edgefusion.serve.metrics import HealthServer, Metrics
from edgefusion.serve.notify import Notifier, watchdog_interval_s
from edgefusion.sinks import Sink
from edgefusion.sources import Source
from edgefusion.sync import MissingPolicy, SyncConfig

__all__ = ["RetryingSource", "Service"]

log = logging.getLogger("edgefusion.serve")
MS = 1_000_000


class RetryingSource(Source):
    """Reopens the source built by ``factory`` after a failure, with exponential backoff."""

    def __init__(self, factory: Any, name: str, drives_run: bool, initial_s: float, max_s: float,
                 on_restart: Any = None) -> None:
        super().__init__()
        self.factory, self.name, self.drives_run = factory, name, drives_run
        self.initial_s, self.max_s, self.on_restart = initial_s, max_s, on_restart
        self.failing: str | None = None

    def __iter__(self) -> Iterator[Any]:
        delay = self.initial_s
        while not self.stop.is_set():
            try:
                src = self.factory()
                src.stop = self.stop
                with src:
                    self.info = dict(src.info)
                    for sample in src:
                        if self.failing:
                            log.info("source %s recovered", self.name)
                            self.failing, delay = None, self.initial_s
                        yield sample
                    self.rejected.update(src.rejected)
                return  # a normal end of stream
            except (EdgeFusionError, OSError, RuntimeError, ValueError) as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                log.warning("source %s failed (%s); retrying in %.1f s", self.name, self.failing, delay)
                if self.on_restart:
                    self.on_restart(self.name)
                if self.stop.wait(delay):
                    return
                delay = min(self.max_s, delay * 2)


class _JsonFormatter(logging.Formatter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"t": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name,
                           "run_id": self.run_id, "msg": record.getMessage()})


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

    def _sources(self, cfg: ServiceConfig) -> list[Source]:
        from edgefusion.sources import AudioFileSource, CameraSource, MicrophoneSource, open_text_source

        s = cfg.sources
        out: dict[str, RetryingSource] = {}

        def retrying(name: str, factory: Any, drives: bool) -> None:
            out[name] = RetryingSource(factory, name, drives, s.retry_initial_s, s.retry_max_s,
                                       lambda n: self.metrics.source_restarts.labels(n).inc())

        cam = s.camera
        if cam.uri.startswith("synth:"):
            from edgefusion.scenarios import generate_timeline, get_scenario
            from edgefusion.sources import TimelineSource

            tl = generate_timeline(get_scenario(cam.uri.split(":", 1)[1]), 20.0, seed=1)

            def timeline_factory() -> Source:
                return _LoopingTimeline(tl) if cam.loop else TimelineSource(tl, pace=cam.pace)

            retrying("camera", timeline_factory, True)
        else:
            retrying("camera", lambda: CameraSource(cam.uri, pace=cam.pace, loop=cam.loop), True)
        a = s.audio
        if a.uri in ("default",) or a.uri.startswith("device:"):
            dev = a.uri.partition(":")[2] or None
            retrying("audio", lambda: MicrophoneSource(int(dev) if dev and dev.isdigit() else dev), False)
        elif a.uri != "none":
            files: list[str | Path] = [p for p in a.uri.split(",") if p]
            retrying("audio", lambda: AudioFileSource(files, loop=a.loop), False)
        if s.text.uri != "none":
            retrying("text", lambda: open_text_source(s.text.uri), False)
        self.sources = out
        return list(out.values())

    def _sinks(self, cfg: ServiceConfig, pkg: ModelPackage, pipe: Pipeline) -> list[Sink]:
        from edgefusion.sinks import JsonlSink

        sinks: list[Sink] = []
        if cfg.sinks.jsonl:
            sinks.append(JsonlSink(cfg.sinks.jsonl, only_emitted=cfg.sinks.jsonl_only_actions))
        if cfg.sinks.mqtt.enabled:
            from edgefusion.serve.mqtt import MqttSink
            from edgefusion.sources import CallTextSource

            commands = CallTextSource(name="text") if cfg.sinks.mqtt.commands else None
            self.mqtt = MqttSink(cfg.sinks.mqtt, pkg.output("multilabel_logits").labels, pkg.name, pipe.drops,
                                 commands)
            if commands is not None:
                pipe.sources.append(commands)
            sinks.append(self.mqtt)
        if cfg.recording.path:
            from edgefusion.logs import LogWriter
            from edgefusion.logs.recorder import Recorder
            from edgefusion.package import sha256_file

            rec = Recorder(LogWriter(cfg.recording.path, image_format=cfg.recording.image_format), drops=pipe.drops)
            rec.describe_run(pkg.manifest, {"config": str(self.config_path)}, sha256_file(pkg.path / "manifest.json"),
                             cfg.model.package)
            pipe.taps.append(rec.tap)
            sinks.append(rec)
        return sinks

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

    def _setup_logging(self) -> None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter(self.run_id) if self.cfg.logging.json else
                             logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{self.run_id}] %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(self.cfg.logging.level.upper())

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        log.info("signal %s: draining", signal.Signals(signum).name)
        self.notifier.send("STOPPING=1")
        self._stop_requested = True
        if self.pipe is not None:
            self.pipe.request_stop("signal")

    def run(self) -> int:
        self._setup_logging()
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
        pcfg = PipelineConfig(
            sync=SyncConfig(audio_max_skew_ns=cfg.sync.audio_max_skew_ms * MS,
                            audio_policy=MissingPolicy(cfg.sync.audio_policy),
                            command_horizon_ns=cfg.sync.command_horizon_ms * MS,
                            offsets_ns={"audio": cfg.sync.audio_offset_ms * MS}),
            post=PostConfig(on=cfg.post.on, off=cfg.post.off, event_min_steps=cfg.post.event_min_steps,
                            action_min_steps=cfg.post.action_min_steps))
        pipe = Pipeline(pkg, be, self._sources(cfg), [], pcfg, on_result=self._on_result, taps=[self._seen])
        self.pipe = pipe
        pipe.sinks.extend(self._sinks(cfg, pkg, pipe))
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
            for s in pipe.sinks:
                try:
                    s.close()
                except EdgeFusionError as exc:
                    log.error("closing sink %s: %s", s.name, exc)
                    status = 1
            pipe.backend.close()
            if http is not None:
                http.close()
        return status


class _LoopingTimeline(Source):
    """A synthesized timeline played again and again in real time, time increasing (demo configs)."""

    name = "camera"
    drives_run = True

    def __init__(self, tl: Any) -> None:
        super().__init__()
        self.tl = tl

    def __iter__(self) -> Iterator[Any]:
        from edgefusion.sources import TimelineSource

        span = int(self.tl.frame_t_ns[-1]) + 1_000_000_000 // 30
        k = 0
        while not self.stop.is_set():
            src = TimelineSource(self.tl, pace=True, start_ns=k * span)
            src.stop = self.stop
            yield from src
            k += 1
