"""A recorded dataset on disk: compressed ``.npz`` shards and the ``dataset.json`` manifest.

Layout of a dataset directory::

    dataset.json            format, task (+ sha256 of its spec), package and feed specs,
                            sync and labelling parameters, recordings, splits, shards
                            (sha256, windows), per-split per-label counts, the command
    train/<rec>-0000.npz    one array per model input, plus events (float32 multi-hot in
    val/<rec>-0000.npz      the task's event order), action (int64), intent (int64, -1: no
                            command), t_ns (int64) and recording (the log's sha256)

Shards hold plain arrays only: :func:`load_split` verifies every shard's sha256 before
reading it and never unpickles. Torch-free: training and calibration call it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgefusion.errors import InputError
from edgefusion.package import sha256_file as _sha256

__all__ = ["FORMAT", "FORMAT_VERSION", "LABEL_ARRAYS", "MANIFEST", "SPLITS", "counted", "describe", "label_counts",
           "load_split", "read_manifest", "save_shard", "thin_labels"]

FORMAT = "edgefusion-dataset"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
SPLITS = ("train", "val")
#: arrays every shard has besides the model inputs
LABEL_ARRAYS = ("events", "action", "intent", "t_ns", "recording")
#: a manifest is a few kB per recording; anything this large is not one
MAX_MANIFEST_BYTES = 64 << 20
#: thin-label thresholds of ``dataset info``
MIN_TRAIN_POSITIVES = 20




def save_shard(root: Path, rel: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write ``arrays`` as a compressed ``.npz`` at ``root / rel``; its manifest record."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez_compressed with deflate level 1: six times faster than its default level 6 on
    # float features, for shards about a fifth larger; np.load reads either
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, a in arrays.items():
            with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)
    return {"path": rel, "sha256": _sha256(path), "bytes": path.stat().st_size,
            "windows": len(arrays["action"])}


def label_counts(arrays: dict[str, np.ndarray], events: list[str], actions: list[str],
                 intents: list[str]) -> dict[str, dict[str, int]]:
    """Positive windows per event, windows per action and per intent (``(none)``: no command)."""
    ev, act, it = arrays["events"], arrays["action"], arrays["intent"]
    return {
        "events": {e: int((ev[:, j] >= 0.5).sum()) for j, e in enumerate(events)},
        "actions": {a: int((act == i).sum()) for i, a in enumerate(actions)},
        "intents": {**{n: int((it == i).sum()) for i, n in enumerate(intents)}, "(none)": int((it < 0).sum())},
    }


def read_manifest(root: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at ``root``, checked enough that every later access is safe.

    Raises:
        InputError: no manifest, not JSON, another format or version, or shard paths that
            leave the directory.
    """
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        what = "does not exist" if not root.exists() else f"has no {MANIFEST}"
        raise InputError(f"{root} {what}; build a dataset with: edgefusion dataset build TASK LOGS... --out {root}")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InputError(f"{path} is {path.stat().st_size} bytes: too large for a dataset manifest")
        m = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: not a readable JSON manifest ({type(exc).__name__}: {exc})") from exc
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise InputError(f"{path}: not an EdgeFusion dataset manifest (format {got!r}, expected {FORMAT!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path}: dataset format version {m.get('format_version')!r}; this EdgeFusion reads version "
                         f"{FORMAT_VERSION}: rebuild the dataset with edgefusion dataset build")
    problem = _shape_problem(m)
    if problem:
        raise InputError(f"{path}: {problem}; the manifest was edited or damaged: rebuild the dataset")
    return m


def _shape_problem(m: dict[str, Any]) -> str | None:
    """What keeps the manifest from being used safely (None when nothing does)."""
    for key, kind in (("task", dict), ("package", dict), ("split", dict), ("recordings", list), ("splits", dict),
                      ("arrays", dict)):
        if not isinstance(m.get(key), kind):
            return f"'{key}' must be a JSON {'object' if kind is dict else 'array'}"
    for key in ("events", "actions", "intents"):
        if not isinstance(m["task"].get(key), list) or not all(isinstance(x, str) for x in m["task"][key]):
            return f"'task.{key}' must be a list of labels"
    if not isinstance(m["task"].get("name"), str) or not isinstance(m["task"].get("sha256"), str) \
            or not isinstance(m["package"].get("name"), str):
        return "'task' must have a name and a sha256, 'package' a name"
    inputs = m["package"].get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in inputs):
        return "'package.inputs' must be a list of inputs with names"
    if not isinstance(m["split"].get("seed"), int) or not isinstance(m["split"].get("val_fraction"), (int, float)):
        return "'split' must have a seed and a val_fraction"
    for name, spec in m["arrays"].items():
        if not (isinstance(spec, dict) and isinstance(spec.get("dtype"), str) and isinstance(spec.get("shape"), list)
                and all(isinstance(n, int) for n in spec["shape"])):
            return f"arrays.{name} must have a dtype and a shape (a list of sizes)"
    for name, split in m["splits"].items():
        if not isinstance(split, dict) or not isinstance(split.get("shards"), list) \
                or not isinstance(split.get("windows"), int) or not isinstance(split.get("counts"), dict):
            return f"splits.{name} must have shards, windows and counts"
        for s in split["shards"]:
            rel = s.get("path") if isinstance(s, dict) else None
            if not isinstance(rel, str) or PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts \
                    or not isinstance(s.get("sha256"), str) or not isinstance(s.get("windows"), int):
                return (f"splits.{name}: a shard must have a relative path inside the dataset, a sha256 and a "
                        f"window count, got {s!r:.120}")
    return None


