"""Train a task's spoken-intent classifier: ``edgefusion/models/speech/<task>.intents.onnx`` and ``.json``.

The classifier (see :mod:`edgefusion.sources.speech_intents`) is a small convolutional head over a frozen speech
embedding; this script makes its training set and trains it:

- **commands**: each phrasing of each intent the speech grammar knows (``task_phrases``), bare or with a filler
  ("please", "could you" ...) before or after it;
- **other**: sentences that are no command of the task: the task's own grammar of unrelated sentences (questions,
  chit-chat, other devices), the other built-in tasks' spoken phrasings, and the everyday sentences of
  :mod:`export.spoken`; any sentence of an evaluation set (the paraphrase set's unrelated rows and
  ``tests/speech_clips.UNRELATED``) is left out;
- **sounds** (also ``other``): noise (white, pink, brown; steady or bursts), tones, and the scenario
  generators' chimes, glass, beeps, babble, music, whistles, engines, sirens and horns; a microphone hears far
  more of these than of commands, and a classifier that never heard them names a command for loud noise;
- spoken by espeak-ng in many voices: English accents with espeak-ng's voice variants, speeds 120-210 words/min,
  pitches 25-75, at levels -20 to +6 dB, clean or in white, pink or the task's own background noise at 25 to 5 dB
  SNR. Every voice and voice variant of every evaluation condition set (``tests/speech_clips.py``: the test's,
  dev and the three held-out sets) is kept out, so those sets measure voices the classifier never heard.

A share of the voices (``--val-voices``) is held back and the accuracy on them printed and written to the JSON.
Everything is seeded: the same arguments give the same clips (espeak-ng renders a text the same way every time)
and, on one machine, the same weights.

    python -m export.speech_intents [--tasks smart_home driving] [--voices 80] [--epochs 40] [--seed 0]
                                    [--out DIR] [--force]

By default it writes the shipped files (``edgefusion/models/speech/``), which the runtime loads; replacing
them needs ``--force``. Negated commands ("don't turn left") are not among its negatives: trained as no
command, they cost the head recall (driving phrasings on the test's voices 100% -> 89%) and still leaked;
the grammar hears the negation instead (``Listener._judge``).

Needs espeak-ng (``apt-get install espeak-ng``) and the ``train`` extra (torch). About 3 minutes per task on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LANGS = ("en", "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbcwmd",
         "en-029")
#: espeak-ng voice variants (``+name``) that only make noise or robots of a voice
ODD_VARIANTS = frozenset(("whisper", "whisperf", "croak", "UniRobot", "anikaRobot", "Demonic", "Tweaky"))
RATE = 16000
SNRS = (None, None, 25.0, 20.0, 15.0, 10.0, 5.0)
#: voices of other languages that read some of the negatives (speech that is not English is no command either)
FOREIGN = ("de", "fr", "es", "it", "nl", "pl", "pt", "sv", "hi", "fi")
#: short words people say that are no command
WORDS = ("yes", "no", "okay", "hello", "hey", "thanks", "what", "right", "sure", "wait", "hmm", "sorry")
#: sound generators of :mod:`edgefusion.scenarios.sounds` (and noises and tones made here) heard as ``other``
SOUNDS = ("white", "pink", "brown", "burst", "tone", "chime", "glass_break", "beeps", "babble", "music", "whistle",
          "engine", "siren", "horn")


def evaluation_conditions() -> tuple[set[str], set[str], set[str]]:
    """(voices, voice variants, sentences) of the evaluation sets, all kept out of training."""
    if not (REPO / "tests" / "speech_clips.py").is_file():
        raise SystemExit("export.speech_intents: run it from a clone of the repository: the evaluation voices and "
                         "sentences kept out of training are listed in tests/speech_clips.py")
    sys.path.insert(0, str(REPO / "tests"))
    import speech_clips as sc

    voices = {v for s in sc.EVALUATION_SETS for v, _, _ in s}
    variants = {v.split("+", 1)[1] for v in voices if "+" in v}
    sentences = {_key(t) for t in sc.UNRELATED}
    for task in ("smart_home", "driving"):
        sentences |= {_key(t) for t in sc.unrelated_sentences(task)}
    return voices, variants, sentences


def _key(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalpha() or c in " '").split())


def training_voices(n: int, seed: int) -> list[str]:
    """``n`` espeak-ng voices (accent + variant), none of an evaluation set, in a seeded order."""
    import re
    import subprocess

    from export.corpus_sources import _tool

    exe = _tool("espeak-ng", "apt-get install espeak-ng")
    said = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"Data at:\s*(\S+)", said)  # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/..."
    data = Path(found.group(1)) if found else None
    if data is None or not (data / "voices" / "!v").is_dir():
        raise SystemExit(f"export.speech_intents: espeak-ng's voice variants were not found ({said.strip()!r})")
    voices, variants, _ = evaluation_conditions()
    names = sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())
    pairs = [f"{lang}+{v}" for lang in LANGS for v in names if v not in variants and v not in ODD_VARIANTS]
    pool = [v for v in [*LANGS, *pairs] if v not in voices]
    order = np.random.default_rng([seed, 3]).permutation(len(pool))
    return [pool[int(i)] for i in order[:n]]


def negatives(task: str, seed: int, n: int) -> list[str]:
    """``n`` distinct sentences that are no command of ``task`` (none from an evaluation set)."""
    from edgefusion.scenarios import get_scenario
    from edgefusion.scenarios.base import UNRELATED
    from edgefusion.sources.speech_asr import SPOKEN
    from export.spoken import SENTENCES

    _, _, held = evaluation_conditions()
    rng = np.random.default_rng([seed, 5])
    grammar = get_scenario(task).grammar
    out: dict[str, None] = {}
    for _ in range(40 * n):
        if len(out) >= n // 2:
            break
        out[grammar.sample(UNRELATED, rng, typo_prob=0.0)] = None
    for other, phrases in SPOKEN.items():
        if other != task:
            out.update(dict.fromkeys(p for texts in phrases.values() for p in texts))
    out.update(dict.fromkeys(s.rstrip(".?!") for s in SENTENCES))
    return [s for s in out if _key(s) not in held]


def clip_specs(task: str, voices: list[str], seed: int, negatives_per_voice: int,
               sounds_per_voice: int = 8) -> list[dict[str, Any]]:
    """What to render: per voice, each phrasing once (bare, or with a filler at a side), some negatives (a fifth
    of them short words, a fifth read by a voice of another language) and some sounds."""
    from edgefusion.sources.speech_asr import task_phrases

    phrases, fillers = task_phrases(task)
    negs = negatives(task, seed, 400)
    rng = np.random.default_rng([seed, 7])
    specs: list[dict[str, Any]] = []
    for voice in voices:
        said = [(i, t) for i, ts in phrases.items() for t in ts]
        for intent, text in said:
            if rng.random() < 0.4:
                f = str(rng.choice(fillers))
                text = f"{f} {text}" if rng.random() < 0.5 else f"{text} {f}"
            specs.append({"label": intent, "text": text})
        specs += [{"label": "other", "text": negs[int(k)]} for k in rng.choice(len(negs), negatives_per_voice, False)]
        for s in specs[len(specs) - negatives_per_voice:]:
            if rng.random() < 0.2:
                s["text"] = str(rng.choice(WORDS))
            elif rng.random() < 0.25:
                s["voice"] = str(rng.choice(FOREIGN))
        for s in specs[len(specs) - len(said) - negatives_per_voice:]:
            s.update(voice=s.get("voice", voice), slot=voice, speed=int(rng.integers(120, 211)),
                     pitch=int(rng.integers(25, 76)), snr=SNRS[int(rng.integers(len(SNRS)))],
                     noise=str(rng.choice(["white", "pink", "background"])), gain_db=float(rng.uniform(-20, 6)),
                     seed=int(rng.integers(2**31)), task=task)
        specs += [{"label": "other", "sound": str(rng.choice(SOUNDS)), "seconds": float(rng.uniform(0.3, 2.5)),
                   "level_db": float(rng.uniform(-35, -1)), "seed": int(rng.integers(2**31)), "slot": voice,
                   "task": task} for _ in range(sounds_per_voice)]
    return specs


def _noise(kind: str, n: int, task: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "white":
        return rng.normal(0, 1, n).astype(np.float32)
    if kind == "pink":
        spec = np.fft.rfft(rng.normal(0, 1, n))
        spec /= np.sqrt(np.maximum(np.arange(len(spec)), 1))
        return np.fft.irfft(spec, n).astype(np.float32)
    from edgefusion.scenarios import get_scenario

    return get_scenario(task).background(n, rng, hard=True).astype(np.float32)


def sound(name: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A sound that is no speech, peak-normalized (``name`` from :data:`SOUNDS`)."""
    from edgefusion.scenarios import sounds

    n = int(seconds * RATE)
    if name in ("white", "pink", "brown"):
        x = sounds.colored_noise(n, rng, tilt={"white": 0.0, "pink": 1.0, "brown": 2.0}[name])
    elif name == "burst":  # noise switched on and off, as a fan or a tap does
        x = rng.normal(0, 1, n) * (np.sin(2 * np.pi * rng.uniform(0.5, 4) * np.arange(n) / RATE) > 0)
    elif name == "tone":
        x = np.sin(2 * np.pi * rng.uniform(150, 3000) * np.arange(n) / RATE)
    else:
        x = getattr(sounds, name)(seconds, rng)
    x = np.asarray(x, np.float32)[:n]
    return x / max(1e-6, float(np.abs(x).max()))


