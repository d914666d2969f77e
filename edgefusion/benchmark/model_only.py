"""Model-only timing (like trtexec): the bare backend call at several batch sizes."""

from __future__ import annotations

import time
from typing import Any

from edgefusion.benchmark.runner import BenchConfig, open_config_backend
from edgefusion.histogram import LatencyHistogram
from edgefusion.package import ModelPackage
from edgefusion.samples import FusionWindow

__all__ = ["model_only", "model_only_ratios"]


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


def model_only_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups from model-only rows (p50): each variant against fp32 at the same batch and threads, and
    each variant's 2 threads against its 1 thread at the same batch (> 1: faster). Configs are
    ``backend:variant/Nt`` labels; pairs whose partner was not measured are left out.

    Example:
        >>> rows = [{"config": "onnxruntime:fp32/1t", "batch": 8, "latency_ms": {"p50": 4.0}},
        ...         {"config": "onnxruntime:int8/1t", "batch": 8, "latency_ms": {"p50": 2.0}}]
        >>> [(r["variant"], r["vs"], r["speedup"]) for r in model_only_ratios(rows)]
        [('int8', 'fp32', 2.0)]
    """
    p50: dict[tuple[str, str, int, int], float] = {}
    for r in rows:
        spec, _, threads = r["config"].rpartition("/")
        backend, _, variant = spec.partition(":")
        if r["latency_ms"].get("p50") and threads.endswith("t") and threads[:-1].isdigit():
            p50[(backend, variant, int(r["batch"]), int(threads[:-1]))] = float(r["latency_ms"]["p50"])
    out = []
    for (backend, variant, batch, threads), ms in sorted(p50.items()):
        base = p50.get((backend, "fp32", batch, threads))
        if variant != "fp32" and base:
            out.append({"backend": backend, "variant": variant, "vs": "fp32", "batch": batch, "threads": threads,
                        "speedup": round(base / ms, 3)})
        one = p50.get((backend, variant, batch, 1))
        if threads == 2 and one:
            out.append({"backend": backend, "variant": variant, "vs": "1 thread", "batch": batch, "threads": 2,
                        "speedup": round(one / ms, 3)})
    return out
