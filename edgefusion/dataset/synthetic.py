"""Labelled datasets from the reference scenarios: scenario samples turned into model feeds.

Feeds are built by :class:`edgefusion.preprocess.FeedBuilder` - the same code the runtime
runs - so training, export parity, calibration and the INT8 accuracy gate see identical
tensors by construction. Torch-free: training (``export/``) and calibration
(``calibration/``) both build their data here.

Example:
    >>> from edgefusion.package import load_package
    >>> from edgefusion.scenarios import get_scenario
    >>> ds = build_dataset(get_scenario("smart_home"), load_package("smart_home").feed_builder(), n=3, seed=1)
    >>> len(ds), sorted(ds.feeds) == sorted(INPUT_ORDER), len(data_hash(ds))
    (3, True, 64)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefusion.preprocess import (
    PAD,
    UNK,
    AudioParams,
    FeedBuilder,
    HashedParams,
    ImageParams,
    TextParams,
    logmel,
)
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import Scenario, generate_samples

__all__ = ["INPUT_ORDER", "NO_INTENT", "Dataset", "build_dataset", "data_hash", "input_specs", "intent_labels",
           "make_params", "stack_feeds", "vocabulary"]

# The reference model's inputs, in its argument order (the ONNX export and eager PyTorch use it).
INPUT_ORDER = ("image", "audio", "tokens", "token_mask", "present")
#: the intent output's label for "no command in the window" (after the task's intents)
NO_INTENT = "none"


def intent_labels(intents: Sequence[str]) -> tuple[str, ...]:
    """The labels of a model's intent output: the task's intents, then :data:`NO_INTENT`.

    Example:
        >>> intent_labels(("turn_left", "unrelated"))
        ('turn_left', 'unrelated', 'none')
    """
    return (*intents, NO_INTENT)


def vocabulary(scenario: Scenario) -> tuple[str, ...]:
    """Every word of the scenario's command grammar (no typos), after the padding and unknown tokens."""
    return (PAD, UNK, *sorted(scenario.grammar.words()))


def make_params(scenario: Scenario, seed: int, image_size: int = 64, text: str = "hashed_ngrams") -> tuple[
        ImageParams, AudioParams, TextParams | HashedParams]:
    """Preprocessing parameters; the log-mel mean/std come from 256 training samples.

    ``text``: ``hashed_ngrams`` (open vocabulary; the grammar's words are its known words) or
    ``tokens`` (the grammar's closed vocabulary, as v1 packages had).
    """
    base = AudioParams()
    feats = np.stack([logmel(s.audio, base) for s in generate_samples(scenario, 256, seed)])
    audio = AudioParams(mean=round(float(feats.mean()), 4), std=round(float(feats.std()), 4))
    txt: TextParams | HashedParams = (TextParams(vocab=vocabulary(scenario), max_tokens=12) if text == "tokens"
                                      else HashedParams(known=tuple(sorted(scenario.grammar.words()))))
    return ImageParams(size=image_size), audio, txt


def input_specs(img: ImageParams, aud: AudioParams, txt: TextParams | HashedParams) -> list[
        tuple[str, dict[str, Any]]]:
    """(name, preprocess) for each model input, in the model's argument order."""
    return [
        ("image", img.to_dict()),
        ("audio", aud.to_dict()),
        ("tokens", txt.to_dict()),
        ("token_mask", {"kind": "token_mask", "of": "tokens"}),
        ("present", {"kind": "presence", "order": ["image", "audio", "text"]}),
    ]


@dataclass
class Dataset:
    """Stacked feeds (input name -> array, samples on axis 0) with event and action labels."""

    feeds: dict[str, np.ndarray]
    y_events: np.ndarray
    y_action: np.ndarray
    #: index into :func:`intent_labels` of the scenario's intents (-1: not labelled); None: no intent labels
    y_intent: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y_action)


def stack_feeds(windows: Iterable[FusionWindow], builder: FeedBuilder, progress: Any = None) -> dict[str, np.ndarray]:
    """The feeds of ``windows``, stacked along axis 0 (empty when there are no windows).

    Windows are preprocessed 256 at a time, so memory stays bounded by the result.
    ``progress`` is a tqdm-like bar (updated once per window) or None.
    """
    chunks: dict[str, list[np.ndarray]] = {}
    batch: list[FusionWindow] = []

    def flush() -> None:
        feeds, _ = builder.build(batch)
        for k, v in feeds.items():
            chunks.setdefault(k, []).append(v)
        batch.clear()

    for w in windows:
        batch.append(w)
        if len(batch) == 256:
            flush()
        if progress is not None:
            progress.update(1)
    if batch:
        flush()
    return {k: np.concatenate(v) for k, v in chunks.items()}


def build_dataset(scenario: Scenario, builder: FeedBuilder, n: int, seed: int, hard: bool = False,
                  progress: Any = None) -> Dataset:
    """``n`` samples as stacked feeds and labels. ``progress`` is a tqdm-like bar or None."""
    events = scenario.events
    y_ev = np.zeros((n, len(events)), np.float32)
    y_act = np.zeros(n, np.int64)
    y_int = np.zeros(n, np.int64)
    labels = intent_labels(scenario.intents)

    def windows() -> Iterator[FusionWindow]:
        for i, s in enumerate(generate_samples(scenario, n, seed, hard)):
            y_ev[i] = [e in s.events for e in events]
            y_act[i] = scenario.actions.index(s.action)
            y_int[i] = labels.index(s.intent or NO_INTENT)
            yield FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)

    return Dataset(stack_feeds(windows(), builder, progress), y_ev, y_act, y_int)


def data_hash(ds: Dataset) -> str:
    """sha256 over the feeds (sorted by name) and labels; manifests record it as the data's identity."""
    h = hashlib.sha256()
    for k in sorted(ds.feeds):
        h.update(k.encode())
        h.update(np.ascontiguousarray(ds.feeds[k]).tobytes())
    h.update(ds.y_events.tobytes())
    h.update(ds.y_action.tobytes())
    if ds.y_intent is not None:
        h.update(ds.y_intent.tobytes())
    return h.hexdigest()