def render(spec: dict[str, Any]) -> np.ndarray:
    """One clip of :func:`clip_specs`: espeak-ng, 16 kHz, noise at its SNR, its level; or a sound. float32 mono."""
    from edgefusion.preprocess.audio import resample

    if "sound" in spec:
        rng = np.random.default_rng(spec["seed"])
        x = sound(spec["sound"], spec["seconds"], rng) * 10 ** (spec["level_db"] / 20)
        return (x + rng.normal(0, 1e-3, len(x))).astype(np.float32)
    from export.corpus_sources import render_espeak

    with tempfile.TemporaryDirectory(prefix="edgefusion-intents-") as tmp:
        x, rate = render_espeak(spec["text"], spec["voice"], spec["speed"], spec["pitch"], Path(tmp) / "c.wav")
    x = np.asarray(resample(x, rate, RATE) if rate != RATE else x, np.float32)
    rng = np.random.default_rng(spec["seed"])
    x = x / max(1e-6, float(np.abs(x).max())) * 0.5
    if spec["snr"] is not None:
        noise = _noise(spec["noise"], len(x), spec["task"], rng)
        level = float(np.sqrt(np.mean(x**2))) / 10 ** (spec["snr"] / 20)
        x = x + noise / max(1e-9, float(np.sqrt(np.mean(noise**2)))) * level
    else:
        x = x + rng.normal(0, 1e-3, len(x)).astype(np.float32)
    return np.clip(x * 10 ** (spec["gain_db"] / 20), -1, 1).astype(np.float32)


