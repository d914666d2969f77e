"""Runtime commands: info, demo, synth, run-file."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command, runtime_options
from edgefusion.errors import ConfigError


def cmd_info(a: argparse.Namespace) -> None:
    from edgefusion.package import load_package

    pkg = load_package(a.package)
    print(json.dumps(pkg.manifest, indent=2) if a.json else pkg.describe())


def cmd_demo(a: argparse.Namespace) -> None:
    from edgefusion.demo import run_demo

    rep = run_demo(a.scenario, a.model, a.seed, a.duration, a.backend, a.variant, a.threads)
    if a.json:
        Path(a.json).write_text(json.dumps(rep.summary(), indent=2) + "\n")


def cmd_synth(a: argparse.Namespace) -> None:
    from edgefusion.scenarios import generate_timeline, get_scenario
    from edgefusion.timeline_io import write_timeline

    scen = get_scenario(a.scenario)
    if a.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {a.duration}")
    tl = generate_timeline(scen, a.duration, a.seed, hard=a.hard)
    path = write_timeline(tl, a.out)
    print(f"wrote {path}: {len(tl.frames)} frames at 30 fps, {len(tl.audio) / tl.audio_rate:.1f} s of audio, "
          f"{len(tl.commands)} commands, ground truth per frame")


def cmd_run_file(a: argparse.Namespace) -> None:
    from edgefusion.demo import run_timeline
    from edgefusion.timeline_io import read_timeline

    tl = read_timeline(a.timeline)
    run_timeline(tl, a.model or tl.scenario, a.backend, a.variant, a.threads)


def register(sub: Any) -> None:
    sp = add_command(sub, "info", "Show what a model package holds and expects (inputs, outputs, artifacts, "
                                  "provenance).", cmd_info)
    sp.add_argument("package", help="package directory, or a built-in name: smart_home, driving")
    sp.add_argument("--json", action="store_true", help="print the raw manifest")

    sp = add_command(sub, "demo", "Synthesize a scenario timeline and run every frame through a model; print "
                                  "actions next to ground truth, then accuracy and per-stage latency.", cmd_demo)
    sp.add_argument("--scenario", default="smart_home", help="smart_home (default) or driving")
    sp.add_argument("--model", help="model package (default: the built-in one of the scenario)")
    sp.add_argument("--seed", type=int, default=7, help="timeline seed (default 7)")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds to synthesize (default 20)")
    sp.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    runtime_options(sp)

    sp = add_command(sub, "synth", "Write a synthesized scenario timeline (frames, audio, commands, per-frame "
                                   "truth) to an .npz file (interim format until MCAP; see docs/architecture.md).",
                     cmd_synth)
    sp.add_argument("--scenario", required=True, help="smart_home or driving")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    sp.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sp.add_argument("--hard", action="store_true", help="more clutter, noise and distractors")
    sp.add_argument("--out", required=True, help="output .npz path")

    sp = add_command(sub, "run-file", "Run a timeline written by 'edgefusion synth' through a model and score it.",
                     cmd_run_file)
    sp.add_argument("timeline", help="an .npz from 'edgefusion synth'")
    sp.add_argument("--model", help="model package (default: the built-in one of the timeline's scenario)")
    runtime_options(sp)
