"""The ``[policy]`` of a task spec: what the runtime may do with the model's proposal (DESIGN.md contract 13).

The model proposes an action each step; the policy decides, declaratively:

- ``threshold`` / ``[policy.thresholds]``: the probability the model must give an action
  before it is taken; below it the step *abstains* (it does not vote for a change).
- ``secure``: security-sensitive actions, taken only with a command in the window. The
  loader checks that the rule table decides each of them only from a command intent, so a
  model that proposes one from vision or audio alone is outside the task.
  ``secure_unknown_words`` (optional) also refuses them when the command holds more words
  than this that the model's vocabulary does not know: the model has no intent output, and
  a sentence it does not understand is no explicit command.
- ``[policy.missing.<modality>]``: when that modality is missing, the actions in
  ``forbid`` are replaced by ``action`` (default ``safe_action``) and the result is flagged
  ``degraded``. For ``text``, "missing" means no text source at all, not a silent one.
- ``safe_action``: what a refused action becomes.

Example:
    >>> from edgefusion.task import load_task
    >>> p = load_task("driving").policy
    >>> p.safe_action, p.fallback("image").forbid, p.threshold_of("turn_left")
    ('slow_down', ('proceed', 'turn_left'), 0.6)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only (spec.py and load.py import this module)
    from edgefusion.task.load import _Reader
    from edgefusion.task.spec import Rule

__all__ = ["ABSTAIN_RULE", "MODEL_RULE", "NO_POLICY_RULE", "SECURE_RULE", "SMOOTHING_RULE", "UNCLEAR_RULE",
           "Fallback", "Policy", "missing_rule"]

POLICY_KEYS = ("safe_action", "threshold", "thresholds", "secure", "secure_unknown_words", "missing")
FALLBACK_KEYS = ("forbid", "action", "degraded")

# The short names a Result's ``rule`` takes besides the task's own rule names.
#: the model's best action was below its threshold: the step did not vote, the action held
ABSTAIN_RULE = "abstain"
#: a security-sensitive action without a command in the window was replaced by the safe action
SECURE_RULE = "secure_no_command"
#: ... with a command holding more unknown words than ``secure_unknown_words``
UNCLEAR_RULE = "secure_unclear_command"
#: the smoother still holds its stable action while this step votes for another one
SMOOTHING_RULE = "smoothing"
#: the model's action was taken but no rule of the task explains it from the step's events
MODEL_RULE = "model"
#: the package runs without a policy: the action is the model's, smoothed
NO_POLICY_RULE = "no_policy"


def missing_rule(modality: str) -> str:
    """The rule name of a modality's fallback, e.g. ``missing_image``."""
    return f"missing_{modality}"


@dataclass(frozen=True)
class Fallback:
    """What a missing modality changes: ``forbid`` actions become ``action``; ``degraded`` flags results."""

    modality: str
    action: str
    forbid: tuple[str, ...] = ()
    degraded: bool = True


@dataclass(frozen=True)
class Policy:
    """A task's decision policy (see the module docstring for the TOML)."""

    safe_action: str
    threshold: float = 0.5
    thresholds: Mapping[str, float] = field(default_factory=dict)
    secure: tuple[str, ...] = ()
    missing: tuple[Fallback, ...] = ()
    secure_unknown_words: int | None = None

    def threshold_of(self, action: str) -> float:
        """The probability the model must give ``action`` for the policy to take it."""
        return self.thresholds.get(action, self.threshold)

    def fallback(self, modality: str) -> Fallback | None:
        """The fallback for a missing ``modality``, or None."""
        return next((f for f in self.missing if f.modality == modality), None)

    def describe(self) -> list[str]:
        """The policy in words, one line per part."""
        per = ", ".join(f"{a} {t:g}" for a, t in self.thresholds.items())
        lines = [f"threshold {self.threshold:g}" + (f" ({per})" if per else "") + "; below it a step abstains",
                 f"safe action {self.safe_action}"]
        if self.secure:
            limit = self.secure_unknown_words
            lines.append(f"only with a command: {', '.join(self.secure)}"
                         + (f" (at most {limit} unknown word{'s' * (limit != 1)})" if limit is not None else ""))
        for f in self.missing:
            instead = f"{', '.join(f.forbid)} -> {f.action}" if f.forbid else "no action forbidden"
            lines.append(f"without {f.modality}: {instead}" + ("; degraded" if f.degraded else ""))
        return lines


