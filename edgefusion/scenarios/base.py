"""One generator, two forms: labelled samples and continuous timelines.

A :class:`Scenario` says how to sample a visual state, how to draw it, which sounds
exist and how commands are phrased; which action follows from the scene events and the
command intent is the rule table of the task spec named like the scenario
(``edgefusion/task/builtin/<name>.toml``), which :meth:`Scenario.decide` applies. The functions
here turn that into (a) independent labelled samples for training and evaluation and
(b) a continuous timeline (camera at 30 fps, audio at 16 kHz, commands at event times)
with per-frame ground truth. Both forms use the same drawing, mixing and rules.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError
from edgefusion.scenarios.grammar import Grammar
from edgefusion.scenarios.sounds import SR, colored_noise
from edgefusion.task import load_task

__all__ = [
    "AUDIO_WINDOW_S",
    "COMMAND_HORIZON_S",
    "EVAL_SEED_OFFSET",
    "FPS",
    "FRAME_SIZE",
    "UNRELATED",
    "LabeledSample",
    "Scenario",
    "SoundEvent",
    "Timeline",
    "TimelineCommand",
    "generate_samples",
    "generate_timeline",
]

FRAME_SIZE = (160, 120)  # width, height of synthesized camera frames
FPS = 30
AUDIO_WINDOW_S = 1.0
COMMAND_HORIZON_S = 3.0
#: the intent of out-of-domain sentences (questions, chit-chat, other devices): the rules decide it like no command
UNRELATED = "unrelated"
EVAL_SEED_OFFSET = 100_003  # held-out data is drawn from training seed + this, never shared with training
MIN_OVERLAP_S = 0.3  # an audio event counts in a window when this much of its audible span lies inside
AUDIBLE_DB = -20.0  # audible span: where its 20 ms envelope is within this of its peak (about the background)
# Share of labelled training sounds placed across a window edge, so the model learns where the
# overlap rule switches (a stream passes through every overlap at each onset and end).
EDGE_PROB = 0.35


@dataclass(frozen=True)
class SoundEvent:
    """A sound placed on a time axis (seconds); ``label`` is False for distractors."""

    kind: str
    onset_s: float
    dur_s: float
    gain: float
    seed: int
    label: bool = True
    #: the audible part, in seconds from the onset: a smoke alarm's T3 pause or a chime's decayed
    #: tail at the end is silence, and the label must not count it (see :func:`audible_span`)
    audible: tuple[float, float] | None = None

    @property
    def audible_s(self) -> tuple[float, float]:
        """Absolute (start, end) of the audible part."""
        a, b = self.audible if self.audible is not None else (0.0, self.dur_s)
        return self.onset_s + a, self.onset_s + b


@dataclass(frozen=True)
class LabeledSample:
    """Form (a): one frame, the audio window ending at it, a command, and the truth."""

    image: np.ndarray
    audio: np.ndarray
    command: str | None
    intent: str | None
    events: frozenset[str]
    action: str
    hard: bool = False


@dataclass(frozen=True)
class TimelineCommand:
    t_ns: int
    text: str
    intent: str


@dataclass
class Timeline:
    """Form (b): continuous streams with per-frame ground truth."""

    scenario: str
    seed: int
    frame_t_ns: np.ndarray
    frames: np.ndarray
    audio: np.ndarray
    audio_rate: int
    commands: list[TimelineCommand]
    truth_events: list[frozenset[str]]
    truth_action: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


class Scenario(ABC):
    """A synthetic world. Subclasses fill in the class attributes and the methods."""

    name: str
    visual_events: tuple[str, ...]
    audio_events: tuple[str, ...]
    actions: tuple[str, ...]
    intents: tuple[str, ...]
    no_command_prob: float = 0.25
    #: of the commands, this share is an out-of-domain sentence (intent :data:`UNRELATED`)
    unrelated_prob: float = 0.2
    audio_event_prob: dict[str, float]
    distractor_sounds: dict[str, Callable[[float, np.random.Generator], np.ndarray]]
    event_sounds: dict[str, Callable[[float, np.random.Generator], np.ndarray]]
    #: the command grammar: templates per intent (``intents``, :data:`UNRELATED` among them)
    grammar: Grammar

    @property
    def events(self) -> tuple[str, ...]:
        return self.visual_events + self.audio_events

    @property
    def phrases(self) -> dict[str, tuple[str, ...]]:
        """A few plain example phrasings per intent (the first expansions of each template)."""
        return {i: tuple(next(iter(self.grammar._all(t))) for t in ts) for i, ts in self.grammar.templates.items()}

    @property
    def fillers(self) -> tuple[str, ...]:
        """The politeness and filler words the grammar wraps commands in."""
        g = self.grammar
        return (*g.prefixes, *g.suffixes, *g.fillers)

    @abstractmethod
    def sample_visual(self, rng: np.random.Generator, hard: bool) -> dict[str, Any]:
        """A random visual state (its keys are the scenario's own)."""

    @abstractmethod
    def visual_labels(self, visual: dict[str, Any]) -> frozenset[str]:
        """The visual scene events of a state."""

    @abstractmethod
    def render(self, visual: dict[str, Any], rng: np.random.Generator, hard: bool) -> np.ndarray:
        """Draw a BGR uint8 frame of FRAME_SIZE; ``rng`` varies noise only."""

    @abstractmethod
    def background(self, n: int, rng: np.random.Generator, hard: bool) -> np.ndarray:
        """Ambient sound of n samples."""

    # -- shared machinery -------------------------------------------------------------

    def phrase(self, intent: str, rng: np.random.Generator, hard: bool) -> str:
        """A random sentence of ``intent`` from the grammar: politeness, fillers, typos (more when hard)."""
        return self.grammar.sample(intent, rng, typo_prob=0.3 if hard else 0.15)

    def command_intent(self, rng: np.random.Generator) -> str:
        """The intent of a random command: :data:`UNRELATED` at ``unrelated_prob``, else one of the others."""
        if UNRELATED in self.intents and rng.random() < self.unrelated_prob:
            return UNRELATED
        return str(rng.choice([i for i in self.intents if i != UNRELATED]))

    def sample_intent(self, rng: np.random.Generator) -> str | None:
        if rng.random() < self.no_command_prob:
            return None
        return self.command_intent(rng)

    def decide(self, events: frozenset[str], intent: str | None) -> str:
        """The rules: scene events + command intent -> action, from the task spec named like the scenario."""
        return load_task(self.name).decide(events, intent)

    def sound(self, ev: SoundEvent) -> np.ndarray:
        table = self.event_sounds if ev.label else self.distractor_sounds
        return _waveform(table[ev.kind], ev.dur_s, ev.seed) * np.float32(ev.gain)

    def labelled_sound(self, kind: str, onset_s: float, dur_s: float, gain: float, seed: int) -> SoundEvent:
        """A labelled sound with its audible span measured on its waveform."""
        ev = SoundEvent(kind, onset_s, dur_s, gain, seed)
        return replace(ev, audible=audible_span(self.sound(ev)))

    def mix(self, sounds: list[SoundEvent], start_s: float, n: int, rng: np.random.Generator,
            hard: bool) -> np.ndarray:
        """Background plus every sound overlapping [start_s, start_s + n / SR)."""
        out = self.background(n, rng, hard)
        for ev in sounds:
            x = self.sound(ev)
            a = round((ev.onset_s - start_s) * SR)
            lo, hi = max(a, 0), min(a + len(x), n)
            if hi > lo:
                out[lo:hi] += x[lo - a : hi - a]
        return np.clip(out, -1.0, 1.0).astype(np.float32)

    def random_sounds(self, rng: np.random.Generator, hard: bool) -> list[SoundEvent]:
        """Events for one window [0, AUDIO_WINDOW_S); labels follow :func:`active_sound_labels`."""
        sounds = []
        boost = 1.3 if hard else 1.0
        for kind, p in self.audio_event_prob.items():
            if rng.random() < p * boost:
                dur = float(rng.uniform(0.5, 1.6))
                if rng.random() < EDGE_PROB:  # straddling a window edge, on either side of the overlap rule
                    overlap = float(rng.uniform(0.02, 2 * MIN_OVERLAP_S))
                    onset = overlap - dur if rng.random() < 0.5 else AUDIO_WINDOW_S - overlap
                else:
                    onset = float(rng.uniform(MIN_OVERLAP_S + 0.05 - dur, AUDIO_WINDOW_S - MIN_OVERLAP_S - 0.05))
                sounds.append(self.labelled_sound(kind, onset, dur, _gain(rng, hard), int(rng.integers(2**31))))
        for _ in range(int(rng.integers(0, 3 if hard else 2))):
            kind = str(rng.choice(sorted(self.distractor_sounds)))
            dur = float(rng.uniform(0.3, 1.2))
            sounds.append(SoundEvent(kind, float(rng.uniform(-0.5, 0.9)), dur, _gain(rng, hard) * 0.8,
                                     int(rng.integers(2**31)), label=False))
        return sounds


@lru_cache(maxsize=64)
def _waveform(synth: Callable[[float, np.random.Generator], np.ndarray], dur_s: float, seed: int) -> np.ndarray:
    """A sound's unscaled waveform, cached: a labelled sound is synthesized once to measure its
    audible span and again when mixed (read-only, so no caller can change the cached copy)."""
    x = synth(dur_s, np.random.default_rng(seed))
    x.setflags(write=False)
    return x


def _gain(rng: np.random.Generator, hard: bool) -> float:
    lo = -22.0 if hard else -16.0
    return float(10 ** (rng.uniform(lo, -2.0) / 20))


def audible_span(x: np.ndarray, frame: int = SR // 50) -> tuple[float, float]:
    """(start, end) in seconds of where ``x``'s envelope (max |x| per 20 ms) is within AUDIBLE_DB of its peak."""
    n = len(x) // frame * frame
    env = np.abs(x[:n]).reshape(-1, frame).max(axis=1) if n else np.zeros(0)
    if n < len(x):
        env = np.append(env, np.abs(x[n:]).max())
    if len(env) == 0 or env.max() <= 0:
        return 0.0, 0.0
    on = np.flatnonzero(env >= env.max() * 10 ** (AUDIBLE_DB / 20))  # never empty: the peak is in it
    return float(on[0] * frame / SR), float(min(len(x), (on[-1] + 1) * frame) / SR)


def active_sound_labels(sounds: list[SoundEvent], t_end_s: float) -> frozenset[str]:
    """Labelled sounds whose audible span overlaps the window [t_end - W, t_end] by MIN_OVERLAP_S or more."""
    t0 = t_end_s - AUDIO_WINDOW_S
    out = set()
    for ev in sounds:
        if not ev.label:
            continue
        start, end = ev.audible_s
        if min(end, t_end_s) - max(start, t0) >= MIN_OVERLAP_S:
            out.add(ev.kind)
    return frozenset(out)


def generate_samples(scenario: Scenario, n: int, seed: int, hard: bool = False) -> Iterator[LabeledSample]:
    """Form (a): ``n`` independent labelled samples, deterministic from ``seed``."""
    rng = np.random.default_rng([seed, 1 if hard else 0])
    n_audio = int(AUDIO_WINDOW_S * SR)
    for _ in range(n):
        visual = scenario.sample_visual(rng, hard)
        image = scenario.render(visual, rng, hard)
        sounds = scenario.random_sounds(rng, hard)
        audio = scenario.mix(sounds, 0.0, n_audio, rng, hard)
        intent = scenario.sample_intent(rng)
        command = scenario.phrase(intent, rng, hard) if intent else None
        events = scenario.visual_labels(visual) | active_sound_labels(sounds, AUDIO_WINDOW_S)
        yield LabeledSample(image, audio, command, intent, events, scenario.decide(events, intent), hard)


def generate_timeline(scenario: Scenario, duration_s: float, seed: int, hard: bool = False) -> Timeline:
    """Form (b): a continuous timeline with per-frame ground truth.

    The visual state changes every 2-5 s, sounds occur at random times, and a command is
    issued every 2.5-6 s, valid for COMMAND_HORIZON_S.

    Raises:
        ConfigError: a duration that is not a positive number of seconds, a negative seed.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"--duration must be a positive number of seconds, got {duration_s:g}")
    if seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {seed}")
    _check_memory(duration_s)
    rng = np.random.default_rng([seed, 2, 1 if hard else 0])
    n_frames = int(duration_s * FPS)
    segments: list[tuple[float, dict[str, Any]]] = []
    t = 0.0
    while t < duration_s:
        segments.append((t, scenario.sample_visual(rng, hard)))
        t += float(rng.uniform(2.0, 5.0))
    sounds: list[SoundEvent] = []
    for kind, p in scenario.audio_event_prob.items():
        t = float(rng.exponential(1.6 / p))
        while t < duration_s:
            dur = float(rng.uniform(0.6, 2.0))
            sounds.append(scenario.labelled_sound(kind, t, dur, _gain(rng, hard), int(rng.integers(2**31))))
            t += dur + float(rng.exponential(1.6 / p))
    for kind in sorted(scenario.distractor_sounds):
        t = float(rng.exponential(6.0))
        while t < duration_s:
            dur = float(rng.uniform(0.3, 1.5))
            sounds.append(SoundEvent(kind, t, dur, _gain(rng, hard) * 0.8, int(rng.integers(2**31)), label=False))
            t += dur + float(rng.exponential(6.0))
    commands: list[TimelineCommand] = []
    t = float(rng.uniform(0.5, 2.0))
    while t < duration_s:
        intent = scenario.command_intent(rng)
        commands.append(TimelineCommand(int(t * 1e9), scenario.phrase(intent, rng, hard), intent))
        t += float(rng.uniform(2.5, 6.0))
    audio = scenario.mix(sounds, 0.0, int(duration_s * SR), rng, hard)
    frame_t_ns = (np.arange(n_frames, dtype=np.int64) * 1_000_000_000) // FPS
    frames = np.empty((n_frames, FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8)
    truth_events, truth_action = [], []
    seg = 0
    for i, t_ns in enumerate(frame_t_ns):
        ts = t_ns / 1e9
        while seg + 1 < len(segments) and segments[seg + 1][0] <= ts:
            seg += 1
        visual = segments[seg][1]
        frames[i] = scenario.render(visual, rng, hard)
        events = scenario.visual_labels(visual) | active_sound_labels(sounds, ts)
        valid = [c for c in commands if 0 <= t_ns - c.t_ns <= COMMAND_HORIZON_S * 1e9]
        truth_events.append(events)
        truth_action.append(scenario.decide(events, valid[-1].intent if valid else None))
    return Timeline(scenario.name, seed, frame_t_ns, frames, audio, SR, commands, truth_events, truth_action,
                    meta={"duration_s": duration_s, "hard": hard, "fps": FPS,
                          "sounds": [(e.kind, round(e.onset_s, 3), round(e.dur_s, 3), e.label) for e in sounds]})


#: memory a timeline takes per second: its frames (30 x 160 x 120 x 3 bytes) and float32 audio
TIMELINE_BYTES_PER_S = FPS * FRAME_SIZE[0] * FRAME_SIZE[1] * 3 + SR * 4


def _check_memory(duration_s: float) -> None:
    """Refuse a timeline larger than the memory available (it is built whole: ``synth --duration 1e9`` took
    20 GB and ten minutes before it was killed); nothing is checked where /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            avail_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return
    need = duration_s * TIMELINE_BYTES_PER_S
    if need > 0.8 * avail_kb * 1024:
        most = 0.8 * avail_kb * 1024 / TIMELINE_BYTES_PER_S
        raise ConfigError(f"--duration {duration_s:g} s would need {need / 2**30:,.1f} GiB for the synthesized "
                          f"timeline (it is built in memory: {TIMELINE_BYTES_PER_S / 2**20:.1f} MiB per second), "
                          f"and {avail_kb / 2**20:.1f} GiB is available: at most about {most:,.0f} s here; "
                          "make several shorter logs")


def noise_and_blur(img: np.ndarray, rng: np.random.Generator, hard: bool, dark: bool = False) -> np.ndarray:
    """Sensor noise (stronger in the dark) and occasional motion blur."""
    import cv2

    sigma = rng.uniform(2, 6) + (rng.uniform(3, 8) if dark else 0) + (3 if hard else 0)
    out = img.astype(np.float32) + rng.normal(0, sigma, img.shape).astype(np.float32)
    if rng.random() < (0.35 if hard else 0.15):
        k = int(rng.integers(3, 7))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        if rng.random() < 0.5:
            kernel = kernel.T.copy()
        out = np.asarray(cv2.filter2D(out, -1, kernel), np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def pink_background(n: int, rng: np.random.Generator, hard: bool) -> np.ndarray:
    level = 10 ** (rng.uniform(-38, -22 if hard else -26) / 20)
    return colored_noise(n, rng, tilt=float(rng.uniform(0.5, 1.5))) * np.float32(level * 4)
