"""Benchmark runs: the streaming pipeline per configuration, measured after a warm-up.

Each run feeds the same input (a synthesized scenario timeline or a recorded log) at a
fixed rate (or as fast as possible) through the pipeline, and keeps per-stage latency
histograms (bounded memory), result-interval jitter, drops by reason, CPU utilization
and peak RSS. Results produced during the warm-up are excluded, and the report says how
many.
"""

from __future__ import annotations

import itertools
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgefusion.backends import Backend, open_backend
from edgefusion.errors import ConfigError
from edgefusion.histogram import LatencyHistogram
from edgefusion.package import ModelPackage
from edgefusion.pipeline import STAGES, Pipeline, PipelineConfig
from edgefusion.samples import Result
from edgefusion.scenarios import FPS, Timeline
from edgefusion.sources import TimelineSource
from edgefusion.stages import StageSpec, open_stages

__all__ = ["BenchConfig", "RunReport", "open_config_backend", "parse_configs", "run_once"]


@dataclass(frozen=True)
class BenchConfig:
    """One configuration: ``backend:variant`` (e.g. ``onnxruntime:int8``) and a thread count."""

    backend: str
    variant: str
    threads: int

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.variant}/{self.threads}t"


def parse_configs(configs: str, threads: str) -> list[BenchConfig]:
    out = []
    for spec in [c for c in configs.split(",") if c]:
        backend, sep, variant = spec.partition(":")
        if not sep or not variant:
            raise ConfigError(f"--configs: expected BACKEND:VARIANT (e.g. onnxruntime:fp32), got {spec!r}")
        for t in [x for x in threads.split(",") if x]:
            if not t.isdigit() or int(t) < 1:
                raise ConfigError(f"--threads: expected positive integers such as 1,2; got {t!r}")
            out.append(BenchConfig(backend, variant, int(t)))
    return out


def open_config_backend(pkg: ModelPackage, cfg: BenchConfig, **options: Any) -> Backend:
    """The backend for a configuration; ``torch`` is the eager PyTorch comparison (needs torch)."""
    return open_backend(cfg.backend, pkg, variant=cfg.variant, threads=cfg.threads, **options)


@dataclass
class RunReport:
    """Measurements of one run (after the warm-up)."""

    config: str
    rate_fps: float | None
    frames_in: int
    results: int
    warmup_results: int
    wall_s: float
    stages_ms: dict[str, dict[str, float]]
    jitter_ms: dict[str, float]
    drops: dict[str, int]
    loss: float
    cpu_utilization: float
    peak_rss_mb: float
    backend: str
    series: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (t_s, e2e_ms), subsampled

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["series"] = [list(p) for p in self.series]
        return d


def run_once(pkg: ModelPackage, cfg: BenchConfig, timeline: Timeline, rate_fps: float | None, warmup_s: float,
             backend_options: dict[str, Any] | None = None, max_series: int = 2000,
             stages: Sequence[StageSpec] = ()) -> RunReport:
    """Run ``timeline`` at ``rate_fps`` (None: as fast as possible, lossless) through one configuration.

    ``stages`` run before the main model on each window, each timed as ``stage:<name>``.
    """
    live = rate_fps is not None
    speed = (rate_fps / FPS) if rate_fps else None
    keys = (*STAGES, *(f"stage:{s.name}" for s in stages))
    hist = {s: LatencyHistogram() for s in keys}
    finish: list[int] = []
    series: list[tuple[float, float]] = []
    warm = [0]
    warmup_ns = int(warmup_s * 1e9)
    t_first = [None]  # type: list[int | None]
    every = max(1, len(timeline.frames) // max_series)
    # the warm-up is input time (the frames' own clock): at --rate max a whole run can take less wall
    # time than the warm-up, which then left out every result
    input_start = int(timeline.frame_t_ns[0]) if len(timeline.frame_t_ns) else 0

    def on_result(r: Result) -> None:
        now = time.monotonic_ns()
        if t_first[0] is None:
            t_first[0] = now
        if r.t_ns - input_start < warmup_ns:
            warm[0] += 1
            return
        for s in keys:
            hist[s].record(r.timings_ns[s])
        finish.append(now)
        if len(finish) % every == 0:
            series.append(((now - t_first[0]) / 1e9, r.timings_ns["end_to_end"] / 1e6))  # type: ignore[operator]

    ru0, cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), os.times(), time.monotonic()
    own_peak = _reset_peak_rss()
    with open_stages(stages) as opened, open_config_backend(pkg, cfg, **(backend_options or {})) as be:
        info = str(be.info)
        src = TimelineSource(timeline, pace=live, speed=speed or 1.0)
        pipe = Pipeline(pkg, be, [src], [], PipelineConfig(lossless=not live), on_result=on_result, stages=opened)
        stats = pipe.run()
    wall = time.monotonic() - t0
    cpu1 = os.times()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    hwm = _peak_rss_kb() if own_peak else None
    peak = (hwm if hwm is not None else max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, ru0.ru_maxrss)) / 1024
    frames_in = len(timeline.frames)
    period_ms = 1000.0 / rate_fps if rate_fps else None
    intervals = [(b - a) / 1e6 for a, b in itertools.pairwise(finish)]
    jitter: dict[str, float] = {}
    if intervals:
        import numpy as np

        iv = np.asarray(intervals)
        jitter = {"interval_mean_ms": round(float(iv.mean()), 4), "interval_std_ms": round(float(iv.std()), 4)}
        if period_ms:
            dev = np.abs(iv - period_ms)
            jitter.update(frame_period_ms=round(period_ms, 4), deviation_p50_ms=round(float(np.percentile(dev, 50)), 4),
                          deviation_p99_ms=round(float(np.percentile(dev, 99)), 4))
    dropped = sum(stats.drops.values())
    stages_ms = {s: h.summary_ms() for s, h in hist.items()}
    stages_ms["sink"] = stats.latency_ms.get("sink", {"count": 0})  # from the pipeline: warm-up included
    return RunReport(
        config=cfg.label, rate_fps=rate_fps, frames_in=frames_in, results=len(finish), warmup_results=warm[0],
        wall_s=round(wall, 3), stages_ms=stages_ms, jitter_ms=jitter,
        drops=stats.drops, loss=round(dropped / frames_in, 5) if frames_in else 0.0,
        cpu_utilization=round(cpu_s / wall, 3) if wall > 0 else 0.0, peak_rss_mb=round(peak, 1), backend=info,
        series=series,
    )


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux: ``clear_refs`` 5), so each configuration's peak is its own
    and not the largest of those before it; False where the kernel does not offer it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kb() -> int | None:
    """The peak RSS since the last reset (``VmHWM``), in KiB; None where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
