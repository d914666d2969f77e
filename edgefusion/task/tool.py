"""``task check FILE...`` and ``task show NAME|FILE``: validate a spec, print its rule table.

:func:`register` adds them to an argparse subparsers object in the style of
``edgefusion.cli`` (each command sets ``fn``); :func:`main` runs them on their own, as
``python -m edgefusion.task``. Errors print as ``error: <message>`` with exit status 2.

Example:
    >>> print(format_task(load_task("driving")).splitlines()[0])
    task driving: Forward camera, traffic sounds and driver commands: brake, stop, yield, turn.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from edgefusion.errors import EdgeFusionError
from edgefusion.task.load import load_task
from edgefusion.task.spec import Task, TaskWarning

__all__ = ["format_task", "main", "register"]


def format_task(task: Task) -> str:
    """The task as text: its labels, then the rule table in order (first match wins)."""
    lines = [f"task {task.name}: {task.description}".rstrip(": "), f"  from        {task.source}",
             f"  modalities  {', '.join(task.modalities)}"]
    lines += [f"  events      {m}: {', '.join(task.events_of(m))}" for m in task.modalities if task.events_of(m)]
    lines += [f"  actions     {', '.join(task.actions)}",
              f"  intents     {', '.join(task.intents) or '(none: no commands)'}",
              f"  timing      command_horizon_s = {task.timing.command_horizon_s:g}, "
              f"min_event_overlap_s = {task.timing.min_event_overlap_s:g}",
              "rules (the first that holds decides):"]
    rows = [("#", "name", "when", "action")]
    rows += [(str(r.index), r.name, "otherwise" if r is task.rules[-1] else r.describe(), r.action)
             for r in task.rules]
    widths = [max(len(row[k]) for row in rows) for k in range(3)]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[3] for row in rows]
    if task.policy is None:
        lines.append("policy: none (the model's actions are taken as they are)")
    else:
        lines += ["policy (the model proposes, the policy decides):", *(f"  {x}" for x in task.policy.describe())]
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> None:
    for path in args.files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TaskWarning)
            task = load_task(path)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        n_rules = len(task.rules) - 1
        print(f"{path}: ok: task '{task.name}', {len(task.events)} events, {len(task.actions)} actions, "
              f"{len(task.intents)} intents, {n_rules} rules + default"
              + (f", {len(caught)} warning(s)" if caught else ""))


def cmd_show(args: argparse.Namespace) -> None:
    print(format_task(load_task(args.task)))


def register(sub: Any) -> None:
    """Add ``task check`` and ``task show`` to an argparse subparsers object."""
    p = sub.add_parser("task", help="check or show a task spec (task.toml)",
                       description="Task specs: labels, intents and the decision rules of a model.")
    _add_verbs(p.add_subparsers(dest="task_command", required=True, metavar="VERB"))


def _add_verbs(verbs: Any) -> None:
    check = verbs.add_parser("check", help="validate task.toml files (one line per problem)",
                             description="Validate task.toml files: exit status 2 at the first problem.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(fn=cmd_check)
    show = verbs.add_parser("show", help="print a task's labels and rule table",
                            description="Print a task's labels and its rule table.")
    show.add_argument("task", metavar="NAME|FILE", help="a built-in task (smart_home, driving) or a task.toml")
    show.set_defaults(fn=cmd_show)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edgefusion.task check FILE... | show NAME|FILE``."""
    parser = argparse.ArgumentParser(prog="python -m edgefusion.task",
                                     description="Validate a task spec or print its rule table.")
    _add_verbs(parser.add_subparsers(dest="task_command", required=True, metavar="VERB"))
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
