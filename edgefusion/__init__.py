"""EdgeFusion: an edge perception runtime fusing camera, audio and text.

Example:
    >>> import edgefusion
    >>> pkg = edgefusion.load_package("smart_home")
    >>> with edgefusion.open_backend("onnxruntime", pkg, threads=1) as backend:
    ...     step = edgefusion.FusionStep(pkg, backend)
    ...     result = step(edgefusion.FusionWindow(t_ns=0, image=None, audio=None, command="lock the door"))
    >>> result.missing
    ('image', 'audio')
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgefusion.backends import Backend, BackendInfo, open_backend
from edgefusion.core import FusionCore
from edgefusion.engine import FusionStep
from edgefusion.errors import (
    BackendError,
    ConfigError,
    EdgeFusionError,
    FeedError,
    InputError,
    IntegrityError,
    MissingArtifactError,
    MissingDependencyError,
    PackageError,
    SampleError,
)
from edgefusion.package import InputSpec, ModelPackage, OutputSpec, load_package
from edgefusion.samples import AudioChunk, Command, Frame, FusionWindow, Result

__all__ = [
    "AudioChunk",
    "Backend",
    "BackendError",
    "BackendInfo",
    "Command",
    "ConfigError",
    "EdgeFusionError",
    "FeedError",
    "Frame",
    "FusionCore",
    "FusionStep",
    "FusionWindow",
    "InputError",
    "InputSpec",
    "IntegrityError",
    "MissingArtifactError",
    "MissingDependencyError",
    "ModelPackage",
    "OutputSpec",
    "PackageError",
    "Result",
    "SampleError",
    "__version__",
    "load_package",
    "open_backend",
]
