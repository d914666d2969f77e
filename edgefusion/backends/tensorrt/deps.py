"""TensorRT's optional dependencies: imported on first use, and when absent, how to get them.

Example:
    >>> err = missing_dependency("tensorrt", "edgefusion build-engine", ImportError("no tensorrt"))
    >>> str(err).startswith("edgefusion build-engine needs the Python module 'tensorrt'")
    True
"""

from __future__ import annotations

from typing import Any

from edgefusion.errors import MissingDependencyError

__all__ = ["INSTALL_HINT", "import_tensorrt", "missing_dependency"]

INSTALL_HINT = ("On x86-64 with an NVIDIA GPU: pip install tensorrt cuda-python (NVIDIA's wheels, on PyPI and "
                "https://pypi.nvidia.com). On Jetson, TensorRT comes with JetPack (sudo apt install nvidia-jetpack, "
                "which provides python3-libnvinfer); use a virtual environment created with "
                "--system-site-packages so it sees it, and pip install cuda-python")


def missing_dependency(module: str, purpose: str, exc: ImportError,
                       message: str | None = None) -> MissingDependencyError:
    """A MissingDependencyError for ``module`` naming the ``tensorrt`` extra and :data:`INSTALL_HINT`.

    Args:
        module: the module that could not be imported.
        purpose: what needed it (the start of the message).
        exc: the ImportError, kept as the cause.
        message: the whole message instead of the standard one (for modules the extra does not install).
    """
    err = MissingDependencyError(module, "tensorrt", purpose)
    # The pip extra alone does not cover Jetson, where TensorRT ships with the OS image.
    err.args = (message or f"{err}. {INSTALL_HINT}",)
    err.__cause__ = exc
    return err


def import_tensorrt(purpose: str) -> Any:
    """The ``tensorrt`` module, or MissingDependencyError saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise missing_dependency("tensorrt", purpose, exc) from exc
    return tensorrt
