"""Your own data: ``label`` (span files onto a log) and ``dataset build|info`` (need the 'mcap' extra)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

from edgefusion.cli._common import add_command

LABEL_EPILOG = """A span file is CSV, times in seconds from the start of the log (its first sample, as a
video player counts); '#' starts a comment:

  start_s,end_s,kind,label
  1.5,3.0,event,doorbell        # an event (image events: while visible; audio: while audible)
  4.0,7.0,intent,lights_on      # what a command asked for, while it is valid
  8.0,9.0,action,lock_door      # an explicit action (else the task's rules decide)
  0,60,coverage,                # the time that is labelled at all

Inside coverage an event without a span is absent; outside it nothing is known and datasets
skip those windows. Without coverage rows the whole log is covered (--coverage all).

examples:
  edgefusion label kitchen.mcap --spans kitchen.csv --task smart_home
  edgefusion label kitchen.mcap --spans kitchen.csv --task my_task.toml --out labelled/kitchen.mcap
  edgefusion label kitchen.mcap --spans partial.csv --task smart_home --coverage spans --in-place
  edgefusion log info kitchen.labelled.mcap        # label coverage per kind and label
"""

BUILD_EPILOG = """Each log is replayed in log order through the runtime's sync and the package's
preprocessing (the same windows and feeds a replay sees); windows are labelled from the log's
/labels track (audio events: the span overlaps the window's audio by the task's
timing.min_event_overlap_s). Windows outside coverage are skipped and counted. Recordings,
not windows, are split between train and val, deterministically from each log's sha256 and
--seed. Training reads the result with edgefusion.dataset.load_split(DIR, "train").

examples:
  edgefusion dataset build smart_home kitchen.labelled.mcap hall.labelled.mcap --out data/home
  edgefusion dataset build my_task.toml recordings/ --package packages/mine --out data/mine --val-fraction 0.25
  edgefusion dataset info data/home
