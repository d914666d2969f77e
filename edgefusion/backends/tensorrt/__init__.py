"""The ``tensorrt`` backend: a prebuilt TensorRT engine with CUDA buffers and name-based I/O.

Split the way Polygraphy splits its TensorRT backend, by what each part needs:

- :mod:`~edgefusion.backends.tensorrt.engines` - engine keys and selection: which engine of
  a package runs on this machine, and the rebuild command when none does (pure Python;
  ``export/tensorrt_build.py`` uses it to name what it builds);
- :mod:`~edgefusion.backends.tensorrt.cuda` - the CUDA buffer provider: one protocol, with
  cuda-python and pycuda implementations;
- :mod:`~edgefusion.backends.tensorrt.runner` - :class:`TensorRTBackend`, the session;
- :mod:`~edgefusion.backends.tensorrt.deps` - importing TensorRT, and how to install it.

Nothing imports TensorRT or CUDA until a session opens or an engine is built; the names
below are re-exported here so callers need not know the split.
"""

from edgefusion.backends.tensorrt.cuda import CudaProvider, CudaPythonProvider, PyCudaProvider, load_cuda
from edgefusion.backends.tensorrt.deps import INSTALL_HINT, import_tensorrt, missing_dependency
from edgefusion.backends.tensorrt.engines import (
    ENGINE_SOURCES,
    Machine,
    engine_key,
    read_engine,
    rebuild_command,
    select_engine,
    this_machine,
    trt_version,
)
from edgefusion.backends.tensorrt.runner import TensorRTBackend

__all__ = [
    "ENGINE_SOURCES",
    "INSTALL_HINT",
    "CudaProvider",
    "CudaPythonProvider",
    "Machine",
    "PyCudaProvider",
    "TensorRTBackend",
    "engine_key",
    "import_tensorrt",
    "load_cuda",
    "missing_dependency",
    "read_engine",
    "rebuild_command",
    "select_engine",
    "this_machine",
    "trt_version",
]
