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
from dataclasses import dataclass
from pathlib import Path

from edgefusion.errors import ConfigError, IntegrityError, MissingArtifactError, PackageError, unknown_name
from edgefusion.manifest import FORMAT_VERSION, FileRecord, InputSpec, Manifest, OutputSpec
from edgefusion.preprocess import FeedBuilder, InputDecl

__all__ = [
    "BUILTIN_DIR",
    "FORMAT_VERSION",
    "MANIFEST",
    "FileRecord",
    "InputSpec",
    "Manifest",
    "ModelPackage",
    "OutputSpec",
    "builtin_packages",
    "load_package",
    "sha256_file",
    "verify_package",
]

MANIFEST = "manifest.json"
BUILTIN_DIR = Path(__file__).parent / "models"
#: a manifest larger than this is not a manifest (they are a few kB); refused before parsing
MAX_MANIFEST_BYTES = 4 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelPackage:
    """A loaded, verified model package: its directory and its typed :class:`Manifest`."""

    path: Path
    manifest: Manifest

    @property
    def name(self) -> str:
        return self.manifest.name or self.path.name

    @property
    def inputs(self) -> list[InputSpec]:
        return list(self.manifest.inputs)

    @property
    def outputs(self) -> list[OutputSpec]:
        return list(self.manifest.outputs)

    @property
    def variants(self) -> list[str]:
        return sorted(self.manifest.artifacts)

    def file(self, record: FileRecord) -> Path:
        """The path of a file the manifest names (inside the package: checked when parsed)."""
        return self.path / record.path

    def artifact(self, variant: str) -> Path:
        """The file of an artifact variant (``fp32``, ...), verified at load time."""
        arts = self.manifest.artifacts
        if variant not in arts:
            raise unknown_name(f"variant of package '{self.name}'", variant, arts)
        return self.file(arts[variant])

    def output(self, kind: str) -> OutputSpec:
        """The output of ``kind``; ``class_logits`` and ``multilabel_logits`` stand for the action and the
        events output (:meth:`role_output`: logits or probabilities, by role or the first of the kind)."""
        role = {"class_logits": "action", "multilabel_logits": "events"}.get(kind)
        found = self.role_output(role) if role else next((o for o in self.outputs if o.kind == kind), None)
        if found is None:
            raise PackageError(f"package '{self.name}' has no output of kind '{kind}'")
        return found

    def role_output(self, role: str) -> OutputSpec | None:
        """The output with ``role`` (action, events, intent), else the first class (action) or
        multilabel (events) output that has no other role; None when there is none."""
        for o in self.outputs:
            if o.role == role:
                return o
        family = {"action": ("class_logits", "class_probs"), "events": ("multilabel_logits", "multilabel_probs")}
        return next((o for o in self.outputs if o.role is None and o.kind in family.get(role, ())), None)

    def output_role(self, role: str) -> OutputSpec | None:
        """The output with this ``role`` (e.g. ``intent``), or None."""
        return next((o for o in self.outputs if o.role == role), None)

    def feed_builder(self) -> FeedBuilder:
        """The preprocessing the manifest declares; PackageError (one line) when it cannot be built."""
        try:
            return FeedBuilder([InputDecl(i.name, i.preprocess, i.dtype, i.shape) for i in self.inputs])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, ZeroDivisionError,
                ConfigError) as exc:
            raise PackageError(f"{self.path / MANIFEST}: the preprocessing of its inputs is not usable "
                               f"({type(exc).__name__}: {str(exc)[:300]}); fix its preprocess blocks "
                               "(docs/bring-your-model.md) or rebuild the package") from exc

    def describe(self) -> str:
        m = self.manifest
        lines = [f"package   {self.name}  ({self.path})", f"format    {m.format_version}"]
        for i in self.inputs:
            kind = i.preprocess.get("kind")
            lines.append(f"input     {i.name:<11} {i.modality:<9} {i.dtype:<8} {list(i.shape)}  [{kind}]")
        for o in self.outputs:
            lines.append(f"output    {o.name:<15} {o.kind:<18} {', '.join(o.labels)}")
        for v, a in sorted(m.artifacts.items()):
            lines.append(f"artifact  {v:<8} {a.path}  sha256 {a.sha256[:16]}…  {a.bytes / 1e6:.2f} MB")
        prov = m.provenance
        if prov:
            lines.append(f"built by  {prov.get('command', '?')}")
            if "seed" in prov or "git_revision" in prov:  # a trained package; a brought model has no such record
                lines.append(f"          seed {prov.get('seed')}  git {str(prov.get('git_revision', '?'))[:12]}  "
                             f"data {str(prov.get('data_sha256', '?'))[:16]}…")
        par = m.parity
        if par:
            lines.append(f"parity    max |Δlogit| {_number(par.get('max_abs_diff')):.2e} on {par.get('samples')} "
                         f"samples, argmax agreement {100 * _number(par.get('argmax_agreement')):.1f}%")
        return "\n".join(lines)


def _number(v: object) -> float:
    """A reported figure of the manifest as a float (NaN when it is not a number: the manifest is untrusted)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) < 1e300 else float("nan")


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
        elif path.is_file():
            hint = "; to read a log, use 'edgefusion log info'" if path.suffix == ".mcap" else ""
            raise PackageError(f"{path} is a file, not a model package (a folder with a {MANIFEST}){hint}")
        elif isinstance(where, str) and "/" not in where:
            raise unknown_name("model package", where, builtin_packages())
        else:
            raise PackageError(f"model package {path} does not exist")
    where = path / MANIFEST
    try:
        if where.stat().st_size > MAX_MANIFEST_BYTES:
            raise PackageError(f"{where} is {where.stat().st_size} bytes; a manifest is at most "
                               f"{MAX_MANIFEST_BYTES} bytes. Is this the right file?")
        data = json.loads(where.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise PackageError(f"cannot read {where}: {reason}; expected a JSON manifest "
                           "(see docs/architecture.md)") from exc
    from edgefusion.decode import check_outputs  # decode imports the manifest and preprocessing, not the package

    pkg = ModelPackage(path, Manifest.parse(data, str(where)))
    pkg.feed_builder()  # a manifest whose preprocessing cannot be built is refused now, in one line
    problems = check_outputs(pkg.manifest.outputs)
    if problems:
        raise PackageError(f"{where}: " + "; ".join(problems))
    if verify:
        verify_package(pkg)
    return pkg


def verify_package(pkg: ModelPackage) -> None:
    """Check that every artifact and source file exists and has the recorded sha256."""
    m = pkg.manifest
    root = pkg.path.resolve()
    for variant, art in {**m.sources, **m.artifacts}.items():
        f = pkg.file(art)
        if not f.resolve().is_relative_to(root):
            raise IntegrityError(f"package '{pkg.name}': the {variant} file {art.path} is a link that leaves the "
                                 f"package directory {pkg.path}; copy the file into the package instead")
        if not f.is_file():
            raise MissingArtifactError(
                f"package '{pkg.name}': the {variant} artifact {f} is missing; "
                f"rebuild the package ({m.build_command})"
            )
        digest = sha256_file(f)
        if digest != art.sha256:
            raise IntegrityError(
                f"package '{pkg.name}': {f.name} has sha256 {digest[:16]}…, the manifest expects "
                f"{art.sha256[:16]}…; the file changed after it was packaged. Restore it or rebuild "
                f"the package ({m.build_command})"
            )
