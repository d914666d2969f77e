"""The decision policy at run time: the model proposes, the task's policy decides (DESIGN.md contract 13).

The policy (a task spec's ``[policy]``, see :mod:`edgefusion.task.policy`) acts twice per step:

1. **Before smoothing**, on the model's per-step proposal: a missing modality's fallback
   replaces a forbidden action, a security-sensitive action without a command becomes the
   safe action, and an action below its threshold *abstains*. A package with an intent
   output (``role: intent``) takes a security-sensitive action only when that output names
   an intent whose rules decide it (``let_in`` for ``unlock_door``) with at least the action's
   threshold (rule ``secure_intent`` otherwise); without one, the command's unknown words
   decide (``secure_unknown_words``). With an intent output, a step also abstains (rule
   ``intent_mismatch``) when it proposes an action that only commands decide (every rule
   for it names an intent: ``lock_door``, ``turn_left``) while the intent output reads
   another intent: the two heads disagree about the command, so the step does not vote. The smoother sees the
   policy's outcome, so only confident, allowed steps vote for a change, and an abstained
   step does not vote at all: the stable action holds and nothing is emitted. Abstaining
   never emits, so event-level precision cannot suffer from it.
2. **After smoothing**, on the action the Result will carry: a held action that this
   step's conditions forbid (the camera just dropped while ``proceed`` was stable; a
   command expired while ``unlock_door`` was stable) is replaced at once, and the smoother
   is moved to the replacement, instead of waiting for the smoother's streak.

Which task a package belongs to travels in its manifest (``scenario``, else its name);
:func:`task_of` resolves it against the built-in task specs. A package without a task
runs without a policy.

Example:
    >>> from edgefusion.package import load_package
    >>> decider_for(load_package("driving")).policy.safe_action
    'slow_down'
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from edgefusion.engine import Decision
from edgefusion.errors import ConfigError
from edgefusion.package import ModelPackage
from edgefusion.postprocess import PostProcessor
from edgefusion.samples import FusionWindow
from edgefusion.task import Task, builtin_tasks, load_task
from edgefusion.task.policy import (
    ABSTAIN_RULE,
    MODEL_RULE,
    NO_POLICY_RULE,
    SECURE_RULE,
    SMOOTHING_RULE,
    UNCLEAR_RULE,
    Policy,
    missing_rule,
)

__all__ = ["COMMAND", "INTENT_RULE", "MISMATCH_RULE", "NO_COMMAND", "TASK_FILE", "TEXT_MISSING", "UNKNOWN", "Decider",
           "Outcome", "Verdict", "decide_step", "decider_for", "describe_policy", "task_of", "text_status"]

# What a Result's ``text_status`` says about the command input. The model sees the last two
# alike (the text input masked), so this is the runtime's knowledge, not the model's.
COMMAND = "command"            #: a command is valid in the window
NO_COMMAND = "no_command"      #: a text source is there but no command is valid now
TEXT_MISSING = "text_missing"  #: there is no text source at all
UNKNOWN = "unknown"            #: the core was not told about a text source and has had no command yet
#: a security-sensitive action the intent output does not back (another intent, or below the action's threshold)
INTENT_RULE = "secure_intent"
#: an action only commands decide, while the intent output reads another intent: the step abstains
MISMATCH_RULE = "intent_mismatch"


def text_status(window: FusionWindow, text_source: bool | None, commands_seen: int) -> str:
    """What the window's command input is: :data:`COMMAND`, :data:`NO_COMMAND`, :data:`TEXT_MISSING` or :data:`UNKNOWN`.

    Example:
        >>> w = FusionWindow(t_ns=0, image=None, audio=None, command=None)
        >>> text_status(w, True, 0), text_status(w, False, 0), text_status(w, None, 0), text_status(w, None, 3)
        ('no_command', 'text_missing', 'unknown', 'no_command')
    """
    if window.command is not None:
        return COMMAND
    if text_source is None:  # a command has arrived, so some source sends them
        return NO_COMMAND if commands_seen else UNKNOWN
    return NO_COMMAND if text_source else TEXT_MISSING


@dataclass(frozen=True)
class Verdict:
    """The policy on one step's proposal: its vote (None: abstained), the rule, and degradation."""

    vote: str | None
    rule: str
    degraded: bool


@dataclass(frozen=True)
class Outcome:
    """One step after policy and smoothing: what the Result carries."""

    action: str
    rule: str
    confidence: float
    abstained: bool
    degraded: bool
    emitted: bool
    events: tuple[str, ...]


