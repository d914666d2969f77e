"""The ``tensorrt`` backend: a prebuilt TensorRT engine with CUDA buffers and name-based I/O.

Engines are built ahead of time by ``edgefusion build-engine`` and stored in the package
under ``manifest["engines"]``, keyed by :func:`engine_key` (TensorRT version, compute
capability, GPU and variant; e.g. ``trt10.3.0/sm87/orin/int8``), each recording the
sha256 of the engine and of the ONNX it was built from. :func:`select_engine` picks the
engine for this machine and refuses, with the exact rebuild command, an engine that is
missing, built for another TensorRT or GPU, or built from an ONNX that has changed since.
The runtime never builds an engine silently.

A session owns one execution context and one CUDA stream; device buffers are allocated
once at the optimization profile's largest shapes, with pinned host staging buffers;
inputs and outputs are bound by name (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``), the API common to TensorRT 10.x and 11.x. CUDA calls go through
cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6), or pycuda when
that is what the device carries. Everything is imported on first use.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.errors import BackendError, IntegrityError, MissingArtifactError, MissingDependencyError, PackageError
from edgefusion.package import ModelPackage, sha256_file

__all__ = ["ENGINE_SOURCES", "Machine", "TensorRTBackend", "engine_key", "import_tensorrt", "load_cuda",
           "rebuild_command", "select_engine", "this_machine"]

# engine variant -> the ONNX artifact it is built from (fp16 is converted from fp32 at build time)
ENGINE_SOURCES = {"fp32": "fp32", "fp16": "fp32", "int8": "int8_trt"}

INSTALL_HINT = ("On x86-64 with an NVIDIA GPU: pip install tensorrt cuda-python (NVIDIA's wheels, on PyPI and "
                "https://pypi.nvidia.com). On Jetson, TensorRT comes with JetPack (sudo apt install nvidia-jetpack, "
                "which provides python3-libnvinfer); use a virtual environment created with "
                "--system-site-packages so it sees it, and pip install cuda-python")


def _missing(module: str, purpose: str, exc: ImportError) -> MissingDependencyError:
    err = MissingDependencyError(module, "tensorrt", purpose)
    # The pip extra alone does not cover Jetson, where TensorRT ships with the OS image.
    err.args = (f"{err}. {INSTALL_HINT}",)
    err.__cause__ = exc
    return err


def import_tensorrt(purpose: str) -> Any:
    """The ``tensorrt`` module, or MissingDependencyError saying how to install it."""
    try:
        import tensorrt
    except ImportError as exc:
        raise _missing("tensorrt", purpose, exc) from exc
    return tensorrt


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


def engine_key(machine: Machine, variant: str) -> str:
    """The manifest key of the ``variant`` engine for ``machine``."""
    return f"trt{machine.tensorrt}/{machine.sm}/{machine.gpu_slug}/{variant}"


def rebuild_command(package: ModelPackage, variant: str) -> str:
    return f"edgefusion build-engine {shlex.quote(str(package.path))} --variant {variant}"


def select_engine(package: ModelPackage, variant: str, machine: Machine) -> tuple[str, dict[str, Any]]:
    """The (key, entry) of the engine to run; MissingArtifactError with the rebuild command otherwise."""
    if variant not in ENGINE_SOURCES:
        raise BackendError(f"TensorRT engines come in variants {', '.join(ENGINE_SOURCES)}; got '{variant}'")
    engines: Mapping[str, Any] = package.manifest.get("engines") or {}
    cmd = rebuild_command(package, variant)
    key = engine_key(machine, variant)
    entry = engines.get(key)
    if entry is None:
        others = sorted(k for k, e in engines.items() if e.get("variant") == variant)
        found = (f"it holds {variant} engines for {', '.join(others)} only" if others
                 else f"it holds no {variant} engine")
        raise MissingArtifactError(
            f"package '{package.name}' has no TensorRT engine for this machine (expected key {key}: {machine}); "
            f"{found}. An engine runs only with the TensorRT version and on the GPU it was built for, and the "
            f"runtime never builds one silently. Build it here with: {cmd}")
    if entry.get("tensorrt") != machine.tensorrt or entry.get("compute_capability") != list(machine.compute_capability):
        raise PackageError(f"package '{package.name}': engine {key} records TensorRT {entry.get('tensorrt')} and "
                           f"compute capability {entry.get('compute_capability')}, which contradicts its key; the "
                           f"manifest was edited by hand. Rebuild the engine with: {cmd}")
    source = ENGINE_SOURCES[variant]
    arts = package.manifest.get("artifacts", {})
    if source not in arts:
        raise MissingArtifactError(f"package '{package.name}' lacks the '{source}' artifact that engine {key} was "
                                   "built from; restore it (edgefusion quantize PACKAGE for int8_trt), then: " + cmd)
    if entry.get("onnx_sha256") != arts[source]["sha256"]:
        raise MissingArtifactError(
            f"engine {key} was built from the {source} ONNX with sha256 {str(entry.get('onnx_sha256'))[:16]}…, but "
            f"the package's {source} artifact is now {arts[source]['sha256'][:16]}…; the engine is stale. "
            f"Rebuild it with: {cmd}")
    return key, entry


class _Cuda:
    """The few CUDA runtime calls a session needs, over cuda-python (``rt`` is its runtime module)."""

    provider = "cuda-python"

    def __init__(self, rt: Any, device: int) -> None:
        self.rt, self.index = rt, device
        self._call(rt.cudaSetDevice(device), "cudaSetDevice")

    def _call(self, res: Any, what: str) -> Any:
        err, *rest = res if isinstance(res, tuple) else (res,)
        if err != self.rt.cudaError_t.cudaSuccess:
            raise BackendError(f"CUDA {what} failed: {err}")
        return rest[0] if len(rest) == 1 else None

    def device(self) -> tuple[str, tuple[int, int]]:
        p = self._call(self.rt.cudaGetDeviceProperties(self.index), "cudaGetDeviceProperties")
        name = p.name.split(b"\0", 1)[0].decode() if isinstance(p.name, bytes) else str(p.name)
        return name, (int(p.major), int(p.minor))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._call(self.rt.cudaSetDevice(self.index), "cudaSetDevice")  # the current device is per thread
        yield

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr), "cudaFree")

    def host(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), (nbytes,))

    def free_host(self, arr: np.ndarray) -> None:
        self._call(self.rt.cudaFreeHost(arr.ctypes.data), "cudaFreeHost")

    def stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def handle(self, stream: Any) -> int:
        return int(stream)

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync")

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "cudaMemcpyAsync")

    def sync(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")


class _PyCuda(_Cuda):
    """The same calls over pycuda (older JetPack images carry it), in the device's primary context."""

    provider = "pycuda"

    def __init__(self, drv: Any, device: int) -> None:
        drv.init()
        self.drv, self.index = drv, device
        self.dev = drv.Device(device)
        self.ctx = self.dev.retain_primary_context()  # the context TensorRT's runtime API calls use
        self._allocs: dict[int, Any] = {}

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

    def host(self, nbytes: int) -> np.ndarray:
        return np.asarray(self.drv.pagelocked_empty(nbytes, np.uint8))

    def free_host(self, arr: np.ndarray) -> None:
        base = arr.base
        while base is not None and not hasattr(base, "free"):
            base = getattr(base, "base", None)
        if base is not None:
            base.free()

    def stream(self) -> Any:
        return self.drv.Stream()

    def handle(self, stream: Any) -> int:
        return int(stream.handle)

    def h2d(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src, stream)

    def d2h(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream)

    def sync(self, stream: Any) -> None:
        stream.synchronize()

    def destroy(self, stream: Any) -> None:
        pass  # pycuda releases the stream with the object


