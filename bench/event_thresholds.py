"""False alarms against detections of real sounds, per audio event, across event thresholds.

One false-alarm rate says little on its own: a head that never fires has none. This bench
puts, for each audio event with held-out real recordings of its own (smart_home's speech,
doorbell and glass_break, driving's horn), both sides at each threshold: the share of windows
of held-out recordings *without* the event on which it fires (false alarms, as
``bench/robustness.py`` mixes them), and the share of windows of held-out recordings *of* the
event on which it fires (detections). The scenes and
seeds are the robustness bench's, so the 0.5 row repeats its numbers. Two packages can then be
compared at equal false alarms.

Nothing here chooses a threshold: held-out recordings are for measuring. A threshold to ship
would be chosen on the corpus' ``val`` split, as ``bench/vad_share.py`` chooses its share.

    python bench/event_thresholds.py [--packages smart_home PATH...] [--level-dbfs -20]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgefusion.benchmark.report import machine_facts, save_json_and_markdown
from edgefusion.errors import EdgeFusionError
from edgefusion.metrics import sigmoid
from edgefusion.package import load_package
from edgefusion.scenarios import EVAL_SEED_OFFSET, get_scenario
from export.corpus import DEFAULT_CACHE, backgrounds_for, load_prepared

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _robustness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_robustness", Path(__file__).with_name("robustness.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def probabilities(rb: ModuleType, model: Any, recordings: Sequence[Any], level: float, seed: int,
                  audio_events: Sequence[str]) -> np.ndarray:
    """Event probabilities on 1-s windows of ``recordings`` mixed into event-free scenes (rows: windows)."""
    _, ev, _, _ = rb.mixed_into_quiet_scenes(model, recordings, level, seed, audio_events)
    return sigmoid(ev)


def bench_package(rb: ModuleType, name: str, heldout: Sequence[Any], level: float, threads: int) -> dict[str, Any]:
    pkg = load_package(name)
    scenario = get_scenario(pkg.manifest.scenario or pkg.name)
    seed = int(pkg.manifest.provenance.get("seed", 0)) + EVAL_SEED_OFFSET + rb.FA_SEED_SHIFT
    model = rb.Model(pkg, threads)
    events = scenario.audio_events
    p_bg = probabilities(rb, model, backgrounds_for(heldout, scenario.events), level, seed, events)
    out: dict[str, Any] = {}
    for event in scenario.audio_events:
        mine = [r for r in heldout if r.role == event]
        if not mine:
            continue
        p_ev = probabilities(rb, model, mine, level, seed + 1, events)
        j = model.events.labels.index(event)
        out[event] = {"recordings": [r.id for r in mine], "windows": len(p_ev), "background_windows": len(p_bg),
                      "by_threshold": [{"threshold": t, "false_alarms": round(float(np.mean(p_bg[:, j] >= t)), 4),
                                        "detected": round(float(np.mean(p_ev[:, j] >= t)), 4)} for t in THRESHOLDS]}
    return {"package": pkg.name, "path": str(pkg.path), "level_dbfs": level, "events": out}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Event thresholds: false alarms / detections of held-out real recordings at "
             f"{report['level_dbfs']:g} dBFS", ""]
    for p in report["packages"]:
        for event, e in p["events"].items():
            lines += [f"## {p['package']} ({p['path']}): {event}, {e['windows']} event windows, "
                      f"{e['background_windows']} background windows", "",
                      "| threshold | false alarms | detected |", "|---:|---:|---:|"]
            lines += [f"| {r['threshold']:g} | {100 * r['false_alarms']:.1f}% | {100 * r['detected']:.1f}% |"
                      for r in e["by_threshold"]]
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"], help="names or package folders")
    ap.add_argument("--level-dbfs", type=float, default=-20.0, help="RMS level of the recordings (default -20)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CACHE, help="the prepared corpus (default runs/corpus)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/event_thresholds.json"))
    args = ap.parse_args(argv)
    rb = _robustness()
    try:
        heldout = load_prepared(args.corpus, split="heldout")
        report = {"benchmark": "event_thresholds", "machine": machine_facts(), "corpus": str(args.corpus),
                  "level_dbfs": args.level_dbfs,
                  "packages": [bench_package(rb, p, heldout, args.level_dbfs, args.threads) for p in args.packages]}
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(save_json_and_markdown(report, args.out, markdown(report)).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
