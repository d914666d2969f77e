"""A benchmark suite: one input, every configuration, one report (``edgefusion bench``).

:func:`bench_input` picks the input (a recorded log, or a scenario timeline synthesized
for the package); :func:`run_suite` runs every configuration on it the same way and
returns the report that :func:`~edgefusion.benchmark.report.write_reports` writes. A
configuration that cannot run here is skipped with its reason, never dropped silently.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from edgefusion.benchmark.model_only import model_only, model_only_ratios
from edgefusion.benchmark.peak import peak_rate
from edgefusion.benchmark.report import SCHEMA_VERSION, machine_facts
from edgefusion.benchmark.runner import BenchConfig, run_once
from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.package import ModelPackage
from edgefusion.scenarios import Timeline, generate_timeline, get_scenario
from edgefusion.stages import StageSpec

__all__ = ["bench_input", "default_configs", "run_suite"]


def default_configs(pkg: ModelPackage) -> str:
    """Every ONNX Runtime variant of the package, as a ``--configs`` list (``onnxruntime:fp32,...``)."""
    return ",".join(f"onnxruntime:{v}" for v in pkg.variants if not v.endswith("_trt"))


def bench_input(pkg: ModelPackage, log: str | None = None, scenario: str | None = None, duration_s: float = 20.0,
                seed: int = 7) -> tuple[Timeline, str]:
    """The input every configuration sees, and its description for the report.

    Args:
        pkg: the package benchmarked (its manifest names the default scenario).
        log: a recorded MCAP log to use instead of a synthesized timeline (needs the 'mcap' extra).
        scenario: the scenario to synthesize (default: the package's).
        duration_s: seconds to synthesize.
        seed: the timeline's seed.

    Raises:
        ConfigError: no log and no scenario to synthesize, or a log that cannot be benchmarked.
    """
    if log:
        from edgefusion.logs.timeline import read_timeline

        return read_timeline(log), f"log {log}"
    scen = scenario or pkg.manifest.scenario
    if not scen:
        raise ConfigError("the package names no scenario; pass --scenario or --log")
    timeline = generate_timeline(get_scenario(scen), duration_s, seed)
    return timeline, f"{duration_s:g} s synthesized {scen} timeline (seed {seed}, {len(timeline.frames)} frames)"


def run_suite(pkg: ModelPackage, timeline: Timeline, description: str, configs: Iterable[BenchConfig],
              rate_fps: float | None, warmup_s: float, *, model_only_mode: bool = False, peak: bool = False,
              command: Sequence[str] = (), on_skip: Callable[[BenchConfig, str], None] | None = None,
              stages: Sequence[StageSpec] = ()) -> dict[str, Any]:
    """Run every configuration on ``timeline`` and return the report (docs/bench.schema.json).

    Args:
        pkg: the package.
        timeline: the input (see :func:`bench_input`).
        description: how the report names the input.
        configs: the configurations, in order (an iterable, so a caller can wrap it in a progress bar).
        rate_fps: input frames per second; None: as fast as possible, lossless.
        warmup_s: seconds of results left out at the start of each run.
        model_only_mode: time the bare model call (batch 1 and 8) instead of the pipeline.
        peak: also search each configuration's peak sustainable rate.
        command: the command line, stored in the report.
        on_skip: told about each configuration that could not run, with the reason.
        stages: models that run before the main one (each timed as ``stage:<name>``; not in peak or model-only).
    """
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "package": pkg.name, "package_path": str(pkg.path),
        "input": {"description": description, "frames": len(timeline.frames)}, "rate_fps": rate_fps,
        "warmup_s": warmup_s, "machine": machine_facts(), "command": list(command), "runs": [], "skipped": [],
        "peak": [], "model_only": [],
    }
    t0 = time.monotonic()
    for cfg in configs:
        try:
            if model_only_mode:
                from edgefusion.demo import timeline_windows

                report["model_only"] += model_only(pkg, cfg, timeline_windows(timeline)[:64])
                continue
            report["runs"].append(run_once(pkg, cfg, timeline, rate_fps, warmup_s, stages=stages).to_json())
            if peak:
                report["peak"].append(peak_rate(pkg, cfg, timeline))
        except EdgeFusionError as exc:
            report["skipped"].append({"config": cfg.label, "reason": str(exc)})
            if on_skip is not None:
                on_skip(cfg, str(exc))
    if report["model_only"]:
        report["model_only_ratios"] = model_only_ratios(report["model_only"])
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    return report
