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
    if a.music < 0:
        raise ConfigError(f"--music is a number of clips, 0 or more; got {a.music}")
    if a.spoken < 0:
        raise ConfigError(f"--spoken is a number of clips, 0 or more; got {a.spoken}")
    if not 0.0 <= a.real_events <= 1.0:
        raise ConfigError(f"--real-events is a chance per window, in [0, 1]; got {a.real_events:g}")
    for flag, v in (("--samples", a.samples), ("--eval-samples", a.eval_samples)):
        if v is not None and v < 0:
            raise ConfigError(f"{flag} is a number of samples, 0 or more; got {v}")
    if a.task:
        _train_task(a)
        return
    if a.samples == 0:
        raise ConfigError("--samples 0: training on a scenario needs at least one synthetic sample")
    if a.eval_samples == 0:
        raise ConfigError("--eval-samples 0 (no held-out evaluation) is for --task training; a --scenario run "
                          "evaluates on at least one sample")
    from edgefusion.scenarios import get_scenario
    from export.train import TrainConfig, train, with_overrides

    task_only = [f for f, v in (("--data", a.data), ("--init", a.init), ("--freeze", a.freeze), ("--steps", a.steps),
                                ("--new-text", a.new_text),
                                ("--lr", a.lr), ("--synthetic-fraction", a.synthetic_fraction != 0.5)) if v]
    if task_only:
        raise ConfigError(f"{', '.join(task_only)} train on a task: use --task (e.g. --task {a.scenario}) instead "
                          "of --scenario")
    get_scenario(a.scenario)
    arch = a.arch or "attention"
    if arch not in ("attention", "concat"):
        raise ConfigError(f"--arch must be 'attention' or 'concat', got {arch!r}")
    cfg = with_overrides(TrainConfig(scenario=a.scenario, arch=arch, augment=not a.no_augment,
                                     corpus=None if a.no_real_backgrounds else a.corpus, music=a.music,
                                     spoken=a.spoken, real_events=a.real_events),
                         seed=a.seed, epochs=a.epochs, n_train=a.samples, threads=a.threads, n_eval=a.eval_samples)
    out = a.out or f"runs/{a.scenario}-{arch}"
    _refuse_earlier_run(out, a.force)
    res = train(cfg, out)
    print(f"checkpoint {res.checkpoint}\nmetrics    {Path(out) / 'metrics.json'}")
    _print_held_out(res.metrics)


def _refuse_earlier_run(out: str, force: bool) -> None:
    """A checkpoint already in ``out`` (minutes or hours of training) is replaced only with ``--force``; a
    dataset or a package folder is never a run folder (the checkpoint would land among its files)."""
    for marker, what in (("dataset.json", "a dataset"), ("manifest.json", "a model package")):
        if (Path(out) / marker).exists():
            raise ConfigError(f"--out {out} is {what} ({marker}); give training a folder of its own")
    if not force and (Path(out) / "checkpoint.pt").exists():
        raise ConfigError(f"--out {out} holds the checkpoint of an earlier run; choose another --out or pass --force "
                          "to replace it")


def _print_held_out(metrics: dict[str, Any]) -> None:
    m = metrics.get("held_out")
    if m:
        print(f"held-out action accuracy {100 * m['action_accuracy']:.2f}%, event macro-F1 "
              f"{m['event_f1']['macro']:.4f}, modality ablation drop (points) {m['ablation_drop_points']}")
    r = metrics.get("held_out_robust")
    if r:
        print(f"robust held-out action accuracy {100 * r['action_accuracy']:.2f}% (drop {r['drop_points']:.2f} "
              f"points from clean; worst: {r['worst_row']})")


def _train_task(a: argparse.Namespace) -> None:
    from edgefusion.task import load_task
    from export.finetune import TaskTrainConfig, train_task

    task = load_task(a.task)
    freeze = tuple(f.strip() for f in a.freeze.split(",") if f.strip())
    kw = {k: v for k, v in (("seed", a.seed), ("epochs", a.epochs), ("n_eval", a.eval_samples),
                            ("threads", a.threads), ("arch", a.arch)) if v is not None}
    cfg = TaskTrainConfig(task=a.task, data=tuple(a.data), init=a.init, freeze=freeze,
                          synthetic_fraction=a.synthetic_fraction, samples=a.samples, steps=a.steps, lr=a.lr,
                          augment=not a.no_augment, corpus=None if a.no_real_backgrounds else a.corpus,
                          new_text=a.new_text, text_warmup=a.text_warmup, music=a.music,
                          spoken=a.spoken, real_events=a.real_events, **kw)
    out = a.out or f"runs/{task.name}-{a.arch or 'attention'}"
    _refuse_earlier_run(out, a.force)
    res = train_task(cfg, out)
    m = res.metrics
    print(f"checkpoint {res.checkpoint}\nmetrics    {Path(out) / 'metrics.json'}")
    tw = m["train_windows"]
    print(f"trained {m['steps']} steps on {tw['recorded']} recorded + {tw['synthetic']} synthetic windows")
    if m.get("init_reinitialised"):
        print(f"--init {a.init}: started fresh (no fitting tensor in the package): "
              + "; ".join(m["init_reinitialised"]))
    v = m.get("val")
    if v and v.get("samples"):
        weak = sorted(((k, e) for k, e in v["events"].items() if e["support"]), key=lambda kv: kv[1]["f1"])[:3]
        print(f"val ({v['samples']} windows): action accuracy {100 * v['action_accuracy']:.2f}%; weakest events "
              + ", ".join(f"{k} F1 {e['f1']:.2f} (recall {e['recall']:.2f}, {e['support']} windows)" for k, e in weak)
              + (f"; confusion matrix {Path(out) / v['confusion_png']}" if v.get("confusion_png") else ""))
    elif v:
        print(f"val: {v['note']}")
    _print_held_out(m)


