"""Attention fusion against the late-fusion (concat) baseline: same data, same budget, clean and robust.

For each scenario and architecture, trains from scratch with ``edgefusion train --scenario S
--arch A`` (same seed, samples, epochs, threads and augmentation: the corpus' train
backgrounds), exports the checkpoint (``edgefusion export``), then scores the package with
``bench/robustness.py``'s own code: clean held-out samples and every robustness row, action
accuracy and event macro-F1, plus the false alarms on the corpus' held-out recordings.
The training's own ``metrics.json`` gives the 2,000-sample clean and hard held-out figures.

Both trainings of a scenario see byte-identical data (the script checks the recorded
``train_data_sha256``). Writes JSON (default bench/results/fusion_vs_concat.json) and a
Markdown table beside it. The budget is a parameter: state it with the numbers.

    python bench/fusion_vs_concat.py --samples 4000 --epochs 3 --threads 1
    python bench/fusion_vs_concat.py --reuse          # evaluate runs already trained
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from edgefusion.benchmark.report import machine_facts, save_json_and_markdown
from edgefusion.errors import ConfigError, EdgeFusionError

ROOT = Path(__file__).resolve().parent.parent
ARCHS = ("attention", "concat")


def _robustness() -> ModuleType:
    """bench/robustness.py (a script, not a package module), loaded by path."""
    spec = importlib.util.spec_from_file_location("bench_robustness", Path(__file__).with_name("robustness.py"))
    if spec is None or spec.loader is None:
        raise ConfigError("cannot load bench/robustness.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def _edgefusion(args: Sequence[str], log: Path) -> float:
    """Run ``edgefusion ARGS`` as a subprocess (the CLI a user runs), output to ``log``; returns seconds."""
    cmd = [sys.executable, "-c", "import sys; from edgefusion.cli import main; sys.exit(main())", *args]
    t0 = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False, cwd=ROOT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise EdgeFusionError(f"'edgefusion {' '.join(args[:3])} ...' exited with {done.returncode}: {tail[0]} "
                              f"(full log: {log})")
    return time.perf_counter() - t0


def train_and_export(scenario: str, arch: str, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """Train (unless ``--reuse`` finds the run) and export one model; its package dir and metrics.json."""
    run = args.work / f"{scenario}-{arch}"
    ckpt, pkg = run / "checkpoint.pt", run / "package"
    if not (args.reuse and ckpt.is_file()):
        run.mkdir(parents=True, exist_ok=True)
        print(f"train {scenario}/{arch} -> {run}", file=sys.stderr, flush=True)
        _edgefusion(["train", "--scenario", scenario, "--arch", arch, "--seed", str(args.seed), "--samples",
                     str(args.samples), "--epochs", str(args.epochs), "--threads", str(args.threads),
                     "--eval-samples", str(args.eval_samples), "--corpus", str(args.corpus), "--out", str(run),
                     "--spoken", str(args.spoken), "--real-events", f"{args.real_events:g}", "--force"],
                    run / "train.log")
    if not (args.reuse and (pkg / "manifest.json").is_file()):
        _edgefusion(["export", str(ckpt), "--out", str(pkg), "--force", "--parity-samples", "64"], run / "export.log")
    return pkg, json.loads((run / "metrics.json").read_text())


def evaluate(pkg_dir: Path, metrics: dict[str, Any], args: argparse.Namespace, rb: ModuleType,
             heldout: Sequence[Any]) -> dict[str, Any]:
    """The robustness rows (clean first) and false alarms of one package, beside its training metrics."""
    ns = argparse.Namespace(samples=args.bench_samples, seed=None, threads=args.threads,
                            levels_dbfs=[-30.0, -20.0], fa_windows=None)
    rep = rb.bench_package(str(pkg_dir), ns, heldout)
    held, hard = metrics["held_out"], metrics["held_out_hard"]
    return {"arch": metrics["arch"], "parameters": metrics["parameters"], "train_seconds": metrics["train_seconds"],
            "train_data_sha256": metrics["train_data_sha256"],
            "held_out": {"samples": held["samples"], "action_accuracy": held["action_accuracy"],
                         "event_macro_f1": held["event_f1"]["macro"],
                         "ablation_drop_points": held.get("ablation_drop_points")},
            "held_out_hard": {"action_accuracy": hard["action_accuracy"], "event_macro_f1": hard["event_f1"]["macro"]},
            "robustness": {"samples": rep["samples"], "seed": rep["seed"], "rows": rep["rows"]},
            "false_alarms": {lv["level_dbfs"]: lv["fires"] for lv in rep["false_alarms"]["levels"]}}


def markdown(report: dict[str, Any]) -> str:
    b = report["budget"]
    lines = ["# Attention fusion against the late-fusion (concat) baseline", "",
             f"Trained from scratch, seed {b['seed']}, {b['samples']} samples x {b['epochs']} epochs, "
             f"{b['threads']} thread(s), augmentation with the corpus' train backgrounds"
             + (f" and {b['spoken']} espeak-ng speech clips (real events on {b['real_events']:g} of windows)"
                if b.get("spoken") else "") + "; robustness rows on "
             f"{b['bench_samples']} held-out samples each (ONNX Runtime fp32).", ""]
    for scen, res in report["scenarios"].items():
        a, c = res["attention"], res["concat"]
        lines += [f"## {scen}", "", "| input | attention | concat | attention - concat (points) |",
                  "|---|---:|---:|---:|"]
        def row(name: str, x: float, y: float, digits: int = 1) -> str:
            return f"| {name} | {100 * x:.{digits}f}% | {100 * y:.{digits}f}% | {100 * (x - y):+.1f} |"

        lines.append(row(f"clean ({a['held_out']['samples']} samples, training's metrics)",
                         a["held_out"]["action_accuracy"], c["held_out"]["action_accuracy"], 2))
        lines.append(row("hard split", a["held_out_hard"]["action_accuracy"], c["held_out_hard"]["action_accuracy"], 2))
        for ra, rc in zip(a["robustness"]["rows"], c["robustness"]["rows"]):
            lines.append(row(ra["name"], ra["action_accuracy"], rc["action_accuracy"]))
        lines.append(f"| event macro-F1 (clean) | {a['held_out']['event_macro_f1']:.3f} "
                     f"| {c['held_out']['event_macro_f1']:.3f} | |")
        lines.append(f"| parameters | {a['parameters']:,} | {c['parameters']:,} | |")
        lines.append(f"| training time | {a['train_seconds'] / 60:.1f} min | {c['train_seconds'] / 60:.1f} min | |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--samples", type=int, default=4000, help="training samples (default 4000)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-samples", type=int, default=2000, help="training's clean/hard held-out samples")
    ap.add_argument("--bench-samples", type=int, default=500, help="held-out samples per robustness row")
    ap.add_argument("--spoken", type=int, default=0, help="espeak-ng speech clips, as edgefusion train --spoken")
    ap.add_argument("--real-events", type=float, default=0.0, help="as edgefusion train --real-events")
    ap.add_argument("--corpus", type=Path, default=ROOT / "runs" / "corpus")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "fusion_vs_concat", help="runs and packages")
    ap.add_argument("--reuse", action="store_true", help="evaluate checkpoints already in --work")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion_vs_concat.json")
    args = ap.parse_args(argv)
    try:
        rb = _robustness()
        heldout = rb.load_prepared(args.corpus, split="heldout")
        scenarios: dict[str, Any] = {}
        for scen in args.scenarios:
            scenarios[scen] = {}
            for arch in ARCHS:
                pkg, metrics = train_and_export(scen, arch, args)
                scenarios[scen][arch] = evaluate(pkg, metrics, args, rb, heldout)
            hashes = {r["train_data_sha256"] for r in scenarios[scen].values()}
            if len(hashes) != 1:
                raise ConfigError(f"{scen}: the two architectures trained on different data ({sorted(hashes)}); "
                                  "rerun without --reuse")
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = {"benchmark": "fusion_vs_concat", "machine": machine_facts(),
              "budget": {k: getattr(args, k) for k in ("samples", "epochs", "threads", "seed", "eval_samples",
                                                         "bench_samples", "spoken", "real_events")},
              "corpus": str(args.corpus), "scenarios": scenarios}
    save_json_and_markdown(report, args.out, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
