"""``replay --check``: new results against the results recorded in a log and its ground truth.

The truth is the log's per-frame ``/truth`` (synthesized logs), else its ``/labels`` spans
read with the task's labelling rule (:mod:`edgefusion.labels.windows`, the rule datasets are
cut with): each result's window is labelled where a coverage span holds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.labels.windows import WindowLabeler
from edgefusion.logs.bag import open_log
from edgefusion.logs.reader import decode
from edgefusion.samples import Result
from edgefusion.scoring import score_events
from edgefusion.sync import SECOND
from edgefusion.task import Task

__all__ = ["CheckReport", "check_against_log", "compare", "other_task_truth"]


def other_task_truth(metadata: dict[str, Any], task: Task | None, package: str) -> str | None:
    """Why a log's ground truth cannot score ``task``: it was synthesized for another scenario's task
    (its actions are another task's); None when it is the same task, or the log or package does not say."""
    truth_of = str(metadata.get("scenario", {}).get("scenario") or "")
    if task is None or not truth_of or truth_of == task.name:
        return None
    return (f"its ground truth is of scenario '{truth_of}', and {package} runs task '{task.name}': one task's "
            f"actions would be scored against another's; use a package of task '{truth_of}'")


@dataclass
class CheckReport:
    frames: int = 0
    recorded: int = 0
    compared: int = 0
    missing: int = 0
    action_mismatches: int = 0
    event_mismatches: int = 0
    emitted_mismatches: int = 0
    max_score_diff: float = 0.0
    examples: list[str] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)
    truth_note: str = ""  # why there is no truth to compare with, when the log has labels
    #: the stages whose records the recorded results and the new ones carry, by name
    recorded_stages: list[str] = field(default_factory=list)
    new_stages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.missing == 0 and self.action_mismatches == 0 and self.event_mismatches == 0 \
            and self.emitted_mismatches == 0

    def lines(self) -> list[str]:
        out = []
        if self.recorded and self.recorded_stages != self.new_stages:
            out.append(f"note: the results in this log were made with the stages "
                       f"{', '.join(self.recorded_stages) or 'none'} (its /stages channels), this replay ran "
                       f"{', '.join(self.new_stages) or 'none'}: a stage can change the results (a confirmation, a "
                       "gate, its events); replay with the same --stage options to check the runtime")
        if self.recorded:
            verdict = "MATCH" if self.ok else "MISMATCH"
            out.append(f"against recorded results: {verdict}: {self.compared} of {self.recorded} compared, "
                       f"{self.missing} missing, {self.action_mismatches} action, {self.event_mismatches} event and "
                       f"{self.emitted_mismatches} emission mismatches, max |Δscore| {self.max_score_diff:.2e}")
            out += [f"  {e}" for e in self.examples]
        else:
            out.append("the log holds no recorded results: nothing to compare against")
        if self.truth:
            t = self.truth
            src = "against ground truth" if t.get("source", "/truth") == "/truth" else \
                f"against the labels (/labels, task {t.get('task')}; {t.get('uncovered', 0)} frames outside coverage)"
            out.append(f"{src}: action accuracy {100 * t['action_accuracy']:.1f}% of {t['frames']} "
                       f"frames; action events precision {t['precision']:.3f}, recall {t['recall']:.3f}")
        elif self.truth_note:
            out.append(self.truth_note)
        return out


def compare(new: list[Result], recorded: list[dict[str, Any]], truth: list[dict[str, Any]],
            origin_ns: int = 0) -> CheckReport:
    """Match by frame time; results are equal when action, emission and events are equal. Examples name
    their time from ``origin_ns`` (the log's start: a live recording's times are wall-clock epochs)."""
    rep = CheckReport(frames=len(new), recorded=len(recorded),
                      recorded_stages=sorted({k for old in recorded for k in old.get("stages") or {}}),
                      new_stages=sorted({k for r in new for k in r.stages}))
    by_t = {r.t_ns: r for r in new}
    for old in recorded:
        t = int(old["t_ns"])
        r = by_t.get(t)
        if r is None:
            rep.missing += 1
            continue
        rep.compared += 1
        diffs = [abs(r.scores.get(k, 0.0) - v) for k, v in old.get("scores", {}).items()]
        rep.max_score_diff = max(rep.max_score_diff, max(diffs, default=0.0))
        if r.action != old["action"]:
            rep.action_mismatches += 1
            if len(rep.examples) < 5:
                rep.examples.append(f"t={(t - origin_ns) / 1e9:.3f}s seq {old.get('seq')}: "
                                    f"action {old['action']} -> {r.action}")
        if sorted(r.events) != sorted(old.get("events", [])):
            rep.event_mismatches += 1
            if len(rep.examples) < 5:
                rep.examples.append(f"t={(t - origin_ns) / 1e9:.3f}s: events {old.get('events')} -> {list(r.events)}")
        if bool(old.get("emitted")) != r.emitted:
            rep.emitted_mismatches += 1
    if truth:
        tt = {int(x["t_ns"]): x for x in truth}
        pairs = [(r, tt[r.t_ns]) for r in new if r.t_ns in tt]
        if pairs:
            t_ns = [r.t_ns for r, _ in pairs]
            acts = [x["action"] for _, x in pairs]
            lv = score_events(acts, t_ns, [r.action for r, _ in pairs], [(r.t_ns, r.action) for r, _ in pairs
                                                                          if r.emitted])
            rep.truth = {"frames": len(pairs), "action_accuracy": float(np.mean([r.action == a for (r, _), a in
                                                                                 zip(pairs, acts)])),
                         "precision": lv["precision"], "recall": lv["recall"]}
    return rep


def check_against_log(path: str | Path, new: list[Result], task: Task | None = None,
                      audio_window_ns: int = SECOND, span_ns: tuple[int, int | None] | None = None) -> CheckReport:
    """``replay --check``: ``new`` results against the results and the truth recorded in the log at ``path``.

    Without ``/truth``, the ``/labels`` track is the truth when ``task`` (the package's task)
    is given: labels of another task are refused with one line naming them. ``span_ns`` (from, to; log
    time, ``to`` exclusive or None) compares a range of the log: what was recorded outside it is not missing.
    """
    recorded: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    lo, hi = span_ns if span_ns is not None else (None, None)
    with open_log(path) as r:
        for m in r.messages(topics=["/results", "/truth"]):
            if (lo is not None and m.publish_time_ns < lo) or (hi is not None and m.publish_time_ns >= hi):
                continue
            d = decode(m)
            assert isinstance(d, dict)
            d["t_ns"] = m.publish_time_ns
            (recorded if m.topic == "/results" else truth).append(d)
        track = None if truth else r.labels()
        origin = r.info().start_ns or 0
    note, uncovered = "", 0
    if track is not None and task is None:
        note = "the log has /labels, but the package names no built-in task to read them with: no truth compared"
    elif track is not None and task is not None:
        labelled = WindowLabeler(track, task, audio_window_ns)([x.t_ns for x in new])
        truth = [{"t_ns": int(t), "action": task.actions[a]}
                 for t, a, c in zip(labelled.t_ns, labelled.action, labelled.covered) if c]
        uncovered = int((~labelled.covered).sum())
    rep = compare(new, recorded, truth, origin)
    rep.truth_note = note
    if rep.truth and track is not None and task is not None:
        rep.truth.update(source="/labels", task=task.name, uncovered=uncovered)
    return rep
