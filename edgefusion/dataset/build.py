"""``edgefusion dataset build``: labelled recordings -> a dataset directory, all at once or not at all.

Every log is checked before any window is cut (an unlabelled log, labels the task does not
name, a file that is not MCAP: one line each, all of them at once). Recordings are split by
recording, never by window (:func:`~edgefusion.dataset.recorded.split_recordings`). The
dataset is written into a staging directory beside ``out`` and renamed into place when
complete, so a failed build leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion import __version__
from edgefusion.dataset.recorded import Recording, cut_recording, find_logs, open_recording, split_recordings
from edgefusion.dataset.shards import FORMAT, FORMAT_VERSION, LABEL_ARRAYS, MANIFEST, SPLITS, label_counts, save_shard
from edgefusion.errors import ConfigError, EdgeFusionError, InputError
from edgefusion.labels.spans_csv import format_problems
from edgefusion.logs import LogReader
from edgefusion.package import MANIFEST as PACKAGE_MANIFEST
from edgefusion.package import ModelPackage, builtin_packages, load_package, sha256_file
from edgefusion.packaging import publish_mode, write_json
from edgefusion.sync import SyncConfig
from edgefusion.task import Task, load_task

__all__ = ["build_recorded_dataset", "resolve_package"]

DEFAULT_SHARD_WINDOWS = 1024


def resolve_package(task: Task, package: str | Path | None) -> ModelPackage:
    """The package whose preprocessing cuts the windows: ``package``, or the built-in one named like the task."""
    if package is not None:
        return load_package(package)
    if task.name not in builtin_packages():
        raise ConfigError(f"task '{task.name}' has no built-in package of the same name to take the preprocessing "
                          f"from (built-in: {', '.join(builtin_packages())}); pass --package PACKAGE_DIR")
    return load_package(task.name)


def build_recorded_dataset(task: Task | str | Path, logs: Sequence[str | Path], out: str | Path,
                           package: str | Path | None = None, val_fraction: float = 0.2, seed: int = 0,
                           shard_windows: int = DEFAULT_SHARD_WINDOWS, sync: SyncConfig | None = None,
                           command: str = "", force: bool = False,
                           progress: Callable[[int, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Cut, label, split and store the windows of ``logs``; returns the manifest written to ``out``.

    Args:
        task: a Task, a built-in task name or a ``task.toml`` path.
        logs: ``.mcap`` files or directories holding them.
        out: the dataset directory (must not exist, or be empty, unless ``force``).
        package: the package giving the preprocessing (default: the built-in one named like the task).
        val_fraction: share of recordings in the validation split.
        seed: the split's seed.
        shard_windows: windows per shard.
        sync: the sync policy (default: the runtime's default, as ``replay`` uses).
        command: the command line, recorded in the manifest.
        force: replace an existing ``out``.
        progress: ``progress(index, frames)`` for each recording returns a callback taking frame
            counts (a progress bar); None for none.

    Raises:
        InputError: bad logs (all named), or no labelled window at all.
        ConfigError: bad options, or ``out`` exists.
    """
    task = task if isinstance(task, Task) else load_task(task)
    if not 0 <= val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if shard_windows < 1:
        raise ConfigError(f"--shard-windows must be positive, got {shard_windows}")
    out = Path(out)
    if out.exists() and not force and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists; choose another --out or pass --force to replace it")
    pkg = resolve_package(task, package)
    clash = sorted({i.name for i in pkg.inputs} & set(LABEL_ARRAYS))
    if clash:
        raise ConfigError(f"package '{pkg.name}' has inputs named {clash}, which datasets use for labels")
    sync = sync or SyncConfig()
    recordings = _open_all(find_logs(logs), task, sync.audio_window_ns)
    split_recordings(recordings, val_fraction, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        cut = _cut_all(stage, recordings, task, pkg, sync, shard_windows, progress)
        manifest = {**_header(task, pkg, sync, val_fraction, seed, command), **cut}
        write_json(stage / MANIFEST, manifest)
        publish_mode(stage)
        _commit(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return manifest


def _open_all(paths: list[Path], task: Task, audio_window_ns: int) -> list[Recording]:
    recordings: list[Recording] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for p in paths:
        try:
            rec = open_recording(p, task, audio_window_ns)
        except EdgeFusionError as exc:
            problems.append(str(exc) if str(p) in str(exc) else f"{p}: {exc}")
            continue
        if rec.sha256 in seen:  # the same file twice (a directory and a file in it): one recording
            continue
        seen[rec.sha256] = p
        recordings.append(rec)
    if problems:
        if len(problems) == 1:
            raise InputError(problems[0])
        raise InputError(format_problems("dataset build", problems, len(paths), "log"))
    return recordings


def _cut_all(stage: Path, recordings: list[Recording], task: Task, pkg: ModelPackage, sync: SyncConfig,
             shard_windows: int, progress: Callable[[int, int], Callable[[int], None]] | None) -> dict[str, Any]:
    splits: dict[str, dict[str, Any]] = {s: {"recordings": [], "windows": 0, "shards": []} for s in SPLITS}
    totals: dict[str, dict[str, dict[str, int]]] = {}
    arrays: dict[str, dict[str, Any]] = {}
    builder = pkg.feed_builder()
    events, actions, intents = list(task.event_names), list(task.actions), list(task.intents)
    for i, rec in enumerate(recordings):
        split = splits[rec.split]
        split["recordings"].append(rec.sha256)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", rec.path.stem)[:48]
        bar = progress(i, _frames(rec.path)) if progress else None
        for k, chunk in enumerate(cut_recording(rec, task, builder, sync, shard_windows, bar)):
            arrays = arrays or {n: {"dtype": str(a.dtype), "shape": list(a.shape[1:])} for n, a in chunk.items()}
            split["shards"].append({**save_shard(stage, f"{rec.split}/{stem}-{rec.sha256[:8]}-{k:04d}.npz", chunk),
                                    "recording": rec.sha256})
            split["windows"] += len(chunk["action"])
            _add(totals.setdefault(rec.split, {}), label_counts(chunk, events, actions, intents))
    labelled = sum(r.labelled for r in recordings)
    if not labelled:
        windows = sum(r.windows for r in recordings)
        raise InputError(f"empty dataset: none of the {windows} windows of {len(recordings)} recording(s) lies inside "
                         "a coverage span, so none is labelled; add coverage (edgefusion label --coverage all) or "
                         "check that the spans are on the right log")
    zero = label_counts({"events": np.zeros((0, len(events))), "action": np.zeros(0), "intent": np.zeros(0)},
                        events, actions, intents)
    for name, s in splits.items():
        s["counts"] = totals.get(name, zero)
    recs = [{"path": str(r.path), "sha256": r.sha256, "split": r.split, "windows": r.windows, "labelled": r.labelled,
             "uncovered": r.uncovered, "spans": len(r.track), "label_sources": list(r.track.sources()),
             "notes": r.notes} for r in recordings]
    return {"arrays": arrays, "recordings": recs, "splits": splits}


def _add(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for kind, per in counts.items():
        d = into.setdefault(kind, {})
        for k, n in per.items():
            d[k] = d.get(k, 0) + n


def _frames(path: Path) -> int:
    with LogReader(path) as r:
        return sum(c["messages"] for c in r.info().channels if c["topic"] == "/camera")


def _header(task: Task, pkg: ModelPackage, sync: SyncConfig, val_fraction: float, seed: int,
            command: str) -> dict[str, Any]:
    spec = Path(task.source)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "created_by": f"edgefusion {__version__}",
        "command": command,
        "task": {"name": task.name, "source": task.source, "sha256": sha256_file(spec) if spec.is_file() else "",
                 "events": list(task.event_names), "actions": list(task.actions), "intents": list(task.intents)},
        "package": {"name": pkg.name, "path": str(pkg.path),
                    "manifest_sha256": sha256_file(pkg.path / PACKAGE_MANIFEST),
                    "inputs": [{"name": i.name, "modality": i.modality, "dtype": i.dtype, "shape": list(i.shape),
                                "preprocess": i.preprocess} for i in pkg.inputs]},
        "sync": {"audio_window_ns": sync.audio_window_ns, "audio_max_skew_ns": sync.audio_max_skew_ns,
                 "audio_policy": sync.audio_policy.value, "command_horizon_ns": sync.command_horizon_ns,
                 "consume_commands": sync.consume_commands, "offsets_ns": dict(sync.offsets_ns)},
        "labelling": {"audio_window_ns": sync.audio_window_ns,
                      "min_event_overlap_ns": round(task.timing.min_event_overlap_s * 1e9),
                      "rule": "edgefusion.labels.windows"},
        "split": {"by": "recording", "seed": seed, "val_fraction": val_fraction},
    }


def _commit(stage: Path, out: Path) -> None:
    """Put the staged dataset at ``out``; an old one is moved aside first and removed last."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{stage.name.rsplit('-', 1)[-1]}"
        out.rename(old)
    try:
        stage.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
