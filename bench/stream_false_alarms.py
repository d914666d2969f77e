"""False alarms as the runtime reports them: held-out real recordings streamed through the pipeline.

``bench/robustness.py`` counts false alarms on independent 1-s windows with the model's own
threshold: the model alone. A user's microphone is a stream: the pipeline steps at the camera's
30 fps, each step's audio window overlaps the last by 29/30, the event smoother
(:mod:`edgefusion.postprocess`) turns an event on only after ``event_min_steps`` steps at
``on`` and off below ``off``, and a confirming stage (Silero VAD for ``speech``) carries its
state from step to step. This bench measures that.

For each package, every held-out corpus recording that is not one of the scenario's events
is scaled to an RMS level (``--levels-dbfs``, as in robustness.py) and mixed, 1 s in, into an
event-free synthesized timeline of the package's scenario (visual states, commands and the
generator's distractor sounds as they come, no labelled sound), long enough for the recording
and 1 s after it. The timeline runs through :class:`~edgefusion.pipeline.Pipeline` losslessly
(the same step function as a live run), once with the recording and once without. Reported
per audio event:

- ``steps``: the share of steps on which the event is among the result's events (smoothed);
- ``onsets_per_min``: how often it turns on, per minute of stream (what a user is alerted by);
- ``raw_steps``: the share of steps whose probability reaches the model's threshold (no smoothing);
- the same without the recording, and per recording where anything fired.

Writes JSON (default bench/results/stream_false_alarms.json) and a Markdown table beside it.
Needs the prepared corpus (``python -m export.corpus prepare``).

    python bench/stream_false_alarms.py [--packages smart_home driving] [--levels-dbfs -30 -20]
    python bench/stream_false_alarms.py --packages smart_home \
        --stage vad=runs/silero_vad,scan=32,share=0.5,confirm=speech --out bench/results/stream_false_alarms_vad.json
    python bench/stream_false_alarms.py --quick   # two recordings: checks that it runs
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgefusion import augment as aug
from edgefusion.backends import open_backend
from edgefusion.benchmark.report import machine_facts, save_json_and_markdown
from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.package import ModelPackage, load_package
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.samples import Result
from edgefusion.scenarios import EVAL_SEED_OFFSET, Scenario, get_scenario
from edgefusion.scenarios.base import Timeline, generate_timeline
from edgefusion.sinks import CallbackSink
from edgefusion.sources.timeline import TimelineSource
from edgefusion.stages import StageSpec, open_stages
from export.corpus import DEFAULT_CACHE, RATE, Recording, backgrounds_for, load_prepared

LEAD_S = 1.0  # scene before the recording: the audio window is full of scene when it starts
TAIL_S = 1.0  # scene after it: an event the recording turned on has time to turn off
SEED_SHIFT = 11  # the timelines come from another held-out seed than robustness.py's windows


def quiet_timeline(scenario: Scenario, duration_s: float, seed: int) -> Timeline:
    """A timeline of ``scenario`` with no labelled sound (distractors, visual states, commands kept)."""
    quiet = copy.copy(scenario)
    quiet.audio_event_prob = {}  # the instance's own attribute; the registered scenario is untouched
    return generate_timeline(quiet, duration_s, seed)


def with_recording(tl: Timeline, rec: Recording, level_dbfs: float) -> Timeline:
    """``tl`` with ``rec`` at RMS ``level_dbfs`` mixed in from LEAD_S on."""
    if tl.audio_rate != RATE:
        raise ConfigError(f"timeline audio at {tl.audio_rate} Hz, corpus at {RATE} Hz")
    x = aug.gain_db(rec.audio, level_dbfs - aug.power_db(rec.audio))
    audio = tl.audio.copy()
    a = round(LEAD_S * RATE)
    n = min(len(x), len(audio) - a)
    audio[a: a + n] += x[:n]
    return dataclasses.replace(tl, audio=aug.clip(audio))


def run_stream(pkg: ModelPackage, tl: Timeline, threads: int, specs: Sequence[StageSpec]) -> list[Result]:
    """Every step's Result of ``tl`` through ``pkg`` on ONNX Runtime fp32, losslessly, with fresh stages."""
    results: list[Result] = []
    with open_stages(specs) as stages, open_backend("onnxruntime", pkg, variant="fp32", threads=threads) as be:
        pipe = Pipeline(pkg, be, [TimelineSource(tl, pace=False)], [CallbackSink(results.append)],
                        PipelineConfig(lossless=True), stages=stages)
        pipe.core.text_source = True  # the timeline carries the command stream, silent or not
        pipe.run()
    if len(results) != len(tl.frames):
        raise RuntimeError(f"lossless run produced {len(results)} results for {len(tl.frames)} frames")
    return results


def count(results: Sequence[Result], events: Sequence[str], threshold: float) -> dict[str, dict[str, int]]:
    """Per event: steps on (smoothed), onsets, steps at or above ``threshold`` (raw)."""
    out = {}
    for e in events:
        on = [e in r.events for r in results]
        out[e] = {"steps": sum(on), "onsets": sum(1 for i, v in enumerate(on) if v and (i == 0 or not on[i - 1])),
                  "raw_steps": sum(r.scores.get(e, 0.0) >= threshold for r in results)}
    return out


