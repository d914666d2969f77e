"""Post-processing over time: events that don't flap, actions emitted once.

- Events: per-label hysteresis (on at ``on``, off at ``off``) with a minimum number of
  consecutive steps before a change is accepted.
- Action: the per-step action must hold for ``action_min_steps`` consecutive steps before
  the stable action changes; a change - or a new command - emits the action once. A step
  whose action is None (the policy abstained) does not vote: the stable action holds, the
  streak neither grows nor breaks, nothing is emitted. :meth:`PostProcessor.force` lets the
  policy replace the stable action at once.

Example:
    >>> pp = PostProcessor(PostConfig(event_min_steps=1, action_min_steps=1), ("a", "b"))
    >>> pp.update({"a": 0.9, "b": 0.1}, "go", None).emitted
    True
    >>> pp.update({"a": 0.9, "b": 0.1}, "go", None).emitted
    False
    >>> s = pp.update({"a": 0.9, "b": 0.1}, None, None)
    >>> s.action, s.emitted
    ('go', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PostConfig", "PostProcessor", "Smoothed"]


@dataclass(frozen=True)
class PostConfig:
    """Thresholds are probabilities; ``per_label`` overrides (on, off) for one label."""

    on: float = 0.5
    off: float = 0.4
    event_min_steps: int = 2
    action_min_steps: int = 2
    per_label: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Smoothed:
    events: tuple[str, ...]
    action: str
    emitted: bool


class PostProcessor:
    """Stateful smoother; one per stream."""

    def __init__(self, config: PostConfig, labels: tuple[str, ...]) -> None:
        self.config = config
        self.labels = labels
        self._state = dict.fromkeys(labels, False)
        self._streak = dict.fromkeys(labels, 0)
        self._action: str | None = None
        self._candidate: str | None = None
        self._candidate_steps = 0
        self._last_command: int | None = None

    def update(self, scores: dict[str, float], action: str | None, command_t_ns: int | None,
               idle: str = "") -> Smoothed:
        """One step: event scores, the step's action (None: abstained) and its command's time.

        ``idle`` is the action reported when the step abstains before any action was stable.
        """
        c = self.config
        for name in self.labels:
            on, off = c.per_label.get(name, (c.on, c.off))
            p = scores[name]
            want = (p >= on) if not self._state[name] else (p > off)
            self._streak[name] = self._streak[name] + 1 if want != self._state[name] else 0
            if self._streak[name] >= c.event_min_steps:
                self._state[name] = want
                self._streak[name] = 0
        events = tuple(n for n in self.labels if self._state[n])
        if action is None:
            return Smoothed(events, self._action if self._action is not None else idle, False)
        if action == self._candidate:
            self._candidate_steps += 1
        else:
            self._candidate, self._candidate_steps = action, 1
        emitted = False
        if self._candidate_steps >= c.action_min_steps and self._candidate != self._action:
            self._action = self._candidate
            emitted = True
        elif command_t_ns is not None and command_t_ns != self._last_command and self._action == action \
                and self._candidate_steps >= c.action_min_steps:
            emitted = True  # the same action again, for a new command
        if emitted:
            self._last_command = command_t_ns
        return Smoothed(events, self._action if self._action is not None else action, emitted)

    def force(self, action: str, command_t_ns: int | None) -> bool:
        """Make ``action`` the stable action now (the policy overrides the streak); True when it changed."""
        changed = action != self._action
        self._action = self._candidate = action
        self._candidate_steps = max(self._candidate_steps, self.config.action_min_steps)
        if changed:
            self._last_command = command_t_ns
        return changed
