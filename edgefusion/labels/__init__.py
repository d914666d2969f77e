"""Labels of recordings: time spans on a ``/labels`` track (DESIGN.md contract 12).

The same spans hold a person's labels (from a span file, :func:`parse_spans_csv`) and a
synthesized log's truth (:func:`truth_spans`); :func:`label_windows` turns them into the
truth of fusion windows, the one rule datasets use. Reading and writing the track in a
log: :meth:`edgefusion.logs.LogReader.labels` and :meth:`edgefusion.logs.LogWriter.labels`.

Example:
    >>> track = LabelTrack([Span(0, 2_000_000_000, "coverage", ""), Span(0, 500_000_000, "event", "dark")])
    >>> [(row["kind"], row["label"], row["seconds"]) for row in track.summary()]
    [('event', 'dark', 0.5), ('coverage', '', 2.0)]
"""

from __future__ import annotations

from edgefusion.labels.spans_csv import HEADER, parse_spans_csv
from edgefusion.labels.track import KINDS, SOURCE_HUMAN, SOURCE_SYNTH, LabelTrack, Span, span_problem
from edgefusion.labels.truth import truth_spans
from edgefusion.labels.windows import WindowLabeler, WindowTruth, label_windows

__all__ = [
    "HEADER",
    "KINDS",
    "SOURCE_HUMAN",
    "SOURCE_SYNTH",
    "LabelTrack",
    "Span",
    "WindowLabeler",
    "WindowTruth",
    "label_windows",
    "parse_spans_csv",
    "span_problem",
    "truth_spans",
]
