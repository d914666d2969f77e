"""The demo: a synthesized timeline through a model package, step by step.

Prints each change of predicted action next to the ground truth, then a summary with
accuracy and per-stage latency percentiles.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from edgefusion.backends import open_backend
from edgefusion.engine import STAGES, FusionStep
from edgefusion.metrics import percentiles_ms
from edgefusion.package import load_package
from edgefusion.samples import FusionWindow, Result
from edgefusion.scenarios import AUDIO_WINDOW_S, COMMAND_HORIZON_S, Timeline, generate_timeline, get_scenario

__all__ = ["DemoReport", "run_timeline", "run_demo"]


@dataclass
class DemoReport:
    scenario: str
    package: str
    backend: str
    frames: int
    action_accuracy: float
    event_accuracy: float
    latency_ms: dict[str, dict[str, float]]
    results: list[Result] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "results"}


def windows(tl: Timeline) -> list[FusionWindow]:
    """One fusion window per frame: audio [t - W, t] and the command still valid at t."""
    out = []
    w = int(AUDIO_WINDOW_S * tl.audio_rate)
    cmds = sorted(tl.commands, key=lambda c: c.t_ns)
    for t_ns, frame in zip(tl.frame_t_ns.tolist(), tl.frames):
        end = int(t_ns * tl.audio_rate // 1_000_000_000)
        valid = [c for c in cmds if 0 <= t_ns - c.t_ns <= COMMAND_HORIZON_S * 1e9]
        out.append(FusionWindow(t_ns=t_ns, image=frame, audio=tl.audio[max(0, end - w) : end],
                                command=valid[-1].text if valid else None, audio_rate=tl.audio_rate))
    return out


def run_timeline(tl: Timeline, package: str, backend: str = "onnxruntime", variant: str = "fp32",
                 threads: int | None = 2, out: TextIO | None = sys.stdout) -> DemoReport:
    pkg = load_package(package)
    results: list[Result] = []
    cmd_at = {c.t_ns: c for c in tl.commands}
    next_cmds = sorted(cmd_at)
    with open_backend(backend, pkg, variant=variant, threads=threads) as be:
        step = FusionStep(pkg, be)
        if out:
            print(f"{tl.scenario}: {len(tl.frames)} frames, {len(tl.commands)} commands, model {pkg.name} on {be.info}",
                  file=out)
            print(f"{'time':>8}  {'predicted':<18} {'truth':<18} events", file=out)
        prev = (None, None)
        for win, truth in zip(windows(tl), tl.truth_action):
            while out and next_cmds and next_cmds[0] <= win.t_ns:
                c = cmd_at[next_cmds.pop(0)]
                print(f"{c.t_ns / 1e9:7.2f}s  command: {c.text!r}", file=out)
            r = step(win)
            results.append(r)
            if out and (r.action, truth) != prev:
                mark = "ok" if r.action == truth else "MISS"
                print(f"{r.t_ns / 1e9:7.2f}s  {r.action:<18} {truth:<18} {','.join(r.events) or '-'}  {mark}", file=out)
            prev = (r.action, truth)
    acc = float(np.mean([r.action == t for r, t in zip(results, tl.truth_action)]))
    ev_acc = float(np.mean([set(r.events) == set(t) for r, t in zip(results, tl.truth_events)]))
    lat = {s: percentiles_ms([r.timings_ns[s] for r in results]) for s in STAGES}
    report = DemoReport(tl.scenario, pkg.name, str(step.backend.info), len(results), acc, ev_acc, lat, results)
    if out:
        print(f"\naction accuracy {100 * acc:.1f}% over {len(results)} frames; "
              f"all scene events right on {100 * ev_acc:.1f}% of frames", file=out)
        print(f"{'stage':<12} {'p50 ms':>8} {'p99 ms':>8}", file=out)
        for s in STAGES:
            print(f"{s:<12} {lat[s]['p50']:8.3f} {lat[s]['p99']:8.3f}", file=out)
    return report


def run_demo(scenario: str = "smart_home", package: str | None = None, seed: int = 7, duration_s: float = 20.0,
             backend: str = "onnxruntime", variant: str = "fp32", threads: int | None = 2,
             out: TextIO | None = sys.stdout) -> DemoReport:
    """Synthesize ``duration_s`` of ``scenario`` and run every frame through the model."""
    tl = generate_timeline(get_scenario(scenario), duration_s, seed)
    return run_timeline(tl, package or scenario, backend, variant, threads, out)
