"""Per-label event scores of one replayed recording, by the rule of :mod:`edgefusion.scoring`.

``replay --check`` scores the *actions* as a whole (:func:`edgefusion.scoring.score_events`).
A fleet report also needs each label: every action and every event of the task. For a label
``L`` the truth is the frames where ``L`` holds (the action is ``L``, or ``L`` is among the
events); its segments, detections, reaction times and emissions follow the same rule as
:func:`~edgefusion.scoring.score_events`, restricted to ``L``:

- a segment of ``L`` counts for recall when it is at least ``MIN_FRAMES`` long; it is detected
  when the prediction holds ``L`` on some frame inside it (reaction: that frame's time minus
  the segment's start);
- an action ``L`` is emitted when the pipeline emits it; an event ``L`` is "emitted" at each
  onset of the prediction (a frame with ``L`` after a frame without); an emission is a true
  positive when a segment of ``L`` spans its time, give or take ``TOLERANCE_NS``.

The segments of the actions partition those ``score_events`` counts, so summing the action
labels gives back ``replay --check``'s precision and recall (a test holds them to it).

Counts, not ratios, are kept per recording, so recordings pool by adding.

Example:
    >>> t = [0, 1, 2, 3, 4, 5]
    >>> s = score_label([False, True, True, True, False, False], [False, False, True, True, False, False],
    ...                 [2], t, tolerance_ns=0)
    >>> s["segments"], s["detected"], s["emitted"], s["true_positives"], s["reaction_ns"]
    (1, 1, 1, 1, [1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefusion.samples import Result
from edgefusion.scoring import segments

__all__ = ["MIN_FRAMES", "TOLERANCE_NS", "label_scores", "score_label"]

#: the defaults of :func:`edgefusion.scoring.score_events`, which ``replay --check`` uses
MIN_FRAMES = 3
TOLERANCE_NS = 250_000_000


def score_label(truth: Sequence[bool], predicted: Sequence[bool], emitted: Sequence[int], t_ns: Sequence[int],
                min_frames: int = MIN_FRAMES, tolerance_ns: int = TOLERANCE_NS) -> dict[str, Any]:
    """Counts of one label: segments, detected, emitted, true_positives and the reaction times (ns)."""
    segs = [s for s in segments(["+" if b else "-" for b in truth], t_ns) if s.action == "+"]
    counted = [s for s in segs if s.frames >= min_frames]
    tp = sum(any(s.start_ns - tolerance_ns <= t <= s.end_ns + tolerance_ns for s in segs) for t in emitted)
    times = np.asarray(t_ns)
    reactions = []
    for s in counted:
        lo, hi = np.searchsorted(times, s.start_ns), np.searchsorted(times, s.end_ns, side="right")
        hit = next((int(times[i]) for i in range(lo, hi) if predicted[i]), None)
        if hit is not None:
            reactions.append(hit - s.start_ns)
    return {"segments": len(counted), "detected": len(reactions), "emitted": len(emitted), "true_positives": tp,
            "reaction_ns": reactions}


def label_scores(results: Sequence[Result], truth_actions: Sequence[str], truth_events: Sequence[set[str]],
                 actions: Sequence[str], events: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per label (``kind`` action or event), the counts of :func:`score_label`.

    Args:
        results: the replay's results aligned with the truth (one per truth frame, in time order).
        truth_actions: the true action of each of those frames.
        truth_events: the true events of each of those frames.
        actions: the task's actions (labels seen in the truth or the results are added after them).
        events: the task's events (likewise).

    An event that is also the name of an action is keyed ``event:NAME``.
    """
    t_ns = [r.t_ns for r in results]
    seen_actions = set(truth_actions) | {r.action for r in results}
    seen_events = set().union(*truth_events, *(r.events for r in results)) if results else set()
    out: dict[str, dict[str, Any]] = {}
    for a in [*actions, *sorted(seen_actions - set(actions))]:
        emitted = [r.t_ns for r in results if r.emitted and r.action == a]
        out[a] = {"kind": "action", **score_label([x == a for x in truth_actions], [r.action == a for r in results],
                                                  emitted, t_ns)}
    for e in [*events, *sorted(seen_events - set(events))]:
        pred = [e in r.events for r in results]
        onsets = [t for i, t in enumerate(t_ns) if pred[i] and (i == 0 or not pred[i - 1])]
        key = f"event:{e}" if e in out else e
        out[key] = {"kind": "event", **score_label([e in ev for ev in truth_events], pred, onsets, t_ns)}
    return out
