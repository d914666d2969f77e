"""SIGHUP reloads of the service's model and stages, on a thread of their own.

A reload reads and checks the config again, loads and warms up its model beside the
running one, opens its ``[[stages]]`` afresh (when either config has any), and asks the
pipeline to swap both between two steps. It runs on its own thread
so that the watchdog keeps being fed meanwhile, and it catches *every* exception: a
broken package (a manifest missing a ``sha256``, a corrupt model file), a config with
problems, a model that fails its warm-up check, a pipeline that does not take the swap.
Each failure is logged, counted (``edgefusion_reloads_total{outcome="failed"}``) and
shown in ``/readyz`` as ``last_reload``; the old model and stages keep serving, and the next
SIGHUP tries again. systemd hears ``RELOADING=1`` (with ``MONOTONIC_USEC``) at the start
and ``READY=1`` at the end whatever the outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING

from edgefusion.config import ServiceConfig
from edgefusion.errors import EdgeFusionError
from edgefusion.serve.check import load_checked
from edgefusion.serve.memory import release_memory
from edgefusion.stages import open_stages, result_events

if TYPE_CHECKING:
    from edgefusion.serve.service import Service

__all__ = ["Reloader"]

log = logging.getLogger("edgefusion.serve")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Reloader:
    """Reloads ``service``'s model and stages when asked (:meth:`request`), one reload at a time."""

    def __init__(self, service: Service, swap_timeout_s: float = 10.0) -> None:
        self.service = service
        self.swap_timeout_s = swap_timeout_s
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sinks-reload", daemon=True)

    def request(self) -> None:
        """Ask for a reload (requests made while one runs are merged into the next)."""
        self._wanted.set()

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        svc = self.service
        while not svc._stop.is_set():
            if not self._wanted.wait(0.1) or svc.pipe is None:
                continue
            self._wanted.clear()
            try:
                self.reload()
            except Exception:  # reload() reports its own failures; this only keeps the thread alive
                svc.metrics.housekeeping_errors.inc()
                log.exception("reload error (the running model stays)")

    def reload(self) -> bool:
        """One reload; True once the new model (and stages) serve."""
        svc = self.service
        pipe = svc.pipe
        assert pipe is not None
        t0 = time.monotonic()
        svc.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}",
                          "STATUS=reloading the model")
        # what this reload opens, closed unless the pipeline takes it: the model's backend, the stages
        opened, staged = contextlib.ExitStack(), contextlib.ExitStack()
        try:
            cfg = load_checked(svc.config_path)
            pkg, be = svc._open_model(cfg)
            opened.callback(be.close)
            # the stages are opened afresh, as the model is (their packages may have changed on disk)
            stages = staged.enter_context(open_stages(cfg.stages)) if cfg.stages or svc.cfg.stages else None
        except Exception as exc:  # anything at all: the running model and stages stay
            staged.close()
            opened.close()
            return self._failed(exc, t0)
        old = pipe.backend
        error: Exception = EdgeFusionError(f"the pipeline did not take the new model within {self.swap_timeout_s:g} s "
                                           "(is it stalled?)")
        try:
            swapped = pipe.swap_model(pkg, be, self.swap_timeout_s, stages=stages) or not pipe.cancel_swap(be)
        except Exception as exc:  # refused before it was queued (a stage confirms a label the model lacks)
            pipe.cancel_swap(be)
            swapped, error = False, exc
        if not swapped:
            staged.close()
            opened.close()
            release_memory()
            return self._failed(error, t0)
        opened.pop_all()  # the new backend is the pipeline's now
        old.close()
        del old
        if stages is not None:  # the pipeline runs the new stages now: the old ones close, the new stay open
            kept, svc.stages_open = svc.stages_open, staged.pop_all()
            svc.stages = stages
            kept.close()
        release_memory()
        self._apply(cfg)
        m = cfg.model
        svc.metrics.set_model(pkg.name, m.variant, m.backend, pkg.output("class_logits").labels)
        if svc.mqtt is not None:
            svc.mqtt.set_model(result_events(pkg.output("multilabel_logits").labels, svc.stages), pkg.name)
        svc.metrics.reloads.labels("ok").inc()
        svc.last_reload = {"ok": True, "model": pkg.name, "seconds": round(time.monotonic() - t0, 3), "at": _now(),
                           **({"stages": [s.spec.name for s in stages]} if stages is not None else {})}
        log.info("reloaded in %.1f s: now serving %s%s", time.monotonic() - t0, pkg.name,
                 f" (stages: {', '.join(s.spec.name for s in stages) or 'none'})" if stages is not None else "")
        svc.notifier.send("READY=1", f"STATUS=serving {pkg.name}")
        svc._status = ""  # the next status line goes out even if it reads as before
        return True

    def _failed(self, exc: BaseException, t0: float) -> bool:
        svc = self.service
        error = str(exc) if isinstance(exc, EdgeFusionError) else f"{type(exc).__name__}: {exc}"
        svc.metrics.reloads.labels("failed").inc()
        svc.last_reload = {"ok": False, "error": error, "seconds": round(time.monotonic() - t0, 3), "at": _now()}
        log.error("reload failed, the running model stays: %s", error)
        svc.notifier.send("READY=1", "STATUS=reload failed; serving the previous model")
        svc._status = ""
        return False

    def _apply(self, cfg: ServiceConfig) -> None:
        """Take ``[model]`` and ``[[stages]]`` of the reloaded config; name the other changes, which wait for a
        restart."""
        svc = self.service
        others = [f.name for f in dataclasses.fields(cfg) if f.name not in ("model", "stages") and
                  getattr(cfg, f.name) != getattr(svc.cfg, f.name)]
        if others:
            log.warning("reload applies [model] and [[stages]] only; restart the service to apply the changes to: "
                        "%s", ", ".join(others))
        svc.cfg = dataclasses.replace(svc.cfg, model=cfg.model, stages=cfg.stages)
