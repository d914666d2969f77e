"""Windows cut from labelled recordings with the runtime's own sync and preprocessing.

A log is replayed in log order (:class:`~edgefusion.sources.replay.ReplaySource`, lossless)
through :func:`edgefusion.core.iter_windows` - the sync a live run and a replay use - and
each window is labelled from the log's ``/labels`` track by
:class:`~edgefusion.labels.WindowLabeler` and turned into model feeds by the package's
:class:`~edgefusion.preprocess.FeedBuilder` (DESIGN.md contracts 3, 8 and 12). Windows
outside the track's coverage are skipped and counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgefusion.core import iter_windows
from edgefusion.errors import InputError
from edgefusion.labels import LabelTrack, WindowLabeler
from edgefusion.logs import LogReader
from edgefusion.package import sha256_file as file_sha256
from edgefusion.preprocess import FeedBuilder
from edgefusion.samples import FusionWindow
from edgefusion.sources.replay import ReplaySource
from edgefusion.sync import SyncConfig
from edgefusion.task import Task

__all__ = ["Recording", "cut_recording", "find_logs", "open_recording", "split_recordings"]

#: windows preprocessed at once: raw frames are large (an HD frame is 2.7 MB), feeds are small
BATCH = 32


@dataclass
class Recording:
    """One labelled log: where it is, its identity, its labels, and (after cutting) its counts."""

    path: Path
    sha256: str
    track: LabelTrack
    split: str = ""
    #: windows the sync produced, labelled ones, ones outside coverage
    windows: int = 0
    labelled: int = 0
    uncovered: int = 0
    notes: list[str] = field(default_factory=list)


def find_logs(paths: Sequence[str | Path]) -> list[Path]:
    """The ``.mcap`` files named, directories searched recursively; sorted within each directory.

    Raises:
        InputError: a path that does not exist, or nothing to read at all.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.mcap"))
            if not found:
                raise InputError(f"directory {p} holds no .mcap log")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"log {p} does not exist")
    if not out:
        raise InputError("no log given: name .mcap files or directories holding them")
    return out




def open_recording(path: Path, task: Task, audio_window_ns: int) -> Recording:
    """Read a log's identity and label track and check the labels against ``task``.

    Raises:
        InputError: not an MCAP log, no ``/labels`` track, or labels the task does not name.
    """
    with LogReader(path) as r:
        track = r.labels()
    if track is None:
        raise InputError(f"{path} has no /labels track: nothing in it is labelled. Label it first: edgefusion label "
                         f"{path} --spans SPANS.csv --task {task.name}")
    WindowLabeler(track, task, audio_window_ns)  # the task check, before any window is cut
    if not track.of("coverage"):
        raise InputError(f"{path}: its /labels track has no coverage span, so no time in it counts as labelled; "
                         "relabel it with --coverage all (or add coverage rows to the span file)")
    rec = Recording(path, file_sha256(path), track)
    m = task.timing.min_event_overlap_s
    audio = set(task.events_of("audio"))
    short = [s for s in track.of("event") if s.label in audio and s.seconds < m]
    if short:
        rec.notes.append(f"{len(short)} audio event span(s) shorter than timing.min_event_overlap_s = {m:g} s can "
                         f"never label a window (e.g. {short[0].where()})")
    return rec


def split_recordings(recordings: Sequence[Recording], val_fraction: float, seed: int) -> None:
    """Assign each recording to ``train`` or ``val``: deterministic from its sha256 and the seed.

    The recordings are ordered by sha256(seed, recording sha256); the first
    ``round(val_fraction * n)`` go to val - at least one and never all, when there are two or
    more and ``val_fraction > 0``. Windows of one recording never straddle splits.

    Example:
        >>> recs = [Recording(Path(f"{i}.mcap"), f"{i:064x}", LabelTrack()) for i in range(2)]
        >>> split_recordings(recs, 0.2, seed=0)
        >>> sorted(r.split for r in recs)
        ['train', 'val']
    """
    n = len(recordings)
    n_val = 0
    if n >= 2 and val_fraction > 0:
        n_val = min(n - 1, max(1, round(val_fraction * n)))
    order = sorted(recordings, key=lambda r: hashlib.sha256(f"{seed}:{r.sha256}".encode()).hexdigest())
    for i, r in enumerate(order):
        r.split = "val" if i < n_val else "train"


def cut_recording(rec: Recording, task: Task, builder: FeedBuilder, sync: SyncConfig, shard_windows: int,
                  progress: Callable[[int], None] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The labelled windows of one recording, in chunks of ``shard_windows`` rows (the last one shorter;
    a chunk may run over by less than one preprocessing batch).

    Each chunk has the feeds of ``builder`` and the label arrays (events, action, intent,
    t_ns, recording). ``rec`` counts windows, labelled and uncovered ones as it goes.
    ``progress`` is called with the number of frames handled.
    """
    labeler = WindowLabeler(rec.track, task, sync.audio_window_ns)
    chunk: dict[str, list[np.ndarray]] = {}
    held = 0
    batch: list[FusionWindow] = []

    def take(windows: list[FusionWindow]) -> None:
        nonlocal held
        truth = labeler([w.t_ns for w in windows])
        keep = np.flatnonzero(truth.covered)
        rec.windows += len(windows)
        rec.uncovered += len(windows) - len(keep)
        rec.labelled += len(keep)
        if len(keep):
            feeds, _ = builder.build([windows[i] for i in keep])
            arrays = {**feeds, "events": truth.events[keep], "action": truth.action[keep],
                      "intent": truth.intent[keep], "t_ns": truth.t_ns[keep],
                      "recording": np.full(len(keep), rec.sha256, "<U64")}
            for k, v in arrays.items():
                chunk.setdefault(k, []).append(v)
            held += len(keep)
        if progress is not None:
            progress(len(windows))

    def flush() -> dict[str, np.ndarray]:
        nonlocal held
        out = {k: np.concatenate(v) for k, v in chunk.items()}
        chunk.clear()
        held = 0
        return out

    with ReplaySource(rec.path) as src:
        for w in iter_windows(src, sync=sync):
            batch.append(w)
            if len(batch) == BATCH:
                take(batch)
                batch = []
                if held >= shard_windows:
                    yield flush()
        if batch:
            take(batch)
    if held:
        yield flush()
