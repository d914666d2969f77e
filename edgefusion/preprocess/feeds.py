"""The feed builder: one handler per declared input, chosen from a table of kinds.

Each input of the manifest names a preprocess ``kind``; :data:`INPUT_KINDS` maps the kind to
a factory that builds the input's handler from its declaration. A handler either makes one
array per window (stacked into a batch) or one array for the whole batch (constants, a
recurrent state's initial zeros). :func:`register_input_kind` adds a kind without touching
the runtime (docs/bring-your-model.md).

Kinds: ``image``, ``logmel``, ``tokens``, ``hashed_ngrams``, ``token_mask``, ``presence``, ``waveform``,
``state``, ``constant``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

from edgefusion.errors import ConfigError
from edgefusion.preprocess.audio import AudioParams, preprocess_audio
from edgefusion.preprocess.image import Geometry, ImageParams, preprocess_image_geometry
from edgefusion.preprocess.tensors import ConstantParams, StateParams, WaveformParams, waveform
from edgefusion.preprocess.text import HashedParams, TextParams, Tokens, encode_text, text_params
from edgefusion.samples import FusionWindow

__all__ = ["INPUT_KINDS", "FeedBuilder", "FeedInfo", "InputDecl", "Note", "register_input_kind"]


@dataclass(frozen=True)
class FeedInfo:
    """What preprocessing had to do to a window: unknown words, truncation, masking, image placement."""

    unknown_words: int = 0
    truncated: bool = False
    missing: tuple[str, ...] = ()
    #: image input name -> where the frame went in it (maps detection boxes back to the frame)
    geometry: Mapping[str, Geometry] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Note:
    """What handlers report about one window while building it (becomes its :class:`FeedInfo`)."""

    unknown_words: int = 0
    truncated: bool = False
    geometry: dict[str, Geometry] = field(default_factory=dict)


@dataclass(frozen=True)
class InputDecl:
    """One declared input as a handler factory sees it; ``shape`` includes the batch dimension."""

    name: str
    preprocess: dict[str, Any]
    dtype: str = "float32"
    shape: tuple[int | str, ...] = ()

    @property
    def kind(self) -> str:
        return str(self.preprocess.get("kind"))


class Handler(Protocol):
    """Makes one input's array: per window (``batched``) or for the whole batch."""

    batched: bool

    def one(self, w: FusionWindow, note: Note) -> np.ndarray: ...

    def whole(self, n: int) -> np.ndarray: ...


class _PerWindow:
    batched = True

    def __init__(self, fn: Callable[[FusionWindow, Note], np.ndarray]) -> None:
        self.one = fn

    def whole(self, n: int) -> np.ndarray:  # pragma: no cover - never called for a batched handler
        raise NotImplementedError


class _Whole:
    batched = False

    def __init__(self, fn: Callable[[int], np.ndarray]) -> None:
        self.whole = fn

    def one(self, w: FusionWindow, note: Note) -> np.ndarray:  # pragma: no cover - never called
        raise NotImplementedError


Factory = Callable[[InputDecl, Sequence[InputDecl]], Handler]
#: the kinds of a command's ids (a token_mask goes with either)
TEXT_KINDS = ("tokens", "hashed_ngrams")


