"""Label spans and the label track of a recording (DESIGN.md contract 12).

A label is a time span on the recording's own clock: ``[start_ns, end_ns)`` with a kind
(``event``, ``intent``, ``action`` or ``coverage``), a label name and who labelled it.
``coverage`` spans say which time is labelled at all: inside coverage an event without a
span is absent; outside it nothing is known. Synthesized truth and human labels use the
same spans; the log stores them on ``/labels``, one message per span.

Example:
    >>> track = LabelTrack([Span(0, 4_000_000_000, "coverage", ""),
    ...                     Span(1_000_000_000, 2_500_000_000, "event", "doorbell")])
    >>> track.labels("event")
    ('doorbell',)
    >>> track.covers("event", "doorbell", [500_000_000, 1_000_000_000, 2_500_000_000]).tolist()
    [False, True, False]
    >>> track.seconds("coverage")
    4.0
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgefusion.errors import InputError, unknown_name
from edgefusion.task import Task

__all__ = ["KINDS", "SOURCE_HUMAN", "SOURCE_SYNTH", "LabelTrack", "Span", "span_problem"]

#: what a span can say, in the order listings use
KINDS = ("event", "intent", "action", "coverage")
SOURCE_HUMAN = "human"
SOURCE_SYNTH = "synth"
# The spelling of task labels (edgefusion/task/load.py) and of who labelled a span.
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,63}\Z")
# JSON from a log is untrusted: an int outside int64 is not a time.
_I64 = 1 << 63


def span_problem(start_ns: object, end_ns: object, kind: object, label: object, source: object) -> str | None:
    """What is wrong with these span fields, in words (None when they make a valid span).

    Example:
        >>> span_problem(5, 5, "event", "dark", "human")
        'end (5 ns) must be after start (5 ns)'
        >>> span_problem(0, 5, "evnt", "dark", "human")
        "unknown kind 'evnt'; did you mean 'event'? (known: action, coverage, event, intent)"
    """
    for what, t in (("start", start_ns), ("end", end_ns)):
        if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or not -_I64 <= int(t) < _I64:
            return f"{what} must be an integer number of nanoseconds, got {t!r}"
    if int(end_ns) <= int(start_ns):  # type: ignore[call-overload]
        return f"end ({end_ns} ns) must be after start ({start_ns} ns)"
    if kind not in KINDS:
        return str(unknown_name("kind", str(kind), KINDS))
    if not isinstance(label, str):
        return f"label must be a string, got {label!r}"
    if kind == "coverage":
        if label and not _NAME.match(label):
            return f"a coverage label is empty or a plain name (a note), got {label!r}"
    elif not _NAME.match(label):
        return (f"{kind} label must be a lower-case name of letters, digits and '_' starting with a letter, "
                f"got {label!r}")
    if not isinstance(source, str) or not _SOURCE.match(source):
        return f"source must be 'human', 'synth' or a tool's name (no spaces, up to 64 characters), got {source!r}"
    return None


@dataclass(frozen=True)
class Span:
    """One labelled time span ``[start_ns, end_ns)`` on the recording's clock.

    ``row`` says where the span came from (a line of a span file), for messages only.

    Example:
        >>> Span(0, 10, "intent", "lights_on").seconds
        1e-08
    """

    start_ns: int
    end_ns: int
    kind: str
    label: str
    source: str = SOURCE_HUMAN
    row: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        problem = span_problem(self.start_ns, self.end_ns, self.kind, self.label, self.source)
        if problem:
            raise InputError(f"label span: {problem}")
        object.__setattr__(self, "start_ns", int(self.start_ns))
        object.__setattr__(self, "end_ns", int(self.end_ns))

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def where(self) -> str:
        """How messages name the span: its row when it has one, else its kind, label and time."""
        if self.row is not None:
            return f"row {self.row}"
        return f"{self.kind} span {self.label!r} at {self.start_ns / 1e9:.3f}–{self.end_ns / 1e9:.3f} s"

    def to_dict(self) -> dict[str, Any]:
        """The ``/labels`` message (schema ``edgefusion.Label``)."""
        return {"start_ns": self.start_ns, "end_ns": self.end_ns, "kind": self.kind, "label": self.label,
                "source": self.source}

    @classmethod
    def from_dict(cls, d: object) -> Span:
        """A span from a ``/labels`` message; a malformed one raises InputError saying what is wrong."""
        if not isinstance(d, dict):
            raise InputError(f"label span: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in ("start_ns", "end_ns", "kind", "label", "source") if k not in d]
        if missing:
            raise InputError(f"label span: missing field(s) {', '.join(missing)} in {d!r:.120}")
        return cls(d["start_ns"], d["end_ns"], d["kind"], d["label"], d["source"])


class LabelTrack:
    """The spans of one recording, sorted by time; queries per kind and label.

    A track is valid span by span (:class:`Span` checks itself); :meth:`check` checks its
    label names against a task.
    """

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        self.spans: tuple[Span, ...] = tuple(sorted(spans, key=lambda s: (s.start_ns, s.end_ns, s.kind, s.label)))

    def __len__(self) -> int:
        return len(self.spans)

    def __iter__(self) -> Iterator[Span]:
        return iter(self.spans)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelTrack) and self.spans == other.spans

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LabelTrack({len(self.spans)} spans)"

    def of(self, kind: str, label: str | None = None) -> tuple[Span, ...]:
        """Spans of a kind (and label), in time order."""
        return tuple(s for s in self.spans if s.kind == kind and (label is None or s.label == label))

    def labels(self, kind: str) -> tuple[str, ...]:
        """The label names used with ``kind``, sorted."""
        return tuple(sorted({s.label for s in self.spans if s.kind == kind}))

    def shifted(self, dt_ns: int) -> LabelTrack:
        """The same spans, ``dt_ns`` later (span files count from the log's start; tracks use its clock)."""
        return LabelTrack(replace(s, start_ns=s.start_ns + dt_ns, end_ns=s.end_ns + dt_ns) for s in self.spans)

    def intervals(self, kind: str, label: str | None = None) -> np.ndarray:
        """The union of the matching spans as sorted, disjoint ``[start, end)`` rows (int64, shape (n, 2)).

        Overlapping or touching spans of one label are one stretch: a doorbell labelled twice
        over one ring is one ring.
        """
        rows: list[list[int]] = []
        for s in self.of(kind, label):
            if rows and s.start_ns <= rows[-1][1]:
                rows[-1][1] = max(rows[-1][1], s.end_ns)
            else:
                rows.append([s.start_ns, s.end_ns])
        return np.asarray(rows, np.int64).reshape(-1, 2)

    def covers(self, kind: str, label: str | None, t_ns: Sequence[int] | np.ndarray) -> np.ndarray:
        """For each time, whether a matching span covers it (``start <= t < end``)."""
        return in_intervals(self.intervals(kind, label), np.asarray(t_ns, np.int64))

    def seconds(self, kind: str, label: str | None = None) -> float:
        """Seconds covered by the matching spans (overlaps counted once)."""
        iv = self.intervals(kind, label)
        return float((iv[:, 1] - iv[:, 0]).sum()) / 1e9

    def check(self, task: Task) -> list[str]:
        """One line per span whose label the task does not name (with a "did you mean")."""
        known = {"event": task.event_names, "intent": task.intents, "action": task.actions}
        out = []
        for s in self.spans:
            names = known.get(s.kind)
            if names is not None and s.label not in names:
                out.append(f"{s.where()}: {unknown_label(task, s.kind, s.label)}")
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per kind and label: span count and labelled seconds, in :data:`KINDS` order."""
        return [{"kind": k, "label": lab, "spans": len(self.of(k, lab)), "seconds": round(self.seconds(k, lab), 6)}
                for k in KINDS for lab in self.labels(k)]

    def sources(self) -> tuple[str, ...]:
        return tuple(sorted({s.source for s in self.spans}))


def unknown_label(task: Task, kind: str, label: str) -> str:
    """``unknown event 'x'; did you mean 'y'? (task 'name' has: ...)``."""
    names = {"event": task.event_names, "intent": task.intents, "action": task.actions}[kind]
    if not names:
        return f"unknown {kind} {label!r}: task '{task.name}' has no {kind}s"
    return f"task '{task.name}': {unknown_name(kind, label, names)}"


def in_intervals(iv: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Whether each ``t`` lies in one of the sorted, disjoint half-open rows of ``iv``."""
    if not len(iv):
        return np.zeros(t.shape, bool)
    i = np.searchsorted(iv[:, 0], t, side="right") - 1
    return (i >= 0) & (t < iv[np.maximum(i, 0), 1])