"""


def cmd_label(a: argparse.Namespace) -> None:
    from edgefusion.logs.edit import label_log

    copy, track = label_log(a.log, a.spans, a.task, out=a.out, coverage=a.coverage, in_place=a.in_place,
                            source=a.source, force=a.force)
    per = ", ".join(f"{k} {len(track.of(k))}" for k in ("event", "intent", "action", "coverage") if track.of(k))
    print(f"wrote {copy.path}: {copy.labels} label spans ({per}) on /labels for task {a.task}; "
          f"coverage {track.seconds('coverage'):.3f} s; {copy.copied} messages, {copy.metadata} metadata and "
          f"{copy.attachments} attachments copied as they were"
          + (f"; {copy.replaced} earlier label spans replaced" if copy.replaced else ""))


class _Bars:
    """One progress bar per log on stderr (none when tqdm, from the 'train' or 'bench' extra, is absent)."""

    def __init__(self) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self._tqdm: Any = tqdm
        self._bar: Any = None

    def __call__(self, index: int, frames: int) -> Callable[[int], None]:
        self.close()
        if self._tqdm is None:
            return lambda n: None
        self._bar = self._tqdm(total=frames, desc=f"log {index + 1}", unit="frame", file=sys.stderr, leave=False)
        return self._bar.update  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def cmd_dataset_build(a: argparse.Namespace) -> None:
    from edgefusion.dataset.build import build_recorded_dataset
    from edgefusion.dataset.shards import counted, thin_labels

    bars = _Bars()
    try:
        m = build_recorded_dataset(a.task, a.logs, a.out, package=a.package, val_fraction=a.val_fraction,
                                   seed=a.seed, shard_windows=a.shard_windows, command=shlex.join(sys.argv),
                                   force=a.force, progress=bars)
    finally:
        bars.close()
    recs = m["recordings"]
    for r in recs:
        print(f"{r['path']}: {r['split']}, {r['labelled']} labelled windows of {r['windows']} "
              f"({r['uncovered']} outside coverage, skipped)")
        for note in r["notes"]:
            print(f"warning: {r['path']}: {note}", file=sys.stderr)
    s = m["splits"]
    train, val = (counted(len(s[k]["recordings"]), "recording") for k in ("train", "val"))
    print(f"wrote {a.out}: train {s['train']['windows']} windows ({train}), "
          f"val {s['val']['windows']} windows ({val}), task {m['task']['name']}, "
          f"preprocessing of {m['package']['name']}")
    for line in thin_labels(m):
        print(f"warning: {line}", file=sys.stderr)


def cmd_dataset_info(a: argparse.Namespace) -> None:
    import json

    from edgefusion.dataset.shards import describe, read_manifest, thin_labels

    m = read_manifest(a.dir)
    if a.json:
        print(json.dumps({"manifest": m, "warnings": thin_labels(m, a.min_train)}, indent=2))
        return
    for line in describe(m):
        print(line)
    for line in thin_labels(m, a.min_train):
        print(f"warning: {line}")


def register(sub: Any) -> None:
    sp = add_command(sub, "label", "Add labels from a span file to a log: a copy of the log with a /labels track "
                                   "(every label checked against the task, every span against the log).", cmd_label)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = LABEL_EPILOG
    sp.add_argument("log", help="the MCAP log to label (from record, synth or another tool)")
    sp.add_argument("--spans", required=True, metavar="SPANS.csv", help="the span file (format below)")
    sp.add_argument("--task", required=True, help="built-in task (smart_home, driving) or a task.toml path")
    sp.add_argument("--out", metavar="OUT.mcap", help="where the labelled copy goes (default: LOG.labelled.mcap)")
    sp.add_argument("--in-place", action="store_true", help="replace the log itself (once the copy is complete)")
    sp.add_argument("--force", action="store_true", help="replace the --out copy if it exists (refused otherwise)")
    sp.add_argument("--coverage", default="auto", choices=["auto", "all", "spans"],
                    help="all: the whole log is labelled; spans: only the file's coverage rows; auto (default): "
                         "spans if the file has coverage rows, else all")
    sp.add_argument("--source", default="human", help="who labelled the spans (default 'human'; or a tool's name)")

    ds = add_command(sub, "dataset", "Datasets from labelled recordings: build, info.", lambda a: ds.print_help())
    dsub = ds.add_subparsers(dest="dataset_command", required=True, metavar="SUBCOMMAND")
    sp = add_command(dsub, "build", "Cut labelled windows from logs with the runtime's sync and preprocessing, "
                                    "split by recording, and write shards with a manifest.", cmd_dataset_build)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = BUILD_EPILOG
    sp.add_argument("task", help="built-in task or a task.toml path: the labels and rules")
    sp.add_argument("logs", nargs="+", metavar="LOG_OR_DIR", help="labelled .mcap logs, or directories of them")
    sp.add_argument("--out", required=True, metavar="DIR", help="the dataset directory to write")
    sp.add_argument("--package", help="package giving the preprocessing (default: the built-in one named like "
                                      "the task)")
    sp.add_argument("--val-fraction", type=float, default=0.2, help="share of recordings for validation (default "
                                                                    "0.2; with two or more logs at least one)")
    sp.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    sp.add_argument("--shard-windows", type=int, default=1024, help="windows per shard (default 1024)")
    sp.add_argument("--force", action="store_true", help="replace DIR if it exists")
    sp = add_command(dsub, "info", "Per-split per-label counts of a dataset, with warnings about thin labels.",
                     cmd_dataset_info)
    sp.add_argument("dir", help="a dataset directory (holding dataset.json)")
    sp.add_argument("--min-train", type=int, default=20, help="warn about labels with fewer positive windows in "
                                                              "train (default 20)")
    sp.add_argument("--json", action="store_true", help="print the manifest and warnings as JSON")
