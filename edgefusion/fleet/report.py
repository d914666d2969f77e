"""The evaluation's one report, as JSON (everything) and Markdown (what a reviewer reads).

The JSON holds the summaries of A (and B), the deltas, the rules with their verdicts, the
worst recordings, the failures and every recording's scores (``replay --check``'s lines
among them); ``edgefusion.eval/1`` names its layout. The Markdown renders the same tables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "fmt", "markdown", "write_atomic", "write_json"]

FORMAT = "edgefusion.eval/1"
#: rows of the worst-recordings table in the Markdown (the JSON has them all)
WORST_ROWS = 20


def fmt(v: Any, digits: int = 3) -> str:
    """A table cell: ``–`` for nothing, numbers to ``digits`` decimals, signed for deltas via ``+``.

    Example:
        >>> fmt(None), fmt(0.98765), fmt(2), fmt(-0.5, 2)
        ('–', '0.988', '2', '-0.50')
    """
    if v is None:
        return "–"
    if isinstance(v, int):  # bool too
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _signed(v: Any, digits: int = 3) -> str:
    return "–" if v is None else f"{v:+.{digits}f}"


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it: readers never see it torn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, report: dict[str, Any]) -> Path:
    return write_atomic(path, json.dumps(report, indent=1, sort_keys=False, default=str) + "\n")


def _runner(report: dict[str, Any]) -> str:
    r = report["runner"]
    if not report["recordings"]["ran"]:
        return "none needed (every task came from the cache)"
    where = "local processes" if r["kind"] == "local" else f"Ray ({r['address']})"
    return f"{where} × {r['workers']} workers (start {r['start_s']:.1f} s, tasks {r['run_s']:.1f} s)"


def _which(side: str) -> str:
    return "every side" if side == "-" else f"side {side}"


def _side_name(s: dict[str, Any]) -> str:
    names = ", ".join(f"{p['name']} ({p['variant']}, {p['sha256'][:12]}…)" for p in s["packages"])
    return names or "–"


def markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    sides = list(report["summary"])
    ab = len(sides) == 2
    rec = report["recordings"]
    lines = ["# EdgeFusion evaluation", ""]
    for s in sides:
        lines.append(f"- **{s}**: {_side_name(report['sides'][s])}")
    lines += [f"- recordings: {rec['total']} ({rec['scored']} scored, {rec['failed']} failed, "
              f"{rec['cached']} task(s) from the cache of an earlier run)",
              f"- runner: {_runner(report)}, {report['timing']['wall_s']:.1f} s in all", "",
              f"**Verdict: {report['verdict_line']}**", ""]
    if report["rules"]:
        lines += ["## Rules", ""] + [f"- {r['verdict']}" for r in report["rules"]] + [""]
    lines += _label_table(report, sides, ab) + _overall_table(report, sides, ab) + _scenario_table(report, sides)
    lines += _worst_table(report, sides, ab)
    if report["failures"]:
        lines += ["## Recordings that could not be scored", ""]
        lines += [f"- `{f['recording']}` ({_which(f['side'])}): {f['error']}" for f in report["failures"]] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots] + [""]
    return "\n".join(lines)


def _label_table(report: dict[str, Any], sides: list[str], ab: bool) -> list[str]:
    head = "| label | kind | segments | " + " | ".join(f"{s} precision | {s} recall | {s} reaction ms" for s in sides)
    head += " | Δ precision | Δ recall | Δ reaction ms |" if ab else " |"
    out = ["## Per label", "", "Event-level, pooled over the recordings (see `edgefusion.fleet.labels`)"
           + ("; Δ is A minus B." if ab else "."), "", head, "|" + "---|" * (head.count("|") - 1)]
    a = report["summary"][sides[0]]["labels"]
    for name, row in a.items():
        cells = [name, row["kind"], str(row["segments"])]
        for s in sides:
            r = report["summary"][s]["labels"].get(name, {})
            cells += [fmt(r.get("precision")), fmt(r.get("recall")), fmt(r.get("reaction_ms"), 1)]
        if ab:
            d = report["delta"]["labels"].get(name, {})
            cells += [_signed(d.get("precision")), _signed(d.get("recall")), _signed(d.get("reaction_ms"), 1)]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def _overall_table(report: dict[str, Any], sides: list[str], ab: bool) -> list[str]:
    out = ["## Overall (the actions together)", "", "| metric | " + " | ".join(sides) + (" | Δ |" if ab else " |"),
           "|---|" + "---|" * (len(sides) + ab)]
    rows = [("accuracy (per frame)", "accuracy", 3), ("precision", "precision", 3), ("recall", "recall", 3),
            ("median reaction ms", "reaction_ms", 1)]
    for title, key, digits in rows:
        cells = [fmt(report["summary"][s]["overall"].get(key), digits) for s in sides]
        if ab:
            cells.append(_signed(report["delta"]["overall"].get(key), digits))
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    for stage in ("end_to_end", "inference"):
        for q in ("p50", "p99"):
            cells = [fmt(report["summary"][s]["overall"]["latency_ms"][stage].get(q), 2) for s in sides]
            if ab:
                cells.append(_signed(report["delta"]["overall"].get(f"{stage}_{q}_ms"), 2))
            out.append(f"| {stage.replace('_', '-')} latency {q} ms | " + " | ".join(cells) + " |")
    return [*out, ""]


def _scenario_table(report: dict[str, Any], sides: list[str]) -> list[str]:
    head = "| scenario | recordings | frames | " + " | ".join(f"{s} accuracy | {s} precision | {s} recall"
                                                            for s in sides) + " |"
    out = ["## Per scenario", "", head, "|" + "---|" * (head.count("|") - 1)]
    for name, o in report["summary"][sides[0]]["scenarios"].items():
        cells = [name, str(o["recordings"]), str(o["frames"])]
        for s in sides:
            so = report["summary"][s]["scenarios"].get(name, {})
            cells += [fmt(so.get("accuracy")), fmt(so.get("precision")), fmt(so.get("recall"))]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]


def _worst_table(report: dict[str, Any], sides: list[str], ab: bool) -> list[str]:
    rows = report["worst"]
    head = "| recording | scenario | " + " | ".join(f"{s} accuracy | {s} precision | {s} recall" for s in sides)
    head += " | Δ accuracy | Δ recall |" if ab else " |"
    order = "A minus B, most lost first" if ab else "lowest recall, precision, accuracy first"
    out = [f"## Recordings, worst first ({order}; {min(len(rows), WORST_ROWS)} of {len(rows)})", "",
           "Per recording the numbers are `edgefusion replay LOG --check`'s.", "", head,
           "|" + "---|" * (head.count("|") - 1)]
    for r in rows[:WORST_ROWS]:
        cells = [f"`{r['recording']}`", str(r["scenario"])]
        for s in sides:
            cells += [fmt(r[s]["accuracy"]), fmt(r[s]["precision"]), fmt(r[s]["recall"])]
        if ab:
            cells += [_signed(r["delta"]["accuracy"]), _signed(r["delta"]["recall"])]
        out.append("| " + " | ".join(cells) + " |")
    return [*out, ""]
