"""Model-only timing (like trtexec): the bare backend call at several batch sizes."""

from __future__ import annotations

import time
from typing import Any

from edgefusion.benchmark.runner import BenchConfig, open_config_backend
from edgefusion.histogram import LatencyHistogram
from edgefusion.package import ModelPackage
from edgefusion.samples import FusionWindow

__all__ = ["model_only"]


def model_only(pkg: ModelPackage, cfg: BenchConfig, windows: list[FusionWindow], batches: tuple[int, ...] = (1, 8),
               iters: int = 200, warmup: int = 20) -> list[dict[str, Any]]:
    """p50/p90/p99/p99.9/max of ``backend.infer`` per batch size, after ``warmup`` calls."""
    rows = []
    builder = pkg.feed_builder()
    with open_config_backend(pkg, cfg) as be:
        for b in batches:
            feeds, _ = builder.build([windows[i % len(windows)] for i in range(b)])
            for _ in range(warmup):
                be.infer(feeds)
            h = LatencyHistogram()
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                be.infer(feeds)
                h.record(time.perf_counter_ns() - t0)
            s = h.summary_ms()
            rows.append({"config": cfg.label, "backend": str(be.info), "batch": b, "warmup_calls": warmup,
                         "latency_ms": s,
                         "samples_per_s": round(b / (s["p50"] / 1e3), 1) if s.get("p50") else None})
    return rows
