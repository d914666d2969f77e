"""``edgefusion bench``: latency profiling of the whole pipeline, per configuration."""

from __future__ import annotations

from edgefusion.benchmark.runner import BenchConfig, RunReport, parse_configs, run_once

__all__ = ["BenchConfig", "RunReport", "parse_configs", "run_once"]
