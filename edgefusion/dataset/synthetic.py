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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefusion.preprocess import PAD, UNK, AudioParams, FeedBuilder, ImageParams, TextParams, logmel, normalize_text
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import Scenario, generate_samples

__all__ = ["INPUT_ORDER", "Dataset", "build_dataset", "data_hash", "input_specs", "make_params",
           "stack_feeds", "vocabulary"]

# The reference model's inputs, in its argument order (the ONNX export and eager PyTorch use it).
INPUT_ORDER = ("image", "audio", "tokens", "token_mask", "present")


def vocabulary(scenario: Scenario) -> tuple[str, ...]:
    """Every word of the scenario's commands and fillers, after the padding and unknown tokens."""
    words: set[str] = set()
    for texts in scenario.phrases.values():
        for t in texts:
            words.update(normalize_text(t))
    for f in scenario.fillers:
        words.update(normalize_text(f))
    return (PAD, UNK, *sorted(words))


def make_params(scenario: Scenario, seed: int, image_size: int = 64) -> tuple[ImageParams, AudioParams, TextParams]:
    """Preprocessing parameters; the log-mel mean/std come from 256 training samples."""
    base = AudioParams()
    feats = np.stack([logmel(s.audio, base) for s in generate_samples(scenario, 256, seed)])
    audio = AudioParams(mean=round(float(feats.mean()), 4), std=round(float(feats.std()), 4))
    return ImageParams(size=image_size), audio, TextParams(vocab=vocabulary(scenario), max_tokens=12)


def input_specs(img: ImageParams, aud: AudioParams, txt: TextParams) -> list[tuple[str, dict[str, Any]]]:
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

    def windows() -> Iterator[FusionWindow]:
        for i, s in enumerate(generate_samples(scenario, n, seed, hard)):
            y_ev[i] = [e in s.events for e in events]
            y_act[i] = scenario.actions.index(s.action)
            yield FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)

    return Dataset(stack_feeds(windows(), builder, progress), y_ev, y_act)


def data_hash(ds: Dataset) -> str:
    """sha256 over the feeds (sorted by name) and labels; manifests record it as the data's identity."""
    h = hashlib.sha256()
    for k in sorted(ds.feeds):
        h.update(k.encode())
        h.update(np.ascontiguousarray(ds.feeds[k]).tobytes())
    h.update(ds.y_events.tobytes())
    h.update(ds.y_action.tobytes())
    return h.hexdigest()
