"""Backends by name: ``onnxruntime`` (default), ``null``; ``tensorrt`` arrives with its issue.

Example:
    >>> from edgefusion.package import load_package
    >>> with open_backend("null", load_package("smart_home")) as b:
    ...     print(b.info.backend)
    null
"""

from __future__ import annotations

import importlib
from typing import Any

from edgefusion.backends.base import Backend, BackendInfo, check_feeds
from edgefusion.errors import unknown_name
from edgefusion.package import ModelPackage

__all__ = ["BACKENDS", "Backend", "BackendInfo", "check_feeds", "open_backend"]

# name -> "module:Class", imported on first use so optional dependencies stay optional
BACKENDS = {
    "onnxruntime": "edgefusion.backends.onnxruntime:OnnxRuntimeBackend",
    "null": "edgefusion.backends.null:NullBackend",
    "tensorrt": "edgefusion.backends.tensorrt:TensorRTBackend",
}


def open_backend(name: str, package: ModelPackage, variant: str = "fp32", threads: int | None = None,
                 **options: Any) -> Backend:
    """Open a session of backend ``name`` on ``package``'s ``variant``."""
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    module, cls = BACKENDS[name].split(":")
    backend_cls: type[Backend] = getattr(importlib.import_module(module), cls)
    return backend_cls(package, variant=variant, threads=threads, **options)
