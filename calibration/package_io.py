"""Writing into a model package all at once, or not at all.

:func:`staged_package` copies the package into a sibling staging directory (same file
system); the caller adds files and rewrites the manifest there; :meth:`Stage.commit`
verifies the staged package and swaps the directories with two renames. Any exception
before the commit removes the stage, so a failed run leaves the package byte for byte as
it was.

Example:
    >>> import tempfile, shutil
    >>> from edgefusion.package import BUILTIN_DIR
    >>> tmp = Path(tempfile.mkdtemp()) / "pkg"
    >>> _ = shutil.copytree(BUILTIN_DIR / "smart_home", tmp)
    >>> with staged_package(tmp) as st:
    ...     (st.path / "note.txt").write_text("hi")
    ...     st.manifest["sources"]["note"] = file_record(st.path, "note.txt", format="text")
    ...     st.commit()
    2
    >>> (tmp / "note.txt").read_text()
    'hi'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefusion.errors import PackageError
from edgefusion.package import MANIFEST, load_package, sha256_file

__all__ = ["Stage", "file_record", "staged_package", "write_json"]


def file_record(root: Path, rel: str, **extra: Any) -> dict[str, Any]:
    """``{path, sha256, bytes, **extra}`` for the file ``root / rel``, as manifests record files."""
    f = root / rel
    return {"path": rel, "sha256": sha256_file(f), "bytes": f.stat().st_size, **extra}


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


@dataclass
class Stage:
    """A staging copy of a package: write into ``path``, edit ``manifest``, then :meth:`commit`."""

    target: Path
    path: Path
    manifest: dict[str, Any]
    committed: bool = field(default=False, init=False)

    def commit(self) -> None:
        """Write the manifest, verify the staged package, and swap it into place."""
        write_json(self.path / MANIFEST, self.manifest)
        load_package(self.path)  # every hash must hold before anything is replaced
        backup = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
        os.rename(self.target, backup)
        try:
            os.rename(self.path, self.target)
        except OSError:
            os.rename(backup, self.target)
            raise
        shutil.rmtree(backup, ignore_errors=True)
        self.committed = True


@contextmanager
def staged_package(target: Path) -> Iterator[Stage]:
    """A :class:`Stage` for the package directory ``target``; removed unless committed."""
    target = Path(target).resolve()
    if not (target / MANIFEST).is_file():
        raise PackageError(f"{target} is not a model package: it has no {MANIFEST}")
    try:
        parent = Path(tempfile.mkdtemp(prefix=f".{target.name}.stage-", dir=target.parent))
    except OSError as exc:
        raise PackageError(f"cannot write next to {target} ({exc}); the package directory's parent must be "
                           "writable. Copy the package somewhere writable and run the command on the copy") from exc
    stage_dir = parent / target.name
    try:
        shutil.copytree(target, stage_dir, symlinks=True)
        manifest = json.loads((stage_dir / MANIFEST).read_text())
        stage = Stage(target, stage_dir, manifest)
        yield stage
    finally:
        shutil.rmtree(parent, ignore_errors=True)
