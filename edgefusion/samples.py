"""Samples: the small frozen data containers every part of EdgeFusion passes around.

Time is integer nanoseconds (``t_ns``) in the source's clock (DESIGN.md contract 1).
Each container validates itself once, on construction, with messages that give the
expected and the actual value (contract 2).

Example:
    >>> import numpy as np
    >>> f = Frame(t_ns=0, image=np.zeros((120, 160, 3), np.uint8))
    >>> f.image.shape
    (120, 160, 3)
    >>> Command(t_ns=5, text="turn on the lights").text
    'turn on the lights'
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefusion.errors import SampleError

__all__ = [
    "MAX_COMMAND_CHARS",
    "MODALITIES",
    "AudioChunk",
    "Command",
    "Frame",
    "FusionWindow",
    "Result",
    "SpokenCommand",
]

MODALITIES = ("image", "audio", "text")
MAX_COMMAND_CHARS = 256


def _check_time(t_ns: object, what: str) -> None:
    if not isinstance(t_ns, (int, np.integer)) or isinstance(t_ns, bool):
        raise SampleError(f"{what}.t_ns must be an integer number of nanoseconds, got {t_ns!r}")


@dataclass(frozen=True)
class Frame:
    """One camera frame: BGR uint8 of shape (H, W, 3), captured at ``t_ns``.

    Example:
        >>> Frame(t_ns=1, image=np.zeros((2, 2, 3), np.uint8)).image.dtype
        dtype('uint8')
    """

    t_ns: int
    image: np.ndarray
    source: str = "camera"

    def __post_init__(self) -> None:
        _check_time(self.t_ns, "Frame")
        img = self.image
        if not isinstance(img, np.ndarray):
            raise SampleError(f"Frame.image must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise SampleError(
                "Frame.image must be BGR uint8 of shape (H, W, 3); "
                f"got dtype {img.dtype} and shape {tuple(img.shape)}"
            )


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 audio starting at ``t_ns`` (the time of its first sample).

    Example:
        >>> c = AudioChunk(t_ns=0, samples=np.zeros(160, np.float32), sample_rate=16000)
        >>> c.end_ns
        10000000
    """

    t_ns: int
    samples: np.ndarray
    sample_rate: int
    source: str = "audio"

    def __post_init__(self) -> None:
        _check_time(self.t_ns, "AudioChunk")
        s = self.samples
        if not isinstance(s, np.ndarray) or s.dtype != np.float32 or s.ndim != 1:
            got = f"{s.dtype} of shape {s.shape}" if isinstance(s, np.ndarray) else type(s).__name__
            raise SampleError(f"AudioChunk.samples must be mono float32 of shape (N,); got {got}")
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise SampleError(f"AudioChunk.sample_rate must be a positive int, got {self.sample_rate!r}")

    @property
    def end_ns(self) -> int:
        """Time just after the last sample."""
        return self.t_ns + len(self.samples) * 1_000_000_000 // int(self.sample_rate)


@dataclass(frozen=True)
class Command:
    """A text command issued at ``t_ns``.

    Empty commands, commands over :data:`MAX_COMMAND_CHARS` characters and commands
    holding control characters are refused with a message that says so.

    Example:
        >>> Command(t_ns=0, text="  lock the door ").text
        'lock the door'
    """

    t_ns: int
    text: str
    source: str = "text"

    def __post_init__(self) -> None:
        _check_time(self.t_ns, "Command")
        if not isinstance(self.text, str):
            raise SampleError(f"Command.text must be a str, got {type(self.text).__name__}")
        bad = sorted({f"U+{ord(c):04X}" for c in self.text if unicodedata.category(c) in ("Cc", "Cf")})
        if bad:
            raise SampleError(
                f"command contains control characters ({', '.join(bad[:5])}); "
                "send plain text, one command per line"
            )
        text = " ".join(self.text.split())
        if not text:
            raise SampleError("command is empty; expected a text such as 'turn on the lights'")
        if len(text) > MAX_COMMAND_CHARS:
            raise SampleError(
                f"command is {len(text)} characters long; the limit is {MAX_COMMAND_CHARS}. "
                "Send one short command per line"
            )
        object.__setattr__(self, "text", text)


@dataclass(frozen=True)
class SpokenCommand(Command):
    """A command heard by the speech source: the recognized text, its intent and confidence.

    The utterance spans ``start_ns`` .. ``end_ns`` on the audio's clock; ``t_ns`` is when the
    command was issued: the end of the audio that closed the utterance (voice activity
    detection needs a moment of silence to know it ended), so ``start_ns <= end_ns <= t_ns``.
    It takes the same path as a typed command (the model's text input); intent and confidence
    are kept for the recording (``/speech``) and for whoever reads the samples.

    Example:
        >>> c = SpokenCommand(t_ns=9, text="lights on", intent="lights_on", confidence=0.8, start_ns=2, end_ns=6)
        >>> c.source, c.intent
        ('speech', 'lights_on')
    """

    source: str = "speech"
    intent: str = ""
    confidence: float = 0.0
    start_ns: int = 0
    end_ns: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_time(self.start_ns, "SpokenCommand.start")
        _check_time(self.end_ns, "SpokenCommand.end")
        c = self.confidence
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0.0 <= float(c) <= 1.0:
            raise SampleError(f"SpokenCommand.confidence must be a number from 0 to 1, got {c!r}")
        if not isinstance(self.intent, str):
            raise SampleError(f"SpokenCommand.intent must be a str, got {type(self.intent).__name__}")
        if not self.start_ns <= self.end_ns <= self.t_ns:
            raise SampleError(f"SpokenCommand: expected start_ns <= end_ns <= t_ns, got {self.start_ns}, "
                              f"{self.end_ns} and {self.t_ns}")


