"""Per-frame ground truth (the synthetic generator's) as label spans.

A synthesized log carries its truth twice: per frame on ``/truth`` (what ``replay
--check`` compares with) and as spans on ``/labels``, the format human labels have, so
datasets treat synthesized and recorded logs alike.

Image events become the stretch of frames they hold on. Audio events are labelled by the
audible part of the sound, as a person would mark it; per-frame truth only says where the
overlap rule held (``[t - W, t]`` overlaps the sound by at least ``m``), so the sound is
recovered by inverting the rule: a run of positive frames ``t_a .. t_b`` comes from the
sound ``[t_a - m, t_b - W + m)``. Applying the rule to that span gives back exactly the
frames of the run. Intents span their command's horizon.

Example:
    >>> t = [0, 100, 200, 300]
    >>> spans = truth_spans(t, [set(), {"dark"}, {"dark"}, set()], [], {"dark": "image"}, end_ns=400,
    ...                     audio_window_ns=1000, min_overlap_ns=300, horizon_ns=1000)
    >>> [(s.kind, s.label, s.start_ns, s.end_ns) for s in spans]
    [('coverage', '', 0, 400), ('event', 'dark', 100, 300)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from typing import Any

from edgefusion.labels.track import SOURCE_SYNTH, Span

__all__ = ["truth_spans"]


def truth_spans(frame_t_ns: Sequence[int], events: Sequence[Set[str]], commands: Sequence[Any],
                modality: Mapping[str, str], end_ns: int, audio_window_ns: int, min_overlap_ns: int,
                horizon_ns: int, source: str = SOURCE_SYNTH) -> list[Span]:
    """Spans for a timeline's truth: coverage of the whole log, events, and command intents.

    Args:
        frame_t_ns: frame times (increasing); the log starts at the first.
        events: the truth events of each frame.
        commands: objects with ``t_ns`` and ``intent`` (the timeline's commands).
        modality: event label -> its modality (``audio`` events are inverted, others are frame runs).
        end_ns: the end of the log (after its last frame).
        audio_window_ns, min_overlap_ns: the window length W and the overlap m of the rule.
        horizon_ns: how long a command stays valid (inclusive, as the generator counts it).
    """
    times = [int(t) for t in frame_t_ns]
    if not times:
        return []
    start = times[0]
    out = [Span(start, end_ns, "coverage", "", source)]
    labels = sorted({e for ev in events for e in ev})
    for label in labels:
        audio = modality.get(label) == "audio"
        for a, b in _runs([label in ev for ev in events]):
            if audio:
                s = max(start, times[a] - min_overlap_ns)
                # a run cut off by the end of the log: the sound lasts at least until the end
                e = end_ns if b == len(times) - 1 else times[b] - audio_window_ns + min_overlap_ns
            else:
                s, e = times[a], times[b + 1] if b + 1 < len(times) else end_ns
            out.append(Span(s, max(e, s + 1), "event", label, source))
    for c in commands:
        t = int(c.t_ns)
        if start <= t < end_ns and c.intent:
            # valid while t - c <= horizon: the span [c, c + horizon + 1) holds every such t
            out.append(Span(t, min(t + horizon_ns + 1, end_ns), "intent", c.intent, source))
    return out


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    runs, first = [], None
    for i, f in enumerate(flags):
        if f and first is None:
            first = i
        elif not f and first is not None:
            runs.append((first, i - 1))
            first = None
    if first is not None:
        runs.append((first, len(flags) - 1))
    return runs
