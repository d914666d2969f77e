"""Text preprocessing: a word-level tokenizer whose vocabulary the model package defines."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PAD", "UNK", "TextParams", "Tokens", "normalize_text", "tokenize"]

PAD = "<pad>"
UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9']+")


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

    @classmethod
    def from_dict(cls, d: dict) -> TextParams:
        return cls(vocab=tuple(d["vocab"]), max_tokens=int(d["max_tokens"]))

    def to_dict(self) -> dict:
        return {"kind": "tokens", "vocab": list(self.vocab), "max_tokens": self.max_tokens,
                "normalization": "NFKC, lowercase, words of [a-z0-9']"}


@dataclass(frozen=True)
class Tokens:
    """Token ids and mask (1.0 for a real token), plus what was lost on the way."""

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