@dataclass(frozen=True)
class FusionWindow:
    """What one fusion step consumes: a frame, the audio ending at its time, a command.

    ``command`` is the :class:`Command` still valid at ``t_ns``, with the time it was issued;
    a plain string is taken as a command issued at ``t_ns``. ``missing`` names the
    modalities that are absent or stale; the step masks them.

    Example:
        >>> w = FusionWindow(t_ns=0, image=None, audio=None, command=None)
        >>> w.missing
        ('image', 'audio', 'text')
        >>> FusionWindow(t_ns=7, image=None, audio=None, command="lights on").command_t_ns
        7
    """

    t_ns: int
    image: np.ndarray | None
    audio: np.ndarray | None
    command: Command | str | None
    audio_rate: int = 16000
    missing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_time(self.t_ns, "FusionWindow")
        if isinstance(self.command, str):
            object.__setattr__(self, "command", Command(t_ns=self.t_ns, text=self.command))
        elif self.command is not None and not isinstance(self.command, Command):
            raise SampleError(f"FusionWindow.command must be a Command, a str or None, "
                              f"got {type(self.command).__name__}")
        absent = [
            m
            for m, v in zip(MODALITIES, (self.image, self.audio, self.command))
            if v is None or m in self.missing
        ]
        object.__setattr__(self, "missing", tuple(absent))

    @property
    def command_text(self) -> str | None:
        """The command's text, or None."""
        return self.command.text if isinstance(self.command, Command) else None

    @property
    def command_t_ns(self) -> int | None:
        """When the command was issued (in the window's clock), or None."""
        return self.command.t_ns if isinstance(self.command, Command) else None


@dataclass(frozen=True)
class Result:
    """The outcome of one fusion step.

    ``action`` is the decision: the model's proposal after the task's policy and smoothing;
    ``raw_action`` and ``action_score`` are the model's per-step argmax and its probability.

    Example:
        >>> r = Result(t_ns=0, seq=0, action="none", action_score=0.9, scores={}, events=())
        >>> r.action
        'none'
    """

    t_ns: int
    seq: int
    action: str
    action_score: float
    scores: dict[str, float]
    events: tuple[str, ...]
    missing: tuple[str, ...] = ()
    timings_ns: dict[str, int] = field(default_factory=dict)
    raw_action: str = ""
    emitted: bool = False
    command: str | None = None
    model: str = ""
    action_scores: dict[str, float] = field(default_factory=dict)
    #: words of the command the text input does not know, and whether it was cut to fit
    unknown_words: int = 0
    truncated: bool = False
    #: the model's probability for ``action`` this step (low when the policy chose it, not the model)
    confidence: float = 0.0
    #: the model's best action was below its threshold: the step did not vote and the action held
    abstained: bool = False
    #: a modality the policy has a fallback for was missing this step
    degraded: bool = False
    #: what decided ``action``: a task rule's name (``a|b`` when the intent is ambiguous) or a policy
    #: rule: abstain, missing_<modality>, secure_no_command, secure_unclear_command, secure_intent,
    #: intent_mismatch, smoothing, model, no_policy
    rule: str = ""
    #: the command input: command, no_command (a text source, silent), text_missing (none), unknown
    text_status: str = "unknown"
    #: the model's other outputs by name, JSON-ready: detections, intents, passed-through tensors
    outputs: dict[str, Any] = field(default_factory=dict)
    #: the models that ran before this one on the same window (a pipeline's stages), by stage name:
    #: each stage's events, scores, outputs and timings
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the command's intent by the package's intent output (``none``: no command; None: the package
    #: has no intent output) and the model's probability for it
    intent: str | None = None
    intent_confidence: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (scores rounded to 5 digits, timings in ns); ``outputs`` and ``stages`` when any."""
        d: dict[str, object] = {
            "seq": self.seq, "t_ns": self.t_ns, "action": self.action, "emitted": self.emitted,
            "raw_action": self.raw_action or self.action, "action_score": round(self.action_score, 5),
            "events": list(self.events), "scores": {k: round(v, 5) for k, v in self.scores.items()},
            "action_scores": {k: round(v, 5) for k, v in self.action_scores.items()},
            "missing": list(self.missing), "command": self.command, "model": self.model,
            "unknown_words": self.unknown_words, "truncated": self.truncated,
            "confidence": round(self.confidence, 5), "abstained": self.abstained, "degraded": self.degraded,
            "rule": self.rule, "text_status": self.text_status, "timings_ns": self.timings_ns,
            **({"intent": self.intent, "intent_confidence": round(self.intent_confidence, 5)}
               if self.intent is not None else {}),
        }
        if self.outputs:
            d["outputs"] = self.outputs
        if self.stages:
            d["stages"] = self.stages
        return d
