"""The demo: a synthesized timeline through the streaming pipeline, scored against truth.

The timeline is fed as one time-ordered source in lossless mode, so the run is
deterministic. Printed: each change of the (smoothed) action, of the truth or of the
policy's state (a step that abstained, a degraded result, an action the policy replaced),
then frame accuracy, event-level precision/recall with reaction time, what the policy did,
drops and latency per stage.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from edgefusion.backends import open_backend
from edgefusion.core import windows_of
from edgefusion.package import load_package
from edgefusion.pipeline import STAGES, Pipeline, PipelineConfig, RunStats
from edgefusion.samples import FusionWindow, Result
from edgefusion.scenarios import FPS, Timeline, generate_timeline, get_scenario
from edgefusion.scoring import score_events
from edgefusion.sinks import CallbackSink, Sink
from edgefusion.sources import TimelineSource
from edgefusion.task.policy import SECURE_RULE, UNCLEAR_RULE

__all__ = ["DemoReport", "run_demo", "run_timeline", "timeline_windows"]


@dataclass
class DemoReport:
    scenario: str
    package: str
    backend: str
    frames: int
    action_accuracy: float
    raw_action_accuracy: float
    event_accuracy: float
    event_level: dict[str, Any]
    latency_ms: dict[str, dict[str, float]]
    drops: dict[str, int]
    #: the policy's task (None: the package ran without a policy), and its counts over the run
    policy_task: str | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "results"}


def timeline_windows(tl: Timeline) -> list[FusionWindow]:
    """The windows a lossless pipeline run sees, from the same source and sync, without threads."""
    return windows_of(TimelineSource(tl))


def run_timeline(tl: Timeline, package: str, backend: str = "onnxruntime", variant: str = "fp32",
                 threads: int | None = 2, out: TextIO | None = sys.stdout, sinks: list[Sink] | None = None,
                 config: PipelineConfig | None = None, realtime: bool = False) -> DemoReport:
    """Run ``tl`` through ``package`` on ``backend``; print and return the report."""
    pkg = load_package(package)
    results: list[Result] = []
    with open_backend(backend, pkg, variant=variant, threads=threads) as be:
        info = str(be.info)
        pipe = Pipeline(pkg, be, [TimelineSource(tl, pace=realtime)], [CallbackSink(results.append), *(sinks or [])],
                        config or PipelineConfig(lossless=True))
        pipe.core.text_source = True  # the timeline carries the command stream, silent or not
        decider = pipe.core.decider
        stats = pipe.run()
    if len(results) != len(tl.frames):
        raise RuntimeError(f"lossless run produced {len(results)} results for {len(tl.frames)} frames")
    truth = tl.truth_action
    t_ns = [r.t_ns for r in results]
    level = score_events(truth, t_ns, [r.action for r in results], [(r.t_ns, r.action) for r in results if r.emitted])
    report = DemoReport(
        scenario=tl.scenario, package=pkg.name, backend=info, frames=len(results),
        action_accuracy=float(np.mean([r.action == t for r, t in zip(results, truth)])),
        raw_action_accuracy=float(np.mean([r.raw_action == t for r, t in zip(results, truth)])),
        event_accuracy=float(np.mean([set(r.events) == set(t) for r, t in zip(results, tl.truth_events)])),
        event_level=level, latency_ms=stats.latency_ms, drops=stats.drops,
        policy_task=None if decider is None else decider.task.name if decider.task else "(given)",
        policy=policy_counts(results), results=results,
    )
    if out:
        _print(tl, report, stats, out)
        if not realtime:
            print("(frames were fed as fast as possible, losslessly: queue_wait is time spent behind earlier frames; "
                  "--realtime paces the input at 30 fps)", file=out)
    return report


def policy_counts(results: list[Result]) -> dict[str, Any]:
    """How often the policy abstained, degraded and replaced the model's action (by rule)."""
    replaced: dict[str, int] = {}
    for r in results:
        if _replaced(r):
            replaced[r.rule] = replaced.get(r.rule, 0) + 1
    return {"abstained": sum(r.abstained for r in results), "degraded": sum(r.degraded for r in results),
            "replaced": dict(sorted(replaced.items()))}


