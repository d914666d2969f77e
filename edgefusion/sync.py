"""Multimodal time sync (DESIGN.md contract 7).

The camera frame triggers a fusion step. Audio comes from a ring buffer: the window
``[t - W, t]`` for the frame's time ``t``. A command stays valid for a horizon after it
was issued, or until it was acted on. Each source may carry a constant clock offset
(added to its timestamps to bring them into the camera's clock).

A missing or stale modality is an outcome, never silent: with policy ``mask`` the step
runs with the modality masked and says so; with ``skip`` the step is skipped. Every
outcome is counted in :attr:`Synchronizer.outcomes`. Audio is also missing while the window
is not yet whole (``*_audio_partial``): in the first window's length of a stream, and after a
gap longer than ``audio_max_skew_ns``. The gap is filled with silence to keep the timing, but
a window padded with digital silence is nothing the models were trained on: in an event-free
scene smart_home's ``speech`` fired on steps 7-20 of every stream start. Audio with almost no energy above 4 kHz
(an 8 kHz phone or cheap microphone, upsampled) is logged once and counted per 5 s as
``audio_band_limited``: the models are less accurate on it.

Example:
    >>> import numpy as np
    >>> from edgefusion.samples import AudioChunk, Command, Frame
    >>> s = Synchronizer(SyncConfig())
    >>> s.add_audio(AudioChunk(t_ns=0, samples=np.zeros(16000, np.float32), sample_rate=16000))
    >>> s.add_command(Command(t_ns=500_000_000, text="lights on"))
    >>> w, info = s.on_frame(Frame(t_ns=1_000_000_000, image=np.zeros((4, 4, 3), np.uint8)))
    >>> w.command_text, w.command_t_ns, w.missing, info.audio_skew_ns
    ('lights on', 500000000, (), 0)
"""

from __future__ import annotations

import collections
import enum
import threading
from dataclasses import dataclass, field

import numpy as np

from edgefusion.errors import ConfigError, InputError
from edgefusion.preprocess.audio import BandLimitDetector
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow

__all__ = ["MissingPolicy", "SyncConfig", "SyncInfo", "Synchronizer"]

SECOND = 1_000_000_000


class MissingPolicy(str, enum.Enum):
    MASK = "mask"
    SKIP = "skip"


@dataclass(frozen=True)
class SyncConfig:
    """Sync policy. Durations are integer nanoseconds (``*_ns``).

    audio_max_skew_ns: the audio may end at most this long before the frame's time;
        beyond it the audio counts as missing (stale). A gap longer than this within the
        stream makes the windows that reach across it partial (audio missing) too.
    audio_policy: what a step does when audio is missing or stale.
    command_horizon_ns: how long a command stays valid.
    consume_commands: a command is used for one action only (then it is spent).
    offsets_ns: per-source constant clock offset, added to that source's timestamps.
    """

    audio_window_ns: int = SECOND
    audio_max_skew_ns: int = 150_000_000
    audio_policy: MissingPolicy = MissingPolicy.MASK
    audio_buffer_ns: int = 4 * SECOND
    command_horizon_ns: int = 3 * SECOND
    consume_commands: bool = False
    offsets_ns: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "audio_policy", MissingPolicy(self.audio_policy))
        if self.audio_max_skew_ns < 0 or self.audio_window_ns <= 0:
            raise ConfigError("sync: audio_window_ns must be > 0 and audio_max_skew_ns >= 0")


@dataclass(frozen=True)
class SyncInfo:
    """What sync found for one frame: outcome, audio skew and command age."""

    outcome: str
    audio_skew_ns: int | None
    command_age_ns: int | None


