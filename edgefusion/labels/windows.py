"""From label spans to the truth of fusion windows: the one labelling rule.

For a window ending at the frame time ``t`` (its audio is ``[t - W, t]``):

- an image (or text) event holds when one of its spans covers ``t``;
- an audio event holds when one of its spans overlaps ``[t - W, t]`` by at least the task's
  ``timing.min_event_overlap_s`` (the synthetic generator's rule,
  :func:`edgefusion.scenarios.base.active_sound_labels`);
- the intent is that of the latest-starting intent span covering ``t`` (none: no command);
- the action is that of the latest-starting action span covering ``t``, else the task's
  rule table decides from the events and the intent (:meth:`Task.decide`);
- a window is labelled only where a coverage span covers ``t``; outside, nothing is known.

Example:
    >>> from edgefusion.labels.track import LabelTrack, Span
    >>> from edgefusion.task import load_task
    >>> s = 1_000_000_000
    >>> track = LabelTrack([Span(0, 10 * s, "coverage", ""), Span(2 * s, 3 * s, "event", "doorbell")])
    >>> truth = label_windows(track, load_task("smart_home"), [1 * s, 5 * s // 2, 4 * s, 11 * s], audio_window_ns=s)
    >>> truth.covered.tolist(), truth.event_sets()
    ([True, True, True, False], [set(), {'doorbell'}, set(), set()])
    >>> [truth.task.actions[a] for a in truth.action]
    ['none', 'notify_visitor', 'none', 'none']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgefusion.errors import InputError
from edgefusion.labels.track import LabelTrack, in_intervals
from edgefusion.task import Task

__all__ = ["WindowLabeler", "WindowTruth", "label_windows"]


@dataclass
class WindowTruth:
    """Per-window truth, aligned with the times it was computed for."""

    task: Task
    t_ns: np.ndarray
    #: whether a coverage span covers the window (outside, the other arrays mean nothing)
    covered: np.ndarray
    #: multi-hot float32 (n, events) in the task's event order
    events: np.ndarray
    #: int64 index into the task's intents, -1 for no command
    intent: np.ndarray
    #: int64 index into the task's actions
    action: np.ndarray

    def event_sets(self) -> list[set[str]]:
        names = self.task.event_names
        return [{names[j] for j in np.flatnonzero(row)} for row in self.events]


class WindowLabeler:
    """The rule of the module docstring for one track, its intervals merged once for many calls.

    Raises:
        InputError: the track names labels the task does not have.
    """

    def __init__(self, track: LabelTrack, task: Task, audio_window_ns: int) -> None:
        problems = track.check(task)
        if problems:
            raise InputError(f"{len(problems)} label span(s) do not fit task '{task.name}': "
                             + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""))
        self.track, self.task, self.audio_window_ns = track, task, audio_window_ns
        m = round(task.timing.min_event_overlap_s * 1e9)
        self.coverage = track.intervals("coverage")
        self.events = [audible_windows(track.intervals("event", e.name), audio_window_ns, m) if e.modality == "audio"
                       else track.intervals("event", e.name) for e in task.events]
        self._decided: dict[tuple[bytes, int], int] = {}

    def __call__(self, t_ns: Sequence[int] | np.ndarray) -> WindowTruth:
        task = self.task
        t = np.asarray(t_ns, np.int64).reshape(-1)
        events = np.zeros((len(t), len(task.events)), np.float32)
        for j, iv in enumerate(self.events):
            events[:, j] = in_intervals(iv, t)
        intent = _latest(self.track, "intent", task.intents, t)
        action = _latest(self.track, "action", task.actions, t)
        for i in np.flatnonzero(action < 0):
            key = (events[i].tobytes(), int(intent[i]))
            if key not in self._decided:
                present = {task.event_names[j] for j in np.flatnonzero(events[i])}
                chosen = task.decide(present, task.intents[intent[i]] if intent[i] >= 0 else None)
                self._decided[key] = task.actions.index(chosen)
            action[i] = self._decided[key]
        return WindowTruth(task, t, in_intervals(self.coverage, t), events, intent, action)


def label_windows(track: LabelTrack, task: Task, t_ns: Sequence[int] | np.ndarray, audio_window_ns: int) -> WindowTruth:
    """The truth of the windows ending at ``t_ns`` (see the module docstring for the rule).

    Raises:
        InputError: the track names labels the task does not have.
    """
    return WindowLabeler(track, task, audio_window_ns)(t_ns)


def audible_windows(iv: np.ndarray, window_ns: int, min_overlap_ns: int) -> np.ndarray:
    """The window end times ``t`` at which ``[t - W, t]`` overlaps a stretch by ``m`` or more, as intervals.

    For a stretch ``[s, e)`` of length at least ``m`` (with ``m <= W``) they are the closed
    ``[s + m, e + W - m]``; shorter stretches never count.
    """
    if min_overlap_ns > window_ns or not len(iv):
        return np.zeros((0, 2), np.int64)
    keep = iv[:, 1] - iv[:, 0] >= min_overlap_ns
    iv = iv[keep]
    # closed on both ends: the half-open end is one nanosecond later
    out = np.stack([iv[:, 0] + min_overlap_ns, iv[:, 1] + window_ns - min_overlap_ns + 1], axis=1)
    return _union(out)


def _union(iv: np.ndarray) -> np.ndarray:
    rows: list[list[int]] = []
    for s, e in iv[np.argsort(iv[:, 0], kind="stable")].tolist():
        if rows and s <= rows[-1][1]:
            rows[-1][1] = max(rows[-1][1], e)
        else:
            rows.append([s, e])
    return np.asarray(rows, np.int64).reshape(-1, 2)


def _latest(track: LabelTrack, kind: str, names: tuple[str, ...], t: np.ndarray) -> np.ndarray:
    """Index (into ``names``) of the latest-starting span of ``kind`` covering each time; -1 where none does."""
    out = np.full(len(t), -1, np.int64)
    order = np.argsort(t, kind="stable")
    ts = t[order]
    sorted_out = out[order]
    for s in track.of(kind):  # in start order: a later span overwrites an earlier one
        lo, hi = np.searchsorted(ts, s.start_ns, "left"), np.searchsorted(ts, s.end_ns, "left")
        sorted_out[lo:hi] = names.index(s.label)
    out[order] = sorted_out
    return out