def bench_package(name: str, args: argparse.Namespace, heldout: Sequence[Recording]) -> dict[str, Any]:
    pkg = load_package(name)
    scenario = get_scenario(pkg.manifest.scenario or pkg.name)
    events = list(scenario.audio_events)
    threshold = float(pkg.output("multilabel_logits").threshold)
    recordings = backgrounds_for(heldout, scenario.events)
    if args.quick:
        recordings = recordings[:2]
    seed = int(pkg.manifest.provenance.get("seed", 0)) + EVAL_SEED_OFFSET + SEED_SHIFT
    specs = [args.stage] if args.stage is not None else []
    t0 = time.perf_counter()
    kinds = ("steps", "onsets", "raw_steps")
    totals = {lv: {k: dict.fromkeys(events, 0) for k in (*kinds, *(f"quiet_{k}" for k in kinds))}
              for lv in args.levels_dbfs}
    by_rec: dict[float, dict[str, Any]] = {lv: {} for lv in args.levels_dbfs}
    n_steps, seconds = 0, 0.0
    for i, rec in enumerate(recordings):
        # one scene per recording, and what the scene alone fires, for every level
        tl = quiet_timeline(scenario, LEAD_S + max(rec.seconds, 1.0) + TAIL_S, seed + i)
        quiet = count(run_stream(pkg, tl, args.threads, specs), events, threshold)
        n_steps += len(tl.frames)
        seconds += len(tl.frames) / float(tl.meta["fps"])
        for level in args.levels_dbfs:
            loud = count(run_stream(pkg, with_recording(tl, rec, level), args.threads, specs), events, threshold)
            for e in events:
                for k in kinds:
                    totals[level][k][e] += loud[e][k]
                    totals[level][f"quiet_{k}"][e] += quiet[e][k]
            fired = {e: loud[e] for e in events if loud[e]["steps"] or loud[e]["raw_steps"]}
            if fired:
                by_rec[level][rec.id] = {"steps": len(tl.frames), **fired}
    minutes = seconds / 60.0
    levels = []
    for level in args.levels_dbfs:
        t = totals[level]
        levels.append({
            "level_dbfs": level, "recordings": len(recordings), "steps": n_steps, "seconds": round(seconds, 1),
            "steps_on": {e: round(t["steps"][e] / n_steps, 4) for e in events},
            "onsets_per_min": {e: round(t["onsets"][e] / minutes, 2) for e in events},
            "raw_steps": {e: round(t["raw_steps"][e] / n_steps, 4) for e in events},
            "without_recording": {
                "steps_on": {e: round(t["quiet_steps"][e] / n_steps, 4) for e in events},
                "onsets_per_min": {e: round(t["quiet_onsets"][e] / minutes, 2) for e in events},
                "raw_steps": {e: round(t["quiet_raw_steps"][e] / n_steps, 4) for e in events}},
            "by_recording": by_rec[level],
        })
        print(f"{pkg.name} {level:g} dBFS: steps on {levels[-1]['steps_on']}, "
              f"onsets/min {levels[-1]['onsets_per_min']}", file=sys.stderr)
    return {"package": pkg.name, "path": str(pkg.path), "scenario": scenario.name, "variant": "fp32",
            "backend": "onnxruntime", "threshold": threshold, "seed": seed,
            "stage": None if args.stage is None else args.stage_text,
            "recordings": [r.id for r in recordings], "levels": levels,
            "seconds": round(time.perf_counter() - t0, 1)}


def markdown(report: dict[str, Any]) -> str:
    lines = ["# False alarms in a stream: held-out real recordings through the pipeline", "",
             "Per audio event: share of 30-fps steps with the event on after smoothing (onsets per minute), "
             "the share whose raw probability reaches the threshold, and the same without the recording.", ""]
    for p in report["packages"]:
        stage = f", stage `{p['stage']}`" if p["stage"] else ""
        lines += [f"## {p['package']} ({len(p['recordings'])} recordings{stage})", "",
                  "| level | event | steps on | onsets / min | raw steps | without: steps on | onsets / min |",
                  "|---:|---|---:|---:|---:|---:|---:|"]
        for lv in p["levels"]:
            w = lv["without_recording"]
            for e in lv["steps_on"]:
                lines.append(f"| {lv['level_dbfs']:g} dBFS | {e} | {100 * lv['steps_on'][e]:.1f}% | "
                             f"{lv['onsets_per_min'][e]:.2f} | {100 * lv['raw_steps'][e]:.1f}% | "
                             f"{100 * w['steps_on'][e]:.1f}% | {w['onsets_per_min'][e]:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"], help="packages (default both)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CACHE, help="the prepared corpus (default runs/corpus)")
    ap.add_argument("--levels-dbfs", type=float, nargs="+", default=[-30.0, -20.0],
                    help="RMS level of the recordings (default -30 -20, as robustness.py)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads (default 2)")
    ap.add_argument("--stage", default=None,
                    help="a stage run before the model, as run --stage (e.g. "
                         "vad=runs/silero_vad,scan=32,share=0.5,confirm=speech)")
    ap.add_argument("--quick", action="store_true", help="two recordings per package: a smoke run")
    ap.add_argument("--out", type=Path, default=Path("bench/results/stream_false_alarms.json"))
    args = ap.parse_args(argv)
    try:
        args.stage_text = args.stage
        args.stage = None if args.stage is None else StageSpec.parse(args.stage)
        heldout = load_prepared(args.corpus, split="heldout")
        report = {"benchmark": "stream_false_alarms", "machine": machine_facts(), "corpus": str(args.corpus),
                  "quick": args.quick, "packages": [bench_package(p, args, heldout) for p in args.packages]}
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    save_json_and_markdown(report, args.out, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
