"""Latency of a scanning VAD stage beside the fusion model, through the CLI a user runs.

Synthesizes a smart_home log (``edgefusion synth``), replays it as fast as possible with the
Silero VAD confirming ``speech`` (``edgefusion replay --stage vad=...,scan=32,confirm=speech``,
one thread), and reads each result's timings: the stage's ``stage:vad`` time and the main
model's ``inference`` time per window (p50, p99, max), and how many VAD steps each window ran
(``new_steps``; a scan runs each 32-ms step once and reuses it in the windows that follow) out
of the steps it reads (``steps``). Writes JSON (default bench/results/vad_stage_latency.json).

The VAD package comes from ``--vad DIR`` or, when not given, is made from the installed
``silero-vad`` PyPI package into a temporary folder (``pip install --no-deps silero-vad``).

    python bench/vad_stage_latency.py [--vad DIR] [--duration 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.benchmark.report import machine_facts, save_json


def _ms(values: list[int]) -> dict[str, float]:
    a = np.asarray(values, np.float64) / 1e6
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3)}


def measure(vad: Path, duration: float, work: Path) -> dict[str, Any]:
    """Synthesize, replay with the stage, and summarize the timings of every result."""
    log, out = work / "smart_home.mcap", work / "results.jsonl"
    cli = [sys.executable, "-m", "edgefusion"]
    subprocess.run([*cli, "synth", "--scenario", "smart_home", "--duration", f"{duration:g}", "--out", str(log)],
                   check=True, stdout=subprocess.DEVNULL)
    stage = f"vad={vad},scan=32,confirm=speech"
    subprocess.run([*cli, "replay", str(log), "--model", "smart_home", "--threads", "1", "--stage", stage,
                    "--out", f"jsonl:{out}"], check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit("the replay wrote no results")
    vad_ns = [r["timings_ns"]["stage:vad"] for r in rows]
    infer_ns = [r["timings_ns"]["inference"] for r in rows]
    # new_steps: the steps a window ran (a release before the incremental scan ran all of them: steps)
    ran = [r["stages"]["vad"].get("new_steps", r["stages"]["vad"]["steps"]) for r in rows]
    read = [r["stages"]["vad"]["steps"] for r in rows]
    return {
        "command": f"edgefusion synth --scenario smart_home --duration {duration:g} --out LOG; edgefusion replay LOG "
                   f"--model smart_home --threads 1 --stage {stage} --out jsonl:R (timings_ns of each result)",
        "windows": len(rows),
        "stage_vad_ms": _ms(vad_ns), "main_inference_ms": _ms(infer_ns),
        "vad_steps_run_per_window": {"mean": round(float(np.mean(ran)), 3), "max": int(max(ran)),
                                     "windows_running_more_than_2": sum(n > 2 for n in ran)},
        "vad_steps_read_per_window": {"min": int(min(read)), "max": int(max(read))},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vad", type=Path, help="a Silero VAD package (default: made from the silero-vad PyPI package)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of synthesized log (default 20)")
    ap.add_argument("--out", default="bench/results/vad_stage_latency.json")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        vad = a.vad
        if vad is None:
            from edgefusion.anymodel import silero_vad_package

            vad = silero_vad_package(Path(tmp) / "silero_vad").path
        report = {"benchmark": "latency of a scanning VAD stage", "machine": machine_facts(),
                  **measure(vad, a.duration, Path(tmp))}
    v, s = report["stage_vad_ms"], report["vad_steps_run_per_window"]
    print(f"{report['windows']} windows: stage:vad p50 {v['p50']} ms, p99 {v['p99']} ms, max {v['max']} ms; "
          f"main model p50 {report['main_inference_ms']['p50']} ms; VAD steps run per window: {s['mean']} on "
          f"average, at most {s['max']} ({s['windows_running_more_than_2']} windows ran more than 2)")
    save_json(report, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
