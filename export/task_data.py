"""Training data of a task: recorded datasets checked against the task and the model's feeds.

A recorded dataset (``edgefusion dataset build``) stores feeds already preprocessed by one
package's preprocessing, and labels in one task's order. Before training on it, its labels
must be the task's (events, actions, in order) and its feeds exactly the model's inputs
(names, dtypes, shapes and preprocessing parameters): a mismatch is one line naming the
difference, never a silently wrong model. The synthetic generator of a task is the
scenario of the same name, when its labels are the task's.

Example:
    >>> from edgefusion.task import load_task
    >>> generator_for(load_task("driving")).name
    'driving'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calibration.datasets import label_difference, same_inputs
from edgefusion.dataset import INPUT_ORDER, load_split, read_manifest
from edgefusion.errors import ConfigError, InputError
from edgefusion.scenarios import SCENARIOS, Scenario, get_scenario
from edgefusion.task import Task

__all__ = ["RecordedData", "check_labels", "generator_for", "load_recorded", "same_inputs"]


def check_labels(task: Task, events: Sequence[str], actions: Sequence[str], what: str) -> None:
    """Refuse ``what`` (a package, a dataset) whose event or action labels are not the task's, in order."""
    for kind, want, got in (("events", task.event_names, events), ("actions", task.actions, actions)):
        diff = label_difference(want, got)
        if diff:
            raise ConfigError(f"task '{task.name}' and {what} disagree on the {kind} (in the model's output order): "
                              f"{diff}. The task has {', '.join(want)}; {what} has {', '.join(got)}")


def generator_for(task: Task) -> Scenario | None:
    """The synthetic scenario of ``task``: the one named like it, when its events and actions are the task's."""
    if task.name not in SCENARIOS:
        return None
    scen = get_scenario(task.name)
    if tuple(scen.events) != tuple(task.event_names) or tuple(scen.actions) != tuple(task.actions):
        return None
    return scen


@dataclass
class RecordedData:
    """The train and val windows of one or more recorded datasets (arrays as :func:`load_split` gives them)."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    sources: list[dict[str, Any]] = field(default_factory=list)
    recording_names: dict[str, str] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.train["action"]) if self.train else 0

    @property
    def n_val(self) -> int:
        return len(self.val["action"]) if self.val else 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_recorded(dirs: Sequence[str | Path], task: Task, inputs: Sequence[Any]) -> RecordedData:
    """Both splits of every dataset in ``dirs``, checked against ``task`` and the model ``inputs``.

    ``inputs`` are the model's (name, preprocess) pairs (a checkpoint's ``inputs``, or a
    package manifest's input dicts). Only the model's inputs and the label arrays are kept.
    """
    keep = [*INPUT_ORDER, "events", "action", "intent", "recording"]
    train: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    val: dict[str, list[np.ndarray]] = {k: [] for k in keep}
    sources, names = [], {}
    for d in dirs:
        root = Path(d)
        m = read_manifest(root)
        check_labels(task, m["task"]["events"], m["task"]["actions"], f"dataset {root}")
        diff = same_inputs(inputs, m["package"]["inputs"])
        if diff is not None:
            raise ConfigError(f"dataset {root} was built for other feeds ({diff}): it was cut "
                              f"with package '{m['package']['name']}''s preprocessing; rebuild it with the model's "
                              "package: edgefusion dataset build TASK LOGS... --package PACKAGE")
        for split, into in (("train", train), ("val", val)):
            arrays = load_split(root, split)
            for k in keep:
                if k not in arrays:
                    raise InputError(f"dataset {root}: split {split} has no array '{k}'")
                into[k].append(arrays[k])
        for r in m["recordings"]:
            names[str(r.get("sha256"))] = Path(str(r.get("path", "?"))).name
        sources.append({"path": str(root), "manifest_sha256": _sha256(root / "dataset.json"),
                        "task": m["task"]["name"], "task_sha256": m["task"]["sha256"],
                        "package": m["package"]["name"],
                        "windows": {s: int(m["splits"].get(s, {}).get("windows", 0)) for s in ("train", "val")}})
    data = RecordedData({k: np.concatenate(v) for k, v in train.items()},
                        {k: np.concatenate(v) for k, v in val.items()}, sources, names)
    if data.n_train == 0 and data.n_val == 0:
        raise InputError(f"the dataset(s) {', '.join(map(str, dirs))} hold no labelled window")
    return data
