"""Which recordings an evaluation reads: files and directories of ``.mcap`` logs, by local path.

Recordings are read where they lie, by path: on one machine, or on a file system every Ray
worker mounts. Object stores are the seam: an ``s3://``-style URL is recognised here and
refused with one line, so a later fsspec-backed reader plugs in at :func:`find_recordings`
(listing) and :func:`sha256_of` (identity) without touching the workers' replay.

Example:
    >>> is_url("s3://bucket/drive.mcap"), is_url("/data/drive.mcap"), is_url("C:/x.mcap")
    (True, False, False)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from edgefusion.errors import ConfigError
from edgefusion.package import sha256_file as sha256_of

__all__ = ["find_recordings", "is_url", "sha256_of"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(item: str) -> bool:
    return bool(_URL.match(item))


def find_recordings(items: Sequence[str]) -> list[str]:
    """The ``.mcap`` files named, and those under the directories named (recursively), sorted, once each.

    Raises:
        ConfigError: an item is a URL (not supported yet), does not exist, or a directory holds no log.
    """
    found: list[str] = []
    for item in items:
        if is_url(item):
            raise ConfigError(f"{item}: recordings are read from local paths (or a file system every worker "
                              "mounts); object-store URLs are not supported yet")
        p = Path(item)
        if p.is_dir():
            logs = sorted(str(f) for f in p.rglob("*.mcap") if f.is_file())
            if not logs:
                raise ConfigError(f"{item}: a directory without .mcap logs")
            found += logs
        elif p.is_file():
            found.append(str(p))
        else:
            raise ConfigError(f"{item}: no such file or directory")
    seen: set[Path] = set()
    unique = []
    for f in found:
        key = Path(f).resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


