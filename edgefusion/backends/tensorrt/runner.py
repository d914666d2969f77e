"""The TensorRT runner: a session on a prebuilt engine, with CUDA buffers and name-based I/O.

A session owns one execution context and one CUDA stream. Device buffers are allocated
once, at the optimization profile's largest shapes, with pinned host staging buffers of
the same size; each call copies only the bytes of the batch it got. Inputs and outputs
are bound by tensor name (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``), the API common to
TensorRT 10.x and 11.x; the binding-index API they removed is not used. CUDA calls go
through a :class:`~edgefusion.backends.tensorrt.cuda.CudaProvider`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.backends.tensorrt.cuda import CudaProvider, load_cuda
from edgefusion.backends.tensorrt.deps import import_tensorrt
from edgefusion.backends.tensorrt.engines import read_engine, rebuild_command, this_machine
from edgefusion.errors import BackendError
from edgefusion.package import ModelPackage

__all__ = ["TensorRTBackend"]


@dataclass
class _Buffer:
    dtype: np.dtype
    device: int
    host: np.ndarray  # pinned, uint8, sized for the profile's largest shape

    def staging(self, shape: tuple[int, ...]) -> np.ndarray:
        """The first bytes of the host buffer, as an array of ``shape`` and this tensor's dtype."""
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        return self.host[:nbytes].view(self.dtype).reshape(shape)


class TensorRTBackend(Backend):
    """A TensorRT engine of the package, chosen for this machine's TensorRT and GPU.

    Args:
        package: the loaded model package (with engines from ``edgefusion build-engine``).
        variant: ``fp32``, ``fp16`` or ``int8`` (the engine's precision).
        threads: ignored by TensorRT; kept for the common interface.
        device: CUDA device index.
        cuda: the CUDA provider to use instead of :func:`~edgefusion.backends.tensorrt.cuda.load_cuda`'s
            (for tests, or a caller that manages CUDA itself); ``device`` is then ignored.

    Example (on a machine with TensorRT, after ``edgefusion build-engine smart_home --variant fp16``)::

        with TensorRTBackend(load_package("smart_home"), variant="fp16") as be:
            print(be.info)     # tensorrt (TensorRT 10.3.0, Orin (sm87), cuda-python, fp16)
    """

    name = "tensorrt"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None, device: int = 0,
                 cuda: CudaProvider | None = None, **options: Any) -> None:
        super().__init__(package, variant, threads, **options)
        self._bufs: dict[str, _Buffer] = {}
        self._stream: int | None = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self.max_batch = 0
        purpose = "the tensorrt backend"
        trt = import_tensorrt(purpose)
        self._cuda = cuda if cuda is not None else load_cuda(device, purpose)
        self.machine = this_machine(trt, self._cuda)
        self.key, blob = read_engine(package, variant, self.machine)
        self._rebuild = rebuild_command(package, variant)
        try:
            with self._cuda.active():
                self._open(trt, blob)
        except BaseException:
            self.close()
            raise

    def _open(self, trt: Any, blob: bytes) -> None:
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise BackendError(f"TensorRT {self.machine.tensorrt} could not deserialize engine {self.key} (see the "
                               f"TensorRT log above); rebuild it with: {self._rebuild}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for engine {self.key} (GPU memory?)")
        self._stream = self._cuda.create_stream()
        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        if set(self._inputs) != {i.name for i in self.package.inputs} or \
                set(self._outputs) != {o.name for o in self.package.outputs}:
            raise BackendError(f"engine {self.key} has inputs {self._inputs} and outputs {self._outputs}; the manifest "
                               "declares others. Rebuild it with: " + self._rebuild)
        shapes = self._largest_shapes()
        specs = {i.name: i.dtype for i in self.package.inputs}
        for n in names:
            dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(n)))
            if n in specs and dtype != np.dtype(specs[n]):
                raise BackendError(f"engine {self.key}: input '{n}' is {dtype}, the manifest says {specs[n]}; "
                                   "rebuild it with: " + self._rebuild)
            nbytes = int(np.prod(shapes[n])) * dtype.itemsize
            buf = _Buffer(dtype, self._cuda.malloc(nbytes), self._cuda.malloc_host(nbytes))
            self._bufs[n] = buf
            if not self._context.set_tensor_address(n, buf.device):
                raise BackendError(f"TensorRT refused the device address of tensor '{n}' of engine {self.key}")

    def _largest_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's shape at the optimization profile's largest inputs, the size its buffers get."""
        shapes: dict[str, tuple[int, ...]] = {}
        for n in self._inputs:
            shapes[n] = tuple(self._engine.get_tensor_profile_shape(n, 0)[2])
            self._context.set_input_shape(n, shapes[n])
        self.max_batch = min(s[0] for s in shapes.values())
        for n in self._outputs:
            shapes[n] = tuple(self._context.get_tensor_shape(n))
            if any(d < 0 for d in shapes[n]):
                # A data-dependent shape is known only after the run; that needs an IOutputAllocator.
                raise BackendError(f"engine {self.key}: output '{n}' has shape {list(shapes[n])} even with every "
                                   "input shape set, i.e. its size depends on the data; this backend needs output "
                                   "shapes that follow from the input shapes")
        return shapes

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("tensorrt", f"TensorRT {self.machine.tensorrt}, {self.machine.gpu} ({self.machine.sm}), "
                                       f"{self._cuda.name}", self.variant, None)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stream = self._stream
        if stream is None:
            raise BackendError(f"the TensorRT session on engine {self.key} is closed")
        batch = next(iter(feeds.values())).shape[0]
        if batch > self.max_batch:
            raise BackendError(f"batch {batch} exceeds engine {self.key}'s optimization profile (max {self.max_batch});"
                               f" rebuild it with: {self._rebuild} --max-batch {batch}")
        shapes: dict[str, tuple[int, ...]] = {}
        with self._cuda.active():
            for n in self._inputs:
                x, buf = feeds[n], self._bufs[n]
                staging = buf.staging(x.shape)
                staging[...] = x
                if not self._context.set_input_shape(n, x.shape):
                    raise BackendError(f"TensorRT refused shape {list(x.shape)} for input '{n}' of engine {self.key}")
                self._cuda.h2d(buf.device, staging, stream)
            if not self._context.execute_async_v3(stream):
                raise BackendError(f"TensorRT failed to run engine {self.key} (see the TensorRT log above)")
            for n in self._outputs:
                shapes[n] = tuple(self._context.get_tensor_shape(n))
                self._cuda.d2h(self._bufs[n].staging(shapes[n]), self._bufs[n].device, stream)
            self._cuda.sync(stream)
        # Copies, because the staging buffers are overwritten by the next call.
        return {n: self._bufs[n].staging(shapes[n]).copy() for n in self._outputs}

    def close(self) -> None:
        if self._closed:
            return
        cuda = self._cuda
        # TensorRT objects go first (context, engine, runtime), then the memory they pointed at.
        self._context = self._engine = self._runtime = None
        try:
            with cuda.active():
                if self._stream is not None:
                    cuda.sync(self._stream)
                for b in self._bufs.values():
                    cuda.free(b.device)
                    cuda.free_host(b.host)
                self._bufs.clear()
                if self._stream is not None:
                    cuda.destroy_stream(self._stream)
                    self._stream = None
        finally:
            super().close()
