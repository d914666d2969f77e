"""Shipping model packages to the workers: the package's bytes, once, unpacked once per machine.

A package is shipped as its files' bytes (a dict of relative path to bytes, read once by the
driver), not as a path: a cluster's workers need not share a file system with the driver,
and the snapshot taken at the start means a package rebuilt during a long evaluation cannot
mix versions. Packages are small (a few MB), so the bytes go through Ray's object store
(``ray.put``, one copy per node) or, for local processes, the pool's initializer (one copy per
process). A worker unpacks a package once into ``<tmp>/edgefusion-fleet/<sha256>`` (atomically,
so concurrent workers on one machine share it) and loads it from there, hashes verified.

The package's identity is the sha256 of its ``manifest.json``, which holds the sha256 of every
artifact: the same identity recordings store for the package that made them.

Example:
    >>> from edgefusion.package import load_package
    >>> pkg = load_package("smart_home")
    >>> files = pack(pkg.path)
    >>> "manifest.json" in files and package_sha256(pkg.path) == sha256_file(pkg.path / "manifest.json")
    True
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgefusion.errors import PackageError
from edgefusion.package import MANIFEST, ModelPackage, load_package, sha256_file

__all__ = ["Shipment", "materialize", "pack", "package_sha256"]

#: packages installed in this process by the local pool's initializer: sha256 -> files
_INSTALLED: dict[str, dict[str, bytes]] = {}
#: packages already loaded in this process: sha256 -> package
_LOADED: dict[str, ModelPackage] = {}


def package_sha256(path: Path) -> str:
    return sha256_file(path / MANIFEST)


def pack(path: Path) -> dict[str, bytes]:
    """Every regular file under a package directory, by POSIX path relative to it (links are skipped:
    a package refuses links that leave it, and the manifest names real files)."""
    files = {}
    for f in sorted(path.rglob("*")):
        if f.is_file() and not f.is_symlink():
            files[f.relative_to(path).as_posix()] = f.read_bytes()
    return files


@dataclass(frozen=True)
class Shipment:
    """How a worker gets a package: by sha256, from its process (local pool) or from Ray's object store.

    Args:
        sha256: the sha256 of the package's manifest.
        name: the package's name (for messages).
        ref: a Ray ObjectRef of the packed files, or None when a local pool installed them.
    """

    sha256: str
    name: str
    ref: Any = None

    def files(self) -> dict[str, bytes]:
        if self.ref is None:
            if self.sha256 not in _INSTALLED:
                raise PackageError(f"package '{self.name}' ({self.sha256[:12]}…) was not shipped to this worker")
            return _INSTALLED[self.sha256]
        import ray  # only Ray runs ship a reference; its workers have ray

        files: dict[str, bytes] = ray.get(self.ref)
        return files


def install(packed: dict[str, dict[str, bytes]]) -> None:
    """The local pool's initializer: keep the packed packages (sha256 -> files) in this process."""
    _INSTALLED.update(packed)


def materialize(shipment: Shipment) -> ModelPackage:
    """The shipped package, unpacked (once per machine) and loaded (once per process), hashes verified."""
    if shipment.sha256 in _LOADED:
        return _LOADED[shipment.sha256]
    root = Path(tempfile.gettempdir()) / "edgefusion-fleet"
    final = root / shipment.sha256
    if not (final / MANIFEST).is_file():
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{shipment.sha256[:12]}-", dir=root))
        try:
            for rel, data in shipment.files().items():
                p = PurePosixPath(rel)
                if p.is_absolute() or ".." in p.parts:
                    raise PackageError(f"package '{shipment.name}': file path {rel!r} leaves the package")
                dst = tmp.joinpath(*p.parts)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(data)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / MANIFEST).is_file():  # not a concurrent worker's copy: a real failure
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    pkg = load_package(final)
    got = package_sha256(final)
    if got != shipment.sha256:
        raise PackageError(f"package '{shipment.name}' unpacked in {final} has manifest sha256 {got[:12]}…, "
                           f"expected {shipment.sha256[:12]}…; remove that directory and run again")
    _LOADED[shipment.sha256] = pkg
    return pkg