def _embed_one(spec: dict[str, Any]) -> np.ndarray:
    global _EMBEDDER
    if _EMBEDDER is None:
        from edgefusion.sources.speech_intents import SpeechEmbedder

        _EMBEDDER = SpeechEmbedder(threads=1)
    return _EMBEDDER(render(spec))


_EMBEDDER: Any = None


def embed_all(specs: list[dict[str, Any]], workers: int, what: str) -> list[np.ndarray]:
    from tqdm import tqdm

    with ProcessPoolExecutor(workers) as ex:
        return list(tqdm(ex.map(_embed_one, specs, chunksize=16), total=len(specs), desc=what, unit="clip"))


def make_head(n_labels: int) -> Any:
    import torch.nn as nn

    class Head(nn.Module):
        """Two 1-D convolutions over the embedding sequence, max over time, a linear layer."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv1d(96, 128, 3, padding=1), nn.ReLU(), nn.Dropout(0.2),
                                      nn.Conv1d(128, 128, 3, padding=1), nn.ReLU())
            self.out = nn.Linear(128, n_labels)

        def forward(self, x: Any, mask: Any = None) -> Any:  # x: (batch, time, 96)
            h = self.conv(x.transpose(1, 2)).transpose(1, 2)
            if mask is not None:
                h = h.masked_fill(~mask[..., None], -1e4)
            return self.out(h.max(dim=1).values)

    return Head()


def _batch(embs: list[np.ndarray]) -> tuple[Any, Any]:
    import torch

    t = max(len(e) for e in embs)
    x = np.zeros((len(embs), t, 96), np.float32)
    mask = np.zeros((len(embs), t), bool)
    for i, e in enumerate(embs):
        x[i, : len(e)], mask[i, : len(e)] = e, True
    return torch.from_numpy(x), torch.from_numpy(mask)


def train(embs: list[np.ndarray], y: list[int], n_labels: int, epochs: int, seed: int) -> Any:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    torch.manual_seed(seed)
    net = make_head(n_labels)
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    rng = np.random.default_rng([seed, 11])
    labels = torch.tensor(y)
    for _ in tqdm(range(epochs), desc="training", unit="epoch"):
        net.train()
        order = rng.permutation(len(embs))
        for i in range(0, len(order), 64):
            b = order[i: i + 64]
            x, mask = _batch([embs[int(k)] for k in b])
            x = x + 0.1 * torch.randn_like(x)
            loss = F.cross_entropy(net(x, mask), labels[torch.from_numpy(b)], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def accuracy(net: Any, embs: list[np.ndarray], y: list[int]) -> float:
    import torch

    with torch.no_grad():
        x, mask = _batch(embs)
        return float((net(x, mask).argmax(1).numpy() == np.asarray(y)).mean())


def export(net: Any, path: Path) -> None:
    import torch

    x = torch.zeros(1, 12, 96)  # (batch, embeddings over time, 96): any length of time
    torch.onnx.export(net, (x,), str(path), dynamo=True, opset_version=20, external_data=False, verbose=False,
                      input_names=["embeddings"], output_names=["logits"],
                      dynamic_shapes=({1: torch.export.Dim("time", min=1, max=4096)},))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.speech_intents", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["smart_home", "driving"], help="tasks to train (default: both)")
    ap.add_argument("--voices", type=int, default=80, help="espeak-ng voices to train on (default 80)")
    ap.add_argument("--val-voices", type=int, default=12, help="further voices held back to report accuracy (12)")
    ap.add_argument("--negatives", type=int, default=30, help="sentences that are no command, per voice (30)")
    ap.add_argument("--sounds", type=int, default=8, help="sounds that are no speech, per voice (8)")
    ap.add_argument("--epochs", type=int, default=40, help="passes over the training clips (40)")
    ap.add_argument("--seed", type=int, default=0, help="seeds voices, clips, noise and weights (0)")
    ap.add_argument("--min-probability", type=float, default=0.7,
                    help="probability an intent needs to make a command on the classifier's word (0.7)")
    ap.add_argument("--min-sensitive", type=float, default=0.8,
                    help="probability a security-sensitive intent needs, with the grammar's agreement (0.8)")
    ap.add_argument("--min-other", type=float, default=0.7,
                    help="probability of 'other' at which the classifier overrules the grammar (0.7)")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--out", type=Path, default=REPO / "edgefusion" / "models" / "speech",
                    help="where <task>.intents.onnx and .json go (default: the shipped ones, edgefusion/models/speech; "
                         "replacing existing files needs --force)")
    ap.add_argument("--force", action="store_true", help="replace a task's existing classifier files in --out")
    args = ap.parse_args(argv)
    for name in ("voices", "val_voices", "negatives", "sounds", "epochs", "workers"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("min_probability", "min_sensitive", "min_other"):
        if not 0 <= getattr(args, name) <= 1:
            ap.error(f"--{name.replace('_', '-')} must be from 0 to 1")
    from edgefusion.sources.speech_asr import SPOKEN

    unknown = [t for t in args.tasks if t not in SPOKEN]
    if unknown:
        ap.error(f"no spoken phrasings are known for {', '.join(unknown)} (known: {', '.join(sorted(SPOKEN))})")
    try:
        import torch
    except ImportError:
        ap.exit(2, "export.speech_intents: needs torch (pip install -e '.[train]')\n")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        ap.error(f"--out {args.out}: {exc.strerror}")
    there = [str(args.out / f"{t}.intents.{x}") for t in args.tasks for x in ("onnx", "json")
             if (args.out / f"{t}.intents.{x}").exists()]
    if there and not args.force:
        ap.error(f"{there[0]} exists (the files the runtime loads when --out is the default); pass --force to "
                 "replace it, or choose another --out")
    from edgefusion.sources.speech_intents import OTHER

    voices = training_voices(args.voices + args.val_voices, args.seed)
    if len(voices) < args.voices + args.val_voices:
        ap.error(f"only {len(voices)} espeak-ng voices are left outside the evaluation sets")
    train_v, val_v = voices[: args.voices], voices[args.voices:]
    for task in args.tasks:
        t0 = time.perf_counter()
        specs = clip_specs(task, voices, args.seed, args.negatives, args.sounds)
        labels = [*sorted({s["label"] for s in specs} - {OTHER}), OTHER]
        embs = embed_all(specs, args.workers, f"{task}: clips")
        y = [labels.index(s["label"]) for s in specs]
        tr = [i for i, s in enumerate(specs) if s["slot"] in train_v]  # a voice's clips: its own, its sounds, and
        va = [i for i, s in enumerate(specs) if s["slot"] in val_v]  # the negatives read in another language
        net = train([embs[i] for i in tr], [y[i] for i in tr], len(labels), args.epochs, args.seed)
        val_acc = accuracy(net, [embs[i] for i in va], [y[i] for i in va])
        export(net, args.out / f"{task}.intents.onnx")
        info = {"task": task, "labels": labels, "min_probability": args.min_probability,
                "min_sensitive": args.min_sensitive, "min_other": args.min_other,
                "training": {"clips": len(tr), "voices": train_v, "held_back_voices": val_v,
                             "held_back_clips": len(va), "held_back_accuracy": round(val_acc, 4),
                             "epochs": args.epochs, "seed": args.seed, "negatives_per_voice": args.negatives,
                             "sounds_per_voice": args.sounds,
                             "seconds": round(time.perf_counter() - t0, 1),
                             "command": "python -m export.speech_intents " + " ".join(argv or sys.argv[1:])}}
        (args.out / f"{task}.intents.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        print(f"{task}: {len(tr)} clips of {len(train_v)} voices; held-back voices ({len(va)} clips) "
              f"{val_acc:.1%} right -> {args.out / f'{task}.intents.onnx'}")
        if val_acc < 0.9:
            print(f"{task}: warning: {val_acc:.1%} on the held-back voices is too low to use; train on more "
                  f"--voices (80) and --epochs (40)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