def load_split(root: str | Path, split: str) -> dict[str, np.ndarray]:
    """Every window of one split: the model inputs and the label arrays, concatenated.

    Each shard's sha256 is checked before it is read (``np.load`` with ``allow_pickle=False``);
    an empty split gives arrays with zero rows of the right shapes.

    Raises:
        InputError: an unknown split, a missing or changed shard, or a shard whose arrays
            differ from the manifest.
    """
    root = Path(root)
    m = read_manifest(root)
    if split not in m["splits"]:
        raise InputError(f"{root}: no split {split!r}; it has {', '.join(sorted(m['splits'])) or 'none'}")
    specs = m["arrays"]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in specs}
    for s in m["splits"][split]["shards"]:
        path = root / s["path"]
        if not path.is_file():
            raise InputError(f"{root}: shard {s['path']} is missing; rebuild the dataset")
        digest = _sha256(path)
        if digest != s["sha256"]:
            raise InputError(f"{root}: shard {s['path']} has sha256 {digest[:16]}…, the manifest expects "
                             f"{s['sha256'][:16]}…; the file changed after the dataset was built: rebuild it")
        try:
            with np.load(path, allow_pickle=False) as z:
                got = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise InputError(f"{root}: shard {s['path']} cannot be read ({exc})") from exc
        if sorted(got) != sorted(specs):
            raise InputError(f"{root}: shard {s['path']} holds arrays {sorted(got)}, the manifest names "
                             f"{sorted(specs)}")
        for k, a in got.items():
            want = specs[k]
            if str(a.dtype) != want["dtype"] or list(a.shape[1:]) != want["shape"] or len(a) != s["windows"]:
                raise InputError(f"{root}: shard {s['path']}: array {k} is {a.dtype} {list(a.shape)}, expected "
                                 f"{want['dtype']} [{s['windows']}, {', '.join(map(str, want['shape']))}]")
            parts[k].append(a)
    return {k: np.concatenate(v) if v else np.zeros((0, *specs[k]["shape"]), specs[k]["dtype"])
            for k, v in parts.items()}


def thin_labels(m: dict[str, Any], min_train: int = MIN_TRAIN_POSITIVES) -> list[str]:
    """Warnings about labels with too few windows: under ``min_train`` in train, none in val.

    Example:
        >>> m = {"splits": {"train": {"windows": 50, "counts": {"events": {"dark": 3, "person": 40}}},
        ...                 "val": {"windows": 9, "counts": {"events": {"dark": 2, "person": 0}}}}}
        >>> for line in thin_labels(m):
        ...     print(line)
        train: events with fewer than 20 positive windows: dark (3)
        val: events with no positive window (their recall cannot be measured): person
    """
    out = []
    for split, test, say in (("train", lambda n: n < min_train, f"fewer than {min_train} positive windows"),
                             ("val", lambda n: n == 0, "no positive window (their recall cannot be measured)")):
        s = m["splits"].get(split)
        if not s or not s.get("windows"):
            continue
        for kind in ("events", "actions", "intents"):
            thin = [(k, n) for k, n in s["counts"].get(kind, {}).items() if k != "(none)" and test(n)]
            if thin:
                names = ", ".join(f"{k} ({n})" if split == "train" else k for k, n in thin)
                out.append(f"{split}: {kind} with {say}: {names}")
    if not m["splits"].get("val", {}).get("windows"):
        out.append("val: no windows: the split has no recording (give at least two labelled recordings)")
    return out


def counted(n: int, noun: str) -> str:
    """``1 recording``, ``2 recordings``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe(m: dict[str, Any]) -> list[str]:
    """``dataset info``: what the dataset was cut from and its per-split per-label counts."""
    task, pkg = m["task"], m["package"]
    lines = [f"dataset for task {task['name']} (spec sha256 {task['sha256'][:16]}…), preprocessing of package "
             f"{pkg['name']}: inputs {', '.join(i['name'] for i in pkg['inputs'])}",
             f"split by recording (seed {m['split']['seed']}, val fraction {m['split']['val_fraction']:g})"]
    for name in SPLITS:
        s = m["splits"].get(name, {})
        lines.append(f"{name}: {s.get('windows', 0)} windows from {counted(len(s.get('recordings', [])), 'recording')} "
                     f"in {counted(len(s.get('shards', [])), 'shard')}")
    kinds = [("events", task["events"], "positive windows"), ("actions", task["actions"], "windows"),
             ("intents", [*task["intents"], "(none)"], "windows")]
    for kind, labels, what in kinds:
        lines.append(f"{kind} ({what}):")
        lines.append(f"  {'label':<22}" + "".join(f"{n:>10}" for n in SPLITS))
        for lab in labels:
            counts = [m["splits"].get(n, {}).get("counts", {}).get(kind, {}).get(lab, 0) for n in SPLITS]
            lines.append(f"  {lab:<22}" + "".join(f"{c:>10}" for c in counts))
    return lines
