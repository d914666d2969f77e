"""The CUDA buffer provider: the few CUDA calls a TensorRT session makes, behind one protocol.

:class:`CudaProvider` is all the runner knows of CUDA: device and pinned host buffers,
asynchronous copies between them, one stream, and the device's name and compute
capability. Streams are plain integer handles (what ``execute_async_v3`` takes); each
provider keeps the library's own stream object alive behind its handle.

Two implementations, each importing its library on first use:

- :class:`CudaPythonProvider` over cuda-python's runtime bindings (``cuda.bindings.runtime``,
  or ``cuda.cudart`` before 12.6) - the default, installed by ``edgefusion[tensorrt]``;
- :class:`PyCudaProvider` over pycuda, which older JetPack images carry.

:func:`load_cuda` picks the first one present. Tests plug a plain-Python provider in
through the same protocol (``TensorRTBackend(..., cuda=provider)``), so the runner's
buffer, shape, stream and close logic runs without a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import numpy as np

from edgefusion.backends.tensorrt.deps import missing_dependency
from edgefusion.errors import BackendError, MissingDependencyError

__all__ = ["CudaProvider", "CudaPythonProvider", "PyCudaProvider", "load_cuda"]


class CudaProvider(Protocol):
    """Device buffers, pinned host buffers, copies and a stream on one CUDA device.

    Every call but :meth:`device` is made inside :meth:`active`, because the current device
    (cuda-python) or context (pycuda) belongs to the calling thread, and a session may be
    opened on one thread and run on another.

    Example (a session's whole use of it)::

        with cuda.active():
            dev, host, stream = cuda.malloc(n), cuda.malloc_host(n), cuda.create_stream()
            cuda.h2d(dev, host, stream)
            cuda.d2h(host, dev, stream)
            cuda.sync(stream)
            cuda.free(dev); cuda.free_host(host); cuda.destroy_stream(stream)
    """

    name: str  # shown in the backend's info: "cuda-python" or "pycuda"

    def device(self) -> tuple[str, tuple[int, int]]:
        """The GPU's name and compute capability (major, minor)."""
        ...

    def active(self) -> AbstractContextManager[None]:
        """Make this provider's device current on the calling thread for the ``with`` block."""
        ...

    def malloc(self, nbytes: int) -> int:
        """A device buffer of ``nbytes``; returns its address."""
        ...

    def free(self, ptr: int) -> None:
        """Release a device buffer from :meth:`malloc`."""
        ...

    def malloc_host(self, nbytes: int) -> np.ndarray:
        """A pinned (page-locked) host buffer of ``nbytes``, as a uint8 array."""
        ...

    def free_host(self, host: np.ndarray) -> None:
        """Release a host buffer from :meth:`malloc_host` (the array itself, not a view)."""
        ...

    def create_stream(self) -> int:
        """A new CUDA stream; returns its handle."""
        ...

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        """Queue a copy of the pinned host array ``src`` to device address ``dst`` on ``stream``."""
        ...

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        """Queue a copy of ``dst.nbytes`` from device address ``src`` into the pinned host array ``dst``."""
        ...

    def sync(self, stream: int) -> None:
        """Wait until all work queued on ``stream`` is done."""
        ...

    def destroy_stream(self, stream: int) -> None:
        """Release a stream from :meth:`create_stream`."""
        ...


class CudaPythonProvider:
    """:class:`CudaProvider` over cuda-python's runtime API.

    Args:
        device: the CUDA device index.
        runtime: the runtime module to use; imported when None (``cuda.bindings.runtime``,
            else ``cuda.cudart``), raising MissingDependencyError when neither is installed.
        purpose: what needs CUDA, for that error message.

    Example (on a machine with a GPU)::

        print(CudaPythonProvider(0).device())    # ('Orin', (8, 7))
    """

    name = "cuda-python"

    def __init__(self, device: int = 0, runtime: Any = None, purpose: str = "the tensorrt backend") -> None:
        self.rt = runtime if runtime is not None else _import_cuda_runtime(purpose)
        self.index = device
        self._streams: dict[int, Any] = {}
        self._call(self.rt.cudaSetDevice(device), "cudaSetDevice")

    def _call(self, res: Any, what: str) -> Any:
        # cuda-python returns (error, *results) and never raises; turn a failure into our error here.
        err, *rest = res if isinstance(res, tuple) else (res,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA {what} failed: {getattr(err, 'name', err)}")  # the enum name, not its number
        return rest[0] if len(rest) == 1 else None

    def device(self) -> tuple[str, tuple[int, int]]:
        p = self._call(self.rt.cudaGetDeviceProperties(self.index), "cudaGetDeviceProperties")
        name = p.name.split(b"\0", 1)[0].decode() if isinstance(p.name, bytes) else str(p.name)
        return name, (int(p.major), int(p.minor))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._call(self.rt.cudaSetDevice(self.index), "cudaSetDevice")
        yield

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr), "cudaFree")

    def malloc_host(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))

    def free_host(self, host: np.ndarray) -> None:
        self._call(self.rt.cudaFreeHost(host.ctypes.data), "cudaFreeHost")

    def create_stream(self) -> int:
        stream = self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")
        self._streams[int(stream)] = stream
        return int(stream)

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self._streams[stream]),
                   "cudaMemcpyAsync")

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self._streams[stream]),
                   "cudaMemcpyAsync")

    def sync(self, stream: int) -> None:
        self._call(self.rt.cudaStreamSynchronize(self._streams[stream]), "cudaStreamSynchronize")

    def destroy_stream(self, stream: int) -> None:
        self._call(self.rt.cudaStreamDestroy(self._streams.pop(stream)), "cudaStreamDestroy")