class Synchronizer:
    """Holds recent audio and commands; turns each frame into a FusionWindow (or a skip)."""

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._rate: int | None = None
        # The last ``cap`` samples are _buf[_w - cap : _w] (zeros before the stream began); the
        # buffer is twice that, so appends are in place and only every ~cap samples is the tail
        # moved to the front - not a copy of the whole history per chunk.
        self._buf = np.zeros(0, np.float32)
        self._cap = 0
        self._w = 0
        self._base_ns = 0  # time of the stream's first sample
        self._end_idx = 0  # index (from the stream's first sample) just after the last buffered one
        self._whole_from = 0  # index from which the audio is unbroken: a window starting before it is partial
        self._bandlimit: BandLimitDetector | None = None  # warns once about 8 kHz sources upsampled
        self._commands: collections.deque[Command] = collections.deque(maxlen=64)
        #: issue time of the earliest command received (sync clock); None before any
        self.first_command_t_ns: int | None = None
        self._spent: set[int] = set()

    def _offset(self, source: str) -> int:
        return int(self.config.offsets_ns.get(source, 0))

    def add_audio(self, chunk: AudioChunk) -> None:
        """Append a chunk; a gap is filled with silence, an overlap is trimmed.

        Positions are kept as integer sample indices from the stream's first sample, so
        the window for a frame does not depend on how much later audio has arrived.
        """
        with self._lock:
            rate = int(chunk.sample_rate)
            t0 = chunk.t_ns + self._offset(chunk.source)
            if self._rate is None:
                self._rate = rate
                self._cap = int(self.config.audio_buffer_ns * rate // SECOND)
                self._buf = np.zeros(2 * self._cap, np.float32)
                self._w = self._cap
                self._base_ns = t0
                self._end_idx = 0
                self._bandlimit = BandLimitDetector(rate)
            elif rate != self._rate:
                raise InputError(f"audio rate changed from {self._rate} Hz to {rate} Hz within one stream")
            x = chunk.samples
            if self._bandlimit is not None and self._bandlimit.update(x):
                self.outcomes["audio_band_limited"] += 1  # per 5 s period; the log warns once per episode
            start = round((t0 - self._base_ns) * rate / SECOND)
            gap = start - self._end_idx
            n_chunk = len(x)
            if gap > 1:  # more than rounding: a real gap
                self.outcomes["audio_gap_filled"] += 1
                x = np.concatenate([np.zeros(min(gap, self._cap), np.float32), x])
            elif gap < -1:
                x = x[min(-gap, len(x)) :]
            self._end_idx += len(x)
            if gap * SECOND > self.config.audio_max_skew_ns * rate:  # a real hole, not jitter: whole again later
                self._whole_from = self._end_idx - n_chunk  # where the chunk's own samples begin
            self._append(x[-self._cap :])

    def _append(self, x: np.ndarray) -> None:
        if self._w + len(x) > len(self._buf):
            self._buf[: self._cap] = self._buf[self._w - self._cap : self._w]
            self._w = self._cap
        self._buf[self._w : self._w + len(x)] = x
        self._w += len(x)

    @property
    def _ring(self) -> np.ndarray:
        """The last ``cap`` samples, oldest first (a view)."""
        return self._buf[self._w - self._cap : self._w]

    def add_command(self, cmd: Command) -> None:
        """Keep a command; the latest one issued before a frame's time wins."""
        with self._lock:
            self.outcomes["commands_received"] += 1
            t = cmd.t_ns + self._offset(cmd.source)
            self._commands.append(Command(t_ns=t, text=cmd.text, source=cmd.source))
            if self.first_command_t_ns is None or t < self.first_command_t_ns:
                self.first_command_t_ns = t

    def spend(self, command_t_ns: int) -> None:
        """Mark the command issued at ``command_t_ns`` as used (only with ``consume_commands``).

        The fusion core calls this for the command of every window it prepares, so with
        ``consume_commands`` a command reaches exactly one step.
        """
        if self.config.consume_commands:
            with self._lock:
                self._spent.add(command_t_ns)

    def on_frame(self, frame: Frame) -> tuple[FusionWindow | None, SyncInfo]:
        t = frame.t_ns + self._offset(frame.source)
        with self._lock:
            audio, skew, partial = self._audio_window(t)
            cmd = self._valid_command(t)
        age = None if cmd is None else t - cmd.t_ns
        outcome = "ok"
        missing: list[str] = []
        if audio is None:
            why = "missing" if skew is None else "partial" if partial else "stale"
            if self.config.audio_policy is MissingPolicy.SKIP:
                outcome = f"skipped_audio_{why}"
                self.outcomes[outcome] += 1
                return None, SyncInfo(outcome, skew, age)
            outcome = f"masked_audio_{why}"
            missing.append("audio")
        if cmd is None:
            missing.append("text")
        self.outcomes[outcome] += 1
        self.outcomes["with_command" if cmd else "without_command"] += 1
        window = FusionWindow(t_ns=t, image=frame.image, audio=audio, command=cmd,
                              audio_rate=self._rate or 16000, missing=tuple(missing))
        return window, SyncInfo(outcome, skew, age)

    def _audio_window(self, t: int) -> tuple[np.ndarray | None, int | None, bool]:
        """(the window or None, the skew, whether it is None for being partial)."""
        if self._rate is None:
            return None, None, False
        rate = self._rate
        skew = t - (self._base_ns + self._end_idx * SECOND // rate)  # > 0: the audio ends before the frame
        if skew > self.config.audio_max_skew_ns:
            return None, skew, False
        n = int(self.config.audio_window_ns * rate // SECOND)
        # audio later than t is not used: the window ends at the sample index of time t
        end_idx = min(self._end_idx, (t - self._base_ns) * rate // SECOND)
        end = len(self._ring) - (self._end_idx - end_idx)
        if end_idx <= 0 or end <= 0:  # the frame is older than the audio stream (or its buffer)
            return None, skew, False
        if end_idx - n < self._whole_from:  # reaches before the stream began or across a hole
            return None, skew, True
        return self._ring[max(0, end - n) : end].copy(), skew, False

    def _valid_command(self, t: int) -> Command | None:
        horizon = self.config.command_horizon_ns
        best = None
        for c in self._commands:
            if c.t_ns <= t and t - c.t_ns <= horizon and c.t_ns not in self._spent:
                # the latest issued, not the latest received: two sources' commands arrive in thread order
                if best is None or c.t_ns >= best.t_ns:
                    best = c
            elif c.t_ns <= t and t - c.t_ns > horizon and c.t_ns not in self._spent:
                self._spent.add(c.t_ns)
                self.outcomes["command_expired"] += 1
        return best
