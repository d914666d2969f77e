"""Text preprocessing: a command -> the model's text feeds, as the package's manifest defines them.

Two kinds of text input, both shipped inside the package (nothing is downloaded):

- ``tokens`` (v1 packages): a closed word vocabulary; an unseen word is ``<unk>``.
- ``hashed_ngrams`` (open vocabulary, fastText-style): each word becomes its character
  n-grams (n = ``min_n``..``max_n``, with ``<`` and ``>`` marking the word's start and end)
  plus the whole word ``<word>``, each hashed with CRC-32 (:func:`zlib.crc32`, stable across
  processes and platforms; Python's ``hash()`` is salted per process) into ``buckets - 1``
  ids from 1 (0 is padding). The model averages the embeddings of a word's ids, so a
  misspelt or inflected word shares most n-grams with the word it resembles and gets a
  vector near it. Apostrophes are dropped (``don't`` and ``dont`` are one word).

Both give a :class:`Tokens` (ids, a per-word mask, and what was lost on the way).
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HASH", "PAD", "UNK", "HashedParams", "TextParams", "Tokens", "encode_text", "hashed_ngrams",
           "normalize_text", "text_params", "tokenize", "word_ngrams"]

PAD = "<pad>"
UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9']+")
#: the hash of ``hashed_ngrams``, as the manifest names it
HASH = "crc32"


@dataclass(frozen=True)
class TextParams:
    """Vocabulary (index 0 is padding, 1 unknown) and the token budget.

    Example:
        >>> p = TextParams(vocab=(PAD, UNK, "lock", "the", "door"), max_tokens=4)
        >>> tokenize("Lock the DOOR!", p).ids.tolist()
        [2, 3, 4, 0]
    """

    vocab: tuple[str, ...]
    max_tokens: int = 12
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.vocab)})

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one command's ids."""
        return (self.max_tokens,)

    @classmethod
    def from_dict(cls, d: dict) -> TextParams:
        return cls(vocab=tuple(d["vocab"]), max_tokens=int(d["max_tokens"]))

    def to_dict(self) -> dict:
        return {"kind": "tokens", "vocab": list(self.vocab), "max_tokens": self.max_tokens,
                "normalization": "NFKC, lowercase, words of [a-z0-9']"}


@dataclass(frozen=True)
class HashedParams:
    """Open-vocabulary text: hashed character n-grams per word (see the module docstring).

    ``known`` lists the words the model was trained on; it only counts a command's unknown
    words (the model gives every word a vector).

    Example:
        >>> p = HashedParams(buckets=1024, max_tokens=3, max_ngrams=4, known=("lock", "door"))
        >>> t = hashed_ngrams("Lock the dor", p)
        >>> t.ids.shape, t.mask.tolist(), t.unknown
        ((3, 4), [1.0, 1.0, 1.0], 2)
        >>> bool((t.ids[0] > 0).all()) and int(t.ids.max()) < 1024
        True
    """

    buckets: int = 8192
    max_tokens: int = 16
    max_ngrams: int = 24
    min_n: int = 3
    max_n: int = 5
    known: tuple[str, ...] = ()
    _known: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.buckets >= 2 and 1 <= self.min_n <= self.max_n and self.max_ngrams >= 1 and self.max_tokens >= 1):
            raise ValueError(f"hashed_ngrams: buckets >= 2, 1 <= min_n <= max_n, max_ngrams >= 1 and max_tokens >= 1; "
                             f"got {self.buckets}, {self.min_n}..{self.max_n}, {self.max_ngrams}, {self.max_tokens}")
        object.__setattr__(self, "_known", frozenset(self.known))

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one command's ids."""
        return (self.max_tokens, self.max_ngrams)

    @classmethod
    def from_dict(cls, d: dict) -> HashedParams:
        if d.get("hash", HASH) != HASH:
            raise ValueError(f"hashed_ngrams: hash {d.get('hash')!r} is not supported; expected {HASH!r}")
        return cls(buckets=int(d["buckets"]), max_tokens=int(d["max_tokens"]), max_ngrams=int(d["max_ngrams"]),
                   min_n=int(d.get("min_n", 3)), max_n=int(d.get("max_n", 5)),
                   known=tuple(str(w) for w in d.get("known", ())))

    def to_dict(self) -> dict:
        return {"kind": "hashed_ngrams", "buckets": self.buckets, "max_tokens": self.max_tokens,
                "max_ngrams": self.max_ngrams, "min_n": self.min_n, "max_n": self.max_n, "hash": HASH,
                "normalization": "NFKC, lowercase, words of [a-z0-9'], apostrophes dropped",
                "ids": "per word: '<word>' then its n-grams of '<word>' (n = min_n..max_n, in order), each "
                       "crc32(utf-8) % (buckets - 1) + 1; 0 is padding",
                "known": list(self.known)}


