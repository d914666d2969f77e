"""Model packages: a directory holding ``manifest.json`` and the files it names.

The manifest (DESIGN.md contract 4) lists the inputs (name, modality, dtype, shape with
symbolic dims, preprocessing), the outputs (kind, labels), every artifact with its
sha256, and the provenance of the build. Loading verifies every hash and refuses a
mismatch with a message that says what to rebuild. A user's own ONNX model plugs in by
writing such a manifest; nothing here is specific to the reference model.

Example:
    >>> pkg = load_package("smart_home")          # a built-in package, by name
    >>> [i.name for i in pkg.inputs][:2]
    ['image', 'audio']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgefusion.errors import IntegrityError, MissingArtifactError, PackageError, unknown_name
from edgefusion.preprocess import FeedBuilder

__all__ = [
    "BUILTIN_DIR",
    "FORMAT_VERSION",
    "InputSpec",
    "ModelPackage",
    "OutputSpec",
    "builtin_packages",
    "load_package",
    "sha256_file",
]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
BUILTIN_DIR = Path(__file__).parent / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class InputSpec:
    """One model input. ``shape`` holds ints and symbolic names such as ``"batch"``."""

    name: str
    modality: str
    dtype: str
    shape: tuple[int | str, ...]
    preprocess: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputSpec:
    """One model output: ``kind`` is ``class_logits`` or ``multilabel_logits``."""

    name: str
    kind: str
    labels: tuple[str, ...]
    threshold: float = 0.5


@dataclass
class ModelPackage:
    """A loaded, verified model package."""

    path: Path
    manifest: dict[str, Any]
    inputs: list[InputSpec]
    outputs: list[OutputSpec]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def variants(self) -> list[str]:
        return sorted(self.manifest.get("artifacts", {}))

    def artifact(self, variant: str) -> Path:
        """The file of an artifact variant (``fp32``, ...), verified at load time."""
        arts = self.manifest.get("artifacts", {})
        if variant not in arts:
            raise unknown_name(f"variant of package '{self.name}'", variant, arts)
        return self.path / arts[variant]["path"]

    def output(self, kind: str) -> OutputSpec:
        for o in self.outputs:
            if o.kind == kind:
                return o
        raise PackageError(f"package '{self.name}' has no output of kind '{kind}'")

    def feed_builder(self) -> FeedBuilder:
        return FeedBuilder([(i.name, i.preprocess) for i in self.inputs])

    def describe(self) -> str:
        lines = [f"package   {self.name}  ({self.path})", f"format    {self.manifest.get('format_version')}"]
        for i in self.inputs:
            kind = i.preprocess.get("kind")
            lines.append(f"input     {i.name:<11} {i.modality:<9} {i.dtype:<8} {list(i.shape)}  [{kind}]")
        for o in self.outputs:
            lines.append(f"output    {o.name:<15} {o.kind:<18} {', '.join(o.labels)}")
        for v, a in sorted(self.manifest.get("artifacts", {}).items()):
            lines.append(f"artifact  {v:<8} {a['path']}  sha256 {a['sha256'][:16]}…  {a.get('bytes', 0) / 1e6:.2f} MB")
        prov = self.manifest.get("provenance", {})
        if prov:
            lines.append(f"built by  {prov.get('command', '?')}")
            lines.append(f"          seed {prov.get('seed')}  git {prov.get('git_revision', '?')[:12]}  "
                         f"data {str(prov.get('data_sha256', '?'))[:16]}…")
        par = self.manifest.get("parity")
        if par:
            lines.append(f"parity    max |Δlogit| {par['max_abs_diff']:.2e} on {par['samples']} samples, "
                         f"argmax agreement {100 * par['argmax_agreement']:.1f}%")
        return "\n".join(lines)


def builtin_packages() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / MANIFEST).is_file()) if BUILTIN_DIR.is_dir() else []


def load_package(where: str | Path, verify: bool = True) -> ModelPackage:
    """Load a package from a directory, or a built-in package by name; verify hashes."""
    path = Path(where)
    if not (path / MANIFEST).is_file():
        if isinstance(where, str) and "/" not in where and (BUILTIN_DIR / where / MANIFEST).is_file():
            path = BUILTIN_DIR / where
        elif path.is_dir():
            raise PackageError(f"{path} is not a model package: it has no {MANIFEST}")
        elif isinstance(where, str) and "/" not in where:
            raise unknown_name("model package", where, builtin_packages())
        else:
            raise PackageError(f"model package {path} does not exist")
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PackageError(f"cannot read {path / MANIFEST}: {exc}") from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise PackageError(f"{path / MANIFEST}: format_version {version!r} is not supported; expected {FORMAT_VERSION}")
    try:
        inputs = [InputSpec(i["name"], i["modality"], i["dtype"], tuple(i["shape"]), i.get("preprocess", {}))
                  for i in manifest["inputs"]]
        outputs = [OutputSpec(o["name"], o["kind"], tuple(o.get("labels", ())), float(o.get("threshold", 0.5)))
                   for o in manifest["outputs"]]
    except (KeyError, TypeError) as exc:
        raise PackageError(f"{path / MANIFEST}: malformed inputs/outputs ({exc!r}); see docs/architecture.md") from exc
    pkg = ModelPackage(path, manifest, inputs, outputs)
    if verify:
        verify_package(pkg)
    return pkg


def verify_package(pkg: ModelPackage) -> None:
    """Check that every artifact and source file exists and has the recorded sha256."""
    files = {**pkg.manifest.get("sources", {}), **pkg.manifest.get("artifacts", {})}
    for variant, art in files.items():
        f = pkg.path / art["path"]
        if not f.is_file():
            raise MissingArtifactError(
                f"package '{pkg.name}': the {variant} artifact {f} is missing; "
                f"rebuild the package ({pkg.manifest.get('provenance', {}).get('command', 'edgefusion export')})"
            )
        digest = sha256_file(f)
        if digest != art["sha256"]:
            raise IntegrityError(
                f"package '{pkg.name}': {f.name} has sha256 {digest[:16]}…, the manifest expects "
                f"{art['sha256'][:16]}…; the file changed after it was packaged. Restore it or rebuild "
                f"the package ({pkg.manifest.get('provenance', {}).get('command', 'edgefusion export')})"
            )
