"""Several models in one pipeline: stages that run before the main model on the same window.

A stage is a model package with its own backend, inputs, outputs, recurrent state and
timings (DESIGN.md contract 14). It runs on each fusion window before the main model, on
the pipeline's prepare thread, in window order (so a stateful model such as a VAD sees its
windows in sequence). What it finds is kept in the main Result's ``stages[name]`` (events,
scores, outputs, timings) and timed as the ``stage:<name>`` latency of the run's stats, the
bench and the recording. It can also act on the main model's window:

- ``gate``: when the stage's score for a label is below a threshold, a modality of the
  main model's window is masked (e.g. a VAD's ``speech`` below 0.5 masks ``audio``, or
  ``text`` for a speech-driven command source), so the main model and the policy see it
  as missing, and say so;
- ``events``: the stage's events (a detector's labels) join the main Result's events;
- ``confirm``: the main model's event of that label stands only when the stage finds it too
  in the same window (e.g. a VAD confirming ``speech``, so music does not pass for it).

A streaming model that takes a few milliseconds of audio per step (Silero VAD: 32 ms) can
``scan`` the window: it runs over the audio in steps of ``scan`` ms on the stream's clock,
each step once, its state carried from the step before (fresh after a gap), and its score
for a label is the share of the window's steps on which the label fired; the label is one of
the stage's events when that share reaches ``share`` (default 0.1). A window a hop after the
last runs only the step or two it adds, and what a window reads does not depend on the hop.

Stages are declared as specs: ``NAME=PACKAGE`` with options after commas, on the command
line (``--stage vad=./silero_vad,gate=speech<0.5:audio``) or as ``[[stages]]`` tables in
a service config.

Example:
    >>> s = StageSpec.parse("vad=./silero_vad,gate=speech<0.5:audio,threads=1")
    >>> s.name, s.package, s.gate, s.events
    ('vad', './silero_vad', Gate(label='speech', below=0.5, mask='audio'), False)
    >>> s = StageSpec.parse("vad=silero_vad,scan=32,confirm=speech")
    >>> s.scan, s.share, s.confirm
    (32, 0.1, 'speech')
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from edgefusion.errors import ConfigError
from edgefusion.samples import MODALITIES, FusionWindow

__all__ = ["Gate", "Stage", "StageSpec", "open_stages", "result_events"]

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_GATE = re.compile(r"([A-Za-z0-9_.-]+)<([0-9.]+):([a-z]+)")


@dataclass(frozen=True)
class Gate:
    """Mask ``mask`` in the main model's window when the stage's score for ``label`` is below ``below``."""

    label: str
    below: float
    mask: str

    @classmethod
    def parse(cls, text: str, where: str) -> Gate:
        m = _GATE.fullmatch(text.strip())
        if m is None:
            raise ConfigError(f"{where}: gate {text!r}: expected LABEL<THRESHOLD:MODALITY, e.g. speech<0.5:audio")
        below = float(m[2])
        if not 0.0 <= below <= 1.0 or m[3] not in MODALITIES:
            raise ConfigError(f"{where}: gate {text!r}: the threshold is a score in [0, 1] and the modality one of "
                              f"{list(MODALITIES)}")
        return cls(m[1], below, m[3])

    def __str__(self) -> str:
        return f"{self.label}<{self.below:g}:{self.mask}"


@dataclass(frozen=True)
class StageSpec:
    """One stage as declared: its name, package, backend and what it does to the main model's window."""

    name: str
    package: str
    backend: str = "onnxruntime"
    variant: str = "fp32"
    threads: int | None = 1
    gate: Gate | None = None
    events: bool = False
    #: the main model's event with this label stands only when the stage finds it too
    confirm: str | None = None
    #: run over the audio in steps of this many ms, each step once (see Stage._scan); None: once per window
    scan: int | None = None
    #: with ``scan``: the share of steps on which a label must fire to be the stage's event
    share: float = 0.1

    @classmethod
    def parse(cls, spec: str) -> StageSpec:
        """``NAME=PACKAGE[,backend=B][,variant=V][,threads=N][,gate=LABEL<T:MODALITY][,events][,confirm=LABEL]
        [,scan=MS][,share=S]``."""
        head, *opts = [p.strip() for p in spec.split(",")]
        name, sep, package = head.partition("=")
        d: dict[str, Any] = {"name": name, "package": package if sep else ""}
        for o in opts:
            k, sep, v = o.partition("=")
            d[k] = True if not sep and k == "events" else v
        return cls.from_dict(d, f"--stage {spec!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> StageSpec:
        """From a config table; every problem is a ConfigError naming ``where``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{where}: unknown stage option {unknown[0]!r}; expected {sorted(known)}")
        name, package = d.get("name"), d.get("package")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: stage name {name!r}: expected lower-case letters, digits and _ (at most 32)")
        if not isinstance(package, str) or not package:
            raise ConfigError(f"{where}: stage '{name}' needs a package (a directory or a built-in name)")
        raw = d.get("threads", 1)
        try:
            threads = None if raw in ("", 0) else int(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: stage '{name}': threads {raw!r} is not a number") from exc
        if isinstance(raw, bool) or (threads is not None and not 0 < threads <= 1024):
            raise ConfigError(f"{where}: stage '{name}': threads {raw!r}: expected 1 to 1024, or 0 for ONNX Runtime's "
                              "default")
        gate = d.get("gate")
        if gate is not None and not isinstance(gate, str):
            raise ConfigError(f"{where}: stage '{name}': gate: expected a string such as 'speech<0.5:audio'")
        events = d.get("events", False)
        if not isinstance(events, bool):
            raise ConfigError(f"{where}: stage '{name}': events: expected true or false")
        confirm = d.get("confirm")
        if confirm is not None and (not isinstance(confirm, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", confirm)):
            raise ConfigError(f"{where}: stage '{name}': confirm {confirm!r}: expected one event label, e.g. speech")
        scan = _number(d.get("scan"), int, 1, 10_000, f"{where}: stage '{name}': scan", "milliseconds per step")
        share = _number(d.get("share", 0.1), float, 0.0, 1.0, f"{where}: stage '{name}': share",
                        "a share of the scan's steps")
        if "share" in d and scan is None:
            raise ConfigError(f"{where}: stage '{name}': share applies to a scanning stage; add scan=MS")
        return cls(name, package, str(d.get("backend", "onnxruntime")), str(d.get("variant", "fp32")), threads,
                   Gate.parse(gate, f"{where}: stage '{name}'") if gate else None, events, confirm,
                   int(scan) if scan is not None else None, float(share if share is not None else 0.1))


    def to_toml(self) -> str:
        """This spec as a ``[[stages]]`` table of a service config."""
        d = {"name": self.name, "package": self.package, "backend": self.backend, "variant": self.variant,
             "threads": self.threads or 0, "events": self.events, **({"gate": str(self.gate)} if self.gate else {}),
             **({"confirm": self.confirm} if self.confirm else {}),
             **({"scan": self.scan, "share": self.share} if self.scan else {})}
        return "[[stages]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in d.items())


def _number(raw: Any, kind: type, lo: float, hi: float, where: str, what: str) -> float | None:
    """``raw`` (a config value or a command line's text) as a number in [lo, hi]; None stays None."""
    if raw is None:
        return None
    try:
        if isinstance(raw, bool) or (kind is int and isinstance(raw, float)):
            raise ValueError
        v = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} {raw!r}: expected {'a whole number' if kind is int else 'a number'} "
                          f"({what})") from None
    if not lo <= v <= hi:
        raise ConfigError(f"{where} {raw!r}: expected {lo:g} to {hi:g} ({what})")
    return float(v)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def stage_tables(value: Any, where: str, problems: list[str]) -> tuple[StageSpec, ...]:
    """The ``[[stages]]`` array of tables of a service config; each problem is appended to ``problems``."""
    if not isinstance(value, list):
        problems.append(f"{where}: expected an array of tables ([[stages]]), got {type(value).__name__}")
        return ()
    specs = []
    for i, d in enumerate(value):
        try:
            if not isinstance(d, dict):
                raise ConfigError(f"{where}[{i}]: expected a table, got {type(d).__name__}")
            specs.append(StageSpec.from_dict(d, f"{where}[{i}]"))
        except ConfigError as exc:
            problems.append(str(exc))
    names = [s.name for s in specs]
    twice = sorted({n for n in names if names.count(n) > 1})
    problems.extend(f"{where}: stage name {n!r} is given twice" for n in twice)
    return tuple(specs)


