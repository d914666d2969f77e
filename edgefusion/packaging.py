"""Writing a model package all at once, or not at all: the one package writer.

:func:`staged_package` gives a staging directory beside the package (same file system):
a copy of an existing package, or an empty directory for a new one (``new=True``). The
caller adds files there and fills in the manifest; :meth:`Stage.commit` writes the
manifest, verifies the staged package (every sha256) and swaps the directories with two
renames. Any exception before the commit removes the stage, so a failed run leaves the
package byte for byte as it was (or, for a new one, absent). Export, quantization and the
TensorRT engine build all write through it; it needs neither torch nor onnx.

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

import contextlib
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

__all__ = ["Stage", "file_record", "publish_mode", "staged_package", "write_json"]


def file_record(root: Path, rel: str, **extra: Any) -> dict[str, Any]:
    """``{path, sha256, bytes, **extra}`` for the file ``root / rel``, as manifests record files."""
    f = root / rel
    return {"path": rel, "sha256": sha256_file(f), "bytes": f.stat().st_size, **extra}


def publish_mode(path: Path, like: Path | None = None) -> None:
    """Give a file or folder made by ``tempfile`` (0600 / 0700) the mode a plain ``open``/``mkdir`` would
    have given it under the process umask, or the mode of ``like`` (the file it replaces), so that others
    (a service user, a colleague) can read what was written as they can read the rest."""
    if like is not None and like.exists():
        os.chmod(path, like.stat().st_mode & 0o7777)
        return
    mask = os.umask(0o022)  # the only way to read the umask is to set it; put back at once
    os.umask(mask)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON with a final newline (the form every manifest and provenance file has)."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


@dataclass
class Stage:
    """A staging directory for a package: write into ``path``, edit ``manifest``, then :meth:`commit`."""

    target: Path
    path: Path
    manifest: dict[str, Any]
    committed: bool = field(default=False, init=False)

    def commit(self) -> None:
        """Write the manifest, verify the staged package, and swap it into place."""
        write_json(self.path / MANIFEST, self.manifest)
        load_package(self.path)  # every hash must hold before anything is replaced
        backup = None
        if self.target.exists():
            backup = self.target.with_name(f".{self.target.name}.old-{os.getpid()}")
            os.rename(self.target, backup)
        try:
            os.rename(self.path, self.target)
        except OSError:
            if backup is not None:
                os.rename(backup, self.target)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self.committed = True


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


@contextmanager
def staged_package(target: str | Path, new: bool = False) -> Iterator[Stage]:
    """A :class:`Stage` for the package directory ``target``; removed unless committed.

    Args:
        target: the package directory. Without ``new`` it must hold a package, which the
            stage starts as a copy of.
        new: start from an empty directory and an empty manifest; on commit the new
            package replaces whatever ``target`` held (the caller decides whether it may).
            Missing parent directories are created, and removed again if nothing is committed.

    Raises:
        PackageError: ``target`` is not a package (without ``new``), or its parent is not writable.
    """
    target = Path(target).resolve()
    created: list[Path] = []
    if new:
        created = _missing_dirs(target.parent)
        target.parent.mkdir(parents=True, exist_ok=True)
    elif not (target / MANIFEST).is_file():
        raise PackageError(f"{target} is not a model package: it has no {MANIFEST}")
    stage: Stage | None = None
    try:
        try:
            parent = Path(tempfile.mkdtemp(prefix=f".{target.name}.stage-", dir=target.parent))
        except OSError as exc:
            todo = ("Choose a directory you can write to" if new else
                    "Copy the package somewhere writable and run the command on the copy")
            raise PackageError(f"cannot write next to {target} ({exc}); the package directory's parent must be "
                               f"writable. {todo}") from exc
        stage_dir = parent / target.name
        try:
            if new:
                stage_dir.mkdir()
                manifest: dict[str, Any] = {}
            else:
                shutil.copytree(target, stage_dir, symlinks=True)
                manifest = json.loads((stage_dir / MANIFEST).read_text())
            stage = Stage(target, stage_dir, manifest)
            yield stage
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    finally:
        if stage is None or not stage.committed:
            for d in created:  # deepest first; a directory someone else filled meanwhile stays
                with contextlib.suppress(OSError):
                    d.rmdir()