class PyCudaProvider:
    """:class:`CudaProvider` over pycuda, in the device's primary context.

    Args:
        device: the CUDA device index.
        driver: the ``pycuda.driver`` module to use; imported when None, raising
            MissingDependencyError when pycuda is not installed.
        purpose: what needs CUDA, for that error message.

    Example (on a JetPack image that carries pycuda)::

        print(PyCudaProvider(0).device())        # ('Orin', (8, 7))
    """

    name = "pycuda"

    def __init__(self, device: int = 0, driver: Any = None, purpose: str = "the tensorrt backend") -> None:
        drv = driver if driver is not None else _import_pycuda(purpose)
        drv.init()
        self.drv, self.index = drv, device
        self.dev = drv.Device(device)
        self.ctx = self.dev.retain_primary_context()  # the context TensorRT's runtime API calls use
        self._allocs: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def device(self) -> tuple[str, tuple[int, int]]:
        major, minor = self.dev.compute_capability()
        return str(self.dev.name()), (int(major), int(minor))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self.ctx.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(nbytes)
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        self._allocs.pop(ptr).free()

    def malloc_host(self, nbytes: int) -> np.ndarray:
        return np.asarray(self.drv.pagelocked_empty(nbytes, np.uint8))

    def free_host(self, host: np.ndarray) -> None:
        base = host.base  # pycuda hangs the HostAllocation (the thing with free()) on the array's base
        while base is not None and not hasattr(base, "free"):
            base = getattr(base, "base", None)
        if base is not None:
            base.free()

    def create_stream(self) -> int:
        stream = self.drv.Stream()
        self._streams[int(stream.handle)] = stream
        return int(stream.handle)

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self.drv.memcpy_htod_async(dst, src, self._streams[stream])

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self.drv.memcpy_dtoh_async(dst, src, self._streams[stream])

    def sync(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def destroy_stream(self, stream: int) -> None:
        del self._streams[stream]  # pycuda releases the stream with its last reference


def _import_cuda_runtime(purpose: str) -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as runtime  # cuda-python < 12.6
        except ImportError as exc:
            raise missing_dependency("cuda-python", purpose, exc) from exc
    return runtime


def _import_pycuda(purpose: str) -> Any:
    try:
        import pycuda.driver as drv
    except ImportError as exc:
        raise missing_dependency(
            "pycuda", purpose, exc,
            f"{purpose} needs the Python module 'pycuda', which is not installed; install it with: pip install "
            "pycuda, or use the default CUDA provider, cuda-python: pip install 'edgefusion[tensorrt]'") from exc
    return drv


def load_cuda(device: int, purpose: str) -> CudaProvider:
    """cuda-python's provider if installed, else pycuda's, else MissingDependencyError naming cuda-python."""
    try:
        return CudaPythonProvider(device, purpose=purpose)
    except MissingDependencyError as no_cuda_python:
        try:
            return PyCudaProvider(device, purpose=purpose)
        except MissingDependencyError:
            # The extra installs cuda-python, so that is the one to name; its ImportError stays the cause.
            raise no_cuda_python from no_cuda_python.__cause__
