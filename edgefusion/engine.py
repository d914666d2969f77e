"""One fusion step: preprocess -> backend -> decode, and the one place a Result is built.

A :class:`FusionStep` is stateless apart from its sequence counter: it knows the package's
feeds and outputs, not time. Sync, temporal smoothing and command bookkeeping sit on top
of it in :class:`edgefusion.core.FusionCore`, which live runs, replays, the demo and the
Python API all drive (DESIGN.md contract 8). Calling a step directly gives the per-step
decision (argmax action, thresholded events) without policy or smoothing.

Every timing is in integer nanoseconds under one schema, :data:`STAGES`: a direct call
fills ``preprocess``, ``inference``, ``postprocess`` and ``end_to_end``; a pipeline adds
``queue_wait`` and ``sync``.

Example:
    >>> from edgefusion.package import load_package
    >>> from edgefusion.backends import open_backend
    >>> from edgefusion.samples import FusionWindow
    >>> pkg = load_package("smart_home")
    >>> with open_backend("null", pkg) as be:
    ...     r = FusionStep(pkg, be)(FusionWindow(t_ns=0, image=None, audio=None, command=None))
    >>> r.seq, r.missing
    (0, ('image', 'audio', 'text'))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefusion.backends import Backend
from edgefusion.decode import decode
from edgefusion.package import ModelPackage
from edgefusion.preprocess import FeedInfo, RecurrentState, StateParams
from edgefusion.samples import FusionWindow, Result
from edgefusion.task.policy import NO_POLICY_RULE

__all__ = ["STAGES", "Decision", "FusionStep", "build_result"]

#: every stage a Result's ``timings_ns`` can hold, in data-path order
STAGES = ("queue_wait", "sync", "preprocess", "inference", "postprocess", "end_to_end")


@dataclass(frozen=True)
class Decision:
    """The per-step reading of the model's outputs, before smoothing over time."""

    action: str
    action_score: float
    action_scores: dict[str, float]
    scores: dict[str, float]
    events: tuple[str, ...]
    #: output name -> JSON-ready value: detections, intents, passed-through tensors
    extras: dict[str, Any] = field(default_factory=dict)
    #: the command's intent by the package's intent output (None: the package has none) and its probability
    intent: str | None = None
    intent_score: float = 0.0


def event_labels(package: ModelPackage) -> tuple[str, ...]:
    """Every label an event of ``package`` can carry: its events output's, then its detectors'."""
    events = package.role_output("events")
    return tuple(dict.fromkeys([*(events.labels if events else ()),
                                *(label for o in package.outputs if o.kind == "detections" for label in o.labels)]))


def build_result(window: FusionWindow, seq: int, model: str, decision: Decision, info: FeedInfo,
                 timings_ns: dict[str, int], action: str | None = None, events: tuple[str, ...] | None = None,
                 emitted: bool = False, *, rule: str = NO_POLICY_RULE, abstained: bool = False,
                 degraded: bool = False, text_status: str | None = None,
                 stages: dict[str, dict[str, Any]] | None = None) -> Result:
    """The one constructor of a :class:`Result`; ``action``/``events`` default to the per-step decision.

    ``confidence`` is the model's probability for the final action; ``text_status`` defaults
    to "command" or "unknown" (a step alone does not know its sources).
    """
    action = decision.action if action is None else action
    if text_status is None:
        text_status = "command" if window.command is not None else "unknown"
    return Result(
        t_ns=window.t_ns, seq=seq, action=action,
        action_score=decision.action_score, scores=decision.scores,
        events=decision.events if events is None else events, missing=window.missing, timings_ns=timings_ns,
        raw_action=decision.action, emitted=emitted,
        command=window.command_text, model=model,
        action_scores=decision.action_scores, unknown_words=info.unknown_words, truncated=info.truncated,
        confidence=decision.action_scores.get(action, 0.0), abstained=abstained, degraded=degraded, rule=rule,
        text_status=text_status, outputs=decision.extras, stages=stages or {},
        intent=decision.intent, intent_confidence=decision.intent_score,
    )


class FusionStep:
    """Callable turning a :class:`FusionWindow` into a per-step :class:`Result`.

    Any model runs: the action comes from its action output (none: ``"none"``), the events
    from its events and detections outputs; a recurrent state is carried between calls
    (:class:`~edgefusion.preprocess.RecurrentState`), so a step is stateful exactly when its
    model is.
    """

    def __init__(self, package: ModelPackage, backend: Backend) -> None:
        self.package = package
        self.backend = backend
        self.builder = package.feed_builder()
        self.action_out = package.role_output("action")
        self.event_out = package.role_output("events")
        #: every label an event can carry: the events output's, then the detectors'
        self.event_labels: tuple[str, ...] = event_labels(package)
        self.state = RecurrentState([StateParams.from_decl(i.name, i.preprocess, i.dtype, i.shape)
                                     for i in package.inputs if i.preprocess.get("kind") == "state"])
        self.intent_out = package.output_role("intent")
        self.seq = 0

    def __call__(self, window: FusionWindow) -> Result:
        decision, info, timings = self.timed(window)
        timings["end_to_end"] = sum(timings.values())
        result = build_result(window, self.seq, self.package.name, decision, info, timings)
        self.seq += 1
        return result

    def timed(self, window: FusionWindow) -> tuple[Decision, FeedInfo, dict[str, int]]:
        """Preprocess, infer and decode one window: the decision, what preprocessing did, and each part's ns."""
        t0 = time.perf_counter_ns()
        feeds, info = self.preprocess(window)
        t1 = time.perf_counter_ns()
        outs = self.infer(feeds, window.t_ns)
        t2 = time.perf_counter_ns()
        decision = self.postprocess(outs, info)
        t3 = time.perf_counter_ns()
        return decision, info, {"preprocess": t1 - t0, "inference": t2 - t1, "postprocess": t3 - t2}

    def preprocess(self, window: FusionWindow) -> tuple[dict[str, np.ndarray], FeedInfo]:
        """The model feeds (batch of 1) for a window, and what preprocessing had to do to it."""
        feeds, infos = self.builder.build([window])
        return feeds, infos[0]

    def infer(self, feeds: dict[str, np.ndarray], t_ns: int) -> dict[str, np.ndarray]:
        """Run the model on one window's feeds; a recurrent state goes in and is kept for the next window."""
        if self.state.params:
            self.state.apply(feeds, t_ns)
        outs = self.backend.infer(feeds)
        if self.state.params:
            self.state.carry(outs)
        return outs

    def postprocess(self, outs: dict[str, np.ndarray], info: FeedInfo | None = None) -> Decision:
        """Per-step decision: argmax action, thresholded events and detections (:mod:`edgefusion.decode`)."""
        d = decode(self.package.outputs, outs, info)
        if d.action_scores:
            action, score = max(d.action_scores.items(), key=lambda kv: kv[1])
        else:
            action, score = "none", 0.0
        return Decision(action=action, action_score=score, action_scores=d.action_scores, scores=d.scores,
                        events=d.events, extras=d.extras, intent=d.intent,
                        intent_score=d.intent_score)