def _image(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    p = ImageParams.from_dict(d.preprocess, "uint8" if d.dtype == "uint8" else None)

    def one(w: FusionWindow, note: Note) -> np.ndarray:
        if w.image is None or "image" in w.missing:
            return np.zeros(p.shape, p.dtype)
        x, note.geometry[d.name] = preprocess_image_geometry(w.image, p)
        return x
    return _PerWindow(one)


def _logmel(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    a = AudioParams.from_dict(d.preprocess)

    def one(w: FusionWindow, note: Note) -> np.ndarray:
        if w.audio is None or "audio" in w.missing:
            return np.zeros((a.n_frames, a.n_mels), np.float32)
        return preprocess_audio(w.audio, w.audio_rate, a)
    return _PerWindow(one)


def _encoder(t: TextParams | HashedParams) -> Callable[[str], Tokens]:
    """:func:`encode_text` with ``t``, cached by command (arrays read-only): a command stays in the
    window for many frames (up to the command horizon), and hashing its n-grams costs ~50 us."""

    @lru_cache(maxsize=64)
    def encode(text: str) -> Tokens:
        tok = encode_text(text, t)
        tok.ids.flags.writeable = False
        tok.mask.flags.writeable = False
        return tok
    return encode


def _tokens(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    """``tokens`` (word ids, (max_tokens,)) or ``hashed_ngrams`` (n-gram ids per word, (max_tokens, max_ngrams))."""
    t = text_params(d.preprocess)
    encode = _encoder(t)

    def one(w: FusionWindow, note: Note) -> np.ndarray:
        if w.command_text is None or "text" in w.missing:
            return np.zeros(t.shape, np.int64)
        tok = encode(w.command_text)
        note.unknown_words, note.truncated = tok.unknown, tok.truncated
        return tok.ids
    return _PerWindow(one)


def _token_mask(d: InputDecl, inputs: Sequence[InputDecl]) -> Handler:
    src = next((i for i in inputs if i.kind in TEXT_KINDS), None)
    if src is None:
        raise ConfigError(f"input '{d.name}': a token_mask needs a tokens or hashed_ngrams input")
    t = text_params(src.preprocess)
    encode = _encoder(t)

    def one(w: FusionWindow, note: Note) -> np.ndarray:
        if w.command_text is None or "text" in w.missing:
            return np.zeros(t.max_tokens, np.float32)
        return encode(w.command_text).mask
    return _PerWindow(one)


def _presence(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    order = [str(m) for m in d.preprocess["order"]]
    return _PerWindow(lambda w, note: np.array([0.0 if m in w.missing else 1.0 for m in order], np.float32))


def _waveform(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    p = WaveformParams.from_dict(d.preprocess)
    return _PerWindow(lambda w, note: waveform(None if "audio" in w.missing else w.audio, w.audio_rate, p))


def _state(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    p = StateParams.from_decl(d.name, d.preprocess, d.dtype, d.shape)
    return _Whole(p.zeros)


def _constant(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
    p = ConstantParams.from_decl(d.name, d.preprocess, d.dtype, d.shape)
    return _Whole(p.array)


#: preprocess kind -> factory of the input's handler; :func:`register_input_kind` adds more
INPUT_KINDS: dict[str, Factory] = {
    "image": _image,
    "logmel": _logmel,
    "tokens": _tokens,
    "hashed_ngrams": _tokens,
    "token_mask": _token_mask,
    "presence": _presence,
    "waveform": _waveform,
    "state": _state,
    "constant": _constant,
}


def register_input_kind(kind: str, fn: Callable[[FusionWindow, dict[str, Any]], np.ndarray]) -> None:
    """Add a preprocess kind: ``fn(window, preprocess_block)`` returns one window's array (no batch axis).

    Example:
        >>> register_input_kind("brightness", lambda w, pre: np.array(
        ...     [0.0 if w.image is None else w.image.mean() / 255], np.float32))
        >>> b = FeedBuilder([("b", {"kind": "brightness"})])
        >>> b.build([FusionWindow(t_ns=0, image=np.full((2, 2, 3), 255, np.uint8), audio=None, command=None)])[0]["b"]
        array([[1.]], dtype=float32)
    """
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"preprocess kind: expected a non-empty string, got {kind!r}")

    def factory(d: InputDecl, _: Sequence[InputDecl]) -> Handler:
        return _PerWindow(lambda w, note: fn(w, d.preprocess))
    INPUT_KINDS[kind] = factory


def _decl(t: tuple[Any, ...]) -> InputDecl:
    """An InputDecl from ``(name, preprocess[, dtype[, shape]])``."""
    return InputDecl(str(t[0]), dict(t[1]), str(t[2]) if len(t) > 2 else "float32",
                     tuple(t[3]) if len(t) > 3 else ())


class FeedBuilder:
    """Builds batched feeds from fusion windows, as the manifest's inputs describe.

    ``inputs`` are ``(name, preprocess)`` pairs, ``(name, preprocess, dtype, shape)`` tuples
    or :class:`InputDecl`\\ s (a uint8 image, a constant and a state need the dtype and shape).
    """

    def __init__(self, inputs: Sequence[tuple[Any, ...] | InputDecl]) -> None:
        self.decls = [i if isinstance(i, InputDecl) else _decl(i) for i in inputs]
        self.inputs = [(d.name, d.preprocess) for d in self.decls]
        self.handlers: dict[str, Handler] = {}
        for d in self.decls:
            factory = INPUT_KINDS.get(d.kind)
            if factory is None:
                raise ConfigError(f"input '{d.name}': unknown preprocess kind {d.preprocess.get('kind')!r}; "
                                  f"expected one of {tuple(INPUT_KINDS)}")
            self.handlers[d.name] = factory(d, self.decls)

    @property
    def audio_params(self) -> AudioParams | None:
        d = next((d for d in self.decls if d.kind == "logmel"), None)
        return None if d is None else AudioParams.from_dict(d.preprocess)

    def build(self, windows: Sequence[FusionWindow]) -> tuple[dict[str, np.ndarray], list[FeedInfo]]:
        """Feeds for a batch of windows (a missing modality becomes zeros and presence 0)."""
        per = {name: h for name, h in self.handlers.items() if h.batched}
        cols: dict[str, list[np.ndarray]] = {name: [] for name in per}
        infos = []
        for w in windows:
            note = Note()
            for name, h in per.items():
                cols[name].append(h.one(w, note))
            infos.append(FeedInfo(note.unknown_words, note.truncated, w.missing, note.geometry))
        feeds = {k: np.stack(v) for k, v in cols.items()}
        feeds.update({name: h.whole(len(windows)) for name, h in self.handlers.items() if not h.batched})
        return {d.name: feeds[d.name] for d in self.decls}, infos
