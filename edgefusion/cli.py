"""The ``edgefusion`` command: a thin layer over the Python API.

Every EdgeFusionError is printed as ``error: <message>`` with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from edgefusion import __version__
from edgefusion.errors import EdgeFusionError, MissingDependencyError

EPILOG = """examples:
  edgefusion demo                                   # 20 s of smart_home through the built-in model
  edgefusion demo --scenario driving --seed 3
  edgefusion info smart_home                        # what a package holds and expects
  edgefusion synth --scenario driving --duration 30 --out drive.npz
  edgefusion train --scenario smart_home --out runs/sh      # needs the 'train' extra (torch)
  edgefusion export runs/sh/checkpoint.pt --out packages/sh
"""


def _toolchain(purpose: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("torch", "train", purpose) from exc


def cmd_info(a: argparse.Namespace) -> None:
    from edgefusion.package import load_package

    pkg = load_package(a.package)
    if a.json:
        print(json.dumps(pkg.manifest, indent=2))
    else:
        print(pkg.describe())


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
        raise EdgeFusionError(f"--duration must be positive, got {a.duration}")
    tl = generate_timeline(scen, a.duration, a.seed, hard=a.hard)
    path = write_timeline(tl, a.out)
    print(f"wrote {path}: {len(tl.frames)} frames at 30 fps, {len(tl.audio) / tl.audio_rate:.1f} s of audio, "
          f"{len(tl.commands)} commands, ground truth per frame")


def cmd_run_file(a: argparse.Namespace) -> None:
    from edgefusion.demo import run_timeline
    from edgefusion.timeline_io import read_timeline

    tl = read_timeline(a.timeline)
    run_timeline(tl, a.model or tl.scenario, a.backend, a.variant, a.threads)


def cmd_train(a: argparse.Namespace) -> None:
    _toolchain("edgefusion train")
    from edgefusion.scenarios import get_scenario
    from export.train import TrainConfig, train, with_overrides

    get_scenario(a.scenario)
    if a.arch not in ("attention", "concat"):
        raise EdgeFusionError(f"--arch must be 'attention' or 'concat', got {a.arch!r}")
    cfg = with_overrides(TrainConfig(scenario=a.scenario, arch=a.arch), seed=a.seed, epochs=a.epochs,
                         n_train=a.samples, threads=a.threads, n_eval=a.eval_samples)
    out = a.out or f"runs/{a.scenario}-{a.arch}"
    res = train(cfg, out)
    m = res.metrics["held_out"]
    print(f"checkpoint {res.checkpoint}\nmetrics    {Path(out) / 'metrics.json'}")
    print(f"held-out action accuracy {100 * m['action_accuracy']:.2f}%, event macro-F1 {m['event_f1']['macro']:.4f}, "
          f"modality ablation drop (points) {m['ablation_drop_points']}")


def cmd_export(a: argparse.Namespace) -> None:
    _toolchain("edgefusion export")
    from edgefusion.package import load_package
    from export.onnx_export import export_package

    cmd = "edgefusion export " + " ".join(shlex.quote(x) for x in sys.argv[2:])
    path = export_package(a.checkpoint, a.out, n_parity=a.parity_samples, command=cmd, force=a.force)
    print(load_package(path).describe())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgefusion", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="EdgeFusion: multimodal (camera + audio + text) fusion at the edge. "
                    "Runs on ONNX Runtime on any CPU; models are built with PyTorch (the 'train' extra).")
    p.add_argument("--version", action="version", version=f"edgefusion {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_: str, fn: object) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def runtime_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--backend", default="onnxruntime", help="onnxruntime (default) or null")
        sp.add_argument("--variant", default="fp32", help="artifact of the package to run (default fp32)")
        sp.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")

    sp = add("info", "Show what a model package holds and expects (inputs, outputs, artifacts, provenance).", cmd_info)
    sp.add_argument("package", help="package directory, or a built-in name: smart_home, driving")
    sp.add_argument("--json", action="store_true", help="print the raw manifest")

    sp = add("demo", "Synthesize a scenario timeline and run every frame through a model; print actions "
                     "next to ground truth, then accuracy and per-stage latency.", cmd_demo)
    sp.add_argument("--scenario", default="smart_home", help="smart_home (default) or driving")
    sp.add_argument("--model", help="model package (default: the built-in one of the scenario)")
    sp.add_argument("--seed", type=int, default=7, help="timeline seed (default 7)")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds to synthesize (default 20)")
    sp.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    runtime_opts(sp)

    sp = add("synth", "Write a synthesized scenario timeline (frames, audio, commands, per-frame truth) "
                      "to an .npz file (interim format until MCAP; see docs/architecture.md).", cmd_synth)
    sp.add_argument("--scenario", required=True, help="smart_home or driving")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    sp.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sp.add_argument("--hard", action="store_true", help="more clutter, noise and distractors")
    sp.add_argument("--out", required=True, help="output .npz path")

    sp = add("run-file", "Run a timeline written by 'edgefusion synth' through a model and score it.", cmd_run_file)
    sp.add_argument("timeline", help="an .npz from 'edgefusion synth'")
    sp.add_argument("--model", help="model package (default: the built-in one of the timeline's scenario)")
    runtime_opts(sp)

    sp = add("train", "Train a reference model on the CPU (seeded); writes checkpoint.pt and metrics.json. "
                      "Needs: pip install 'edgefusion[train]'.", cmd_train)
    sp.add_argument("--scenario", required=True, help="smart_home or driving")
    sp.add_argument("--arch", default="attention", help="attention (default) or concat (late-fusion baseline)")
    sp.add_argument("--seed", type=int, help="seed (default 0)")
    sp.add_argument("--epochs", type=int, help="epochs (default 12)")
    sp.add_argument("--samples", type=int, help="training samples (default 12000)")
    sp.add_argument("--eval-samples", type=int, help="held-out samples per split (default 2000)")
    sp.add_argument("--threads", type=int, help="torch threads (default 2)")
    sp.add_argument("--out", help="output directory (default runs/SCENARIO-ARCH)")

    sp = add("export", "Export a checkpoint to a model package: FP32 ONNX (dynamic batch, opset 20), "
                       "manifest with hashes and provenance, parity against PyTorch. Needs the 'train' extra.",
             cmd_export)
    sp.add_argument("checkpoint", help="checkpoint.pt written by 'edgefusion train'")
    sp.add_argument("--out", required=True, help="package directory to write")
    sp.add_argument("--parity-samples", type=int, default=256, help="held-out samples for parity (default 256)")
    sp.add_argument("--force", action="store_true", help="replace an existing package directory")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
