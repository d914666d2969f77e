"""Task specs: what a model perceives and decides, as data (DESIGN.md contract 11).

A ``task.toml`` names the modalities, the event labels (each with its modality), the action
labels, the command intents and the decision rules: an ordered table, the first rule that
holds wins, a default last; and a ``[policy]`` for the runtime: per-action confidence
thresholds, security-sensitive actions, fallbacks for missing modalities
(:mod:`edgefusion.task.policy`). The reference scenarios ship as built-in specs
(``builtin/smart_home.toml``, ``builtin/driving.toml``); the synthetic generator is one
data source for them. ``python -m edgefusion.task check FILE`` validates a spec.

Example:
    >>> task = load_task("driving")
    >>> task.events_of("audio")
    ('siren', 'horn')
    >>> rule = task.decide_rule({"vehicle_close"}, "turn_left")
    >>> rule.index, rule.name, rule.action
    (6, 'vehicle_close', 'slow_down')
"""

from __future__ import annotations

from edgefusion.task.load import BUILTIN_DIR, FORMAT_VERSION, MODALITIES, builtin_tasks, load_task, loads_task
from edgefusion.task.policy import Fallback, Policy
from edgefusion.task.spec import DEFAULT_RULE, Event, Rule, Task, TaskWarning, Timing

__all__ = [
    "BUILTIN_DIR",
    "DEFAULT_RULE",
    "FORMAT_VERSION",
    "MODALITIES",
    "Event",
    "Fallback",
    "Policy",
    "Rule",
    "Task",
    "TaskWarning",
    "Timing",
    "builtin_tasks",
    "load_task",
    "loads_task",
]
