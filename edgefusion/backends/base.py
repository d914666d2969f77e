"""The backend interface (DESIGN.md contract 5).

A backend opens a session from a model package and a variant, runs ``infer(feeds)``, and
``close()``\\ s; it is a context manager. :meth:`Backend.infer` checks the feeds against
the manifest once, then calls the subclass's ``_infer`` - backend code holds only what is
backend-specific.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from edgefusion.errors import FeedError
from edgefusion.package import InputSpec, ModelPackage

__all__ = ["Backend", "BackendInfo", "check_feeds"]


@dataclass(frozen=True)
class BackendInfo:
    """What a session runs on."""

    backend: str
    provider: str
    precision: str
    threads: int | None

    def __str__(self) -> str:
        t = f", {self.threads} threads" if self.threads else ""
        return f"{self.backend} ({self.provider}, {self.precision}{t})"


@lru_cache(maxsize=64)
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def check_feeds(inputs: list[InputSpec], feeds: dict[str, np.ndarray]) -> None:
    """Raise FeedError naming the input, expected and actual shape/dtype, on any mismatch."""
    names = {i.name for i in inputs}
    extra = sorted(set(feeds) - names)
    missing = sorted(names - set(feeds))
    if extra or missing:
        raise FeedError(f"feeds do not match the model's inputs: missing {missing or 'none'}, "
                        f"unexpected {extra or 'none'}; expected exactly {sorted(names)}")
    sym: dict[str, tuple[int, str]] = {}
    for spec in inputs:
        x = feeds[spec.name]
        if not isinstance(x, np.ndarray):
            raise FeedError(f"input '{spec.name}': expected a numpy array, got {type(x).__name__}")
        # the messages are built only on a mismatch: this runs on every inference call
        if x.dtype != _dtype(spec.dtype) or x.ndim != len(spec.shape):
            raise FeedError(f"input '{spec.name}': expected {spec.dtype} {list(spec.shape)}, got {x.dtype} "
                            f"{list(x.shape)}")
        for dim, (want, have) in enumerate(zip(spec.shape, x.shape)):
            if isinstance(want, int) and want != have:
                raise FeedError(f"input '{spec.name}': expected {spec.dtype} {list(spec.shape)}, got {x.dtype} "
                                f"{list(x.shape)} (dimension {dim})")
            if isinstance(want, str):
                if want in sym and sym[want][0] != have:
                    raise FeedError(f"input '{spec.name}': dimension '{want}' is {have} here but "
                                    f"{sym[want][0]} in input '{sym[want][1]}'")
                sym.setdefault(want, (have, spec.name))


class Backend(ABC):
    """Base of all backends: validate at the boundary, run in the subclass."""

    name: ClassVar[str]

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None,
                 **options: Any) -> None:
        self.package = package
        self.variant = variant
        self.threads = threads
        self.options = options
        self._closed = False

    @property
    @abstractmethod
    def info(self) -> BackendInfo:
        """Provider, precision and threads of this session."""

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` (name -> array); returns output name -> array."""
        check_feeds(self.package.inputs, feeds)
        return self._infer(feeds)

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
