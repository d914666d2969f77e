"""The README's hot-path table (issue 20), regenerated from bench/pipeline_overhead.py's JSON.

Reads the ``table`` of pipeline_overhead.json files (and of earlier ones with ``--before``) and
writes a Markdown table between the ``<!-- hotpath-table:begin -->`` and
``<!-- hotpath-table:end -->`` markers of the README (``--print``: to stdout instead).
Values are ``smart_home / driving`` (the packages in the JSON, in order).

    python bench/hotpath_table.py [--json bench/results/pipeline_overhead.json ...]
        [--before bench/results/pipeline_overhead.before.json ...] [--readme README.md | --print]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- hotpath-table:begin -->", "<!-- hotpath-table:end -->"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _values(row: dict[str, Any] | None) -> str:
    return " / ".join(_fmt(v) for v in row["values"].values()) if row else "-"


def _read(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"cannot read {path}: {exc}")


def merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Reports of the same script on different packages as one (a row is met when it is met in every report)."""
    out = dict(reports[0], results=[r for rep in reports for r in rep["results"]])
    rows = {row["key"]: dict(row, values=dict(row["values"])) for row in reports[0]["table"]}
    for rep in reports[1:]:
        for row in rep["table"]:
            mine = rows.setdefault(row["key"], dict(row, values={}))
            mine["values"].update(row["values"])
            if mine["met"] is not None:
                mine["met"] = bool(mine["met"] and row["met"])
    out["table"] = list(rows.values())
    return out


def _load(paths: list[str]) -> dict[str, Any]:
    return merge([_read(p) for p in paths])


def _describe(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = "/".join(str(x) for x in report.get("loadavg_before", []))
    return f"{m['cpu']}, {m['cores']} cores, load average {load or '?'} at the start"


def render(now: dict[str, Any], before: dict[str, Any] | None = None) -> str:
    """The Markdown table (with a line saying where and how it was measured)."""
    names = " / ".join(r["package"] for r in now["results"])
    old = {r["key"]: r for r in before["table"]} if before else {}
    head = ["measure", *(["before"] if before else []), "now", "goal", "met"]
    lines = [f"Measured by `bench/pipeline_overhead.py` ({now['rounds']} rounds, medians; {now['threads']} threads; "
             f"values {names}) on {_describe(now)}"
             + (f"; before: the previous code and INT8 recipe, same script, on {_describe(before)}" if before else "")
             + ". Regenerate: `make hotpath`.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in now["table"]:
        met = "" if row["met"] is None else "yes" if row["met"] else "no"
        cells = [row["measure"], *([_values(old.get(row["key"]))] if before else []), _values(row),
                 row["goal"] or "(not a goal)", met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def splice(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"the markers {BEGIN} and {END} are not both in the README")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", nargs="+", default=["bench/results/pipeline_overhead.json"],
                    help="pipeline_overhead.json files (one per package run, or one for all)")
    ap.add_argument("--before", nargs="+", help="earlier pipeline_overhead.json files, shown as a 'before' column")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--print", action="store_true", help="print the table instead of writing the README")
    a = ap.parse_args()
    table = render(_load(a.json), _load(a.before) if a.before else None)
    if a.print:
        print(table, end="")
        return
    readme = Path(a.readme)
    try:
        readme.write_text(splice(readme.read_text(), table))
    except ValueError as exc:
        sys.exit(f"{a.readme}: {exc}")
    print(f"wrote the hot-path table into {a.readme}")


if __name__ == "__main__":
    main()