def cmd_export(a: argparse.Namespace) -> None:
    require_toolchain("edgefusion export")
    from edgefusion.package import load_package
    from export.onnx_export import export_package

    cmd = "edgefusion export " + " ".join(shlex.quote(x) for x in sys.argv[2:])
    path = export_package(a.checkpoint, a.out, n_parity=a.parity_samples, command=cmd, force=a.force,
                          parity_data=a.parity_data, name=a.name)
    print(load_package(path).describe())


TRAIN_HELP = """\
Train a fusion model on the CPU (seeded); writes checkpoint.pt and metrics.json.
Needs: pip install 'edgefusion[train]'.

Two ways in:

  --scenario NAME   a reference model from the synthetic generator alone (smart_home, driving)
  --task TASK       a task (built-in name or task.toml) on recorded datasets (--data, from
                    'edgefusion dataset build'), mixed with the task's synthetic samples when it
                    has a generator (--synthetic-fraction), from scratch or fine-tuned from a
                    package (--init; its preprocessing is kept, its labels must be the task's)

Synthetic samples are augmented for the real world by default: a real background recording
from the corpus' 'train' split at a random SNR (never one of the task's own event classes),
gain +-20 dB, 8 kHz sources, brightness, contrast, auto-exposure, white balance, label-safe
crops, JPEG and blur; labels are unchanged. This default is new: 'edgefusion train --scenario
X' now gives other (more robust) models than before augmentation existed; --no-augment
reproduces those byte for byte. Recorded windows are stored preprocessed: not augmented.

metrics.json: the held-out synthetic set (clean, comparable across runs), the hard split,
accuracy with each modality masked, 'held_out_robust' (the same held-out samples through the
robustness bench's perturbations; its noise rows use held-out recordings) and, with --data,
'val': per-label precision/recall, action accuracy, confusion matrix (confusion_val.png when
matplotlib is installed) and per-recording accuracy on the datasets' val split.
"""

TRAIN_EPILOG = """examples:
  make corpus                                               # once: real recordings into runs/corpus
  edgefusion train --scenario smart_home --out runs/sh      # augmented, 12000 samples x 8 epochs
  edgefusion train --scenario driving --samples 2000 --epochs 1 --out runs/drv-quick
  edgefusion train --scenario smart_home --no-augment       # the clean synthetic training of before
  edgefusion train --task smart_home --data data/home --init smart_home --out runs/home-ft
  edgefusion train --task smart_home --data data/home --init smart_home --freeze image,text --steps 200
  edgefusion train --task my_task.toml --data data/mine --synthetic-fraction 0 --out runs/mine
then: edgefusion export runs/home-ft/checkpoint.pt --out packages/home
      edgefusion quantize packages/home --gate-data data/home
"""