class Decider:
    """Applies a :class:`~edgefusion.task.policy.Policy` to per-step decisions.

    ``task`` explains accepted actions by its rule table; without one they are ``"model"``.

    Example:
        >>> d = Decider(load_task("smart_home").policy, load_task("smart_home"))
        >>> d.permitted("unlock_door", (), unknown_words=None)
        ('none', 'secure_no_command')
        >>> d.permitted("unlock_door", (), unknown_words=0) is None
        True
        >>> d.permitted("unlock_door", (), 0, intent="unrelated", intent_score=0.99)
        ('none', 'secure_intent')
        >>> d.permitted("unlock_door", (), 0, intent="let_in", intent_score=0.95) is None
        True
        >>> d.explain("emergency", {"smoke_alarm", "person"}, has_command=False)
        'smoke'
    """

    def __init__(self, policy: Policy, task: Task | None = None) -> None:
        self.policy = policy
        self.task = task
        self._explained: dict[tuple[str, frozenset[str], bool], str] = {}

    def propose(self, decision: Decision, missing: tuple[str, ...], unknown_words: int | None) -> Verdict:
        """The verdict on the model's per-step action.

        Args:
            decision: the model's per-step reading.
            missing: the modalities the policy counts as missing.
            unknown_words: the command's words the model does not know; None: no command.
        """
        p = self.policy
        degraded = any(f is not None and f.degraded for f in map(p.fallback, missing))
        action = decision.action
        replaced = self.permitted(action, missing, unknown_words, decision.intent, decision.intent_score)
        if replaced is not None:
            return Verdict(replaced[0], replaced[1], degraded)
        if decision.intent is not None and self.command_only(action) and \
                decision.intent not in self.enabling_intents(action):
            return Verdict(None, MISMATCH_RULE, degraded)
        if decision.action_score < p.threshold_of(action):
            return Verdict(None, ABSTAIN_RULE, degraded)
        return Verdict(action, self.explain(action, set(decision.events), unknown_words is not None), degraded)

    def permitted(self, action: str, missing: tuple[str, ...], unknown_words: int | None, intent: str | None = None,
                  intent_score: float = 0.0) -> tuple[str, str] | None:
        """None when ``action`` may be taken; else its replacement and the rule that replaced it.

        ``unknown_words`` is the count in the window's command, None without a command;
        ``intent``/``intent_score`` the intent output's reading (None: the package has none).
        """
        p = self.policy
        for m in missing:
            f = p.fallback(m)
            if f is not None and action in f.forbid:
                return f.action, missing_rule(m)
        if action in p.secure:
            if unknown_words is None:
                return p.safe_action, SECURE_RULE
            if intent is not None and self.task is not None:
                if intent not in self.enabling_intents(action) or intent_score < p.threshold_of(action):
                    return p.safe_action, INTENT_RULE
            elif p.secure_unknown_words is not None and unknown_words > p.secure_unknown_words:
                return p.safe_action, UNCLEAR_RULE
        return None

    def command_only(self, action: str) -> bool:
        """Whether only commands decide ``action``: every rule for it names an intent (and it is not the default).

        Example:
            >>> d = Decider(load_task("driving").policy, load_task("driving"))
            >>> d.command_only("turn_left"), d.command_only("pull_over"), d.command_only("proceed")
            (True, False, False)
        """
        if self.task is None:
            return False
        rules = [r for r in self.task.rules if r.action == action]
        return bool(rules) and all(r.intent for r in rules)

    def enabling_intents(self, action: str) -> frozenset[str]:
        """The intents whose rules decide ``action`` (those that may enable a security-sensitive one)."""
        if self.task is None:
            return frozenset()
        return frozenset(i for r in self.task.rules if r.action == action for i in r.intent)

    def explain(self, action: str, events: AbstractSet[str], has_command: bool) -> str:
        """The task rules that decide ``action`` for these events (any intent when a command is there).

        The model has no intent output, so with a command every intent is tried; several
        rules are joined with ``|`` in table order. ``"model"`` when no rule decides it.
        """
        if self.task is None:
            return MODEL_RULE
        known = frozenset(events) & frozenset(self.task.event_names)
        key = (action, known, has_command)
        if key not in self._explained:
            intents: tuple[str | None, ...] = self.task.intents if has_command else (None,)
            rules = {r.index: r.name for r in (self.task.decide_rule(known, i) for i in intents) if r.action == action}
            self._explained[key] = "|".join(rules[i] for i in sorted(rules)) or MODEL_RULE
        return self._explained[key]


