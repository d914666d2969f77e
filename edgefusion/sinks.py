"""Sinks: where results go. Each is a context manager with ``write``/``flush``/``close``.

``jsonl:-`` (stdout) and ``jsonl:PATH`` stream one JSON object per result (bounded
memory: nothing is kept); :class:`CallbackSink` hands results to Python code. MQTT and
MCAP sinks plug into the same interface.

A JSON result is :meth:`Result.to_dict`: ``action`` is the policy's decision and
``raw_action`` the model's argmax; ``confidence`` (the model's probability for ``action``),
``abstained``, ``degraded``, ``rule`` (what decided it) and ``text_status`` (command,
no_command, text_missing or unknown) say how it was decided (DESIGN.md contract 13).

Example:
    >>> got = []
    >>> with CallbackSink(got.append) as s:
    ...     s.write("result")
    >>> got
    ['result']
"""

from __future__ import annotations

import json
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from edgefusion.errors import ConfigError
from edgefusion.samples import Result

__all__ = ["CallbackSink", "JsonlSink", "Sink", "open_sink"]


class Sink(ABC):
    """Receives results on the sink thread (never on the inference thread)."""

    name = "sink"

    @abstractmethod
    def write(self, result: Any) -> None: ...

    def flush(self) -> None:  # noqa: B027 - optional hook
        pass

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class JsonlSink(Sink):
    """One JSON object per line, to a file or stdout (``-``). ``only_emitted`` keeps action changes only."""

    name = "jsonl"

    def __init__(self, target: str = "-", only_emitted: bool = False) -> None:
        self.target = target
        self.only_emitted = only_emitted
        self._own = target != "-"
        try:
            self._f: IO[str] = open(Path(target), "w", buffering=1) if self._own else sys.stdout  # noqa: SIM115
        except OSError as exc:
            raise ConfigError(f"jsonl sink: cannot open {target}: {exc}") from exc

    def write(self, result: Result) -> None:
        if self.only_emitted and not result.emitted:
            return
        self._f.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self.flush()
        if self._own:
            self._f.close()


class CallbackSink(Sink):
    """Calls ``fn(result)`` for each result."""

    name = "callback"

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self.fn = fn

    def write(self, result: Any) -> None:
        self.fn(result)


def open_sink(spec: str) -> Sink:
    """``jsonl:-``, ``jsonl:PATH``, ``jsonl-actions:-`` (emitted actions only)."""
    kind, _, target = spec.partition(":")
    if kind in ("jsonl", "jsonl-actions") and target:
        return JsonlSink(target, only_emitted=kind == "jsonl-actions")
    raise ConfigError(f"unknown sink '{spec}'; expected jsonl:- , jsonl:PATH or jsonl-actions:PATH")
