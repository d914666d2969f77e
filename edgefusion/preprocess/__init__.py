"""Preprocessing: the one implementation used by training, calibration and the runtime.

:class:`FeedBuilder` turns a :class:`~edgefusion.samples.FusionWindow` into the model's
feeds by reading each input's ``preprocess`` block from the package manifest, so a model
of any shape plugs in through its manifest alone. Kinds of input:

- ``image``: a frame -> float32 or uint8, (3, H, W) or (H, W, 3), stretched or letterboxed (:mod:`.image`)
- ``logmel``: audio -> float32 (frames, mels) (:mod:`.audio`)
- ``tokens`` / ``token_mask``: a command -> int64 ids and float32 mask (:mod:`.text`)
- ``hashed_ngrams`` / ``token_mask``: a command -> int64 hashed n-gram ids per word (open vocabulary)
- ``presence``: float32 flags, 1.0 for each modality that is present
- ``waveform``, ``state``, ``constant``: raw audio, recurrent state, constants (:mod:`.tensors`)

The table of kinds and the builder are in :mod:`.feeds`; :func:`register_input_kind` adds a kind.

Example:
    >>> from edgefusion.samples import FusionWindow
    >>> b = FeedBuilder([("present", {"kind": "presence", "order": ["image", "audio", "text"]})])
    >>> b.build([FusionWindow(t_ns=0, image=None, audio=None, command="hi")])[0]["present"].tolist()
    [[0.0, 0.0, 1.0]]
"""

from __future__ import annotations

from edgefusion.preprocess.audio import AudioParams, logmel, preprocess_audio, resample
from edgefusion.preprocess.feeds import INPUT_KINDS, FeedBuilder, FeedInfo, InputDecl, register_input_kind
from edgefusion.preprocess.image import Geometry, ImageParams, preprocess_image
from edgefusion.preprocess.tensors import RecurrentState, StateParams
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

__all__ = [
    "INPUT_KINDS",
    "PAD",
    "UNK",
    "AudioParams",
    "FeedBuilder",
    "FeedInfo",
    "Geometry",
    "HashedParams",
    "ImageParams",
    "InputDecl",
    "RecurrentState",
    "StateParams",
    "TextParams",
    "Tokens",
    "encode_text",
    "hashed_ngrams",
    "logmel",
    "normalize_text",
    "preprocess_audio",
    "preprocess_image",
    "register_input_kind",
    "resample",
    "text_params",
    "tokenize",
]

