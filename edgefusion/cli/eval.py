"""``edgefusion eval``: fleet-scale evaluation of packages on recordings, locally or on Ray."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgefusion.cli._common import add_command, output_dir
from edgefusion.errors import ConfigError, EdgeFusionError

EVAL_EPILOG = """what it does:
  Replays every recording (lossless, deterministic, as `replay --check` does) through PACKAGE,
  and through a second package or variant (B) when asked, one task per recording; scores each
  against the truth in the log (/truth, else its /labels): per label precision, recall and
  reaction time, per recording, per scenario, plus latency percentiles; writes one report
  (report.json, report.md, labels.png, recordings.png) into --out; and gives a verdict from
  the --fail-if rules. Scores already in --out (same recording, package, variant, backend)
  are reused: rerun the same command to resume an interrupted evaluation.

examples:
  edgefusion synth --scenario smart_home --seed 1 --out logs/sh1.mcap
  edgefusion eval smart_home logs/                               # local processes, one per CPU
  edgefusion eval smart_home logs/ --variant fp32,int8 --fail-if "delta.recall < -0.02"
  edgefusion eval runs/new_pkg logs/ --against smart_home --fail-if "recall.smoke_alarm < 0.98"
  edgefusion eval auto logs/ --ray auto --workers 2               # each log's own package, on a local Ray
  edgefusion eval smart_home /mnt/fleet/ --ray 10.0.0.5:6379      # join a cluster (shared file system)
  edgefusion eval smart_home logs/ --thresholds thresholds.toml   # fail_if = ["recall < 0.9", ...]

rules (--fail-if, repeatable; a rule that holds fails the evaluation):
  [delta.]METRIC[.LABEL] OP NUMBER, OP one of < <= > >= == !=
  per label: precision, recall, reaction_ms; overall also accuracy, latency_p50_ms,
  latency_p99_ms, inference_p50_ms, inference_p99_ms, failed (recordings not scored).
  Rules read A; delta. reads A minus B. A metric with nothing to measure fails its rule.

exit status:
  0  every recording scored, every rule passes
  1  a --fail-if rule failed (a regression); the rule is named on stdout
  2  error: bad options, a package that cannot be loaded, no recording scored at all
  3  partial: some recordings could not be scored (each listed with its error); the
     rules pass on the others
"""


def _variants(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ConfigError(f"--variant: expected VARIANT or A_VARIANT,B_VARIANT, got {text!r}")
    return parts


def cmd_eval(a: argparse.Namespace) -> None:
    from edgefusion.fleet.evaluate import EXIT_ERROR, EvalConfig, evaluate
    from edgefusion.fleet.rules import load_rules, parse_rule

    rules = [parse_rule(r) for r in a.fail_if or []]
    if a.thresholds:
        rules += load_rules(a.thresholds)
    if a.workers is not None and a.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {a.workers}")
    if a.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {a.threads}")
    cfg = EvalConfig(a.package, a.logs, against=a.against, variants=_variants(a.variant), backend=a.backend,
                     threads=a.threads, ray=a.ray, workers=a.workers, out=output_dir(a.out), rules=rules,
                     fresh=a.fresh, progress=not a.quiet, plots=not a.no_plots)
    outcome = evaluate(cfg)
    _print(outcome.report)
    print(f"report: {', '.join(str(p) for p in outcome.paths)}")
    if outcome.exit_code == EXIT_ERROR:
        raise EdgeFusionError(outcome.report["verdict_line"].removeprefix("ERROR: ") + " (see the report)")
    if outcome.exit_code:
        sys.exit(outcome.exit_code)


def _print(report: dict[str, Any]) -> None:
    from edgefusion.fleet.report import fmt

    sides = list(report["summary"])
    for s in sides:
        o = report["summary"][s]["overall"]
        lat = o["latency_ms"]
        pkgs = ", ".join(f"{p['name']} {p['variant']}" for p in report["sides"][s]["packages"])
        print(f"{s} ({pkgs}): {o['recordings']} recordings, accuracy {fmt(o['accuracy'])}, precision "
              f"{fmt(o['precision'])}, recall {fmt(o['recall'])}, end-to-end p50 "
              f"{fmt(lat['end_to_end'].get('p50'), 2)} ms, inference p50 {fmt(lat['inference'].get('p50'), 2)} ms")
    if report["delta"]:
        changed = [(k, d) for k, d in report["delta"]["labels"].items()
                   if any(d[m] for m in ("precision", "recall"))]
        print(f"per-label changes A minus B: {len(changed)} of {len(report['delta']['labels'])} labels")
        for name, d in sorted(changed, key=lambda kv: kv[1]["recall"] or 0.0)[:10]:
            print(f"  {name:<20} Δprecision {fmt(d['precision'])}  Δrecall {fmt(d['recall'])}")
    for f in report["failures"]:
        side = "" if f["side"] == "-" else f" (side {f['side']})"
        print(f"could not score {f['recording']}{side}: {f['error']}")
    for r in report["rules"]:
        print(r["verdict"])
    print(report["verdict_line"])


def register(sub: Any) -> None:
    sp = add_command(sub, "eval", "Evaluate packages on many recordings (local processes or Ray): per label, per "
                                  "recording and per scenario scores, A against B, one report, a verdict.", cmd_eval)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EVAL_EPILOG
    sp.add_argument("package", metavar="PACKAGE", help="package (A): a built-in name, a directory, or 'auto' for "
                                                       "the package each recording names")
    sp.add_argument("logs", nargs="+", metavar="LOGS_OR_DIRS", help=".mcap recordings, or directories searched "
                                                                    "for them (recursively)")
    sp.add_argument("--against", metavar="PACKAGE_B", help="compare with this package (B), e.g. the one on the "
                                                           "devices")
    sp.add_argument("--variant", default="fp32", metavar="V[,VB]",
                    help="artifact to run (default fp32); two, A,B (fp32,int8), compare variants; B is then "
                         "PACKAGE's unless --against")
    sp.add_argument("--ray", metavar="auto|ADDRESS", help="run on Ray (the 'fleet' extra): auto starts a local "
                                                         "instance (stopped at the end), an address joins a "
                                                         "cluster; default: local processes")
    sp.add_argument("--workers", type=int, help="parallel tasks (default: one per CPU; on a cluster, its CPUs)")
    sp.add_argument("--threads", type=int, default=1, help="inference threads per task (default 1)")
    sp.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), tensorrt or null")
    sp.add_argument("--out", default="eval-report", help="report and results cache directory (default "
                                                         "eval-report)")
    sp.add_argument("--fail-if", action="append", metavar="RULE", help='regression rule, repeatable, e.g. '
                                                                        '"recall.smoke_alarm < 0.98" (see below)')
    sp.add_argument("--thresholds", metavar="FILE.toml", help='rules from a file: fail_if = ["...", ...]')
    sp.add_argument("--fresh", action="store_true", help="score everything again (ignore the cache in --out)")
    sp.add_argument("--no-plots", action="store_true", help="skip the plots")
    sp.add_argument("--quiet", action="store_true", help="no progress bars")
