"""One task of an evaluation: replay one recording through one package and score it.

:func:`run_job` is what every worker runs, in a local process or a Ray worker alike. It
replays the log the way ``replay --check`` does (lossless, on the log's clock as fast as
possible, through :class:`~edgefusion.runbuild.RunBuilder`), hands the results to
:func:`~edgefusion.logs.check.check_against_log` (so the recording's verdict *is*
``replay --check``'s), scores every label (:mod:`edgefusion.fleet.labels`) and keeps the
latency histograms. It never raises: a recording that cannot be scored comes back as an
``error`` line, so one bad recording costs only itself.

A worker process keeps each package it unpacked and each backend session it opened for the
tasks after the first (a session takes longer to open than a short recording to replay).
"""

from __future__ import annotations

import atexit
import inspect
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefusion.backends import Backend, open_backend
from edgefusion.errors import EdgeFusionError, InputError
from edgefusion.fleet.labels import label_scores
from edgefusion.fleet.latency import histogram_json
from edgefusion.fleet.ship import Shipment, materialize
from edgefusion.logs.check import check_against_log, other_task_truth
from edgefusion.logs.reader import LogReader, decode
from edgefusion.package import ModelPackage
from edgefusion.pipeline import PipelineConfig
from edgefusion.policy import task_of
from edgefusion.runbuild import RunBuilder
from edgefusion.samples import Result

__all__ = ["Job", "run_job", "score_recording"]

#: backend sessions open in this process: (package sha256, backend, variant, threads) -> backend
_BACKENDS: dict[tuple[str, str, str, int], Backend] = {}


@dataclass(frozen=True)
class Job:
    """One recording through one package.

    Args:
        log: the recording's path (local, or on a file system every worker mounts).
        log_sha256: the recording's sha256 (the results cache's key; computed by the driver).
        side: ``A`` (the package evaluated) or ``B`` (the one it is compared with).
        package: how the worker gets the package.
        variant: the artifact to run (``fp32``, ``int8``, ...).
        backend: the backend to run it on.
        threads: inference threads per worker.
    """

    log: str
    log_sha256: str
    side: str
    package: Shipment
    variant: str = "fp32"
    backend: str = "onnxruntime"
    threads: int = 1


def run_job(job: Job) -> dict[str, Any]:
    """:func:`score_recording` for a job; a failure comes back as ``{"error": line}`` (never raised)."""
    t0 = time.monotonic()
    try:
        pkg = materialize(job.package)
        out = score_recording(job.log, pkg, _backend(pkg, job), job.package.sha256)
    except EdgeFusionError as exc:
        out = {"error": str(exc)}
    except Exception as exc:  # a bug, or a library failing on a hostile file: kept with its traceback
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=8)}
    out.update(side=job.side, variant=job.variant, backend=job.backend, package=job.package.name,
               package_sha256=job.package.sha256, recording=job.log, sha256=job.log_sha256,
               task_s=round(time.monotonic() - t0, 4))
    return out


def _backend(pkg: ModelPackage, job: Job) -> Backend:
    key = (job.package.sha256, job.backend, job.variant, job.threads)
    if key not in _BACKENDS:
        if not _BACKENDS:
            atexit.register(_close_backends)
        _BACKENDS[key] = open_backend(job.backend, pkg, variant=job.variant, threads=job.threads)
    return _BACKENDS[key]


def _close_backends() -> None:
    for be in _BACKENDS.values():
        be.close()
    _BACKENDS.clear()


class _Warnings(logging.Handler):
    """The runtime's warnings during one task (a truncated log, say), kept for the report."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def score_recording(log: str | Path, pkg: ModelPackage, backend: Backend, package_sha256: str = "") -> dict[str, Any]:
    """Replay ``log`` through ``pkg`` on ``backend`` (lossless) and score it; see the module docstring.

    Returns:
        ``check`` (``replay --check``'s report: ``lines``, ``ok``, ``truth``), ``labels`` (per-label
        counts), ``frames``, ``scenario``, ``truth_source``, ``latency`` (histograms of
        ``end_to_end`` and ``inference``), ``replay_s`` and ``warnings``.

    Raises:
        EdgeFusionError: the log cannot be read or replayed.
    """
    catcher = _Warnings()
    runtime_log = logging.getLogger("edgefusion")
    runtime_log.addHandler(catcher)
    try:
        task = task_of(pkg)
        with LogReader(log) as r:
            meta = r.info().metadata
        if (why := other_task_truth(meta, task, pkg.name)) is not None:
            raise InputError(f"{log}: {why}")
        cfg = PipelineConfig(lossless=True)
        builder = RunBuilder(cfg)
        builder.replay(log)
        results: list[Result] = []
        with builder.build(pkg, backend, on_result=results.append) as run:
            stats = run.pipeline.run()
        report = _check(log, results, task, cfg.sync.audio_window_ns)
        truth_source, aligned, actions, events = _truth(log, results, task, cfg.sync.audio_window_ns)
    finally:
        runtime_log.removeHandler(catcher)
    label_actions = list(task.actions) if task else list(pkg.output("class_logits").labels)
    label_events = list(task.event_names) if task else list(pkg.output("multilabel_logits").labels)
    rs = [r for r, _, _ in aligned]
    return {
        "scenario": meta.get("scenario", {}).get("scenario") or (task.name if task else pkg.manifest.scenario),
        "task": task.name if task else None,
        "frames": len(results), "truth_frames": len(aligned), "truth_source": truth_source,
        "check": {"ok": report.ok, "recorded": report.recorded, "lines": report.lines(), "truth": report.truth},
        "labels": label_scores(rs, actions, events, label_actions, label_events),
        "latency": {k: histogram_json(int(r.timings_ns.get(k, 0)) for r in results)
                    for k in ("end_to_end", "inference")},
        "replay_s": round(stats.wall_s, 4), "drops": stats.drops, "warnings": catcher.lines,
    }


def _check(log: str | Path, results: list[Result], task: Any, audio_window_ns: int) -> Any:
    # replay --check reads /labels when a log has no /truth once check_against_log takes the task
    # (the training branch); until then it takes the results alone.
    if "task" in inspect.signature(check_against_log).parameters:
        return check_against_log(log, results, task=task, audio_window_ns=audio_window_ns)  # type: ignore[call-arg]
    return check_against_log(log, results)


def _truth(log: str | Path, results: list[Result], task: Any,
           audio_window_ns: int) -> tuple[str | None, list[tuple[Result, str, set[str]]], list[str], list[set[str]]]:
    """The results that have a truth, with it: from ``/truth``, else ``/labels`` read with the task's rule."""
    truth: dict[int, tuple[str, set[str]]] = {}
    with LogReader(log) as r:
        for m in r.messages(topics=["/truth"]):
            d = decode(m)
            if not isinstance(d, dict) or not isinstance(d.get("action"), str):
                raise InputError(f"{log}: /truth message at log time {m.log_time_ns} ns has no action")
            truth[m.publish_time_ns] = (d["action"], set(d.get("events") or ()))
        source: str | None = "/truth" if truth else None
        track = None if truth or task is None else r.labels()
    if track is not None:
        from edgefusion.labels.windows import WindowLabeler

        w = WindowLabeler(track, task, audio_window_ns)([x.t_ns for x in results])
        names = w.event_sets()
        truth = {int(t): (task.actions[a], names[i]) for i, (t, a, c) in enumerate(zip(w.t_ns, w.action, w.covered))
                 if c}
        source = "/labels"
    aligned = [(x, *truth[x.t_ns]) for x in results if x.t_ns in truth]
    return source, aligned, [a for _, a, _ in aligned], [e for _, _, e in aligned]
