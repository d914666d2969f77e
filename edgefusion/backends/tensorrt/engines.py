"""Engine keys and selection: which engine of a package runs on this machine (pure Python).

Engines are built ahead of time by ``edgefusion build-engine`` and stored in the package
under ``manifest["engines"]``, keyed by :func:`engine_key` (TensorRT version, compute
capability, GPU and variant; e.g. ``trt10.3.0/sm87/orin/int8``), each recording the
sha256 of the engine and of the ONNX it was built from. :func:`select_engine` picks the
engine for this machine and refuses, with the exact rebuild command, an engine that is
missing, built for another TensorRT or GPU, or built from an ONNX that has changed since;
:func:`read_engine` also checks the engine file itself. The runtime never builds an
engine silently.

Nothing here imports TensorRT or CUDA: the engine builder and the tests use it without them.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgefusion.errors import BackendError, IntegrityError, MissingArtifactError, PackageError
from edgefusion.package import FileRecord, ModelPackage

if TYPE_CHECKING:
    from edgefusion.backends.tensorrt.cuda import CudaProvider

__all__ = ["ENGINE_SOURCES", "Machine", "engine_key", "read_engine", "rebuild_command", "select_engine",
           "this_machine", "trt_version"]

# engine variant -> the ONNX artifact it is built from (fp16 is converted from fp32 at build time)
ENGINE_SOURCES = {"fp32": "fp32", "fp16": "fp32", "int8": "int8_trt"}


@dataclass(frozen=True)
class Machine:
    """What an engine is tied to: TensorRT version, GPU compute capability and GPU model.

    Example:
        >>> m = Machine("10.3.0", (8, 7), "Orin")
        >>> engine_key(m, "int8")
        'trt10.3.0/sm87/orin/int8'
    """

    tensorrt: str
    compute_capability: tuple[int, int]
    gpu: str

    @property
    def sm(self) -> str:
        return f"sm{self.compute_capability[0]}{self.compute_capability[1]}"

    @property
    def gpu_slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-") or "gpu"

    def __str__(self) -> str:
        return f"TensorRT {self.tensorrt}, {self.gpu} ({self.sm})"


def trt_version(version: str) -> str:
    """``major.minor.patch`` of a TensorRT version string (``10.3.0.30`` -> ``10.3.0``)."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        raise BackendError(f"cannot read the TensorRT version {version!r}; expected e.g. '10.3.0'")
    return f"{m[1]}.{m[2]}.{m[3] or 0}"


def this_machine(trt: Any, cuda: CudaProvider) -> Machine:
    """The :class:`Machine` of the ``tensorrt`` module ``trt`` and the GPU behind ``cuda``."""
    name, cc = cuda.device()
    return Machine(trt_version(trt.__version__), cc, name)


def engine_key(machine: Machine, variant: str) -> str:
    """The manifest key of the ``variant`` engine for ``machine``."""
    return f"trt{machine.tensorrt}/{machine.sm}/{machine.gpu_slug}/{variant}"


def rebuild_command(package: ModelPackage, variant: str) -> str:
    """The command that builds the ``variant`` engine of ``package`` on this machine."""
    return f"edgefusion build-engine {shlex.quote(str(package.path))} --variant {variant}"


def select_engine(package: ModelPackage, variant: str, machine: Machine) -> tuple[str, FileRecord]:
    """The (key, entry) of the engine to run; MissingArtifactError with the rebuild command otherwise."""
    if variant not in ENGINE_SOURCES:
        raise BackendError(f"TensorRT engines come in variants {', '.join(ENGINE_SOURCES)}; got '{variant}'")
    engines = package.manifest.engines
    cmd = rebuild_command(package, variant)
    key = engine_key(machine, variant)
    entry = engines.get(key)
    if entry is None:
        others = sorted(k for k, e in engines.items() if e.meta.get("variant") == variant)
        found = (f"it holds {variant} engines for {', '.join(others)} only" if others
                 else f"it holds no {variant} engine")
        raise MissingArtifactError(
            f"package '{package.name}' has no TensorRT engine for this machine (expected key {key}: {machine}); "
            f"{found}. An engine runs only with the TensorRT version and on the GPU it was built for, and the "
            f"runtime never builds one silently. Build it here with: {cmd}")
    meta = entry.meta
    if meta.get("tensorrt") != machine.tensorrt or meta.get("compute_capability") != list(machine.compute_capability):
        raise PackageError(f"package '{package.name}': engine {key} records TensorRT {meta.get('tensorrt')} and "
                           f"compute capability {meta.get('compute_capability')}, which contradicts its key; the "
                           f"manifest was edited by hand. Rebuild the engine with: {cmd}")
    source = ENGINE_SOURCES[variant]
    arts = package.manifest.artifacts
    if source not in arts:
        raise MissingArtifactError(f"package '{package.name}' lacks the '{source}' artifact that engine {key} was "
                                   "built from; restore it (edgefusion quantize PACKAGE for int8_trt), then: " + cmd)
    if meta.get("onnx_sha256") != arts[source].sha256:
        raise MissingArtifactError(
            f"engine {key} was built from the {source} ONNX with sha256 {str(meta.get('onnx_sha256'))[:16]}…, but "
            f"the package's {source} artifact is now {arts[source].sha256[:16]}…; the engine is stale. "
            f"Rebuild it with: {cmd}")
    return key, entry


def read_engine(package: ModelPackage, variant: str, machine: Machine) -> tuple[str, bytes]:
    """The key and the serialized bytes of the engine :func:`select_engine` picks, its sha256 checked.

    Raises:
        MissingArtifactError: no usable engine is recorded, or its file is missing.
        IntegrityError: the file is not the one the manifest records.
    """
    key, entry = select_engine(package, variant, machine)
    path = package.file(entry)
    cmd = rebuild_command(package, variant)
    if not path.is_file():
        raise MissingArtifactError(f"engine {key}: {path} is missing; rebuild it with: {cmd}")
    blob = path.read_bytes()  # hashed and deserialized from the same bytes, so the check covers what runs
    if hashlib.sha256(blob).hexdigest() != entry.sha256:
        raise IntegrityError(f"engine {key}: {path.name} does not have the sha256 the manifest records; "
                             f"it changed after it was built. Rebuild it with: {cmd}")
    return key, blob
