"""Recorded datasets as INT8 calibration data and as the accuracy gate's held-out set.

A dataset from ``edgefusion dataset build`` holds windows already preprocessed by one
package's preprocessing and labelled in one task's order. The gate runs on its ``val``
split, calibration on its ``train`` split (never the windows it is judged on). Before
either, the dataset must fit the package: the same inputs (names, order, preprocessing
parameters) and the package's output labels, in order; any difference is one line.

Example:
    >>> label_difference(("a", "b"), ("a", "c"))
    "missing: 'b'; extra: 'c'"
    >>> label_difference(("a", "b"), ("b", "a"))
    'the same labels in another order: a, b vs b, a'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.dataset import load_split, read_manifest
from edgefusion.errors import ConfigError
from edgefusion.package import ModelPackage

__all__ = ["check_dataset", "dataset_feeds", "label_difference", "same_inputs"]


def label_difference(want: Sequence[str], got: Sequence[str]) -> str | None:
    """How label list ``got`` differs from ``want`` (None when equal), in a few words."""
    if tuple(want) == tuple(got):
        return None
    missing, extra = [x for x in want if x not in got], [x for x in got if x not in want]
    if not missing and not extra:
        return f"the same labels in another order: {', '.join(want)} vs {', '.join(got)}"
    parts = ([f"missing: {', '.join(map(repr, missing))}"] if missing else []) + \
        ([f"extra: {', '.join(map(repr, extra))}"] if extra else [])
    return "; ".join(parts)


def _inputs_key(inputs: Sequence[Any]) -> list[tuple[str, Any]]:
    out = []
    for i in inputs:
        name, pre = (i["name"], i.get("preprocess", {})) if isinstance(i, dict) else (i[0], i[1])
        out.append((str(name), json.loads(json.dumps(pre))))  # tuples and lists compare as JSON does
    return out


def same_inputs(model: Sequence[Any], other: Sequence[Any]) -> str | None:
    """None when ``other`` feeds exactly the ``model`` inputs (names, order, preprocessing), else the first difference.

    Either side is (name, preprocess) pairs or manifest input dicts.

    Example:
        >>> same_inputs([("image", {"size": 96})], [{"name": "image", "preprocess": {"size": 64}}])
        "input 'image': size = 64, the model's is 96"
    """
    want, got = _inputs_key(model), _inputs_key(other)
    if want == got:
        return None
    wn, gn = [n for n, _ in want], [n for n, _ in got]
    if wn != gn:
        return f"inputs {', '.join(gn)}; the model takes {', '.join(wn)}"
    for (name, a), (_, b) in zip(want, got):
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if keys:
            k = keys[0]
            return f"input '{name}': {k} = {b.get(k)!r:.60}, the model's is {a.get(k)!r:.60}"
    return "different preprocessing"


def check_dataset(package: ModelPackage, root: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at ``root``, after checking that it fits ``package``; one line per misfit."""
    m = read_manifest(root)
    diff = same_inputs([(i.name, i.preprocess) for i in package.inputs], m["package"]["inputs"])
    if diff is not None:
        raise ConfigError(f"dataset {root} was built for other feeds than package '{package.name}' ({diff}); rebuild "
                          "it with that package: edgefusion dataset build TASK LOGS... --package PACKAGE")
    for kind, out in (("events", package.output("multilabel_logits")), ("actions", package.output("class_logits"))):
        d = label_difference(out.labels, m["task"][kind])
        if d is not None:
            raise ConfigError(f"dataset {root} (task '{m['task']['name']}') and package '{package.name}' disagree on "
                              f"the {kind}: {d}")
    return m


def dataset_feeds(package: ModelPackage, root: str | Path, split: str,
                  limit: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(model feeds, label arrays, description) of one split, at most ``limit`` windows (spread evenly)."""
    check_dataset(package, root)
    arrays = load_split(root, split)
    n = len(arrays["action"])
    if n == 0:
        raise ConfigError(f"dataset {root} has no window in its '{split}' split"
                          + (" (give at least two labelled recordings, so that one lands in val)" if split == "val"
                             else ""))
    idx = np.arange(n) if limit is None or limit >= n else np.linspace(0, n - 1, limit).round().astype(np.int64)
    feeds = {i.name: arrays[i.name][idx] for i in package.inputs}
    labels = {k: arrays[k][idx] for k in ("events", "action")}
    sha = hashlib.sha256((Path(root) / "dataset.json").read_bytes()).hexdigest()
    return feeds, labels, {"dataset": str(root), "split": split, "dataset_sha256": sha, "windows_in_split": n}
