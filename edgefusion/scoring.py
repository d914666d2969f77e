"""Scoring a stream of emitted actions against per-frame ground truth, at event level.

A ground-truth *segment* is a maximal run of frames with the same action, at least
``min_frames`` long (shorter flickers are not counted against recall). An emitted action
is a true positive when a segment of the same action spans its time, give or take
``tolerance_ns``. A segment is detected when the pipeline's (smoothed) action equals the
segment's action on some frame inside it; its reaction time is the time of the first such
frame minus the segment's start (0 when the action was already right at the start).

Example:
    >>> truth = ["a", "a", "a", "b", "b", "b"]
    >>> pred = ["a", "a", "a", "a", "b", "b"]
    >>> s = score_events(truth, [0, 1, 2, 3, 4, 5], pred, [(0, "a"), (4, "b")], min_frames=2, tolerance_ns=0)
    >>> s["precision"], s["recall"], s["median_reaction_ns"]
    (1.0, 1.0, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Segment", "score_events", "segments"]


@dataclass(frozen=True)
class Segment:
    action: str
    start_ns: int
    end_ns: int
    frames: int


def segments(actions: Sequence[str], t_ns: Sequence[int]) -> list[Segment]:
    out: list[Segment] = []
    start = 0
    for i in range(1, len(actions) + 1):
        if i == len(actions) or actions[i] != actions[start]:
            out.append(Segment(actions[start], int(t_ns[start]), int(t_ns[i - 1]), i - start))
            start = i
    return out


def score_events(truth: Sequence[str], t_ns: Sequence[int], predicted: Sequence[str],
                 emitted: Sequence[tuple[int, str]], min_frames: int = 3,
                 tolerance_ns: int = 250_000_000) -> dict[str, Any]:
    """Precision of ``emitted`` (time, action), recall and reaction times of ``predicted`` (per frame).

    ``false_emissions`` lists the emitted (time, action) pairs that matched no segment.
    """
    segs = segments(truth, t_ns)
    counted = [s for s in segs if s.frames >= min_frames]
    false = [(int(t), a) for t, a in emitted
             if not any(s.action == a and s.start_ns - tolerance_ns <= t <= s.end_ns + tolerance_ns for s in segs)]
    tp = len(emitted) - len(false)
    reactions = []
    times = np.asarray(t_ns)
    for s in counted:
        lo, hi = np.searchsorted(times, s.start_ns), np.searchsorted(times, s.end_ns, side="right")
        hits = [int(times[i]) for i in range(lo, hi) if predicted[i] == s.action]
        if hits:
            reactions.append(hits[0] - s.start_ns)
    return {
        "segments": len(counted), "detected": len(reactions), "emitted": len(emitted), "true_positives": tp,
        "precision": tp / len(emitted) if emitted else 1.0,
        "recall": len(reactions) / len(counted) if counted else 1.0,
        "median_reaction_ns": float(np.median(reactions)) if reactions else float("nan"),
        "min_frames": min_frames, "tolerance_ns": tolerance_ns, "false_emissions": false,
    }
