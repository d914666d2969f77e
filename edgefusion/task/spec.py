"""The task spec as typed, frozen objects: events, actions, intents and the rule table.

Built by :func:`edgefusion.task.load_task`, which validates every name; the objects here
trust their input and only decide.

Example:
    >>> rule = Rule(index=1, name="visitor", action="notify_visitor", present=("doorbell",), command=False)
    >>> rule.matches({"doorbell"}, None), rule.matches({"doorbell"}, "let_in")
    (True, False)
    >>> rule.describe()
    'doorbell and no command'
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from edgefusion.errors import InputError, unknown_name

if TYPE_CHECKING:  # pragma: no cover - typing only (policy.py names Rule in its annotations)
    from edgefusion.task.policy import Policy

__all__ = ["DEFAULT_RULE", "Event", "Rule", "Task", "TaskWarning", "Timing"]

#: the name of the rule that stands for ``default_action`` (it always matches, and comes last)
DEFAULT_RULE = "default"


class TaskWarning(UserWarning):
    """A task spec that loads but is probably wrong, e.g. a rule that can never fire."""


@dataclass(frozen=True)
class Event:
    """A scene event label and the modality it is perceived in."""

    name: str
    modality: str


@dataclass(frozen=True)
class Timing:
    """How labels and commands map onto fusion steps (the reference values are the generator's)."""

    #: a command decides for this long after it is heard; with none valid, the intent is None
    command_horizon_s: float = 3.0
    #: an audio event counts in a step's window when this much of its audible part lies inside
    min_event_overlap_s: float = 0.3


@dataclass(frozen=True)
class Rule:
    """One row of the rule table; it holds when every condition it names holds.

    Attributes:
        index: position in the table, from 1; the default rule comes last.
        name: unique within the task (``"default"`` for the final default).
        action: the action decided when the rule is the first to hold.
        present: events that must all be present.
        present_any: at least one of these must be present (no condition when empty).
        absent: events that must all be absent.
        intent: the valid command's intent must be one of these (no condition when empty).
        command: True: some command is valid; False: none is; None: no condition.
    """

    index: int
    name: str
    action: str
    present: tuple[str, ...] = ()
    present_any: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    intent: tuple[str, ...] = ()
    command: bool | None = None

    def matches(self, events: AbstractSet[str], intent: str | None) -> bool:
        """Whether the rule holds for these present events and this intent (None: no command)."""
        if self.command is not None and (intent is not None) != self.command:
            return False
        if self.intent and intent not in self.intent:
            return False
        if self.present_any and not any(e in events for e in self.present_any):
            return False
        return all(e in events for e in self.present) and not any(e in events for e in self.absent)

    @property
    def events(self) -> frozenset[str]:
        """Every event the rule's conditions name."""
        return frozenset(self.present + self.present_any + self.absent)

    def describe(self) -> str:
        """The conditions in words, e.g. ``'glass_break and not person'``."""
        parts = list(self.present)
        if len(self.present_any) == 1:
            parts.append(self.present_any[0])
        elif self.present_any:
            parts.append("(" + " or ".join(self.present_any) + ")")
        parts += [f"not {e}" for e in self.absent]
        if self.intent:
            parts.append("intent " + " or ".join(self.intent))
        if self.command is not None:
            parts.append("a command" if self.command else "no command")
        return " and ".join(parts) or "always"


@dataclass(frozen=True)
class Task:
    """What a model perceives and decides (DESIGN.md contract 11).

    ``rules`` is the table in order, the default rule last: the first rule that holds
    decides, so every decision names a rule.

    Example:
        >>> from edgefusion.task import load_task
        >>> task = load_task("smart_home")
        >>> task.decide({"dark"}, "lights_on"), task.decide_rule({"glass_break"}, None).name
        ('lights_on', 'intrusion')
    """

    name: str
    modalities: tuple[str, ...]
    events: tuple[Event, ...]
    actions: tuple[str, ...]
    intents: tuple[str, ...]
    rules: tuple[Rule, ...]
    timing: Timing = field(default_factory=Timing)
    description: str = ""
    #: where the spec was read from (a path, or ``<string>``)
    source: str = ""
    #: the decision policy of its ``[policy]`` table; None: the model's actions are taken as they are
    policy: Policy | None = None

    @property
    def event_names(self) -> tuple[str, ...]:
        """Event labels in spec order (the order of a model's event outputs)."""
        return tuple(e.name for e in self.events)

    def events_of(self, modality: str) -> tuple[str, ...]:
        """Event labels perceived in ``modality``, in spec order."""
        return tuple(e.name for e in self.events if e.modality == modality)

    @property
    def default_action(self) -> str:
        return self.rules[-1].action

    def decide_rule(self, events: AbstractSet[str], intent: str | None) -> Rule:
        """The first rule that holds for these events and intent (the default rule when none does).

        Raises:
            InputError: an event or intent the task does not name (a typo would otherwise
                decide silently as if it were absent).
        """
        for e in events:
            if e not in self._event_set:
                raise InputError(f"task '{self.name}': {unknown_name('event', e, self.event_names)}")
        if intent is not None and intent not in self.intents:
            raise InputError(f"task '{self.name}': {unknown_name('intent', intent, self.intents)}")
        for rule in self.rules:
            if rule.matches(events, intent):
                return rule
        raise AssertionError("the default rule always matches")  # pragma: no cover - the loader adds it

    def decide(self, events: AbstractSet[str], intent: str | None) -> str:
        """The action for these present events and the valid command's intent (None: no command)."""
        return self.decide_rule(events, intent).action

    @cached_property
    def _event_set(self) -> frozenset[str]:
        return frozenset(self.event_names)
