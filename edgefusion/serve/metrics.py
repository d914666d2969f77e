"""The service's Prometheus metrics (``prometheus-client``), named by Prometheus's conventions.

Totals are counters ending in ``_total`` (drops included: they are read from the
pipeline's drop counter at scrape time, so they cannot drift from it); durations are in
seconds; label values an operator alerts on (reload outcomes, drop reasons, streams,
stages, actions) exist at 0 from the start, so ``rate()`` and absence alerts work before
the first event. ``process_*`` (CPU seconds, resident memory, open files) come from the
client's ``ProcessCollector``.

Example:
    >>> m = Metrics()
    >>> m.reloads.labels("failed").inc()
    >>> b'edgefusion_reloads_total{outcome="ok"} 0.0' in m.render()
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from edgefusion.engine import STAGES
from edgefusion.errors import MissingDependencyError

__all__ = ["DROP_KEYS", "Metrics"]

BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)

#: (where, reason) of every drop the pipeline and the sinks count, shown at 0 before the first
DROP_KEYS = (("frames", "queue_full"), ("frames", "too_old"), ("audio", "queue_full"), ("text", "queue_full"),
             ("prepared", "queue_full"), ("sink", "queue_full"), ("sync", "sync_skipped"),
             ("fusion", "deadline_missed"), ("mqtt", "buffer_full"), ("mqtt", "publish_error"),
             ("mqtt", "unsent_at_exit"), ("recorder", "queue_full"))


def _prom() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingDependencyError("prometheus_client", "serve", "edgefusion serve's /metrics") from exc
    return prometheus_client


class _DropsCollector:
    """``edgefusion_drops_total``: the pipeline's drop counts at scrape time."""

    def __init__(self, snapshot: Callable[[], dict[str, int]]) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterable[Any]:
        return []  # collected on demand only: the counts come from whichever pipeline runs

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily("edgefusion_drops", "Items dropped, by queue or stage and reason",
                                  labels=["where", "reason"])
        counts = dict.fromkeys((f"{w}/{r}" for w, r in DROP_KEYS), 0)
        counts.update(self.snapshot())
        for key, n in sorted(counts.items()):
            where, _, reason = key.partition("/")
            fam.add_metric([where, reason], float(n))
        yield fam


class Metrics:
    """The service's registry: pipeline latency and counts, reloads, streams, sinks, the process.

    Args:
        drops: returns the drop counts keyed ``where/reason`` (the running pipeline's; empty before it exists).
        streams: the configured streams, pre-created in the restart counter.
    """

    def __init__(self, drops: Callable[[], dict[str, int]] = dict, streams: tuple[str, ...] = ("camera",)) -> None:
        p = _prom()
        p.disable_created_metrics()  # *_created series double every counter for no use here
        self.registry = r = p.CollectorRegistry()
        p.ProcessCollector(registry=r)
        self.stage = p.Histogram("edgefusion_stage_latency_seconds", "Latency of each pipeline stage per step",
                                 ["stage"], buckets=BUCKETS_S, registry=r)
        for s in STAGES:
            self.stage.labels(s)
        self.results = p.Counter("edgefusion_results", "Results delivered to the sinks", registry=r)
        self.actions = p.Counter("edgefusion_actions_emitted", "Actions emitted, by action", ["action"], registry=r)
        r.register(_DropsCollector(drops))
        self.stream_age = p.Gauge("edgefusion_stream_age_seconds", "Time since the stream last delivered a sample",
                                  ["stream"], registry=r)
        self.ready = p.Gauge("edgefusion_ready", "1 when /readyz is 200", registry=r)
        self.stalled = p.Gauge("edgefusion_pipeline_stalled", "1 while input waits without pipeline progress",
                               registry=r)
        self.reloads = p.Counter("edgefusion_reloads", "Model reloads (SIGHUP), by outcome", ["outcome"], registry=r)
        for outcome in ("ok", "failed"):
            self.reloads.labels(outcome)
        self.source_restarts = p.Counter("edgefusion_source_restarts", "Streams reopened after a failure",
                                         ["stream"], registry=r)
        for s in streams:
            self.source_restarts.labels(s)
        self.housekeeping_errors = p.Counter("edgefusion_housekeeping_errors",
                                             "Unexpected errors caught in the service's own threads", registry=r)
        self.mqtt_buffered = p.Gauge("edgefusion_mqtt_buffered_messages", "MQTT messages not yet acknowledged",
                                     registry=r)
        self.mqtt_connected = p.Gauge("edgefusion_mqtt_connected", "1 while connected to the MQTT broker", registry=r)
        self.model = p.Info("edgefusion_model", "The model being served", registry=r)

    def set_model(self, name: str, variant: str, backend: str, actions: Iterable[str]) -> None:
        """Name the served model and create its action counters at 0."""
        self.model.info({"name": name, "variant": variant, "backend": backend})
        for a in actions:
            self.actions.labels(a)

    def render(self) -> bytes:
        return bytes(_prom().generate_latest(self.registry))
