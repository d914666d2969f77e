"""The results cache that makes an evaluation resumable: one JSON file per scored task in ``--out``.

The key is what decides a score: the recording's sha256, the package's sha256 (its manifest's,
which pins every artifact), the variant and the backend, plus :data:`SCORING_VERSION` (bumped
when the scoring changes, so old entries are not reused). Renaming or moving a recording keeps
its entries; editing it does not. Only successful scores are kept: a failed recording is tried
again on the next run. Entries are written atomically, so an interrupted run leaves none torn;
an unreadable entry is scored again (and counted).

Example:
    >>> import tempfile
    >>> c = ResultsCache(tempfile.mkdtemp())
    >>> k = c.key("ab" * 32, "cd" * 32, "fp32", "onnxruntime")
    >>> c.get(k) is None
    True
    >>> c.put(k, {"frames": 3}); c.get(k)["frames"]
    3
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["SCORING_VERSION", "ResultsCache"]

#: bump when a change in replay or scoring changes what a cached entry would hold
SCORING_VERSION = 1


class ResultsCache:
    """Scored tasks under ``root`` (``--out``/cache), by key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.unreadable = 0

    @staticmethod
    def key(recording_sha256: str, package_sha256: str, variant: str, backend: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{variant}-{backend}")
        return f"{recording_sha256}-{package_sha256}-{safe}-v{SCORING_VERSION}"

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            self.unreadable += 1
            return None
        if not isinstance(entry, dict) or entry.get("cache_key") != key or "error" in entry:
            self.unreadable += 1
            return None
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps({**entry, "cache_key": key}), encoding="utf-8")
            os.replace(tmp, self._path(key))
        finally:
            tmp.unlink(missing_ok=True)
