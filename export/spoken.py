"""Spoken clips: wide-band speech rendered by espeak-ng, so ``speech`` is learned from speech.

smart_home's ``speech`` event was learned from the generator's formant babble alone (a
harmonic source under moving formants), and the package fired ``speech`` on 9.7% of held-out
windows at -20 dBFS (24 of 80 music-on-hold windows), on the *training* music too: music with
sustained harmonic notes is what babble sounds like. The corpus' real speech could not be
used as positives: most of it is 8 kHz telephone prompts, and inserted as ``speech`` it
taught that band-limited harmonic sound is speech (held-out music fired on 17.7% of windows,
see :class:`edgefusion.augment.AugmentPolicy`). These clips are wide-band (espeak-ng renders
at 22.05 kHz) and varied: many sentences, English voices and accents with espeak-ng's
voice variants, other languages, speeds and pitches, so what they share is what speech has
(syllable rhythm, consonants between vowels) and not one voice's timbre.

With ``edgefusion train --spoken N --real-events P`` a task with a ``speech`` event gets them
as real event recordings (inserted into a share P of windows and labelled ``speech``);
any other task gets them as background (speech is no event for driving).

Voices the corpus' held-out speech uses (Scottish, Caribbean English, Spanish) are left out,
so that held-out speech stays unheard.

Example:
    >>> [s["voice"] for s in spoken_clip_specs(3, seed=0)] == [s["voice"] for s in spoken_clip_specs(3, seed=0)]
    True
    >>> clips = spoken_clips(2, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RATE", "SENTENCES", "VOICES", "spoken_clip_specs", "spoken_clips"]

RATE = 16000

#: everyday sentences: statements, questions, numbers, names; none is a command of a reference task
SENTENCES = (
    "I left my umbrella on the train this morning, so I got completely soaked.",
    "Have you seen the new bakery that opened next to the post office?",
    "The match starts at a quarter past seven, and tickets are still available.",
    "My grandmother grew up in a small village by the sea in the north.",
    "Could you pass me the salt and the pepper, please?",
    "We should probably leave before the traffic gets any worse.",
    "The report needs three more pages and a summary by Friday afternoon.",
    "She plays the violin in an orchestra every second weekend.",
    "Nobody knows exactly why the bridge was closed for so long.",
    "Twenty four, twenty five, twenty six, and that makes the whole set.",
    "Honestly, I think the second film was better than the first one.",
    "The children built a sandcastle with towers, walls and a moat.",
    "How much does a return ticket to the city centre cost these days?",
    "He fixed the bicycle chain with nothing but a spoon and some patience.",
    "Please remember that the library closes early on public holidays.",
    "The soup needs more garlic, a little lemon, and a pinch of pepper.",
    "I'm sorry I missed your call, I was in a meeting all afternoon.",
    "Our neighbours are painting their fence a very bright shade of green.",
    "What time did you say your flight lands on Thursday?",
    "The museum has a collection of old clocks from all over Europe.",
    "My phone battery died halfway through the conversation.",
    "If it rains tomorrow, we can visit the aquarium instead.",
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "They moved to a bigger flat because the baby needed her own room.",
    "Let me check my calendar and get back to you tonight.",
    "The recipe says to bake it for forty minutes at a medium heat.",
    "Apparently the concert was sold out within an hour.",
    "I can never remember whether it's the second or the third door.",
    "The dog barked at the postman again, just like every single day.",
    "Seven hundred and fifty people signed the petition last week.",
    "We watched the sunset from the top of the hill with a flask of tea.",
    "Excuse me, do you know where the nearest pharmacy is?",
)

#: espeak-ng voices (``-v``): English voices and accents, with voice variants (``+f2``, ``+klatt``...), and
#: other languages reading the same English sentences (accented English, another set of phonemes)
VOICES = (
    "en-us", "en-gb", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc",
    "en-us+f2", "en-us+f4", "en-us+m3", "en-us+m7", "en-gb+f1", "en-gb+f5", "en-gb+m2", "en-gb+m5",
    "en-gb-x-rp+f3", "en-us+klatt", "en-gb+klatt2", "en-us+whisper", "en-gb+croak", "en-us+Annie",
    "en-gb+edward", "en-us+linda", "en-gb+max", "en-us+michel",
    "de", "fr+f2", "it", "nl+m4", "pl", "pt+f3", "sv", "hi",
)


def spoken_clip_specs(n: int, seed: int) -> list[dict[str, Any]]:
    """What :func:`spoken_clips` renders: ``n`` seeded (text, voice, speed, pitch) draws.

    Each voice and sentence comes up in turn (shuffled), so a few clips already cover many voices.

    Example:
        >>> [sorted(s) for s in spoken_clip_specs(1, seed=0)]
        [['pitch', 'speed', 'text', 'voice']]
    """
    rng = np.random.default_rng([seed, 17])
    voices = [VOICES[int(i)] for i in rng.permutation(len(VOICES))]
    texts = [SENTENCES[int(i)] for i in rng.permutation(len(SENTENCES))]
    return [{"text": texts[i % len(texts)], "voice": voices[i % len(voices)],
             "speed": int(rng.integers(120, 231)), "pitch": int(rng.integers(20, 81))} for i in range(n)]


def spoken_clips(n: int, seed: int, progress: Any = None) -> list[np.ndarray]:
    """``n`` espeak-ng clips of :func:`spoken_clip_specs`, 16 kHz mono float32, silence trimmed.

    Needs espeak-ng (``apt-get install espeak-ng``, as ``make corpus`` does); without it, one
    :class:`edgefusion.errors.ExportError` line that says how to install it.
    """
    from edgefusion.errors import ExportError
    from edgefusion.preprocess.audio import resample
    from export.corpus import trim_silence
    from export.corpus_sources import render_espeak

    out = []
    with tempfile.TemporaryDirectory(prefix="edgefusion-spoken-") as tmp:
        for i, s in enumerate(spoken_clip_specs(n, seed)):
            x, rate = render_espeak(s["text"], s["voice"], s["speed"], s["pitch"], Path(tmp) / f"{i}.wav")
            y = trim_silence(resample(x, rate, RATE) if rate != RATE else x)
            peak = float(np.abs(y).max()) if len(y) else 0.0
            if peak <= 0:
                raise ExportError(f"espeak-ng rendered silence for voice {s['voice']!r} ({s['text'][:40]!r}...)")
            out.append((y / peak * 0.5).astype(np.float32))
            if progress is not None:
                progress.update(1)
    return out
