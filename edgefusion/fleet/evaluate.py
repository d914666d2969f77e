"""``edgefusion eval``: every recording through one or two packages, one report, one verdict.

:func:`evaluate` finds the recordings, hashes them, resolves the packages (A, and B to compare
with), takes what an earlier run already scored from the results cache, runs the rest on a
runner (local processes or Ray) with a progress bar, and writes the report: ``report.json``,
``report.md`` and the plots, in ``out``. Its exit status (:data:`EXIT_CODES`) says whether the
rules pass, a rule failed (a regression), or some recordings could not be scored (partial).

A recording is one task per package side: replays keep state from frame to frame (smoothing,
command horizons), so a recording is not cut into chunks, which would change its results.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.fleet.cache import ResultsCache
from edgefusion.fleet.latency import summary_ms
from edgefusion.fleet.recordings import find_recordings, sha256_of
from edgefusion.fleet.report import FORMAT, markdown, write_atomic, write_json
from edgefusion.fleet.rules import Rule, check_labels, evaluate_rules
from edgefusion.fleet.runners import LocalRunner, RayRunner, Runner
from edgefusion.fleet.ship import Shipment, pack, package_sha256
from edgefusion.fleet.summary import deltas, pool, recording_rows
from edgefusion.fleet.worker import Job
from edgefusion.logs.reader import LogReader
from edgefusion.package import ModelPackage, load_package

__all__ = ["AUTO", "EXIT_CODES", "EXIT_ERROR", "EXIT_OK", "EXIT_PARTIAL", "EXIT_REGRESSION", "EvalConfig",
           "EvalOutcome", "evaluate"]

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_CODES = {EXIT_OK: "every recording scored, every rule passes",
              EXIT_REGRESSION: "a --fail-if rule failed (a regression), whether or not every recording was scored",
              EXIT_ERROR: "error: bad options, a package that cannot be loaded, no recording scored at all",
              EXIT_PARTIAL: "partial: some recordings could not be scored (listed in the report), the rules pass "
                            "on the others"}
#: as PACKAGE: each recording's own package (the one it names, as ``replay`` without ``--model``)
AUTO = "auto"


@dataclass
class EvalConfig:
    """What ``edgefusion eval`` was asked (see its ``--help``)."""

    package: str
    logs: Sequence[str]
    against: str | None = None
    #: one variant (A, and B when --against) or two (A, B)
    variants: Sequence[str] = ("fp32",)
    backend: str = "onnxruntime"
    threads: int = 1
    ray: str | None = None
    workers: int | None = None
    out: Path = Path("eval-report")
    rules: Sequence[Rule] = ()
    fresh: bool = False
    progress: bool = True
    plots: bool = True


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    exit_code: int
    paths: list[Path] = field(default_factory=list)


@dataclass
class _Side:
    name: str
    ref: str  # a package name or path, or AUTO
    variant: str


def _sides(cfg: EvalConfig) -> list[_Side]:
    if not 1 <= len(cfg.variants) <= 2:
        raise ConfigError(f"--variant takes one variant or two (A,B), got {','.join(cfg.variants)!r}")
    sides = [_Side("A", cfg.package, cfg.variants[0])]
    if cfg.against is not None or len(cfg.variants) == 2:
        if cfg.package == AUTO and cfg.against not in (None, AUTO):
            raise ConfigError("--against PACKAGE needs a named PACKAGE, not 'auto' (each recording's own); "
                              "compare variants with --variant A,B instead")
        sides.append(_Side("B", cfg.against or cfg.package, cfg.variants[-1]))
        if sides[1].ref == sides[0].ref and sides[1].variant == sides[0].variant:
            raise ConfigError(f"A and B are both {cfg.package} {cfg.variants[0]}: pass another --against package or "
                              "--variant A,B")
    return sides


def _log_package(log: str) -> str:
    with LogReader(log) as r:
        meta = r.info().metadata
    ref = meta.get("edgefusion", {}).get("package_ref") or meta.get("scenario", {}).get("package")
    if not ref:
        raise ConfigError(f"{log} does not say which model produced it; pass a PACKAGE instead of 'auto'")
    return str(ref)


class _Packages:
    """Packages by reference, loaded (and verified) once, with the variant checked."""

    def __init__(self) -> None:
        self.loaded: dict[str, tuple[ModelPackage, str]] = {}

    def get(self, ref: str, variant: str) -> tuple[ModelPackage, str]:
        if ref not in self.loaded:
            pkg = load_package(ref)
            self.loaded[ref] = (pkg, package_sha256(pkg.path))
        pkg, sha = self.loaded[ref]
        pkg.artifact(variant)
        return pkg, sha

    def labels(self) -> list[str]:
        from edgefusion.policy import task_of

        out: list[str] = []
        for pkg, _ in self.loaded.values():
            task = task_of(pkg)
            names = [*task.actions, *task.event_names] if task else \
                [*pkg.output("class_logits").labels, *pkg.output("multilabel_logits").labels]
            out += [n for n in names if n not in out]
        return out


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass


def _bar(total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A progress bar with ETA on stderr (none without tqdm, from the 'fleet' extra)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not enabled or total == 0,
                dynamic_ncols=True)


def evaluate(cfg: EvalConfig) -> EvalOutcome:
    """Run the evaluation of ``cfg`` and write its report into ``cfg.out``.

    Raises:
        EdgeFusionError: bad options or a PACKAGE that cannot be loaded (before any work).
    """
    t0 = time.monotonic()
    sides = _sides(cfg)
    logs = find_recordings(cfg.logs)
    packages = _Packages()
    for s in sides:
        if s.ref != AUTO:
            packages.get(s.ref, s.variant)
    failures: list[dict[str, Any]] = []
    shas: dict[str, str] = {}
    refs: dict[tuple[str, str], tuple[str, str]] = {}  # (log, side) -> (package ref, sha256)
    with _bar(len(logs), "hash", "log", cfg.progress) as bar:
        for log in logs:
            try:
                shas[log] = sha256_of(log)
                for s in sides:
                    ref = _log_package(log) if s.ref == AUTO else s.ref
                    refs[(log, s.name)] = (ref, packages.get(ref, s.variant)[1])
            except (OSError, EdgeFusionError) as exc:
                failures.append({"recording": log, "side": "-", "error": str(exc)})
            bar.update()
    check_labels(cfg.rules, packages.labels(), len(sides) == 2)
    cache = ResultsCache(cfg.out / "cache")
    by_rec: dict[str, dict[str, dict[str, Any]]] = {log: {} for log in logs}
    jobs, keys, cached = [], {}, 0
    for log in logs:
        for s in sides:
            if (log, s.name) not in refs:
                continue
            ref, sha = refs[(log, s.name)]
            key = cache.key(shas[log], sha, s.variant, cfg.backend)
            hit = None if cfg.fresh else cache.get(key)
            if hit is not None:
                by_rec[log][s.name] = {**hit, "recording": log, "side": s.name, "cached": True}
                cached += 1
                continue
            jobs.append(Job(log, shas[log], s.name, Shipment(sha, packages.loaded[ref][0].name), s.variant,
                            cfg.backend, cfg.threads))
            keys[(log, s.name)] = key
    runner_info: dict[str, Any] = {"kind": "ray" if cfg.ray else "local", "workers": 0, "address": cfg.ray}
    if jobs:
        runner: Runner = RayRunner(cfg.ray, cfg.workers) if cfg.ray else \
            LocalRunner(min(cfg.workers or os.cpu_count() or 1, len(jobs)))
        t_start = time.monotonic()
        with runner:
            runner_info["workers"] = runner.workers
            needed = {j.package.sha256 for j in jobs}
            shipped = runner.ship({sha: (pkg.name, pack(pkg.path)) for pkg, sha in packages.loaded.values()
                                   if sha in needed})
            jobs = [Job(j.log, j.log_sha256, j.side, shipped[j.package.sha256], j.variant, j.backend, j.threads)
                    for j in jobs]
            t_run = time.monotonic()
            runner_info["start_s"] = round(t_run - t_start, 3)
            with _bar(len(jobs), "eval", "task", cfg.progress) as bar:
                for job, result in runner.run(jobs):
                    if "error" in result:
                        failures.append({"recording": job.log, "side": job.side, "error": result["error"],
                                         **({"traceback": result["traceback"]} if "traceback" in result else {})})
                        bar.set_postfix(failed=len(failures))
                    else:
                        cache.put(keys[(job.log, job.side)], result)
                    by_rec[job.log][job.side] = result
                    bar.update()
            runner_info["run_s"] = round(time.monotonic() - t_run, 3)
            t_stop = time.monotonic()
        runner_info["stop_s"] = round(time.monotonic() - t_stop, 3)
    report = _report(cfg, sides, packages, refs, by_rec, failures, cached, runner_info, len(jobs),
                     time.monotonic() - t0)
    return _write(cfg, report)


def _report(cfg: EvalConfig, sides: list[_Side], packages: _Packages, refs: dict[tuple[str, str], tuple[str, str]],
            by_rec: dict[str, dict[str, dict[str, Any]]], failures: list[dict[str, Any]], cached: int,
            runner: dict[str, Any], ran: int, wall_s: float) -> dict[str, Any]:
    names = [s.name for s in sides]
    complete = {log: per for log, per in by_rec.items()
                if all(s in per and "error" not in per[s] for s in names)}
    summary = {s: pool([per[s] for per in complete.values()]) for s in names}
    delta = deltas(summary["A"], summary["B"]) if len(names) == 2 else None
    failed = len(by_rec) - len(complete)
    rules = evaluate_rules(cfg.rules, summary["A"], delta, failed)
    broken = [r for r in rules if r["failed"]]
    if broken:
        code = EXIT_REGRESSION
        line = "REGRESSION: " + "; ".join(
            f"{r['rule']} (measured {'nothing' if r['value'] is None else format(r['value'], '.6g')})" for r in broken)
    elif not complete:
        code, line = EXIT_ERROR, f"ERROR: none of the {len(by_rec)} recordings could be scored"
    elif failed:
        code, line = EXIT_PARTIAL, f"PARTIAL: {failed} of {len(by_rec)} recordings could not be scored; " \
                                   f"{'the rules pass' if rules else 'no rules'} on the {len(complete)} others"
    else:
        code, line = EXIT_OK, f"PASS: {len(complete)} recordings scored" + \
            (f", {len(rules)} rule(s) pass" if rules else ", no rules given")
    side_info: dict[str, Any] = {}
    for s in sides:
        used = sorted({sha for (_, side), (_, sha) in refs.items() if side == s.name})
        side_info[s.name] = {"ref": s.ref, "variant": s.variant, "backend": cfg.backend, "packages": [
            {"name": pkg.name, "path": str(pkg.path), "sha256": sha, "variant": s.variant}
            for pkg, sha in packages.loaded.values() if sha in used]}
    tasks = [e for per in by_rec.values() for e in per.values() if not e.get("cached")]
    per_recording = [{"recording": log, **{s: _compact(per[s]) for s in names if s in per}}
                     for log, per in by_rec.items()]
    return {
        "format": FORMAT, "command": list(sys.argv), "sides": side_info, "runner": runner,
        "recordings": {"total": len(by_rec), "scored": len(complete), "failed": failed, "cached": cached,
                       "ran": ran},
        "summary": summary, "delta": delta, "rules": rules, "verdict_line": line, "exit_code": code,
        "exit_codes": {str(k): v for k, v in EXIT_CODES.items()},
        "worst": recording_rows(complete, names), "failures": failures,
        "timing": {"wall_s": round(wall_s, 3), "tasks_run": len(tasks),
                   "task_s_sum": round(sum(e.get("task_s", 0.0) for e in tasks), 3)},
        "per_recording": per_recording,
    }


def _compact(e: dict[str, Any]) -> dict[str, Any]:
    """A recording's entry for the report: latency as percentiles (the cache keeps the histograms)."""
    out = {k: v for k, v in e.items() if k not in ("latency", "traceback")}
    if "latency" in e:
        out["latency_ms"] = {k: summary_ms([h]) for k, h in e["latency"].items()}
    return out


def _write(cfg: EvalConfig, report: dict[str, Any]) -> EvalOutcome:
    cfg.out.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    if cfg.plots and report["recordings"]["scored"]:
        try:
            import matplotlib  # noqa: F401
        except ImportError:  # matplotlib absent: the tables are still there
            report["plots_note"] = "no plots: matplotlib is not installed (pip install 'edgefusion[fleet]')"
        else:
            from edgefusion.fleet.plots import write_plots

            plots = write_plots(report, cfg.out)
    report["plots"] = [p.name for p in plots]
    paths = [write_json(cfg.out / "report.json", report),
             write_atomic(cfg.out / "report.md", markdown(report, [p.name for p in plots])), *plots]
    return EvalOutcome(report, report["exit_code"], paths)
