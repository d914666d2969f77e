"""Sound synthesis primitives in numpy, shared by the scenarios.

Every function takes a ``numpy.random.Generator`` and returns float32 mono audio at
``SR`` Hz with a peak near 1; the mixer sets loudness.
"""

from __future__ import annotations

import numpy as np

SR = 16000

__all__ = [
    "SR",
    "babble",
    "beeps",
    "chime",
    "colored_noise",
    "engine",
    "glass_break",
    "horn",
    "music",
    "siren",
    "whistle",
]


def _t(dur_s: float) -> np.ndarray:
    return np.arange(int(dur_s * SR), dtype=np.float32) / SR


def _norm(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return (x / peak).astype(np.float32) if peak > 0 else x.astype(np.float32)


def colored_noise(n: int, rng: np.random.Generator, tilt: float = 1.0) -> np.ndarray:
    """Noise with a 1/f**tilt power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.maximum(np.fft.rfftfreq(n, 1.0 / SR), 20.0)
    spec /= f ** (tilt / 2.0)
    x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-9) * 0.25).astype(np.float32)


def chime(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Doorbell: two (or three) decaying bell tones, "ding-dong"."""
    t = _t(dur_s)
    base = rng.uniform(500, 900)
    notes = [base, base * rng.choice([0.79, 0.75, 0.84])]
    if rng.random() < 0.3:
        notes.append(base * 0.67)
    out = np.zeros_like(t)
    step = dur_s / len(notes)
    for i, f in enumerate(notes):
        tt = t - i * step
        on = tt >= 0
        env = np.exp(-np.maximum(tt, 0) * rng.uniform(3, 6)) * on
        out += env * (np.sin(2 * np.pi * f * tt) + 0.4 * np.sin(2 * np.pi * 2.76 * f * tt))
    return _norm(out)


def glass_break(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """A sharp broadband crash, then high-pitched tinkles of falling shards over the whole span."""
    t = _t(dur_s)
    n = len(t)
    crash = colored_noise(n, rng, tilt=0.0) * np.exp(-t * rng.uniform(10, 25))
    crash = np.diff(crash, prepend=0.0)  # emphasise highs
    out = crash * 1.5
    for _ in range(int(rng.integers(12, 24) * dur_s) + 4):
        t0 = rng.uniform(0, dur_s * 0.95)
        f = rng.uniform(2500, 7000)
        tt = t - t0
        env = (tt >= 0) * np.exp(-np.maximum(tt, 0) * rng.uniform(30, 80))
        out += env * np.sin(2 * np.pi * f * tt) * rng.uniform(0.2, 0.8)
    return _norm(out)


def beeps(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Smoke alarm: a ~3.1 kHz tone in the T3 pattern (three 0.5 s beeps, pause)."""
    t = _t(dur_s)
    f = rng.uniform(2900, 3400)
    on = (t % 0.5) < rng.uniform(0.25, 0.4)
    on &= (t % 2.0) < 1.5
    tone = np.sign(np.sin(2 * np.pi * f * t)) * 0.6 + np.sin(2 * np.pi * f * t) * 0.4
    return _norm(tone * on)


def babble(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like sound: a gliding voiced pitch with formants and a syllable rhythm."""
    t = _t(dur_s)
    f0 = rng.uniform(95, 240) * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    formants = np.zeros_like(t)
    for fc in rng.uniform([400, 1100, 2300], [900, 1900, 3100]):
        formants += np.sin(2 * np.pi * fc * t + rng.uniform(0, 6))
    syll = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    return _norm(voiced * (0.6 + 0.4 * formants) * syll)


def music(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """A distractor: a few sustained chords like a radio or TV in the background."""
    t = _t(dur_s)
    out = np.zeros_like(t)
    root = rng.uniform(180, 400)
    for ratio in (1.0, 1.26, 1.5):
        out += np.sin(2 * np.pi * root * ratio * t) * (0.8 + 0.2 * np.sin(2 * np.pi * 2 * t))
    return _norm(out)


def whistle(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """A distractor: a kettle-like steady whistle, a continuous high tone (not beeping)."""
    t = _t(dur_s)
    f = rng.uniform(1500, 2600) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    return _norm(np.sin(2 * np.pi * np.cumsum(f) / SR) * np.minimum(1, t * 4))


def engine(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Engine rumble: a low fundamental with harmonics, rpm wandering, plus road noise."""
    t = _t(dur_s)
    f0 = rng.uniform(25, 60) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    ph = 2 * np.pi * np.cumsum(f0) / SR
    out = sum(np.sin(k * ph) / k**0.8 for k in range(1, 10))
    return _norm(out + colored_noise(len(t), rng, 2.0) * 2)


def siren(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Emergency siren: a wail (slow sweep) or a yelp (fast sweep), 600-1500 Hz."""
    t = _t(dur_s)
    period = rng.uniform(1.5, 3.5) if rng.random() < 0.5 else rng.uniform(0.15, 0.35)
    lo, hi = rng.uniform(550, 750), rng.uniform(1200, 1550)
    sweep = 0.5 - 0.5 * np.cos(2 * np.pi * t / period + rng.uniform(0, 6))
    f = lo + (hi - lo) * sweep
    ph = 2 * np.pi * np.cumsum(f) / SR
    return _norm(np.sin(ph) + 0.3 * np.sin(2 * ph))


def horn(dur_s: float, rng: np.random.Generator) -> np.ndarray:
    """Car horn: two detuned buzzy tones around 400-500 Hz."""
    t = _t(dur_s)
    out = np.zeros_like(t)
    for f in (rng.uniform(380, 430), rng.uniform(470, 530)):
        out += np.sign(np.sin(2 * np.pi * f * t)) * 0.5 + np.sin(2 * np.pi * f * t) * 0.5
    env = np.minimum(1, t * 50) * np.minimum(1, (dur_s - t) * 50)
    return _norm(out * env)
