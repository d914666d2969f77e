"""Inputs that are not a camera frame, a log-mel image or tokens: raw waveforms, recurrent
state carried between steps, and constants.

- ``waveform``: the last ``samples`` samples of the window's audio at ``sample_rate``
  (resampled when the source differs; zero-padded in front when short; zeros when missing).
- ``state``: a recurrent state. The feed builder makes zeros (a fresh state);
  :class:`RecurrentState` carries the output named ``from`` into this input from one step to
  the next, and resets to zeros after a gap of more than ``reset_gap_ms`` between windows.
- ``constant``: ``value`` broadcast to the input's shape (e.g. a sample rate).

Symbolic dimensions resolve to the batch size when named ``batch``; any other symbolic
dimension of a state or a constant is a manifest mistake (they have no window to size them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError
from edgefusion.preprocess.audio import resample

__all__ = ["ConstantParams", "RecurrentState", "StateParams", "WaveformParams", "waveform"]


@dataclass(frozen=True)
class WaveformParams:
    """A raw audio window: ``samples`` float32 samples at ``sample_rate``."""

    sample_rate: int = 16000
    samples: int = 16000

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WaveformParams:
        return cls(int(d.get("sample_rate", 16000)), int(d["samples"]))


def waveform(audio: np.ndarray | None, rate: int, p: WaveformParams) -> np.ndarray:
    """The last ``p.samples`` samples of ``audio`` at ``p.sample_rate``, zero-padded in front.

    Example:
        >>> waveform(np.ones(3, np.float32), 16000, WaveformParams(16000, 5)).tolist()
        [0.0, 0.0, 1.0, 1.0, 1.0]
    """
    if audio is None:
        return np.zeros(p.samples, np.float32)
    x = np.asarray(audio, np.float32)
    if rate != p.sample_rate:
        need = -(-p.samples * rate // p.sample_rate) + 64  # the tail this window needs, and filter taps
        x = resample(x[-need:], rate, p.sample_rate)
    x = x[-p.samples:]
    if len(x) < p.samples:
        x = np.concatenate([np.zeros(p.samples - len(x), np.float32), x])
    return np.ascontiguousarray(x, np.float32)


def _shape(name: str, shape: Sequence[int | str], batch: int) -> tuple[int, ...]:
    out = []
    for s in shape:
        if isinstance(s, int):
            out.append(s)
        elif s == "batch":
            out.append(batch)
        else:
            raise ConfigError(f"input '{name}': dimension {s!r} has no size; give it as a number in the shape "
                              "(only 'batch' is filled in)")
    return tuple(out)


@dataclass(frozen=True)
class StateParams:
    """A recurrent state input: zeros to start, then the output ``source`` of the previous step."""

    name: str
    source: str
    dtype: str
    shape: tuple[int | str, ...]
    reset_gap_ns: int = 500_000_000

    @classmethod
    def from_decl(cls, name: str, pre: dict[str, Any], dtype: str, shape: Sequence[int | str]) -> StateParams:
        src = pre.get("from")
        if not isinstance(src, str) or not src:
            raise ConfigError(f"input '{name}': a state needs 'from': the output that carries it to the next step")
        p = cls(name, src, dtype, tuple(shape), int(float(pre.get("reset_gap_ms", 500)) * 1_000_000))
        p.zeros(1)  # every dimension but the batch must be known
        return p

    def zeros(self, batch: int) -> np.ndarray:
        return np.zeros(_shape(self.name, self.shape, batch), np.dtype(self.dtype))


@dataclass(frozen=True)
class ConstantParams:
    """A constant input: ``value`` in the input's dtype and shape."""

    name: str
    value: float | int
    dtype: str
    shape: tuple[int | str, ...]

    @classmethod
    def from_decl(cls, name: str, pre: dict[str, Any], dtype: str, shape: Sequence[int | str]) -> ConstantParams:
        v = pre.get("value")
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(f"input '{name}': a constant needs a numeric 'value', got {v!r:.40}")
        p = cls(name, v, dtype, tuple(shape))
        p.array(1)
        return p

    def array(self, batch: int) -> np.ndarray:
        return np.full(_shape(self.name, self.shape, batch), self.value, np.dtype(self.dtype))


@dataclass
class RecurrentState:
    """The states of one model, carried from its outputs to its inputs between consecutive steps.

    Example:
        >>> s = RecurrentState([StateParams("h", "h_out", "float32", ("batch", 2))])
        >>> def step(t_ns):         # the builder's feeds start as zeros: a fresh state
        ...     feeds = {"h": np.zeros((1, 2), np.float32)}
        ...     s.apply(feeds, t_ns)
        ...     s.carry({"h_out": feeds["h"] + 1})
        ...     return feeds["h"].tolist()
        >>> step(0), step(10_000_000), step(20_000_000), step(10**9)   # a gap of a second resets it
        ([[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 2.0]], [[0.0, 0.0]])
    """

    params: list[StateParams]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    last_t_ns: int | None = None
    resets: int = 0

    def reset(self) -> None:
        if self.values:
            self.resets += 1
        self.values.clear()

    def restart(self) -> None:
        """Zeros at the next step, as at the very start (a new sequence, not a gap: not counted in ``resets``)."""
        self.values.clear()
        self.last_t_ns = None

    def apply(self, feeds: dict[str, np.ndarray], t_ns: int) -> None:
        """Put the carried states into ``feeds`` (left as the builder's zeros after a gap or at the start)."""
        if self.last_t_ns is not None and any(t_ns - self.last_t_ns > p.reset_gap_ns for p in self.params):
            self.reset()
        self.last_t_ns = t_ns
        for p in self.params:
            v = self.values.get(p.name)
            if v is not None and v.shape == feeds[p.name].shape:
                feeds[p.name] = v

    def carry(self, outs: dict[str, np.ndarray]) -> None:
        """Keep the outputs that feed the next step's states."""
        for p in self.params:
            if p.source not in outs:
                raise ConfigError(f"input '{p.name}': the model has no output '{p.source}' to carry its state from")
            self.values[p.name] = np.asarray(outs[p.source], np.dtype(p.dtype))
