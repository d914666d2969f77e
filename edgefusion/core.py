"""The fusion core: sync -> preprocess -> infer -> decode -> smoothing, with no threads.

One object owns everything that makes a stream of samples into results: the
:class:`~edgefusion.sync.Synchronizer`, the :class:`~edgefusion.engine.FusionStep`, the
:class:`~edgefusion.postprocess.PostProcessor`, the sequence number and the outcome
counts. The threaded :class:`~edgefusion.pipeline.Pipeline`, replays, the demo, INT8
calibration from logs and the Python API all drive it (DESIGN.md contract 8), so a live
run and a replay differ only in clock and sources.

The work is split in two halves so a pipeline can overlap them on two threads:
:meth:`FusionCore.prepare` (sync + preprocess, for a frame) and :meth:`FusionCore.finish`
(inference + decoding + policy + smoothing). Single-threaded callers use :meth:`FusionCore.push`.

The model proposes, the task's policy decides (DESIGN.md contract 13): by default the core
runs the ``[policy]`` of the task its package names (:func:`~edgefusion.policy.task_of`);
``task=`` and ``policy=`` choose another, or none. See :mod:`edgefusion.policy`.

Example:
    >>> import numpy as np
    >>> from edgefusion.backends import open_backend
    >>> from edgefusion.package import load_package
    >>> from edgefusion.samples import Command, Frame
    >>> pkg = load_package("smart_home")
    >>> with open_backend("null", pkg) as be:
    ...     core = FusionCore(pkg, be)
    ...     core.push(Command(t_ns=0, text="lights on"))
    ...     r = core.push(Frame(t_ns=10, image=np.zeros((8, 8, 3), np.uint8)))
    >>> r.seq, r.command, r.missing
    (0, 'lights on', ('audio',))
    >>> r.abstained, r.degraded, r.action, r.rule    # the null model's zeros are no confident proposal
    (True, True, 'none', 'abstain')
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefusion.backends import Backend
from edgefusion.engine import Decision, FusionStep, build_result, event_labels
from edgefusion.errors import ConfigError
from edgefusion.package import ModelPackage
from edgefusion.policy import Decider, decide_step, decider_for, text_status
from edgefusion.postprocess import PostConfig, PostProcessor
from edgefusion.preprocess import FeedInfo
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow, Result
from edgefusion.stages import Stage
from edgefusion.sync import SyncConfig, Synchronizer
from edgefusion.task import Task
from edgefusion.task.policy import Policy

__all__ = ["FusionCore", "Prepared", "iter_windows", "windows_of"]


@dataclass
class Prepared:
    """A window with its feeds, ready for inference; ``step`` is the model it was prepared for.

    ``decider`` is the policy that goes with ``step`` (a swap replaces both together).
    """

    window: FusionWindow
    feeds: dict[str, np.ndarray]
    info: FeedInfo
    timings_ns: dict[str, int]
    step: FusionStep
    decider: Decider | None = None
    #: what each stage before the main model found in this window, by stage name
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the stages that ran on it (their confirmations and events apply to it, even after a swap of stages)
    ran: tuple[Stage, ...] = ()


class FusionCore:
    """Turns time-ordered samples into smoothed :class:`Result` objects; not thread-safe by itself.

    ``add`` (audio, commands) and ``prepare`` may run on one thread while ``finish`` runs on
    another: they share only the sync state (locked inside the Synchronizer) and the model
    with its policy, which :meth:`swap` replaces atomically (one tuple) between two steps.

    Args:
        task: the task whose policy decides (a Task, a built-in name or a task.toml path);
            None: the task the package names, if any.
        policy: True: the task's ``[policy]``; False: none (the model's smoothed argmax); a
            :class:`~edgefusion.task.policy.Policy`: this one.
        text_source: whether a text source feeds this core: Results then tell "no command"
            from "text missing"; None: unknown until the first command arrives.
        stages: models that run on each window before this one (:mod:`edgefusion.stages`); their
            backends are the caller's.
    """

    def __init__(self, package: ModelPackage, backend: Backend, sync: SyncConfig | None = None,
                 post: PostConfig | None = None, *, task: Task | str | None = None, policy: Policy | bool = True,
                 text_source: bool | None = None, stages: Sequence[Stage] = ()) -> None:
        self.sync = Synchronizer(sync or SyncConfig())
        self.stages = list(stages)
        self._stages_lock = threading.Lock()
        self.post_config = post or PostConfig()
        step = FusionStep(package, backend)
        check_confirms(self.stages, package)
        self.post = PostProcessor(self.post_config, step.event_labels)
        self._choice = (task, policy)
        self._active: tuple[FusionStep, Decider | None] = (step, decider_for(package, task, policy))
        self.text_source = text_source
        self.seq = 0
        self.emitted = 0

    @property
    def step(self) -> FusionStep:
        """The model in use now."""
        return self._active[0]

    @property
    def decider(self) -> Decider | None:
        """The policy in use now, applied (None: the model's smoothed actions are taken)."""
        return self._active[1]

    @property
    def policy(self) -> Policy | None:
        """The policy deciding now, or None (the model's smoothed actions are taken)."""
        decider = self._active[1]
        return decider.policy if decider is not None else None

    @property
    def package(self) -> ModelPackage:
        return self.step.package

    @property
    def backend(self) -> Backend:
        return self.step.backend

    @property
    def outcomes(self) -> dict[str, int]:
        """Sync outcomes so far (ok, masked, skipped, command expiries ...), sorted by name."""
        return dict(sorted(self.sync.outcomes.items()))

    def add(self, sample: AudioChunk | Command) -> None:
        """Feed a side-stream sample (audio or a command) into sync."""
        if isinstance(sample, AudioChunk):
            self.sync.add_audio(sample)
        elif isinstance(sample, Command):
            self.sync.add_command(sample)
        else:
            raise TypeError(f"expected an AudioChunk or a Command, got {type(sample).__name__}")

    def prepare(self, frame: Frame) -> Prepared | None:
        """Sync + preprocess for a frame; None when sync skipped it (counted in :attr:`outcomes`)."""
        t0 = time.perf_counter_ns()
        window = self.sync_frame(frame)
        if window is None:
            return None
        return self.preprocess(window, sync_ns=time.perf_counter_ns() - t0)

    def finish(self, prepared: Prepared) -> Result:
        """Inference, decoding and smoothing; the Result gets the next sequence number."""
        return self.decide(prepared, self.infer(prepared))

    # The four halves of prepare and finish, for a caller that reports which one failed.

    def sync_frame(self, frame: Frame) -> FusionWindow | None:
        """The window for ``frame`` (its command then counts as used), or None if sync skipped it."""
        return _window(self.sync, frame)

    def preprocess(self, window: FusionWindow, sync_ns: int = 0) -> Prepared:
        """The stages' results and the feeds for a window, for the model in use now.

        Each stage runs on the window in turn (and may mask a modality of it for the main model);
        its time is the ``stage:<name>`` timing.
        """
        step, decider = self._active
        timings = {"sync": sync_ns}
        records = {}
        with self._stages_lock:  # a swap of stages (use_stages) waits for these runs to end
            stages = tuple(self.stages)
            for stage in stages:
                t = time.perf_counter_ns()
                records[stage.spec.name], window = stage.run(window)
                timings[stage.timing_key] = time.perf_counter_ns() - t
        t0 = time.perf_counter_ns()
        feeds, info = step.preprocess(window)
        timings["preprocess"] = time.perf_counter_ns() - t0
        return Prepared(window, feeds, info, timings, step, decider, records, stages)

    def infer(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """Run the model on prepared feeds (re-preprocessed if the model was swapped since)."""
        step, decider = self._active
        if prepared.step is not step:  # prepared for a model that has been swapped out since
            t = time.perf_counter_ns()
            prepared.feeds, prepared.info = step.preprocess(prepared.window)
            prepared.timings_ns["preprocess"] += time.perf_counter_ns() - t
            prepared.step, prepared.decider = step, decider
        t0 = time.perf_counter_ns()
        outs = step.infer(prepared.feeds, prepared.window.t_ns)
        prepared.timings_ns["inference"] = time.perf_counter_ns() - t0
        return outs

    def decide(self, prepared: Prepared, outs: dict[str, np.ndarray]) -> Result:
        """Decode the outputs, apply the policy around smoothing, build the Result with the next sequence number.

        The policy acts on the per-step proposal, so the smoother sees its outcome (an
        abstained step does not vote), and again on the smoothed action, so a held action
        the step forbids is replaced at once (:func:`~edgefusion.policy.decide_step`).
        """
        t0 = time.perf_counter_ns()
        step, window = prepared.step, prepared.window
        decision = step.postprocess(outs, prepared.info)
        heard = _confirmed(decision, prepared.ran, prepared.stages)
        # "a command had arrived by then" by the window's time, not by how far the sources ran ahead:
        # the prepare thread may already hold later commands, and the result must not depend on it
        first = self.sync.first_command_t_ns
        status = text_status(window, self.text_source, int(first is not None and first <= window.t_ns))
        out = decide_step(prepared.decider, self.post, heard, window, status, prepared.info.unknown_words)
        timings = {**prepared.timings_ns, "postprocess": time.perf_counter_ns() - t0}
        events = out.events
        for stage in prepared.ran:  # a stage's events join the main model's when it says so (a detector's labels)
            if stage.spec.events and stage.spec.name in prepared.stages:
                events += tuple(e for e in prepared.stages[stage.spec.name]["events"] if e not in events)
        result = build_result(window, self.seq, step.package.name, decision, prepared.info, timings,
                              action=out.action, events=events, emitted=out.emitted, rule=out.rule,
                              abstained=out.abstained, degraded=out.degraded, text_status=status,
                              stages=prepared.stages)
        self.seq += 1
        self.emitted += out.emitted
        return result

    def push(self, sample: Any) -> Result | None:
        """Single-threaded driving: a frame gives its Result (or None if skipped); other samples None."""
        if isinstance(sample, Frame):
            prepared = self.prepare(sample)
            if prepared is None:
                return None
            result = self.finish(prepared)
            result.timings_ns["end_to_end"] = sum(result.timings_ns.values())
            return result
        self.add(sample)
        return None

    def swap(self, package: ModelPackage, backend: Backend) -> None:
        """Use another model from the next step on; sequence numbers and smoothing state continue.

        The event smoother restarts only when the new model's event labels differ. The policy
        is chosen again as at construction (the new package may name another task).
        """
        step = FusionStep(package, backend)
        check_confirms(self.stages, package)
        decider = decider_for(package, *self._choice)
        if step.event_labels != self.step.event_labels:
            self.post = PostProcessor(self.post_config, step.event_labels)
        self._active = (step, decider)

    def use_stages(self, stages: Sequence[Stage]) -> None:
        """Run ``stages`` before the main model from the next window on; windows prepared before keep
        what the old ones found. Safe from another thread than :meth:`preprocess`'s: it waits for a
        window's stages to finish, so once it returns no window runs the old ones (close them then)."""
        with self._stages_lock:
            self.stages = list(stages)


def check_confirms(stages: Sequence[Stage], package: ModelPackage) -> None:
    """Refuse a main model that lacks a label one of ``stages`` confirms (ConfigError, one line)."""
    labels = event_labels(package)
    for stage in stages:
        label = stage.spec.confirm
        if label is not None and label not in labels:
            raise ConfigError(f"stage '{stage.spec.name}' confirms {label!r}, which is not an event label of "
                              f"{package.name} ({', '.join(labels) or 'none'})")


def _confirmed(decision: Decision, stages: Sequence[Stage], records: dict[str, dict[str, Any]]) -> Decision:
    """``decision`` as smoothing and the policy see it: each label a stage confirms counts only where that
    stage found it in this window (its score is read as 0 otherwise; the Result keeps the model's score).
    Each confirming stage's record says whether it confirmed."""
    vetoed = []
    for stage in stages:
        label, rec = stage.spec.confirm, records.get(stage.spec.name)
        if label is None or rec is None or label not in decision.scores:  # (a model swapped in mid-reload)
            continue
        rec["confirmed"] = label in rec["events"]
        if not rec["confirmed"]:
            vetoed.append(label)
    if not vetoed:
        return decision
    return dataclasses.replace(decision, scores={**decision.scores, **dict.fromkeys(vetoed, 0.0)},
                               events=tuple(e for e in decision.events if e not in vetoed))


def _window(sync: Synchronizer, frame: Frame) -> FusionWindow | None:
    """The window for ``frame`` (its command then counts as used), or None if sync skipped it."""
    window, _ = sync.on_frame(frame)
    if window is not None and window.command_t_ns is not None:
        sync.spend(window.command_t_ns)
    return window


def windows_of(samples: Iterable[Any], limit: int | None = None, sync: SyncConfig | None = None) -> list[FusionWindow]:
    """The fusion windows a lossless run sees for a time-ordered stream (a timeline or a replayed log)."""
    return list(iter_windows(samples, limit, sync))


def iter_windows(samples: Iterable[Any], limit: int | None = None,
                 sync: SyncConfig | None = None) -> Iterator[FusionWindow]:
    """Like :func:`windows_of`, lazily: sync alone, no model needed."""
    s = Synchronizer(sync or SyncConfig())
    n = 0
    for sample in samples:
        if limit is not None and n >= limit:
            return
        if isinstance(sample, Frame):
            window = _window(s, sample)
            if window is not None:
                n += 1
                yield window
        elif isinstance(sample, AudioChunk):
            s.add_audio(sample)
        else:
            s.add_command(sample)
