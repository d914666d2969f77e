"""Peak sustainable rate (the ros2_benchmark method): the highest input rate at which loss
stays at or below 1% and end-to-end p99 stays under the frame period."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgefusion.benchmark.runner import BenchConfig, RunReport, run_once
from edgefusion.package import ModelPackage
from edgefusion.scenarios import Timeline

__all__ = ["peak_rate"]


def sustainable(rep: RunReport, max_loss: float = 0.01) -> bool:
    p99 = rep.stages_ms["end_to_end"].get("p99")
    return rep.loss <= max_loss and p99 is not None and rep.rate_fps is not None and p99 < 1000.0 / rep.rate_fps


def head(tl: Timeline, seconds: float) -> Timeline:
    """The first ``seconds`` of a timeline (probes need not be long)."""
    n = int(np.searchsorted(tl.frame_t_ns, int(seconds * 1e9)))
    end = int(seconds * tl.audio_rate)
    return Timeline(tl.scenario, tl.seed, tl.frame_t_ns[:n], tl.frames[:n], tl.audio[:end], tl.audio_rate,
                    [c for c in tl.commands if c.t_ns < seconds * 1e9], tl.truth_events[:n], tl.truth_action[:n],
                    dict(tl.meta))


def peak_rate(pkg: ModelPackage, cfg: BenchConfig, timeline: Timeline, lo: float = 5.0, hi: float = 2000.0,
              steps: int = 7, warmup_s: float = 0.5, probe_s: float = 6.0) -> dict[str, Any]:
    """Bisection in log space between ``lo`` and ``hi`` fps; each probe replays ``probe_s`` s of ``timeline``
    (at a high rate that is fewer wall seconds) at that rate."""
    timeline = head(timeline, probe_s)
    probes = []
    ok_rate = None
    if not sustainable(first := run_once(pkg, cfg, timeline, lo, warmup_s)):
        return {"config": cfg.label, "peak_fps": None, "probes": [_probe(first)],
                "note": f"not sustainable even at {lo} fps"}
    probes.append(_probe(first))
    ok_rate = lo
    a, b = lo, hi
    for _ in range(steps):
        mid = (a * b) ** 0.5
        rep = run_once(pkg, cfg, timeline, mid, warmup_s)
        probes.append(_probe(rep))
        if sustainable(rep):
            a, ok_rate = mid, mid
        else:
            b = mid
    return {"config": cfg.label, "peak_fps": round(ok_rate, 1), "probes": probes, "probe_s": probe_s,
            "criterion": "loss <= 1% and end-to-end p99 < frame period"}


def _probe(rep: RunReport) -> dict[str, Any]:
    return {"rate_fps": round(rep.rate_fps or 0, 1), "loss": rep.loss,
            "end_to_end_p99_ms": rep.stages_ms["end_to_end"].get("p99"), "ok": sustainable(rep)}
