"""The one exception tree of EdgeFusion.

Every error the runtime, the toolchain or the CLI raises on purpose derives from
:class:`EdgeFusionError`. Lower-level errors (OSError, onnxruntime's, json's) are
translated at one boundary with ``raise ... from exc`` so the cause is kept. Each
message says what was expected, what was found and what to do about it.

::

    EdgeFusionError
     ├── ConfigError              bad option, unknown name (with "did you mean")
     ├── InputError               bad data handed to the runtime
     │    ├── SampleError         a Frame / AudioChunk / Command that fails validation
     │    ├── FeedError           a model feed of the wrong name, shape or dtype
     │    └── SourceError         a source could not open or read its device, file or stream
     ├── PackageError             a model package that cannot be used
     │    ├── MissingArtifactError  a file the manifest names is absent
     │    └── IntegrityError      a file whose sha256 differs from the manifest
     ├── BackendError             a backend failed to open or to run
     ├── PipelineError            a pipeline stage failed (``stage``; ``__cause__`` is the original)
     ├── CheckFailed              ``replay --check`` found results that differ from the log
     ├── MissingDependencyError   an optional extra is not installed (names the pip command)
     └── ExportError              training / export / parity problems in the toolchain
          ├── ParityError         ONNX and PyTorch disagree beyond tolerance
          └── QuantizationError   INT8 calibration failed its guards or its accuracy gate

The CLI prints ``error: <message>`` for any of these, never a traceback, and exits with
1 (a check found a mismatch), 2 (usage or input error) or 3 (runtime failure); see
:func:`edgefusion.cli.exit_status`.

Example:
    >>> try:
    ...     raise FeedError("input 'image': expected shape [batch, 3, 64, 64], got [1, 3]")
    ... except InputError as exc:
    ...     print(type(exc).__name__)
    FeedError
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "BackendError",
    "CheckFailed",
    "ConfigError",
    "EdgeFusionError",
    "ExportError",
    "FeedError",
    "InputError",
    "IntegrityError",
    "MissingArtifactError",
    "MissingDependencyError",
    "PackageError",
    "ParityError",
    "PipelineError",
    "QuantizationError",
    "SampleError",
    "SourceError",
    "unknown_name",
]


class EdgeFusionError(Exception):
    """Base of every error EdgeFusion raises on purpose."""


class ConfigError(EdgeFusionError):
    """An option, name or configuration value is not valid."""


class InputError(EdgeFusionError):
    """Data handed to the runtime is not what it expects."""


class SampleError(InputError):
    """A sample (frame, audio chunk, command) failed validation."""


class FeedError(InputError):
    """A model feed has the wrong name, shape or dtype."""


class SourceError(InputError):
    """A source could not open or read its device, file or stream."""


class PackageError(EdgeFusionError):
    """A model package cannot be loaded or used."""


class MissingArtifactError(PackageError):
    """A file named by the manifest is missing."""


class IntegrityError(PackageError):
    """A file's sha256 differs from the one recorded in the manifest."""


class BackendError(EdgeFusionError):
    """A backend failed to open a session or to run it."""


class PipelineError(EdgeFusionError):
    """A pipeline stage failed; ``stage`` names it and ``__cause__`` is the original exception."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        self.stage = stage
        # an EdgeFusionError says what is wrong in the user's words; another exception is named, as a bug
        what = str(exc) if isinstance(exc, EdgeFusionError) else f"{type(exc).__name__}: {exc}"
        super().__init__(f"pipeline stage '{stage}' failed: {what}")


class CheckFailed(EdgeFusionError):
    """``replay --check`` found results that differ from the ones recorded in the log."""


class MissingDependencyError(EdgeFusionError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the Python module '{module}', which is not installed; "
            f"install it with: pip install 'edgefusion[{extra}]'"
        )


class ExportError(EdgeFusionError):
    """Training, export or packaging failed."""


class ParityError(ExportError):
    """The exported model does not match PyTorch within tolerance."""


class QuantizationError(ExportError):
    """INT8 quantization produced a model that fails its guards or its accuracy gate."""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> ConfigError:
    """Build a ConfigError for an unknown name, with a "did you mean" hint.

    Example:
        >>> str(unknown_name("scenario", "smart_hom", ["smart_home", "driving"]))
        "unknown scenario 'smart_hom'; did you mean 'smart_home'? (known: driving, smart_home)"
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1) or [k for k in known if k.startswith(name)][:1]
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ConfigError(f"unknown {kind} '{name}'{hint} (known: {', '.join(known)})")