class Stage:
    """An open stage: the spec and the model step that runs it (its backend is owned by whoever opened it)."""

    def __init__(self, spec: StageSpec, step: Any) -> None:
        from edgefusion.engine import FusionStep

        self.spec = spec
        self.step: FusionStep = step
        if spec.gate is not None and spec.gate.label not in (*step.event_labels, *(
                step.action_out.labels if step.action_out else ())):
            raise ConfigError(f"stage '{spec.name}': gate label {spec.gate.label!r} is not a label of "
                              f"{step.package.name} ({', '.join(step.event_labels) or 'none'})")
        if spec.confirm is not None and spec.confirm not in step.event_labels:
            raise ConfigError(f"stage '{spec.name}': confirm label {spec.confirm!r} is not an event label of "
                              f"{step.package.name} ({', '.join(step.event_labels) or 'none'})")
        if spec.scan is not None and not any(i.preprocess.get("kind") == "waveform" for i in step.package.inputs):
            raise ConfigError(f"stage '{spec.name}': scan steps through audio, and {step.package.name} takes no "
                              "waveform input")
        #: a scan's findings per step k (the scan ms ending at k * scan ms), and the last window's time and step
        self._found: dict[int, frozenset[str]] = {}
        self._scan_t: int | None = None
        self._scan_k = 0

    @property
    def timing_key(self) -> str:
        return f"stage:{self.spec.name}"

    def run(self, window: FusionWindow) -> tuple[dict[str, Any], FusionWindow]:
        """The stage's record for ``window``, and the window the main model gets (gated or not)."""
        if self.spec.scan is not None:
            rec = self._scan(window)
            scores = rec["scores"]
        else:
            d, _, timings = self.step.timed(window)
            scores = {**d.action_scores, **d.scores}
            rec = {"model": self.step.package.name, "events": list(d.events),
                   "scores": {k: round(v, 5) for k, v in scores.items()}, "timings_ns": timings}
            if d.action_scores:
                rec["action"] = d.action
            if d.extras:
                rec["outputs"] = d.extras
        g = self.spec.gate
        if g is not None:
            score = scores.get(g.label, 0.0)
            rec["gated"] = score < g.below
            if rec["gated"] and g.mask not in window.missing:
                window = dataclasses.replace(window, missing=(*window.missing, g.mask))
        return rec, window

    def _scan(self, window: FusionWindow) -> dict[str, Any]:
        """Run over the audio in ``scan`` ms steps on the stream's clock: the record, whose scores are each
        label's share of the window's steps that fired (and whose events reach ``share``).

        Step ``k`` covers the ``scan`` ms that end at ``k * scan`` ms. Each step runs once, in the first window
        that holds it whole, its recurrent state carried from step ``k - 1``; later windows reuse what it found
        (windows a hop apart share all but a step or two, so a 1-s window costs about a step, not 31). The
        state starts fresh when the steps do not follow on: at the first window, after a gap longer than a
        window or a window without audio, and when the clock goes back or stands still (windows that are not
        one stream, such as the benches' independent scenes). A window's steps depend only on the audio up to
        them, not on the hop.
        """
        step, spec = self.step, self.spec
        assert spec.scan is not None
        rate, scan_ns = window.audio_rate, spec.scan * 1_000_000
        n = 0 if window.audio is None else len(window.audio)
        span_ns = n * 1_000_000_000 // rate
        last = window.t_ns // scan_ns
        # the first step whose scan ms lie in the window whole: ceil((t - span + scan) / scan); none without audio
        first = -((span_ns - scan_ns - window.t_ns) // scan_ns) if n else last + 1
        first = min(first, last + 1)
        t = dict.fromkeys(("preprocess", "inference", "postprocess"), 0)
        follows = self._scan_t is not None and window.t_ns > self._scan_t and first <= self._scan_k + 1
        if not follows:  # a new sequence (a window without audio ends one: the next starts afresh)
            step.state.restart()
            self._found.clear()
            self._scan_t = None
        start = self._scan_k + 1 if follows else first
        for k in range(start, last + 1):
            assert window.audio is not None
            back = (window.t_ns - k * scan_ns) * rate // 1_000_000_000
            d, _, part = step.timed(dataclasses.replace(window, audio=window.audio[: n - back], t_ns=k * scan_ns))
            self._found[k] = frozenset(d.events)
            t.update({name: t[name] + ns for name, ns in part.items()})
        if n:
            self._scan_t, self._scan_k = window.t_ns, last
        for k in [k for k in self._found if k < first]:
            del self._found[k]
        steps = [self._found[k] for k in range(first, last + 1)]
        fired = Counter(label for found in steps for label in found)
        shares = {label: round(fired[label] / len(steps), 5) if steps else 0.0 for label in step.event_labels}
        events = [label for label, v in shares.items() if steps and v >= spec.share]
        return {"model": step.package.name, "events": events, "scores": shares, "steps": len(steps),
                "new_steps": max(0, last + 1 - start), "timings_ns": t}


def result_events(labels: Sequence[str], stages: Sequence[Stage]) -> tuple[str, ...]:
    """The event labels a result can carry: the main model's ``labels``, then those of the stages whose
    events join them (``events``), each once (what MQTT and Home Assistant announce).

    Example:
        >>> class Step:                       # a stand-in for a detector's model step
        ...     event_labels = ("person", "car")
        >>> det = Stage.__new__(Stage)
        >>> det.spec, det.step = StageSpec.parse("det=./detector,events"), Step()
        >>> result_events(("dark", "person"), [det])
        ('dark', 'person', 'car')
    """
    out = list(labels)
    for stage in stages:
        if stage.spec.events:
            out += [label for label in stage.step.event_labels if label not in out]
    return tuple(out)


@contextmanager
def open_stages(specs: Sequence[StageSpec]) -> Iterator[list[Stage]]:
    """Load each stage's package, open its backend; close them all on exit."""
    from edgefusion.backends import open_backend
    from edgefusion.engine import FusionStep
    from edgefusion.package import load_package

    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"stage names must differ; {dup[0]!r} is given twice")
    with ExitStack() as stack:
        stages = []
        for s in specs:
            pkg = load_package(s.package)
            be = stack.enter_context(open_backend(s.backend, pkg, variant=s.variant, threads=s.threads))
            stages.append(Stage(s, FusionStep(pkg, be)))
        yield stages