def decide_step(decider: Decider | None, post: PostProcessor, decision: Decision, window: FusionWindow,
                status: str, unknown_words: int = 0) -> Outcome:
    """Policy, smoothing, policy again: the outcome of one step (see the module docstring).

    ``status`` is the window's :func:`text_status`; ``unknown_words`` counts the command's
    words the model does not know.
    """
    if decider is None:
        smooth = post.update(decision.scores, decision.action, window.command_t_ns)
        return Outcome(smooth.action, NO_POLICY_RULE, decision.action_scores.get(smooth.action, 0.0), False, False,
                       smooth.emitted, smooth.events)
    # Text counts as missing only without a text source: a silent one is "no command", a valid input.
    missing = tuple(m for m in window.missing if m != "text") + (("text",) if status == TEXT_MISSING else ())
    unknown = unknown_words if window.command is not None else None
    verdict = decider.propose(decision, missing, unknown)
    smooth = post.update(decision.scores, verdict.vote, window.command_t_ns, idle=decider.policy.safe_action)
    action, rule, emitted = smooth.action, verdict.rule, smooth.emitted
    if verdict.vote is not None and action != verdict.vote:
        rule = SMOOTHING_RULE
    replaced = decider.permitted(action, missing, unknown, decision.intent, decision.intent_score)
    if replaced is not None:
        action, rule = replaced
        emitted = post.force(action, window.command_t_ns) or emitted
    return Outcome(action, rule, decision.action_scores.get(action, 0.0), verdict.vote is None, verdict.degraded,
                   emitted, smooth.events)


#: the task spec a package carries (``sources.task`` in its manifest): export writes the spec it was trained on
TASK_FILE = "task.toml"


def task_of(package: ModelPackage) -> Task | None:
    """The task a package runs under, or None: the built-in task it names (its manifest's ``scenario``,
    else its name), else the spec it carries (``sources.task``, :data:`TASK_FILE`: a package trained on
    a user's own ``task.toml`` takes its rules and policy along to the device)."""
    for name in (package.manifest.scenario, package.manifest.name):
        if name and name in builtin_tasks():
            return load_task(name)
    record = package.manifest.sources.get("task")
    return load_task(package.file(record)) if record is not None else None


def decider_for(package: ModelPackage, task: Task | str | None = None, policy: Policy | bool = True) -> Decider | None:
    """The policy a package runs under, or None.

    Args:
        package: the model package (its labels are checked against the task's).
        task: a Task, a built-in task name or a task.toml path; None: :func:`task_of` the package.
        policy: True: the task's ``[policy]`` (none if the task has none); False: no policy;
            a :class:`Policy`: this one.
    """
    if policy is False:
        return None
    spec = load_task(task) if isinstance(task, str) else task if task is not None else task_of(package)
    chosen = policy if isinstance(policy, Policy) else spec.policy if spec is not None else None
    if chosen is None:
        return None
    _check_labels(package, spec, chosen)
    return Decider(chosen, spec)


def _check_labels(package: ModelPackage, task: Task | None, policy: Policy) -> None:
    actions = package.output("class_logits").labels
    events = package.output("multilabel_logits").labels
    # The policy must be able to emit its replacements; a task action the package lacks (a label the task
    # added later, such as lights_off) is one the model never proposes, but one the task lacks is unexplained.
    named = {policy.safe_action, *(f.action for f in policy.missing)}
    if task is not None:
        for a in actions:
            if a not in task.actions:
                raise ConfigError(f"package '{package.name}' does not fit task '{task.name}': its action {a!r} is "
                                  f"not one of the task's ({', '.join(task.actions)}); give the package's own task")
        for e in task.event_names:
            if e not in events:
                raise ConfigError(f"package '{package.name}' does not fit task '{task.name}': its events "
                                  f"({', '.join(events)}) lack {e!r}; give the package's own task")
    for a in sorted(named):
        if a not in actions:
            what = f"task '{task.name}'" if task is not None else "the policy"
            raise ConfigError(f"package '{package.name}' does not fit {what}: its actions ({', '.join(actions)}) "
                              f"lack {a!r}; give the package's own task")


def describe_policy(package: ModelPackage) -> list[str]:
    """What ``info`` prints about the task and policy a package runs under."""
    task = task_of(package)
    if task is None:
        return ["task      none: the manifest names no built-in task (scenario), so it runs without a policy: "
                "actions are the model's, smoothed"]
    lines = [f"task      {task.name} (built-in; from the manifest's "
             f"{'scenario' if package.manifest.scenario == task.name else 'name'})"]
    if task.policy is None:
        return [*lines, "policy    none: the task has no [policy]; actions are the model's, smoothed"]
    return lines + [f"{'policy' if i == 0 else '':<9} {line}" for i, line in enumerate(task.policy.describe())]