def add_train_arguments(sp: argparse.ArgumentParser) -> None:
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.description, sp.epilog = TRAIN_HELP, TRAIN_EPILOG
    what = sp.add_mutually_exclusive_group(required=True)
    what.add_argument("--scenario", help="smart_home or driving: train on its synthetic samples")
    what.add_argument("--task", help="a built-in task or a task.toml: train on --data (and its generator)")
    sp.add_argument("--arch", help="attention (default) or concat (late-fusion baseline); --init keeps the package's")
    sp.add_argument("--seed", type=int, help="seed (default 0)")
    sp.add_argument("--epochs", type=int, help="epochs (default 8)")
    sp.add_argument("--samples", type=int, help="synthetic training samples (default 12000; with --data: "
                                                "--synthetic-fraction of the training set)")
    sp.add_argument("--eval-samples", type=int, help="synthetic held-out samples per split (default 2000; 0: none, "
                                                     "with --task)")
    sp.add_argument("--threads", type=int, help="torch threads (default 2)")
    sp.add_argument("--out", help="output directory (default runs/SCENARIO-ARCH or runs/TASK-ARCH)")
    sp.add_argument("--force", action="store_true", help="replace the checkpoint of an earlier run in --out "
                                                         "(refused otherwise)")
    sp.add_argument("--no-augment", action="store_true",
                    help="train on the clean synthetic samples, as before augmentation existed")
    sp.add_argument("--corpus", default="runs/corpus",
                    help="prepared corpus of real recordings whose 'train' backgrounds augmentation mixes in "
                         "(default runs/corpus; build it with 'make corpus')")
    sp.add_argument("--no-real-backgrounds", action="store_true",
                    help="augment without real background recordings (no corpus needed)")
    sp.add_argument("--music", type=int, default=24, metavar="N",
                    help="procedural music clips (8 s each, seeded) added to the augmentation's backgrounds, so "
                         "music and ringtones are learned as no event (default 24; 0: none, as before this option)")
    sp.add_argument("--spoken", type=int, default=0, metavar="N",
                    help="wide-band speech clips rendered by espeak-ng (seeded sentences, voices, speeds; needs "
                         "espeak-ng): speech recordings for a task with a 'speech' event (with --real-events), "
                         "background for any other (default 0)")
    sp.add_argument("--real-events", type=float, default=0.0, metavar="P",
                    help="chance a training window gets a real recording of one of the task's audio events, mixed "
                         "in and labelled (the corpus' wide-band event recordings and --spoken clips; default 0)")
    g = sp.add_argument_group("task training (with --task)")
    g.add_argument("--data", nargs="+", action="extend", default=[], metavar="DIR",
                   help="recorded dataset(s) from 'edgefusion dataset build': train on their train split, "
                        "validate on their val split")
    g.add_argument("--init", metavar="PACKAGE", help="fine-tune from this package's checkpoint (a directory or a "
                                                     "built-in name), keeping its preprocessing")
    g.add_argument("--new-text", action="store_true",
                   help="with --init: replace the package's text input with a fresh open-vocabulary one (hashed "
                        "character n-grams; the encoders, heads and other inputs are kept, new labels start fresh)")
    g.add_argument("--text-warmup", type=int, default=2000, metavar="STEPS",
                   help="with --new-text: steps that train the fresh text encoder and intent head on the task's "
                        "commands alone before fusion training (default 2000, about a minute; 0: none)")
    g.add_argument("--freeze", default="", metavar="LIST", help="comma-separated encoders to keep fixed: image, "
                                                              "audio, text")
    g.add_argument("--synthetic-fraction", type=float, default=0.5, metavar="F",
                   help="share of synthetic samples in the training set when the task has a generator (default "
                        "0.5; 0: recorded data only)")
    g.add_argument("--steps", type=int, help="stop after this many optimizer steps (default: --epochs epochs)")
    g.add_argument("--lr", type=float, help="peak learning rate (default 5e-4 with --init, else 2e-3)")


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
                         calibration_log=a.calibration_data, gate_data=a.gate_data)
    report = quantize_package(a.package, cfg, command=_command_line(), progress=not a.quiet)
    print(report.describe())


def cmd_build_engine(a: argparse.Namespace) -> None:
    from export.tensorrt_build import BuildConfig, build_engine

    cfg = BuildConfig(variant=a.variant, max_batch=a.max_batch, opt_batch=a.opt_batch,
                      workspace_mib=a.workspace_mib, device=a.device)
    rec = build_engine(a.package, cfg, command=_command_line())
    print(rec.describe())



def register(sub: Any) -> None:
    sp = add_command(sub, "train", "Train a fusion model on the CPU (seeded): a reference scenario, or a task on "
                                   "recorded datasets, optionally fine-tuned from a package. Needs: pip install "
                                   "'edgefusion[train]'.", cmd_train)
    add_train_arguments(sp)

    sp = add_command(sub, "export", "Export a checkpoint to a model package: FP32 ONNX (dynamic batch, opset 20), "
                                    "manifest with hashes and provenance, parity against PyTorch. Needs the "
                                    "'train' extra.", cmd_export)
    sp.add_argument("checkpoint", help="checkpoint.pt written by 'edgefusion train'")
    sp.add_argument("--out", required=True, help="package directory to write")
    sp.add_argument("--parity-samples", type=int, default=256, help="held-out samples for parity (default 256)")
    sp.add_argument("--force", action="store_true", help="replace an existing package directory")
    sp.add_argument("--name", help="the package's name in results, logs and metrics (default TASK-ARCH, e.g. "
                                   "smart_home-attention: a fine-tune of a built-in package would share its name)")
    sp.add_argument("--parity-data", metavar="DIR",
                    help="take the parity samples from this dataset (default: the dataset the checkpoint was trained "
                         "on, else the scenario's held-out samples)")