def load_cuda(device: int, purpose: str) -> _Cuda:
    """cuda-python's runtime bindings (new or old module path), else pycuda, else MissingDependencyError."""
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # cuda-python < 12.6
        except ImportError as exc:
            try:
                import pycuda.driver as drv
            except ImportError:
                raise _missing("cuda-python", purpose, exc) from exc
            return _PyCuda(drv, device)
    return _Cuda(rt, device)


def this_machine(trt: Any, cuda: _Cuda) -> Machine:
    name, cc = cuda.device()
    return Machine(trt_version(trt.__version__), cc, name)


@dataclass
class _Buffer:
    dtype: np.dtype
    device: int
    host: np.ndarray  # pinned, uint8, sized for the profile's largest shape


class TensorRTBackend(Backend):
    """A TensorRT engine of the package, chosen for this machine's TensorRT and GPU.

    Args:
        package: the loaded model package (with engines from ``edgefusion build-engine``).
        variant: ``fp32``, ``fp16`` or ``int8`` (the engine's precision).
        threads: ignored by TensorRT; kept for the common interface.
        device: CUDA device index.

    Example (on a machine with TensorRT, after ``edgefusion build-engine smart_home --variant fp16``)::

        with TensorRTBackend(load_package("smart_home"), variant="fp16") as be:
            print(be.info)     # tensorrt (TensorRT 10.3.0, Orin (sm87), fp16)
    """

    name = "tensorrt"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None, device: int = 0,
                 **options: Any) -> None:
        super().__init__(package, variant, threads, **options)
        self._bufs: dict[str, _Buffer] = {}
        self._stream: Any = None
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        purpose = "the tensorrt backend"
        trt = import_tensorrt(purpose)
        self._cuda = load_cuda(device, purpose)
        self.machine = this_machine(trt, self._cuda)
        self.key, entry = select_engine(package, variant, self.machine)
        path = package.path / entry["path"]
        cmd = rebuild_command(package, variant)
        if not path.is_file():
            raise MissingArtifactError(f"engine {self.key}: {path} is missing; rebuild it with: {cmd}")
        if sha256_file(path) != entry["sha256"]:
            raise IntegrityError(f"engine {self.key}: {path.name} does not have the sha256 the manifest records; "
                                 f"it changed after it was built. Rebuild it with: {cmd}")
        try:
            with self._cuda.active():
                self._open(trt, path.read_bytes(), cmd)
        except BaseException:
            self.close()
            raise

    def _open(self, trt: Any, blob: bytes, cmd: str) -> None:
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(blob)
        if self._engine is None:
            raise BackendError(f"TensorRT {self.machine.tensorrt} could not deserialize engine {self.key} (see the "
                               f"TensorRT log above); rebuild it with: {cmd}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for engine {self.key} (GPU memory?)")
        self._stream = self._cuda.stream()
        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        self._inputs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        if set(self._inputs) != {i.name for i in self.package.inputs} or \
                set(self._outputs) != {o.name for o in self.package.outputs}:
            raise BackendError(f"engine {self.key} has inputs {self._inputs} and outputs {self._outputs}; the manifest "
                               "declares others. Rebuild it with: " + cmd)
        shapes: dict[str, tuple[int, ...]] = {}
        for n in self._inputs:  # bind the largest profile shapes to size every buffer once
            shapes[n] = tuple(eng.get_tensor_profile_shape(n, 0)[2])
            self._context.set_input_shape(n, shapes[n])
        self.max_batch = min(s[0] for s in shapes.values())
        for n in self._outputs:
            shapes[n] = tuple(self._context.get_tensor_shape(n))
        specs = {i.name: i.dtype for i in self.package.inputs}
        for n in names:
            dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(n)))
            if n in specs and dtype != np.dtype(specs[n]):
                raise BackendError(f"engine {self.key}: input '{n}' is {dtype}, the manifest says {specs[n]}; "
                                   "rebuild it with: " + cmd)
            nbytes = int(np.prod(shapes[n])) * dtype.itemsize
            buf = _Buffer(dtype, self._cuda.malloc(nbytes), self._cuda.host(nbytes))
            self._bufs[n] = buf
            if not self._context.set_tensor_address(n, buf.device):
                raise BackendError(f"TensorRT refused the device address of tensor '{n}' of engine {self.key}")

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("tensorrt", f"TensorRT {self.machine.tensorrt}, {self.machine.gpu} ({self.machine.sm}), "
                                       f"{self._cuda.provider}", self.variant, None)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        if batch > self.max_batch:
            raise BackendError(f"batch {batch} exceeds engine {self.key}'s optimization profile (max {self.max_batch});"
                               f" rebuild it with: {rebuild_command(self.package, self.variant)} --max-batch {batch}")
        shapes: dict[str, tuple[int, ...]] = {}
        with self._cuda.active():
            for n in self._inputs:
                x, buf = np.ascontiguousarray(feeds[n]), self._bufs[n]
                staging = buf.host[: x.nbytes]
                staging.view(buf.dtype).reshape(x.shape)[...] = x
                if not self._context.set_input_shape(n, x.shape):
                    raise BackendError(f"TensorRT refused shape {list(x.shape)} for input '{n}' of engine {self.key}")
                self._cuda.h2d(buf.device, staging, self._stream)
            if not self._context.execute_async_v3(self._cuda.handle(self._stream)):
                raise BackendError(f"TensorRT failed to run engine {self.key} (see the TensorRT log above)")
            for n in self._outputs:
                buf = self._bufs[n]
                shapes[n] = tuple(self._context.get_tensor_shape(n))
                self._cuda.d2h(buf.host[: int(np.prod(shapes[n])) * buf.dtype.itemsize], buf.device, self._stream)
            self._cuda.sync(self._stream)
        out = {}
        for n in self._outputs:
            b = self._bufs[n]
            out[n] = b.host[: int(np.prod(shapes[n])) * b.dtype.itemsize].view(b.dtype).reshape(shapes[n]).copy()
        return out

    def close(self) -> None:
        cuda = self.__dict__.get("_cuda")
        if self._closed or cuda is None:
            super().close()
            return
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
                    cuda.destroy(self._stream)
                    self._stream = None
        finally:
            super().close()
