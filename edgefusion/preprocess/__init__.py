"""Preprocessing: the one implementation used by training, calibration and the runtime.

:class:`FeedBuilder` turns a :class:`~edgefusion.samples.FusionWindow` into the model's
feeds by reading each input's ``preprocess`` block from the package manifest, so a model
of any shape plugs in through its manifest alone. Kinds of input:

- ``image``: a frame -> float32 (3, size, size) (:mod:`.image`)
- ``logmel``: audio -> float32 (frames, mels) (:mod:`.audio`)
- ``tokens`` / ``token_mask``: a command -> int64 ids and float32 mask (:mod:`.text`)
- ``hashed_ngrams`` / ``token_mask``: a command -> int64 hashed n-gram ids per word (open vocabulary)
- ``presence``: float32 flags, 1.0 for each modality that is present

Example:
    >>> from edgefusion.samples import FusionWindow
    >>> b = FeedBuilder([("present", {"kind": "presence", "order": ["image", "audio", "text"]})])
    >>> b.build([FusionWindow(t_ns=0, image=None, audio=None, command="hi")])[0]["present"].tolist()
    [[0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError
from edgefusion.preprocess.audio import AudioParams, logmel, preprocess_audio, resample
from edgefusion.preprocess.image import ImageParams, preprocess_image
from edgefusion.preprocess.text import (
    PAD,
    UNK,
    HashedParams,
    TextParams,
    Tokens,
    encode_text,
    hashed_ngrams,
    normalize_text,
    text_params,
    tokenize,
)
from edgefusion.samples import FusionWindow

__all__ = [
    "PAD",
    "UNK",
    "AudioParams",
    "FeedBuilder",
    "FeedInfo",
    "HashedParams",
    "ImageParams",
    "TextParams",
    "Tokens",
    "encode_text",
    "hashed_ngrams",
    "logmel",
    "normalize_text",
    "preprocess_audio",
    "preprocess_image",
    "resample",
    "text_params",
    "tokenize",
]

KINDS = ("image", "logmel", "tokens", "hashed_ngrams", "token_mask", "presence")


@dataclass(frozen=True)
class FeedInfo:
    """What preprocessing had to do to a window: unknown words, truncation, masking."""

    unknown_words: int = 0
    truncated: bool = False
    missing: tuple[str, ...] = ()


class FeedBuilder:
    """Builds batched feeds from fusion windows, as the manifest's inputs describe."""

    def __init__(self, inputs: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.inputs = list(inputs)
        self._image = self._audio = None
        self._text: TextParams | HashedParams | None = None
        self._order: list[str] = []
        for name, pre in self.inputs:
            kind = pre.get("kind")
            if kind == "image":
                self._image = ImageParams.from_dict(pre)  # type: ignore[assignment]
            elif kind == "logmel":
                self._audio = AudioParams.from_dict(pre)  # type: ignore[assignment]
            elif kind in ("tokens", "hashed_ngrams"):
                self._text = text_params(pre)
            elif kind == "presence":
                self._order = list(pre["order"])
            elif kind != "token_mask":
                raise ConfigError(f"input '{name}': unknown preprocess kind {kind!r}; expected one of {KINDS}")

    @property
    def audio_params(self) -> AudioParams | None:
        return self._audio

    def build(self, windows: Sequence[FusionWindow]) -> tuple[dict[str, np.ndarray], list[FeedInfo]]:
        """Feeds for a batch of windows (a missing modality becomes zeros and presence 0)."""
        cols: dict[str, list[np.ndarray]] = {name: [] for name, _ in self.inputs}
        infos = []
        for w in windows:
            per, info = self._one(w)
            infos.append(info)
            for name, pre in self.inputs:
                cols[name].append(per["tokens" if pre["kind"] == "hashed_ngrams" else pre["kind"]])
        return {k: np.stack(v) for k, v in cols.items()}, infos

    def _one(self, w: FusionWindow) -> tuple[dict[str, np.ndarray], FeedInfo]:
        out: dict[str, np.ndarray] = {}
        if self._image is not None:
            s = self._image.size
            out["image"] = (preprocess_image(w.image, self._image) if w.image is not None and "image" not in w.missing
                            else np.zeros((3, s, s), np.float32))
        if self._audio is not None:
            a = self._audio
            has_audio = w.audio is not None and "audio" not in w.missing
            out["logmel"] = (preprocess_audio(w.audio, w.audio_rate, a) if has_audio  # type: ignore[arg-type]
                             else np.zeros((a.n_frames, a.n_mels), np.float32))
        unknown, truncated = 0, False
        if self._text is not None:
            if w.command_text is not None and "text" not in w.missing:
                tok = encode_text(w.command_text, self._text)
                unknown, truncated = tok.unknown, tok.truncated
                out["tokens"], out["token_mask"] = tok.ids, tok.mask
            else:
                out["tokens"] = np.zeros(self._text.shape, np.int64)
                out["token_mask"] = np.zeros(self._text.max_tokens, np.float32)
        out["presence"] = np.array([0.0 if m in w.missing else 1.0 for m in self._order], np.float32)
        return out, FeedInfo(unknown, truncated, w.missing)
