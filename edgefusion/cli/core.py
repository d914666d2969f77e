"""Runtime commands: info, demo."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command, runtime_options
from edgefusion.errors import ConfigError


def cmd_info(a: argparse.Namespace) -> None:
    from edgefusion.backends import availability
    from edgefusion.cli import EXIT_MISMATCH
    from edgefusion.errors import IntegrityError, MissingArtifactError, PackageError
    from edgefusion.package import MANIFEST, load_package
    from edgefusion.policy import describe_policy

    try:
        pkg = load_package(a.package)
    except PackageError as exc:
        if not (Path(a.package) / MANIFEST).is_file() or isinstance(exc, (IntegrityError, MissingArtifactError)):
            raise  # no package there, or its files changed: the usual one-line error
        raise PackageError(f"{a.package} does not run here: {exc}") from exc  # a manifest mistake, one error
    if a.json:
        print(json.dumps(pkg.manifest.raw, indent=2))
        return
    print(pkg.describe())
    print("\n".join(describe_policy(pkg)))
    print("runs here:")
    rows = availability(pkg)
    for variant, backend, ok, why in rows:
        print(f"  {'yes' if ok else 'no ':<4} {backend + ':' + variant:<26} {why}")
    if not any(ok for _, backend, ok, _ in rows if backend == "onnxruntime"):
        raise SystemExit(EXIT_MISMATCH)


def cmd_demo(a: argparse.Namespace) -> None:
    from edgefusion.demo import run_demo

    if a.json and not Path(a.json).resolve().parent.is_dir():
        raise ConfigError(f"--json {a.json}: the folder {Path(a.json).resolve().parent} does not exist")
    rep = run_demo(a.scenario, a.model, a.seed, a.duration, a.backend, a.variant, a.threads, realtime=a.realtime)
    if a.json:
        Path(a.json).write_text(json.dumps(rep.summary(), indent=2) + "\n")


def register(sub: Any) -> None:
    sp = add_command(sub, "info", "Show what a model package holds and expects (inputs, outputs, artifacts, "
                                  "provenance) and the decision policy it runs under; then open each variant and run "
                                  "one step on generated inputs, saying 'does not run here' and why (a manifest "
                                  "mistake, a model ONNX Runtime cannot load, with the opset conversion that fixes "
                                  "it). Exit status 1 when nothing runs on the CPU.", cmd_info)
    sp.add_argument("package", help="package directory, or a built-in name: smart_home, driving")
    sp.add_argument("--json", action="store_true", help="print the raw manifest")

    sp = add_command(sub, "demo", "Synthesize a scenario timeline and run every frame through a model; print "
                                  "actions next to ground truth (marking steps where the task's policy abstained, "
                                  "was degraded or replaced the model's action), then accuracy, the policy's "
                                  "counts and per-stage latency.", cmd_demo)
    sp.add_argument("--scenario", default="smart_home", help="smart_home (default) or driving")
    sp.add_argument("--model", help="model package (default: the built-in one of the scenario)")
    sp.add_argument("--seed", type=int, default=7, help="timeline seed (default 7)")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds to synthesize (default 20)")
    sp.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    sp.add_argument("--realtime", action="store_true", help="feed frames at 30 fps instead of as fast as possible")
    runtime_options(sp)
