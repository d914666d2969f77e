"""Toolchain commands: train and export (the 'train' extra), and what quantize and build-engine run.

This is the one module of ``edgefusion/`` that imports the toolchain (``export/``,
``calibration/``), and only inside the command functions, so importing the CLI never
imports torch or onnx (tests/test_imports.py holds every other module to that). The flags
and help of quantize and build-engine live in :mod:`edgefusion.cli.int8`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command, require_toolchain
from edgefusion.errors import ConfigError, MissingDependencyError


def cmd_train(a: argparse.Namespace) -> None:
    require_toolchain("edgefusion train")
    from edgefusion.scenarios import get_scenario
    from export.train import TrainConfig, train, with_overrides

    get_scenario(a.scenario)
    if a.arch not in ("attention", "concat"):
        raise ConfigError(f"--arch must be 'attention' or 'concat', got {a.arch!r}")
    cfg = with_overrides(TrainConfig(scenario=a.scenario, arch=a.arch, augment=not a.no_augment,
                                     corpus=None if a.no_real_backgrounds else a.corpus),
                         seed=a.seed, epochs=a.epochs, n_train=a.samples, threads=a.threads, n_eval=a.eval_samples)
    out = a.out or f"runs/{a.scenario}-{a.arch}"
    res = train(cfg, out)
    m = res.metrics["held_out"]
    print(f"checkpoint {res.checkpoint}\nmetrics    {Path(out) / 'metrics.json'}")
    print(f"held-out action accuracy {100 * m['action_accuracy']:.2f}%, event macro-F1 {m['event_f1']['macro']:.4f}, "
          f"modality ablation drop (points) {m['ablation_drop_points']}")
    r = res.metrics["held_out_robust"]
    print(f"robust held-out action accuracy {100 * r['action_accuracy']:.2f}% ({r['drop_points']:+.2f} points from "
          f"clean; worst: {r['worst_row']})")


def cmd_export(a: argparse.Namespace) -> None:
    require_toolchain("edgefusion export")
    from edgefusion.package import load_package
    from export.onnx_export import export_package

    cmd = "edgefusion export " + " ".join(shlex.quote(x) for x in sys.argv[2:])
    path = export_package(a.checkpoint, a.out, n_parity=a.parity_samples, command=cmd, force=a.force)
    print(load_package(path).describe())


TRAIN_HELP = """\
Train a reference model on the CPU (seeded); writes checkpoint.pt and metrics.json.
Needs: pip install 'edgefusion[train]'.

Training samples are synthesized by the scenario's generator and, by default, augmented
for the real world: a real background recording from the corpus' 'train' split at a random
SNR, gain +-20 dB, 8 kHz sources, brightness, contrast, auto-exposure, white balance,
label-safe crops, JPEG and blur; labels are unchanged. This default is new: the same
'edgefusion train --scenario X' command gives other (more robust) models than before
augmentation existed; --no-augment reproduces those byte for byte.

metrics.json reports the held-out set (clean synthetic samples, comparable across runs),
the hard split, the accuracy with each modality masked, and 'held_out_robust': the same
held-out samples through a fixed perturbation set (the robustness bench's rows; its noise
rows use the corpus' held-out recordings, never trained on).
"""

TRAIN_EPILOG = """examples:
  make corpus                                               # once: real recordings into runs/corpus
  edgefusion train --scenario smart_home --out runs/sh      # augmented, 12000 samples x 8 epochs
  edgefusion train --scenario driving --samples 2000 --epochs 1 --out runs/drv-quick
  edgefusion train --scenario driving --no-real-backgrounds # augment, but without the corpus
  edgefusion train --scenario smart_home --no-augment       # the clean synthetic training of before
"""


def _require_onnx(purpose: str) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("onnx", "train", purpose) from exc
    try:
        import tqdm  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("tqdm", "train", purpose) from exc


def _command_line() -> str:
    return "edgefusion " + " ".join(shlex.quote(x) for x in sys.argv[1:])


def cmd_quantize(a: argparse.Namespace) -> None:
    _require_onnx("edgefusion quantize")
    from calibration.quantize import QuantizeConfig, quantize_package

    variants = tuple(v.strip() for v in a.variants.split(",") if v.strip())
    if a.calibration_feeds and a.calibration_data:
        raise ConfigError("give --calibration-data or --calibration-feeds, not both")
    if a.calibration_feeds and (a.samples is not None or a.seed is not None):
        raise ConfigError("--samples and --seed describe synthesized calibration data; with --calibration-feeds the "
                          "file is the data. Drop one or the other")
    cfg = QuantizeConfig(method=a.method, samples=512 if a.samples is None else a.samples, eval_samples=a.eval_samples,
                         max_drop_points=a.max_drop, variants=variants, seed=a.seed, batch=a.batch,
                         threads=a.threads, calibration_feeds=a.calibration_feeds,
                         calibration_log=a.calibration_data)
    report = quantize_package(a.package, cfg, command=_command_line(), progress=not a.quiet)
    print(report.describe())


def cmd_build_engine(a: argparse.Namespace) -> None:
    from export.tensorrt_build import BuildConfig, build_engine

    cfg = BuildConfig(variant=a.variant, max_batch=a.max_batch, opt_batch=a.opt_batch,
                      workspace_mib=a.workspace_mib, device=a.device)
    rec = build_engine(a.package, cfg, command=_command_line())
    print(rec.describe())



def register(sub: Any) -> None:
    sp = add_command(sub, "train", "Train a reference model on the CPU (seeded); writes checkpoint.pt and "
                                   "metrics.json. Needs: pip install 'edgefusion[train]'.", cmd_train)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.description, sp.epilog = TRAIN_HELP, TRAIN_EPILOG
    sp.add_argument("--scenario", required=True, help="smart_home or driving")
    sp.add_argument("--arch", default="attention", help="attention (default) or concat (late-fusion baseline)")
    sp.add_argument("--seed", type=int, help="seed (default 0)")
    sp.add_argument("--epochs", type=int, help="epochs (default 8)")
    sp.add_argument("--samples", type=int, help="training samples (default 12000)")
    sp.add_argument("--eval-samples", type=int, help="held-out samples per split (default 2000)")
    sp.add_argument("--threads", type=int, help="torch threads (default 2)")
    sp.add_argument("--out", help="output directory (default runs/SCENARIO-ARCH)")
    sp.add_argument("--no-augment", action="store_true",
                    help="train on the clean synthetic samples, as before augmentation existed")
    sp.add_argument("--corpus", default="runs/corpus",
                    help="prepared corpus of real recordings whose 'train' backgrounds augmentation mixes in "
                         "(default runs/corpus; build it with 'make corpus')")
    sp.add_argument("--no-real-backgrounds", action="store_true",
                    help="augment without real background recordings (no corpus needed)")

    sp = add_command(sub, "export", "Export a checkpoint to a model package: FP32 ONNX (dynamic batch, opset 20), "
                                    "manifest with hashes and provenance, parity against PyTorch. Needs the "
                                    "'train' extra.", cmd_export)
    sp.add_argument("checkpoint", help="checkpoint.pt written by 'edgefusion train'")
    sp.add_argument("--out", required=True, help="package directory to write")
    sp.add_argument("--parity-samples", type=int, default=256, help="held-out samples for parity (default 256)")
    sp.add_argument("--force", action="store_true", help="replace an existing package directory")
