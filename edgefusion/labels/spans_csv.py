"""Span files: human labels as CSV, read with one error line per bad row.

The format (times in seconds from the start of the log, its first sample, as a video
player counts them)::

    # '#' starts a comment, to the end of the line; blank lines are skipped
    start_s,end_s,kind,label
    1.5,3.0,event,doorbell     # the first ring
    4.0,7.0,intent,lights_on
    0,60,coverage,

``kind`` is ``event``, ``intent``, ``action`` or ``coverage`` (the label of a coverage row
may stay empty). A file with bad rows is refused as a whole, naming every bad row by its
line number, so one pass of fixes is enough.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "spans.csv")
    >>> _ = open(path, "w").write("start_s,end_s,kind,label\\n1.5,3,event,doorbell\\n")
    >>> [(s.start_ns, s.end_ns, s.label, s.row) for s in parse_spans_csv(path)]
    [(1500000000, 3000000000, 'doorbell', 2)]
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from edgefusion.errors import InputError
from edgefusion.labels.track import SOURCE_HUMAN, LabelTrack, Span, span_problem, unknown_label
from edgefusion.task import Task, load_task

__all__ = ["HEADER", "MAX_SPAN_FILE_BYTES", "format_problems", "parse_spans_csv"]

HEADER = ("start_s", "end_s", "kind", "label")
#: a span file is text typed or exported by a person; anything larger is not one
MAX_SPAN_FILE_BYTES = 64 << 20
#: bad rows named in one message (the rest are counted)
SHOWN = 30


def parse_spans_csv(path: str | Path, task: Task | str | Path | None = None, source: str = SOURCE_HUMAN) -> LabelTrack:
    """The spans of a CSV span file, times relative to the log's start (ns from 0).

    Args:
        path: the CSV file (UTF-8, a BOM is fine).
        task: when given (a Task, a built-in name or a ``task.toml`` path), every label is
            checked against it as well.
        source: who labelled the spans (``human`` by default, or a tool's name).

    Raises:
        InputError: the file cannot be read, has no header, or has bad rows (all of them
            named, one line each, by line number).
    """
    path = Path(path)
    if task is not None and not isinstance(task, Task):
        task = load_task(task)
    try:
        if path.stat().st_size > MAX_SPAN_FILE_BYTES:
            raise InputError(f"{path}: {path.stat().st_size} bytes is too large for a span file "
                             f"(at most {MAX_SPAN_FILE_BYTES >> 20} MiB)")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"span file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the span file ({exc}); expected UTF-8 CSV text") from exc
    spans: list[Span] = []
    problems: list[str] = []
    header_seen = False
    seen: dict[tuple[int, int, str, str], int] = {}  # a span -> the row that first gave it
    lines = text.splitlines()
    for lineno, row in _rows(lines):
        if not header_seen:
            got = tuple(c.strip().lower() for c in row)
            if got != HEADER:
                raise InputError(f"{path}: row {lineno}: expected the header {','.join(HEADER)}, got "
                                 f"{','.join(row)!r:.80}")
            header_seen = True
            continue
        span, problem = _span(row, source, lineno, task)
        if problem is None and span is not None:
            key = (span.start_ns, span.end_ns, span.kind, span.label)
            if key in seen:
                problem = f"repeats row {seen[key]} (a span counts once; delete one of them)"
            seen.setdefault(key, lineno)
        if problem:
            problems.append(f"row {lineno}: {problem}")
        elif span is not None:
            spans.append(span)
    if not header_seen:
        raise InputError(f"{path}: no header; expected a first line {','.join(HEADER)} and one span per line")
    if problems:
        raise InputError(format_problems(str(path), problems, len(spans) + len(problems), "row"))
    return LabelTrack(spans)


def format_problems(where: str, problems: list[str], total: int, what: str) -> str:
    """``WHERE: N of M rows are bad:`` and one indented line per problem (the first SHOWN, then a count)."""
    lines = [f"{where}: {len(problems)} of {total} {what}s are bad:"]
    lines += [f"  {p}" for p in problems[:SHOWN]]
    if len(problems) > SHOWN:
        lines.append(f"  … and {len(problems) - SHOWN} more")
    return "\n".join(lines)


def _rows(lines: list[str]) -> list[tuple[int, list[str]]]:
    out = []
    for i, line in enumerate(lines, start=1):
        # no field can hold a '#' (times, kinds and label names cannot), so it always starts a comment;
        # one line is one row: a stray quote cannot swallow the rest of the file into one field
        code = line.split("#", 1)[0]
        if code.strip():
            out.append((i, next(csv.reader([code]))))
    return out


def _span(row: list[str], source: str, lineno: int, task: Task | None) -> tuple[Span | None, str | None]:
    cells = [c.strip() for c in row]
    if len(cells) == 3 and cells[2] == "coverage":
        cells.append("")  # a coverage row may leave out its empty label
    if len(cells) != len(HEADER):
        return None, f"expected {len(HEADER)} columns ({','.join(HEADER)}), got {len(cells)}: {','.join(row)!r:.80}"
    start_s, end_s, kind, label = cells
    if kind == "coverage" and label:
        return None, (f"a coverage row takes no label, got {label!r:.40} (coverage says which stretch is labelled; "
                      "an event is a row of kind event)")
    times = []
    for what, text in (("start_s", start_s), ("end_s", end_s)):
        try:
            v = float(text)
        except ValueError:
            return None, f"{what} must be a number of seconds, got {text!r:.40}"
        if not math.isfinite(v) or v < 0:
            return None, f"{what} must be a finite number of seconds from the log's start (>= 0), got {text}"
        times.append(round(v * 1e9))
    problem = span_problem(times[0], times[1], kind, label, source)
    if problem and times[1] <= times[0]:
        problem = f"end_s ({end_s}) must be after start_s ({start_s})"
    if problem is None and task is not None and kind != "coverage":
        names = {"event": task.event_names, "intent": task.intents, "action": task.actions}[kind]
        if label not in names:
            problem = unknown_label(task, kind, label)
    if problem:
        return None, problem
    return Span(times[0], times[1], kind, label, source, row=lineno), None