@dataclass(frozen=True)
class Tokens:
    """Token ids and mask (1.0 for a real word), plus what was lost on the way."""

    ids: np.ndarray
    mask: np.ndarray
    unknown: int
    truncated: bool


def normalize_text(text: str) -> list[str]:
    """NFKC, lowercase, split into words of letters, digits and apostrophes."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'"))


def tokenize(text: str, params: TextParams) -> Tokens:
    """Words -> ids; unknown words -> <unk>; over ``max_tokens`` -> truncated and flagged."""
    words = normalize_text(text)
    truncated = len(words) > params.max_tokens
    words = words[: params.max_tokens]
    unk = params.index[UNK]
    ids = np.zeros(params.max_tokens, np.int64)
    mask = np.zeros(params.max_tokens, np.float32)
    n_unknown = 0
    for i, w in enumerate(words):
        j = params.index.get(w, unk)
        n_unknown += j == unk
        ids[i] = j
        mask[i] = 1.0
    return Tokens(ids=ids, mask=mask, unknown=n_unknown, truncated=truncated)


def word_ngrams(word: str, min_n: int = 3, max_n: int = 5) -> list[str]:
    """``<word>`` then the character n-grams of ``<word>``, shortest first, left to right.

    Example:
        >>> word_ngrams("off")
        ['<off>', '<of', 'off', 'ff>', '<off', 'off>']
    """
    marked = f"<{word}>"
    grams = [marked]
    for n in range(min_n, max_n + 1):
        grams += [marked[i : i + n] for i in range(len(marked) - n + 1) if marked[i : i + n] != marked]
    return grams


def _bucket(gram: str, buckets: int) -> int:
    return zlib.crc32(gram.encode("utf-8")) % (buckets - 1) + 1


def hashed_ngrams(text: str, params: HashedParams) -> Tokens:
    """Words -> (max_tokens, max_ngrams) hashed n-gram ids; a word's extra n-grams and extra words are cut."""
    words = [w for w in (w.replace("'", "") for w in normalize_text(text)) if w]
    truncated = len(words) > params.max_tokens
    words = words[: params.max_tokens]
    ids = np.zeros(params.shape, np.int64)
    mask = np.zeros(params.max_tokens, np.float32)
    for i, w in enumerate(words):
        grams = word_ngrams(w, params.min_n, params.max_n)[: params.max_ngrams]
        ids[i, : len(grams)] = [_bucket(g, params.buckets) for g in grams]
        mask[i] = 1.0
    unknown = sum(w not in params._known for w in words) if params.known else 0
    return Tokens(ids=ids, mask=mask, unknown=unknown, truncated=truncated)


def text_params(pre: dict) -> TextParams | HashedParams:
    """The text parameters of a manifest input's ``preprocess`` block (kind ``tokens`` or ``hashed_ngrams``)."""
    return HashedParams.from_dict(pre) if pre.get("kind") == "hashed_ngrams" else TextParams.from_dict(pre)


def encode_text(text: str, params: TextParams | HashedParams) -> Tokens:
    """A command's ids with either kind of text parameters."""
    return hashed_ngrams(text, params) if isinstance(params, HashedParams) else tokenize(text, params)
