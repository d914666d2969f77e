"""Which rules of a table can never fire, because earlier rules decide every input they match.

A table is checked exhaustively over the events its rules name (the others cannot change a
decision) and every intent, including no command, while that is at most
``EXHAUSTIVE_INPUTS`` combinations; a larger table is checked rule against rule, which finds
a rule hidden by a single earlier one but not one hidden only by several together.

Example:
    >>> from edgefusion.task.spec import Rule
    >>> rules = (Rule(1, "any_siren", "pull_over", present=("siren",)),
    ...          Rule(2, "siren_left", "turn_left", present=("siren",), intent=("turn_left",)),
    ...          Rule(3, "default", "proceed"))
    >>> [(r.name, [d.name for d in by]) for r, by in shadowed_rules(rules, ("turn_left",))]
    [('siren_left', ['any_siren'])]
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

from edgefusion.task.spec import Rule

__all__ = ["EXHAUSTIVE_INPUTS", "shadowed_rules"]

#: the most (event set, intent) combinations checked one by one (a fraction of a second)
EXHAUSTIVE_INPUTS = 1 << 13


def shadowed_rules(rules: Sequence[Rule], intents: Sequence[str]) -> list[tuple[Rule, list[Rule]]]:
    """Each rule that can never fire, with the earlier rules that decide the inputs it matches."""
    names = sorted(set().union(*(r.events for r in rules)))
    choices: list[str | None] = [None, *intents]
    if (1 << len(names)) * len(choices) > EXHAUSTIVE_INPUTS:
        return _pairwise(rules, choices)
    deciders: dict[int, set[int]] = {r.index: set() for r in rules}
    fired: set[int] = set()
    for bits in product((False, True), repeat=len(names)):
        events = {n for n, on in zip(names, bits) if on}
        for intent in choices:
            first = next(r for r in rules if r.matches(events, intent))
            fired.add(first.index)
            for r in rules:
                if r.index != first.index and r.matches(events, intent):
                    deciders[r.index].add(first.index)
    by_index = {r.index: r for r in rules}
    return [(r, [by_index[i] for i in sorted(deciders[r.index])]) for r in rules if r.index not in fired]


def _pairwise(rules: Sequence[Rule], choices: Sequence[str | None]) -> list[tuple[Rule, list[Rule]]]:
    out = []
    for k, rule in enumerate(rules):
        cover = next((a for a in rules[:k] if _covers(a, rule, choices)), None)
        if cover is not None:
            out.append((rule, [cover]))
    return out


def _covers(a: Rule, b: Rule, choices: Sequence[str | None]) -> bool:
    """Whether every input that satisfies ``b`` satisfies ``a`` (sufficient, not necessary)."""
    if not set(a.present) <= set(b.present) or not set(a.absent) <= set(b.absent):
        return False
    if a.present_any and not (set(a.present_any) & set(b.present)
                              or (b.present_any and set(b.present_any) <= set(a.present_any))):
        return False
    return _allowed(a, choices) >= _allowed(b, choices)


def _allowed(rule: Rule, choices: Sequence[str | None]) -> set[str | None]:
    """The intents (None: no command) that pass the rule's command conditions."""
    return {c for c in choices
            if (rule.command is None or (c is not None) == rule.command) and (not rule.intent or c in rule.intent)}