def read_policy(r: _Reader, data: Any, actions: tuple[str, ...], modalities: tuple[str, ...],
                rules: Sequence[Rule]) -> Policy:
    """Check a ``[policy]`` table against the task's labels and rules; the first problem raises."""
    if not isinstance(data, dict):
        raise r.error("policy", f"expected a table, got {type(data).__name__}")
    r.keys("policy", data, POLICY_KEYS)
    safe = r.name("policy.safe_action", r.required(data, "safe_action", "the action a refused one becomes",
                                                    "policy"))
    r.known("policy.safe_action", safe, "action", actions)
    threshold = _probability(r, "policy.threshold", data.get("threshold", 0.5))
    raw = data.get("thresholds", {})
    if not isinstance(raw, dict):
        raise r.error("policy.thresholds", f"expected a table of action = probability, got {type(raw).__name__}")
    thresholds = {}
    for a, v in raw.items():
        r.known(f"policy.thresholds.{a}", a, "action", actions)
        thresholds[a] = _probability(r, f"policy.thresholds.{a}", v)
    secure = r.names("policy.secure", data.get("secure", []))
    for i, a in enumerate(secure):
        key = f"policy.secure[{i + 1}]"
        r.known(key, a, "action", actions)
        if a == safe:
            raise r.error(key, f"{a!r} is the safe action; a security-sensitive action cannot be the safe one")
        if "text" not in modalities:
            raise r.error(key, "the task has no 'text' modality, so no command could ever allow it")
        for rule in rules:
            if rule.action == a and not rule.intent:
                where = "default_action" if rule is rules[-1] else f"rules[{rule.index}] ({rule.name!r})"
                raise r.error(key, f"{a!r} is also decided by {where} without a command intent; a "
                                   "security-sensitive action must come only from rules that name an intent")
    limit = data.get("secure_unknown_words")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise r.error("policy.secure_unknown_words", f"expected a number of words (0 or more), got {limit!r}")
    missing = _missing(r, data.get("missing", {}), safe, secure, actions, modalities)
    return Policy(safe, threshold, thresholds, secure, missing, limit)


def _missing(r: _Reader, data: Any, safe: str, secure: tuple[str, ...], actions: tuple[str, ...],
             modalities: tuple[str, ...]) -> tuple[Fallback, ...]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise r.error("policy.missing", "expected [policy.missing.<modality>] tables")
    out = []
    for m, table in data.items():
        key = f"policy.missing.{m}"
        r.known(key, m, "modality", modalities)
        r.keys(key, table, FALLBACK_KEYS)
        forbid = r.names(f"{key}.forbid", table.get("forbid", []))
        for i, a in enumerate(forbid):
            r.known(f"{key}.forbid[{i + 1}]", a, "action", actions)
        action = r.name(f"{key}.action", table.get("action", safe))
        r.known(f"{key}.action", action, "action", actions)
        if action in forbid:
            where = "the safe action " if "action" not in table else ""
            raise r.error(f"{key}.action", f"{where}{action!r} is itself forbidden without {m}; choose another")
        if action in secure:
            raise r.error(f"{key}.action", f"{action!r} is security-sensitive; a fallback must be a safe action")
        degraded = table.get("degraded", True)
        if not isinstance(degraded, bool):
            raise r.error(f"{key}.degraded", f"expected true or false, got {type(degraded).__name__} {degraded!r}")
        out.append(Fallback(m, action, forbid, degraded))
    # One pass of replacement must end on an allowed action, so no fallback may forbid another's action.
    for f in out:
        for g in out:
            if f.action in g.forbid:
                raise r.error(f"policy.missing.{f.modality}.action", f"{f.action!r} is forbidden without "
                                                                     f"{g.modality}; fallbacks must not forbid "
                                                                     "each other's actions")
    return tuple(out)


def _probability(r: _Reader, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise r.error(key, f"expected a probability from 0 to 1, got {value!r}")
    return float(value)
