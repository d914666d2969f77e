"""Procedural music: background clips that teach the event heads what music is not.

Held-out music and ringtones made the reference packages' audio events fire (smart_home's
``speech`` on 9% of music-on-hold windows at -20 dBFS, ``doorbell`` and ``glass_break`` on
ringtones): the corpus' ``train`` split holds only three music tracks and a dozen
ringtones, too few kinds of music to learn from. These clips add variety at no licence
cost: melodies in random keys, scales, tempos and timbres (plucked strings, mallets, bells,
organ pads, a gliding lead voice with vibrato, bass), chords and drums, mixed in 1-4 layers.
They join the real recordings as *backgrounds* (event-free windows may take them louder than
the scene), so their labels are "no event" by construction.

No library writes music like this (synthesis libraries want a score and instrument files),
so it is a few numpy lines.

Two kinds are kept away from what they could be mistaken for: bell and mallet melodies
move at three notes a second or more (a doorbell is two or three slow notes), and nothing
here is a voice (no formants, no syllable rhythm).

Example:
    >>> clips = music_clips(3, seconds=2.0, seed=0)
    >>> len(clips), clips[0].shape, clips[0].dtype.name, bool(np.abs(clips[0]).max() <= 1.0)
    (3, (32000,), 'float32', True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["RATE", "music_clip", "music_clips"]

RATE = 16000
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9),
          "blues": (0, 3, 5, 6, 7, 10), "dorian": (0, 2, 3, 5, 7, 9, 10)}


def _hz(midi: float) -> float:
    return float(440.0 * 2 ** ((midi - 69) / 12))


def _pluck(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    decay = rng.uniform(2, 6)
    return sum(np.sin(2 * np.pi * k * f * t) * np.exp(-t * decay * k ** 0.7) / k for k in range(1, 9))  # type: ignore[return-value]


def _mallet(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    d = rng.uniform(5, 12)
    return np.sin(2 * np.pi * f * t) * np.exp(-t * d) + 0.3 * np.sin(2 * np.pi * 3.93 * f * t) * np.exp(-t * d * 3)


def _bell(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    d = rng.uniform(2, 5)
    return sum(a * np.sin(2 * np.pi * r * f * t) * np.exp(-t * d * r ** 0.5)  # type: ignore[return-value]
               for r, a in ((1.0, 1.0), (2.0, 0.5), (2.76, 0.4), (5.4, 0.2)))


def _organ(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / rng.uniform(0.02, 0.25)) * np.minimum(1.0, (n / RATE - t) / 0.05 + 1e-3)
    return env * sum(np.sin(2 * np.pi * k * f * t) / k ** 1.3 for k in (1, 2, 3, 4, 6))


def _lead(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """A sustained voice-like instrument (violin, sax, synth lead): vibrato, slight glide in."""
    t = np.arange(n) / RATE
    vib = 1 + rng.uniform(0.004, 0.02) * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * t)
    glide = 1 + rng.uniform(-0.06, 0.06) * np.exp(-t * 25)
    ph = 2 * np.pi * np.cumsum(f * vib * glide) / RATE
    env = np.minimum(1.0, t / 0.04) * np.minimum(1.0, (n / RATE - t) / 0.03 + 1e-3)
    return env * sum(np.sin(k * ph) / k for k in range(1, 10))


INSTRUMENTS: dict[str, Callable[[float, int, np.random.Generator], np.ndarray]] = {
    "pluck": _pluck, "mallet": _mallet, "bell": _bell, "organ": _organ, "lead": _lead}


def _melody(n: int, rng: np.random.Generator, notes: list[float], beat: float, kind: str,
            min_rate: float = 0.0) -> np.ndarray:
    out = np.zeros(n, np.float64)
    pos = 0
    lengths = (0.25, 0.5, 0.5, 1.0, 1.0, 2.0)
    while pos < n:
        dur_s = float(rng.choice(lengths)) * beat
        if min_rate:
            dur_s = min(dur_s, 1.0 / min_rate)
        m = max(1, int(dur_s * RATE))
        if rng.random() > 0.12:  # a rest now and then
            ring = min(n - pos, m + (int(rng.uniform(0.1, 0.6) * RATE) if kind in ("pluck", "mallet", "bell") else 0))
            out[pos : pos + ring] += INSTRUMENTS[kind](float(rng.choice(notes)), ring, rng)
        pos += m
    return out


def _chords(n: int, rng: np.random.Generator, root: float, scale: tuple[int, ...], beat: float) -> np.ndarray:
    out = np.zeros(n, np.float64)
    pos = 0
    kind = str(rng.choice(["organ", "pluck"]))
    while pos < n:
        m = min(n - pos, int(beat * RATE * float(rng.choice([2, 4]))))
        deg = int(rng.integers(len(scale)))
        for j in (0, 2, 4):
            semis = scale[(deg + j) % len(scale)] + 12 * ((deg + j) // len(scale))
            out[pos : pos + m] += 0.5 * INSTRUMENTS[kind](_hz(root + semis), m, rng)
        pos += m
    return out


def _drums(n: int, rng: np.random.Generator, beat: float) -> np.ndarray:
    out = np.zeros(n, np.float64)
    step = max(1, int(beat * RATE / 2))
    for i, pos in enumerate(range(0, n, step)):
        m = min(n - pos, int(0.25 * RATE))
        t = np.arange(m) / RATE
        if i % 4 == 0:  # kick: a falling low sine
            out[pos : pos + m] += np.sin(2 * np.pi * np.cumsum(50 + 90 * np.exp(-t * 30)) / RATE) * np.exp(-t * 12)
        elif i % 4 == 2:  # snare: a noise burst
            out[pos : pos + m] += 0.5 * rng.standard_normal(m) * np.exp(-t * 25)
        hat = min(m, int(0.04 * RATE))  # hi-hat: a short high click every half beat
        out[pos : pos + hat] += 0.15 * np.diff(rng.standard_normal(hat + 1)) * np.exp(-np.arange(hat) / RATE * 90)
    return out


def music_clip(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One clip of ``seconds`` at 16 kHz, peak-normalised to 0.9: 1-4 layers in one key and tempo."""
    n = int(seconds * RATE)
    scale = SCALES[str(rng.choice(sorted(SCALES)))]
    root = float(rng.uniform(45, 64))  # MIDI note of the key's root (110-330 Hz)
    beat = 60.0 / float(rng.uniform(60, 180))
    octave = float(rng.choice([12, 24]))
    notes = [_hz(root + octave + s + 12 * o) for o in (0, 1) for s in scale]
    kind = str(rng.choice(sorted(INSTRUMENTS)))
    layers = [_melody(n, rng, notes, beat, kind, min_rate=3.0 if kind in ("bell", "mallet") else 0.0)]
    if rng.random() < 0.6:
        layers.append(0.6 * _chords(n, rng, root, scale, beat))
    if rng.random() < 0.4:
        layers.append(0.5 * _melody(n, rng, [_hz(root - 12 + s) for s in scale[:5]], beat * 2, "pluck"))
    if rng.random() < 0.4:
        layers.append(_drums(n, rng, beat))
    out = sum(g * x / (np.abs(x).max() + 1e-9) for g, x in zip(rng.uniform(0.4, 1.0, len(layers)), layers))
    return (0.9 * out / (np.abs(out).max() + 1e-9)).astype(np.float32)


def music_clips(count: int, seconds: float = 8.0, seed: int = 0) -> list[np.ndarray]:
    """``count`` clips, each from its own stream of ``seed`` (a pure function of the arguments)."""
    return [music_clip(seconds, np.random.default_rng([seed, 0x6D75, i])) for i in range(count)]
