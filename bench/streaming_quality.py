"""Streaming quality on validation timelines: the numbers to choose models and smoothing by.

``tests/test_streaming_quality.py`` checks one 60 s timeline per scenario (seed 2024); this
script scores packages on other seeds (default 11-14), so a model or a post-processing
setting is chosen on data the test never sees. Each timeline runs through the real
pipeline (lossless), and emitted actions are scored at event level
(:func:`edgefusion.scoring.score_events`); totals are summed over the timelines. Every false
emission is listed with the nearest ground-truth segment of the same action.
Writes JSON (default bench/results/streaming_quality.json).

    python bench/streaming_quality.py [--packages smart_home driving] [--seeds 11 12 13 14]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgefusion import load_package
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.demo import run_timeline
from edgefusion.scenarios import generate_timeline, get_scenario
from edgefusion.scoring import segments

TEST_SEED = 2024  # tests/test_streaming_quality.py: never used here


def _false_emissions(tl: Any, false: list[tuple[int, str]]) -> list[dict[str, Any]]:
    """The scorer's false emissions, each with the distance to the nearest segment of its action."""
    segs = segments(tl.truth_action, tl.frame_t_ns)
    out = []
    for t, action in false:
        gap = min((min(abs(t - s.start_ns), abs(t - s.end_ns)) for s in segs if s.action == action), default=None)
        out.append({"t_s": round(t / 1e9, 3), "action": action,
                    "nearest_segment_ms": None if gap is None else round(gap / 1e6)})
    return out


def score_package(name: str, seeds: list[int], duration_s: float, threads: int) -> dict[str, Any]:
    pkg = load_package(name)
    scenario = get_scenario(pkg.manifest.scenario or pkg.name)
    per_seed, totals = [], {"segments": 0, "detected": 0, "emitted": 0, "true_positives": 0}
    for seed in seeds:
        tl = generate_timeline(scenario, duration_s, seed=seed)
        rep = run_timeline(tl, name, threads=threads, out=None)
        lv = rep.event_level
        for k in totals:
            totals[k] += lv[k]
        row = {"seed": seed, "precision": round(lv["precision"], 4), "recall": round(lv["recall"], 4),
               "median_reaction_ms": round(lv["median_reaction_ns"] / 1e6, 1),
               "frame_accuracy": round(rep.action_accuracy, 4), "segments": lv["segments"], "emitted": lv["emitted"],
               "false_emissions": _false_emissions(tl, lv["false_emissions"])}
        print(json.dumps({"package": pkg.name, **{k: v for k, v in row.items() if k != "false_emissions"}}))
        per_seed.append(row)
    total = {"precision": round(totals["true_positives"] / max(1, totals["emitted"]), 4),
             "recall": round(totals["detected"] / max(1, totals["segments"]), 4), **totals}
    print(json.dumps({"package": pkg.name, "total": total}))
    return {"package": pkg.name, "path": str(pkg.path), "scenario": scenario.name, "duration_s": duration_s,
            "seeds": per_seed, "total": total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"], help="names or package folders")
    ap.add_argument("--seeds", nargs="+", type=int, default=[11, 12, 13, 14])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per timeline (default 60)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/streaming_quality.json")
    a = ap.parse_args()
    if TEST_SEED in a.seeds:
        ap.error(f"seed {TEST_SEED} is the test's timeline; choose models on other seeds")
    report = {"machine": machine_facts(), "seeds": a.seeds,
              "results": [score_package(p, a.seeds, a.duration, a.threads) for p in a.packages]}
    save_json(report, a.out)


if __name__ == "__main__":
    main()
