"""Plain-Python stand-ins for CUDA (the null-device practice), for testing the tensorrt backend without a GPU.

- :class:`FakeGpu` - device memory (address -> bytes) and streams whose queued work runs only
  when the stream is synchronized, so a runner that reads results before syncing reads zeros;
  every operation lands in one timeline, ``gpu.log``.
- :class:`FakeProvider` - a ``CudaProvider`` written against the protocol alone.
- :func:`fake_cuda_runtime` and :func:`fake_pycuda` - the parts of ``cuda.bindings.runtime``
  and ``pycuda.driver`` that the real providers call, over the same ``FakeGpu``; both insist
  that the calling thread made the device (context) current first, as real CUDA needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np


class FakeGpu:
    """Device memory and streams; ``capacity`` bytes (None: unlimited) makes allocation fail beyond it."""

    def __init__(self, name: str = "Orin", cc: tuple[int, int] = (8, 7), capacity: int | None = None) -> None:
        self.name, self.cc, self.capacity = name, cc, capacity
        self.mem: dict[int, np.ndarray] = {}
        self.streams: dict[int, list[Callable[[], None]]] = {}
        self.log: list[tuple[str, Any]] = []
        self._next_ptr, self._next_stream = 0x7F00_0000_0000, 0x51

    def malloc(self, nbytes: int) -> int | None:
        if self.capacity is not None and sum(m.size for m in self.mem.values()) + nbytes > self.capacity:
            return None
        ptr, self._next_ptr = self._next_ptr, self._next_ptr + (nbytes // 256 + 1) * 256
        self.mem[ptr] = np.zeros(nbytes, np.uint8)
        self.log.append(("malloc", nbytes))
        return ptr

    def free(self, ptr: int) -> None:
        assert ptr in self.mem, f"free of device address {ptr:#x}, which is not allocated"
        self.log.append(("free", self.mem.pop(ptr).size))

    def view(self, ptr: int, nbytes: int) -> np.ndarray:
        assert ptr in self.mem, f"device address {ptr:#x} is not allocated"
        assert nbytes <= self.mem[ptr].size, f"{nbytes} bytes at {ptr:#x}, which holds {self.mem[ptr].size}"
        return self.mem[ptr][:nbytes]

    def create_stream(self) -> int:
        handle, self._next_stream = self._next_stream, self._next_stream + 1
        self.streams[handle] = []
        self.log.append(("create_stream", handle))
        return handle

    def enqueue(self, stream: int, what: str, nbytes: int, work: Callable[[], None]) -> None:
        assert stream in self.streams, f"stream {stream:#x} does not exist"
        self.streams[stream].append(work)
        self.log.append((what, nbytes))

    def copy_in(self, dst: int, src: np.ndarray, stream: int) -> None:
        data = src.reshape(-1).view(np.uint8)  # read when the stream runs, as an async copy does
        self.view(dst, data.size)
        self.enqueue(stream, "h2d", data.size, lambda: self.view(dst, data.size).__setitem__(Ellipsis, data))

    def copy_out(self, dst: np.ndarray, src: int, stream: int) -> None:
        out = dst.reshape(-1).view(np.uint8)
        self.view(src, out.size)
        self.enqueue(stream, "d2h", out.size, lambda: out.__setitem__(Ellipsis, self.view(src, out.size)))

    def sync(self, stream: int) -> None:
        work = self.streams[stream]
        while work:
            work.pop(0)()
        self.log.append(("sync", stream))

    def destroy_stream(self, stream: int) -> None:
        self.log.append(("destroy_stream", len(self.streams.pop(stream))))  # the work left undone

    def ops(self, *names: str) -> list[tuple[str, Any]]:
        return [e for e in self.log if e[0] in names]


class FakeProvider:
    """A CudaProvider over a FakeGpu; every call but device() must come inside active() on its thread."""

    name = "fake-cuda"

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.pinned: list[np.ndarray] = []
        self._local = threading.local()

    def device(self) -> tuple[str, tuple[int, int]]:
        return self.gpu.name, self.gpu.cc

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def _need_active(self) -> None:
        assert getattr(self._local, "depth", 0), "a CUDA call outside active() on this thread"

    def _need_pinned(self, host: np.ndarray) -> None:
        assert any(np.shares_memory(host, p) for p in self.pinned), "a copy from or to host memory that is not pinned"

    def malloc(self, nbytes: int) -> int:
        self._need_active()
        ptr = self.gpu.malloc(nbytes)
        assert ptr is not None, "out of fake device memory"
        return ptr

    def free(self, ptr: int) -> None:
        self._need_active()
        self.gpu.free(ptr)

    def malloc_host(self, nbytes: int) -> np.ndarray:
        self._need_active()
        self.pinned.append(np.zeros(nbytes, np.uint8))
        return self.pinned[-1]

    def free_host(self, host: np.ndarray) -> None:
        self._need_active()
        index = [i for i, p in enumerate(self.pinned) if p is host]
        assert index, "free_host of an array that malloc_host did not return"
        del self.pinned[index[0]]

    def create_stream(self) -> int:
        self._need_active()
        return self.gpu.create_stream()

    def h2d(self, dst: int, src: np.ndarray, stream: int) -> None:
        self._need_active()
        self._need_pinned(src)
        self.gpu.copy_in(dst, src, stream)

    def d2h(self, dst: np.ndarray, src: int, stream: int) -> None:
        self._need_active()
        self._need_pinned(dst)
        self.gpu.copy_out(dst, src, stream)

    def sync(self, stream: int) -> None:
        self._need_active()
        self.gpu.sync(stream)

    def destroy_stream(self, stream: int) -> None:
        self._need_active()
        self.gpu.destroy_stream(stream)


class cudaError_t(enum.IntEnum):  # cuda-python's names
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInvalidDevice = 101


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


def fake_cuda_runtime(gpu: FakeGpu, device_count: int = 1) -> types.ModuleType:
    """The slice of ``cuda.bindings.runtime`` (cuda-python) that CudaPythonProvider calls."""
    rt = types.ModuleType("cuda.bindings.runtime")
    err, kind = cudaError_t, cudaMemcpyKind
    ok = err.cudaSuccess
    local = threading.local()
    pinned: dict[int, Any] = {}
    rt.pinned = pinned  # type: ignore[attr-defined]

    class cudaStream_t:  # cuda-python's name
        def __init__(self, handle: int) -> None:
            self.handle = handle

        def __int__(self) -> int:
            return self.handle

    def current() -> None:
        assert getattr(local, "device", None) is not None, "no cudaSetDevice on this thread"

    def host(addr: int, n: int) -> np.ndarray:
        assert any(a <= addr and addr + n <= a + len(b) for a, b in pinned.items()), "host memory is not pinned"
        return np.ctypeslib.as_array((ctypes.c_uint8 * n).from_address(addr))

    def set_device(i: int) -> tuple[Any]:
        if i >= device_count:
            return (err.cudaErrorInvalidDevice,)
        local.device = i
        return (ok,)

    def props(i: int) -> tuple[Any, Any]:
        return ok, types.SimpleNamespace(name=gpu.name.encode() + bytes(256 - len(gpu.name)), major=gpu.cc[0],
                                         minor=gpu.cc[1])

    def malloc(n: int) -> tuple[Any, int]:
        current()
        ptr = gpu.malloc(n)
        return (ok, ptr) if ptr is not None else (err.cudaErrorMemoryAllocation, 0)

    def malloc_host(n: int) -> tuple[Any, int]:
        current()
        buf = (ctypes.c_uint8 * n)()
        pinned[ctypes.addressof(buf)] = buf
        return ok, ctypes.addressof(buf)

    def free_host(addr: int) -> tuple[Any]:
        current()
        assert addr in pinned, "cudaFreeHost of memory cudaMallocHost did not return"
        del pinned[addr]
        return (ok,)

    def memcpy(dst: int, src: int, n: int, k: Any, stream: cudaStream_t) -> tuple[Any]:
        current()
        if k == kind.cudaMemcpyHostToDevice:
            gpu.copy_in(dst, host(src, n), int(stream))
        else:
            gpu.copy_out(host(dst, n), src, int(stream))
        return (ok,)

    def stream_call(fn: Callable[[int], None]) -> Callable[[cudaStream_t], tuple[Any]]:
        def call(stream: cudaStream_t) -> tuple[Any]:
            current()
            fn(int(stream))
            return (ok,)
        return call

    def stream_create() -> tuple[Any, cudaStream_t]:
        current()
        return ok, cudaStream_t(gpu.create_stream())

    def free(p: int) -> tuple[Any]:
        current()
        gpu.free(p)
        return (ok,)

    rt.__dict__.update(
        cudaError_t=err, cudaMemcpyKind=kind, cudaStream_t=cudaStream_t, cudaSetDevice=set_device,
        cudaGetDeviceProperties=props, cudaMalloc=malloc, cudaFree=free, cudaMallocHost=malloc_host,
        cudaFreeHost=free_host, cudaStreamCreate=stream_create, cudaMemcpyAsync=memcpy,
        cudaStreamSynchronize=stream_call(gpu.sync), cudaStreamDestroy=stream_call(gpu.destroy_stream))
    return rt


def fake_pycuda(gpu: FakeGpu) -> types.ModuleType:
    """The slice of ``pycuda.driver`` that PyCudaProvider calls; work needs a pushed context."""
    drv = types.ModuleType("pycuda.driver")
    local = threading.local()
    pinned: list[Any] = []
    drv.pinned = pinned  # type: ignore[attr-defined]

    def stack() -> list[Any]:
        if not hasattr(local, "stack"):
            local.stack = []
        return local.stack

    def current() -> None:
        assert stack(), "no current CUDA context on this thread"

    def need_pinned(a: np.ndarray) -> None:
        assert any(np.shares_memory(a, np.frombuffer(h, np.uint8)) for h in pinned), "host memory is not pinned"

    class Context:
        def push(self) -> None:
            stack().append(self)

        @staticmethod
        def pop() -> None:
            stack().pop()

    class Device:
        def __init__(self, i: int) -> None:
            assert i == 0, "invalid device ordinal"

        def name(self) -> str:
            return gpu.name

        def compute_capability(self) -> tuple[int, int]:
            return gpu.cc

        def retain_primary_context(self) -> Context:
            return Context()

    class DeviceAllocation:
        def __init__(self, n: int) -> None:
            current()
            ptr = gpu.malloc(n)
            assert ptr is not None, "out of fake device memory"
            self.ptr = ptr

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            current()
            gpu.free(self.ptr)

    class HostAllocation(bytearray):
        def free(self) -> None:
            current()
            pinned.remove(self)

    def pagelocked_empty(n: int, dtype: Any) -> np.ndarray:
        current()
        pinned.append(HostAllocation(n * np.dtype(dtype).itemsize))
        return np.ndarray((n,), dtype, buffer=pinned[-1])  # the allocation is the array's base, as in pycuda

    class Stream:
        def __init__(self) -> None:
            current()
            self.handle = gpu.create_stream()

        def synchronize(self) -> None:
            current()
            gpu.sync(self.handle)

        def __del__(self) -> None:
            gpu.destroy_stream(self.handle)

    def htod(dst: int, src: np.ndarray, stream: Stream) -> None:
        current()
        need_pinned(src)
        gpu.copy_in(int(dst), src, stream.handle)

    def dtoh(dst: np.ndarray, src: int, stream: Stream) -> None:
        current()
        need_pinned(dst)
        gpu.copy_out(dst, int(src), stream.handle)

    drv.__dict__.update(init=lambda: None, Context=Context, Device=Device, mem_alloc=DeviceAllocation,
                        pagelocked_empty=pagelocked_empty, Stream=Stream, memcpy_htod_async=htod,
                        memcpy_dtoh_async=dtoh)
    return drv
