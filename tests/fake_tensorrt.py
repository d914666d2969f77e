"""A plain-Python stand-in for the ``tensorrt`` module, for testing the tensorrt backend without a GPU.

:class:`FakeTensorRT` holds the parts of the module the runner calls (``Runtime``, an
engine and an execution context with name-based I/O); its engines run :func:`fake_model`,
a known function of the inputs, on a :class:`~fake_cuda.FakeGpu`'s memory and streams.
"""

from __future__ import annotations

import enum
import functools
import types
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
from fake_cuda import FakeGpu

PLAN = b"a serialized TensorRT plan (fake)"


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT8 = np.int8
    INT32 = np.int32
    INT64 = np.int64
    BOOL = np.bool_


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


@dataclass
class Tensor:
    """One I/O tensor of a fake engine; -1 marks a dynamic dimension."""

    name: str
    mode: TensorIOMode
    dtype: DataType
    shape: tuple[int, ...]
    profile: tuple[tuple[int, ...], ...] = ()  # inputs: (min, opt, max)
    data_dependent: bool = False  # outputs whose shape stays unknown until they are computed


def tensors_for(pkg: Any, max_batch: int = 8, min_batch: int = 1, dtypes: dict[str, DataType] | None = None,
                drop: str | None = None) -> list[Tensor]:
    """The I/O tensors of an engine built from ``pkg``'s manifest with a batch profile [min_batch, max_batch]."""
    dtypes = dtypes or {}
    out = []
    for i in pkg.inputs:
        shape = tuple(-1 if isinstance(d, str) else d for d in i.shape)
        lo, hi = (tuple(b if d == -1 else d for d in shape) for b in (min_batch, max_batch))
        out.append(Tensor(i.name, TensorIOMode.INPUT, dtypes.get(i.name, DataType(np.dtype(i.dtype).type)), shape,
                          (lo, lo, hi)))
    for o in pkg.outputs:
        out.append(Tensor(o.name, TensorIOMode.OUTPUT, dtypes.get(o.name, DataType.FLOAT), (-1, len(o.labels))))
    return [t for t in out if t.name != drop]


def fake_model(feeds: dict[str, np.ndarray], outputs: list[Tensor]) -> dict[str, np.ndarray]:
    """What a fake engine computes: per sample, the sum of all its inputs, plus the output's column index."""
    total = sum(np.asarray(feeds[n], np.float64).reshape(len(feeds[n]), -1).sum(1) for n in sorted(feeds))
    return {t.name: (np.asarray(total)[:, None] + np.arange(t.shape[1])).astype(t.dtype.value) for t in outputs}


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.trt = engine, engine.trt
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def __del__(self) -> None:
        self.trt.gpu.log.append(("release_context", None))

    def set_input_shape(self, name: str, shape: Any) -> bool:
        t, shape = self.engine.tensor(name), tuple(int(d) for d in shape)
        assert t.mode == TensorIOMode.INPUT, f"set_input_shape on output '{name}'"
        self.trt.log.append(("set_input_shape", name, shape))
        lo, _, hi = t.profile
        if len(shape) != len(t.shape) or not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = self.engine.tensor(name)
        if t.mode == TensorIOMode.INPUT:
            return self.shapes.get(name, t.shape)
        batches = {s[0] for s in self.shapes.values()}
        if t.data_dependent or len(self.shapes) < len(self.engine.inputs) or len(batches) != 1:
            return t.shape
        return tuple(batches.pop() if d == -1 else d for d in t.shape)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.engine.tensor(name)
        if name in self.trt.refuse_address:
            return False
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self.trt.fail_execute:
            return False
        eng, gpu = self.engine, self.trt.gpu
        assert set(self.addresses) == {t.name for t in eng.tensors}, "a tensor without an address"
        shapes = {t.name: self.get_tensor_shape(t.name) for t in eng.tensors}  # fixed at enqueue time

        def run() -> None:
            feeds = {}
            for t in eng.inputs:
                n = int(np.prod(shapes[t.name])) * np.dtype(t.dtype.value).itemsize
                feeds[t.name] = gpu.view(self.addresses[t.name], n).view(t.dtype.value).reshape(shapes[t.name])
            for name, y in fake_model(feeds, eng.outputs).items():
                gpu.view(self.addresses[name], y.nbytes)[...] = y.reshape(-1).view(np.uint8)

        gpu.enqueue(stream_handle, "execute", 0, run)
        return True


class FakeEngine:
    def __init__(self, trt: FakeTensorRT) -> None:
        self.trt, self.tensors = trt, trt.tensors
        self.inputs = [t for t in self.tensors if t.mode == TensorIOMode.INPUT]
        self.outputs = [t for t in self.tensors if t.mode == TensorIOMode.OUTPUT]

    @property
    def num_io_tensors(self) -> int:
        return len(self.tensors)

    def tensor(self, name: str) -> Tensor:
        found = [t for t in self.tensors if t.name == name]
        assert found, f"no tensor '{name}' in the engine"
        return found[0]

    def get_tensor_name(self, i: int) -> str:
        return self.tensors[i].name

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self.tensor(name).mode

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.tensor(name).dtype

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        assert profile == 0 and self.tensor(name).mode == TensorIOMode.INPUT
        return list(self.tensor(name).profile)

    def create_execution_context(self) -> FakeContext | None:
        if self.trt.no_context:
            return None
        ctx = FakeContext(self)
        self.trt.contexts.append(weakref.ref(ctx))
        return ctx


class Logger:
    WARNING = 2

    def __init__(self, severity: int = WARNING) -> None:
        self.severity = severity


class FakeRuntime:
    def __init__(self, trt: FakeTensorRT, logger: Logger) -> None:
        self.trt = trt

    def deserialize_cuda_engine(self, blob: bytes) -> FakeEngine | None:
        return FakeEngine(self.trt) if bytes(blob) == self.trt.plan else None


class FakeTensorRT(types.ModuleType):
    """A ``tensorrt`` module whose engines have ``tensors``; the attributes below make it misbehave."""

    DataType = DataType
    TensorIOMode = TensorIOMode
    Logger = Logger

    def __init__(self, gpu: FakeGpu, tensors: list[Tensor], version: str = "10.3.0.30") -> None:
        super().__init__("tensorrt")
        self.__version__ = version
        self.gpu, self.tensors, self.plan = gpu, tensors, PLAN
        self.no_context = False
        self.fail_execute = False
        self.refuse_address: set[str] = set()
        self.log: list[tuple[str, str, tuple[int, ...]]] = []
        self.contexts: list[weakref.ref[FakeContext]] = []
        self.Runtime = functools.partial(FakeRuntime, self)

    @staticmethod
    def nptype(dtype: Any) -> type:
        return dtype.value