def _replaced(r: Result) -> bool:
    """Whether the policy put another action in place of the model's (not a hold by smoothing)."""
    return r.rule.startswith("missing_") or r.rule in (SECURE_RULE, UNCLEAR_RULE)


def _flags(r: Result) -> str:
    """The policy's part in a result, for a per-change line ('' when it just took the model's action)."""
    parts = []
    if r.abstained:
        parts.append("abstained")
    if r.degraded:
        parts.append(f"degraded: no {', '.join(m for m in r.missing if m != 'text') or 'text source'}")
    if _replaced(r):
        parts.append(f"rule {r.rule}")
    return f"  [{'; '.join(parts)}]" if parts else ""


def _print(tl: Timeline, rep: DemoReport, stats: RunStats, out: TextIO) -> None:
    print(f"{tl.scenario}: {len(tl.frames)} frames, {len(tl.commands)} commands; model {rep.package} on {rep.backend}",
          file=out)
    print(f"{'time':>8}  {'action':<18} {'truth':<18} events", file=out)
    cmds = sorted(tl.commands, key=lambda c: c.t_ns)
    prev: tuple[str, str, str] | None = None
    for r, truth in zip(rep.results, tl.truth_action):
        while cmds and cmds[0].t_ns <= r.t_ns:
            c = cmds.pop(0)
            print(f"{c.t_ns / 1e9:7.2f}s  command: {c.text!r}", file=out)
        flags = _flags(r)
        if (r.action, truth, flags) != prev:
            mark = "ok" if r.action == truth else "MISS"
            print(f"{r.t_ns / 1e9:7.2f}s  {r.action:<18} {truth:<18} {','.join(r.events) or '-'}  {mark}{flags}",
                  file=out)
        prev = (r.action, truth, flags)
    lv = rep.event_level
    frame_ms = 1000 / FPS
    print(f"\naction accuracy {100 * rep.action_accuracy:.1f}% of {rep.frames} frames "
          f"(per-step {100 * rep.raw_action_accuracy:.1f}%); scene events all right on "
          f"{100 * rep.event_accuracy:.1f}% of frames", file=out)
    print(f"action events: precision {lv['precision']:.3f}, recall {lv['recall']:.3f} "
          f"({lv['detected']}/{lv['segments']} segments), median reaction "
          f"{lv['median_reaction_ns'] / 1e6:.0f} ms = {lv['median_reaction_ns'] / 1e6 / frame_ms:.1f} frames",
          file=out)
    if rep.policy_task is None:
        print("policy: none (the package names no task): actions are the model's, smoothed", file=out)
    else:
        pol = rep.policy
        replaced = ", ".join(f"{k} {v}" for k, v in pol["replaced"].items()) or "none"
        print(f"policy of task {rep.policy_task}: {pol['abstained']} of {rep.frames} steps abstained, "
              f"{pol['degraded']} degraded; actions replaced: {replaced}", file=out)
    print(f"drops: {stats.drops or 'none'}", file=out)
    print(f"{'stage':<12} {'p50 ms':>8} {'p99 ms':>8}", file=out)
    for s in STAGES:
        lat = rep.latency_ms[s]
        print(f"{s:<12} {lat.get('p50', float('nan')):8.3f} {lat.get('p99', float('nan')):8.3f}", file=out)


def run_demo(scenario: str = "smart_home", package: str | None = None, seed: int = 7, duration_s: float = 20.0,
             backend: str = "onnxruntime", variant: str = "fp32", threads: int | None = 2,
             out: TextIO | None = sys.stdout, realtime: bool = False) -> DemoReport:
    """Synthesize ``duration_s`` of ``scenario`` and run every frame through the pipeline."""
    tl = generate_timeline(get_scenario(scenario), duration_s, seed)
    return run_timeline(tl, package or scenario, backend, variant, threads, out, realtime=realtime)
