"""Health and metrics over HTTP (127.0.0.1 by default): /healthz, /readyz, /metrics.

``/metrics`` is Prometheus text format from ``prometheus-client``: per-stage latency
histograms, drops by reason, stream ages, results, reloads and the model's identity.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from edgefusion.errors import MissingDependencyError

__all__ = ["HealthServer", "Metrics"]

BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _prom() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise MissingDependencyError("prometheus_client", "serve", "edgefusion serve's /metrics") from exc
    return prometheus_client


class Metrics:
    """The service's Prometheus registry."""

    def __init__(self) -> None:
        p = _prom()
        self.registry = p.CollectorRegistry()
        r = self.registry
        self.stage = p.Histogram("edgefusion_stage_latency_seconds", "Latency of each pipeline stage per step",
                                 ["stage"], buckets=BUCKETS_S, registry=r)
        self.results = p.Counter("edgefusion_results", "Results produced", registry=r)
        self.actions = p.Counter("edgefusion_actions_emitted", "Actions emitted", ["action"], registry=r)
        self.drops = p.Gauge("edgefusion_drops", "Items dropped, by queue and reason (cumulative)", ["where", "reason"],
                             registry=r)
        self.stream_age = p.Gauge("edgefusion_stream_age_seconds", "Time since the stream last delivered a sample",
                                  ["stream"], registry=r)
        self.ready = p.Gauge("edgefusion_ready", "1 when the model is warm and every required stream is fresh",
                             registry=r)
        self.reloads = p.Counter("edgefusion_reloads", "Model reloads by outcome", ["outcome"], registry=r)
        self.source_restarts = p.Counter("edgefusion_source_restarts", "Sources reopened after a failure", ["stream"],
                                         registry=r)
        self.mqtt_buffered = p.Gauge("edgefusion_mqtt_buffered", "Messages waiting for the broker", registry=r)
        self.model = p.Info("edgefusion_model", "The model being served", registry=r)

    def render(self) -> bytes:
        return bytes(_prom().generate_latest(self.registry))


class HealthServer:
    """A small threaded HTTP server; ``ready()`` returns (ok, details)."""

    def __init__(self, host: str, port: int, metrics: Metrics, ready: Callable[[], tuple[bool, dict[str, Any]]],
                 before_scrape: Callable[[], None] = lambda: None) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, b"ok\n", "text/plain")
                elif self.path == "/readyz":
                    ok, details = ready()
                    self._send(200 if ok else 503, json.dumps({"ready": ok, **details}).encode() + b"\n",
                               "application/json")
                elif self.path == "/metrics":
                    before_scrape()
                    self._send(200, outer.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
                else:
                    self._send(404, b"not found: try /healthz, /readyz or /metrics\n", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the service logs what matters
                pass

        self.metrics = metrics
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sinks-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)
