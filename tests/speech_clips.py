"""Spoken test commands synthesized with espeak-ng at test time, and a way to listen to them.

Why synthesized, not committed: the clips follow the task's phrases, which change with the
grammar, and espeak-ng (a Debian package; ``.ci/run`` installs it) renders a text the same
way every time for one version, so the set stays deterministic without megabytes of WAV
files in the repository. Noise is seeded.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from edgefusion.preprocess.audio import resample
from edgefusion.samples import AudioChunk

RATE = 16000
#: (voice, words per minute, signal-to-noise ratio in dB or None for clean)
CONDITIONS = (
    ("en-us", 160, None),
    ("en", 175, 20.0),
    ("en+f3", 150, 15.0),
    ("en-us+m3", 190, 20.0),
    ("en-us+f2", 140, 10.0),
    ("en-gb-x-rp", 170, None),
)
#: sentences that are no command of the task (questions, chit-chat, other devices)
UNRELATED = (
    "what is the weather today", "open the fridge", "call my mother", "play some music", "good morning",
    "turn it up", "the door is red", "how are you", "set a timer for ten minutes", "what time is it",
    "tell me a joke", "is it going to rain", "i am hungry", "where are my keys", "the light is green",
    "let me think", "open the window", "turn off the radio", "thank you very much", "never mind",
)


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def say(text: str, voice: str = "en-us", wpm: int = 160) -> np.ndarray:
    """``text`` spoken by espeak-ng, mono float32 at 16 kHz."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         capture_output=True, check=True, timeout=30).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(x, rate, RATE).astype(np.float32)


@dataclass(frozen=True)
class Clip:
    label: str  # the intent, or "" for no command
    text: str
    condition: str
    audio: np.ndarray


def noisy(x: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """``x`` with white noise at ``snr_db`` below its power (a faint floor when None)."""
    level = 1e-3 if snr_db is None else float(np.sqrt(np.mean(x**2))) / 10 ** (snr_db / 20)
    return (x + rng.normal(0, level, len(x))).astype(np.float32)


def command_clips(phrases: dict[str, tuple[str, ...]], per_phrase: int = 1, seed: int = 0) -> list[Clip]:
    """Each phrase spoken ``per_phrase`` times, the conditions taken in turn across phrases."""
    rng = np.random.default_rng(seed)
    clips, k = [], 0
    for intent, texts in phrases.items():
        for text in texts:
            for _ in range(per_phrase):
                voice, wpm, snr = CONDITIONS[k % len(CONDITIONS)]
                k += 1
                audio = noisy(say(text, voice, wpm), snr, rng)
                clips.append(Clip(intent, text, f"{voice}/{wpm}/{snr or 'clean'}", audio))
    return clips


def stream(clips: Iterable[np.ndarray], gap_s: float = 0.6, seed: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The clips one after another with ``gap_s`` of faint noise between; (audio, [(start, end) sample])."""
    rng = np.random.default_rng(seed)
    gap = int(gap_s * RATE)
    parts, spans, at = [], [], 0
    for x in clips:
        parts.append(np.zeros(gap, np.float32))
        at += gap
        parts.append(x)
        spans.append((at, at + len(x)))
        at += len(x)
    parts.append(np.zeros(gap, np.float32))
    audio = np.concatenate(parts)
    return noisy(audio, None, rng), spans


def chunks(audio: np.ndarray, chunk_ms: int = 50, t0_ns: int = 0) -> list[AudioChunk]:
    n = RATE * chunk_ms // 1000
    return [AudioChunk(t_ns=t0_ns + i * 1_000_000_000 // RATE, samples=audio[i: i + n], sample_rate=RATE)
            for i in range(0, len(audio), n)]
