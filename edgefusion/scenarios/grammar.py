"""A small generative grammar for spoken-style commands: templates, slots, politeness, typos.

Each task's phrase lists live in one place, its scenario module (``GRAMMAR`` there); this
module only expands them. A template is a string with ``{slot}`` references; a slot is a
list of alternatives that may hold slots themselves, and ``{-}`` in an alternative list
stands for "nothing". :meth:`Grammar.sample` picks a template of the intent, expands it,
and then, at random, wraps it in politeness (``could you ...``, ``... please``), adds a
filler word (``um``, ``hey``), drops an apostrophe or makes a typo (a swapped, dropped,
doubled or neighbouring-key letter), as people type and speech recognizers misspell.

Example:
    >>> import numpy as np
    >>> g = Grammar({"greet": ("{hi} there",)}, {"hi": ("hello", "hi")}, prefixes=(), suffixes=(), fillers=())
    >>> sorted(g.expansions("greet"))
    ['hello there', 'hi there']
    >>> g.sample("greet", np.random.default_rng(0), typo_prob=0.0) in {"hello there", "hi there"}
    True
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Grammar", "typo"]

_SLOT = re.compile(r"\{([a-z_0-9-]+)\}")
#: neighbouring keys on a QWERTY keyboard (for typos)
_KEYS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_NEAR: dict[str, str] = {}
for _r, _row in enumerate(_KEYS):
    for _i, _ch in enumerate(_row):
        _NEAR[_ch] = _row[max(0, _i - 1) : _i] + _row[_i + 1 : _i + 2]


def typo(word: str, rng: np.random.Generator) -> str:
    """One typing error in ``word`` (3 letters or more): swap, drop, double or hit a neighbouring key.

    Example:
        >>> w = typo("lights", np.random.default_rng(1))
        >>> w != "lights" and abs(len(w) - len("lights")) <= 1
        True
    """
    if len(word) < 3:
        return word
    kind = int(rng.integers(4))
    i = int(rng.integers(1, len(word) - 1)) if kind == 0 else int(rng.integers(len(word)))
    if kind == 0:  # swap two neighbouring letters
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double a letter
        return word[: i + 1] + word[i:]
    near = _NEAR.get(word[i], "")
    return word[:i] + (near[int(rng.integers(len(near)))] if near else word[i]) + word[i + 1 :]


@dataclass(frozen=True)
class Grammar:
    """Intent templates, shared slots, and the politeness, fillers and noise around them."""

    templates: Mapping[str, tuple[str, ...]]
    slots: Mapping[str, tuple[str, ...]]
    prefixes: tuple[str, ...] = ("please", "could you", "can you", "would you", "will you", "could you please",
                                 "would you please", "can you please", "hey", "ok", "hey there", "i need you to",
                                 "i want you to", "go ahead and", "quick", "right", "so", "alright",
                                 "would you mind and")
    suffixes: tuple[str, ...] = ("please", "thanks", "thank you", "now", "right now", "for me", "quickly",
                                 "if you can", "if you would", "asap", "ok", "will you", "would you", "cheers",
                                 "right away", "straight away", "when you can")
    fillers: tuple[str, ...] = ("um", "uh", "er", "hmm", "so", "well", "like", "oh", "erm", "okay so")
    #: how a template's chance is weighted: plain templates by 1, these by their value
    weights: Mapping[str, float] = field(default_factory=dict)

    def expansions(self, intent: str) -> Iterator[str]:
        """Every sentence the templates of ``intent`` expand to (no politeness, fillers or typos)."""
        for t in self.templates[intent]:
            yield from self._all(t)

    def _all(self, text: str) -> Iterator[str]:
        names = _SLOT.findall(text)
        if not names:
            yield " ".join(text.split())
            return
        parts = _SLOT.split(text)  # literal, name, literal, name, ...
        for choice in itertools.product(*(self._alts(n) for n in names)):
            filled = "".join(p if i % 2 == 0 else choice[i // 2] for i, p in enumerate(parts))
            yield from self._all(filled)

    def _alts(self, name: str) -> tuple[str, ...]:
        if name == "-":
            return ("",)
        return tuple("" if a == "{-}" else a for a in self.slots[name])

    def words(self) -> set[str]:
        """Every word the grammar can produce without typos (for the package's known-word list)."""
        out: set[str] = set()
        for alts in self.slots.values():
            for a in alts:
                out.update(_SLOT.sub(" ", a).split())
        for ts in self.templates.values():
            for t in ts:
                out.update(_SLOT.sub(" ", t).split())
        for t in (*self.prefixes, *self.suffixes, *self.fillers):
            out.update(t.split())
        return {w.strip(",.?!").replace("'", "") for w in out} - {""}

    def expand(self, text: str, rng: np.random.Generator) -> str:
        """``text`` with each slot replaced by one random alternative (recursively)."""
        for _ in range(8):  # slots nest a few levels at most
            if "{" not in text:
                break
            text = _SLOT.sub(lambda m: _pick(self._alts(m.group(1)), rng), text)
        return " ".join(text.split())

    def sample(self, intent: str, rng: np.random.Generator, typo_prob: float = 0.15, polite_prob: float = 0.35,
               filler_prob: float = 0.1) -> str:
        """One random sentence of ``intent``."""
        ts = self.templates[intent]
        w = np.array([self.weights.get(t, 1.0) for t in ts], np.float64)
        text = self.expand(ts[int(rng.choice(len(ts), p=w / w.sum()))], rng)
        if rng.random() < polite_prob:
            r = rng.random()
            if r < 0.45:
                text = f"{_pick(self.prefixes, rng)} {text}"
            elif r < 0.85:
                text = f"{text} {_pick(self.suffixes, rng)}"
            else:
                text = f"{_pick(self.prefixes, rng)} {text} {_pick(self.suffixes, rng)}"
        if rng.random() < filler_prob:
            text = f"{_pick(self.fillers, rng)} {text}"
        words = text.split()  # also drops the spaces an empty politeness or filler list leaves
        if rng.random() < 0.5:
            words = [x.replace("'", "") for x in words]
        while rng.random() < typo_prob:
            i = int(rng.integers(len(words)))
            words[i] = typo(words[i], rng)
            typo_prob /= 3
        text = " ".join(words)
        r = rng.random()
        if r < 0.2:
            text = text.capitalize()
        elif r < 0.25:
            text = text.upper()
        return text + ("?" if rng.random() < 0.1 else "!" if rng.random() < 0.05 else "")


def _pick(alts: tuple[str, ...], rng: np.random.Generator) -> str:
    """One of ``alts`` at random; "" when there are none (a grammar without politeness or fillers)."""
    return alts[int(rng.integers(len(alts)))] if alts else ""
