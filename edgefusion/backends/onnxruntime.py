"""The ``onnxruntime`` backend: CPU by default; CUDA or TensorRT execution providers on request.

A provider that was asked for but is not available is an error, never a silent fall
back to the CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.errors import BackendError
from edgefusion.package import ModelPackage

__all__ = ["PROVIDERS", "OnnxRuntimeBackend"]

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime session over a package artifact.

    Args:
        package: the loaded model package.
        variant: artifact to run (``fp32``; ``int8`` once quantized).
        threads: intra-op threads (None: ONNX Runtime's default).
        provider: ``cpu`` (default), ``cuda`` or ``tensorrt``.
        provider_options: passed to the provider (e.g. TensorRT engine cache options).

    Example:
        >>> from edgefusion.package import load_package
        >>> with OnnxRuntimeBackend(load_package("driving"), threads=1) as b:
        ...     print(b.info)
        onnxruntime (CPUExecutionProvider, fp32, 1 threads)
    """

    name = "onnxruntime"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None,
                 provider: str = "cpu", provider_options: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(package, variant, threads, **options)
        if provider not in PROVIDERS:
            raise BackendError(f"unknown ONNX Runtime provider '{provider}'; expected one of {sorted(PROVIDERS)}")
        wanted = PROVIDERS[provider]
        available = ort.get_available_providers()
        if wanted not in available:
            raise BackendError(f"ONNX Runtime provider {wanted} was requested but this onnxruntime build has only "
                               f"{available}; install onnxruntime-gpu for CUDA/TensorRT, or use provider 'cpu'")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = int(threads)
        so.log_severity_level = 3
        providers: list[Any] = [(wanted, provider_options or {})]
        if wanted != PROVIDERS["cpu"]:
            providers.append(PROVIDERS["cpu"])  # for ops the GPU provider lacks; reported in info
        path = package.artifact(variant)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises several untyped errors
            raise BackendError(f"ONNX Runtime could not open {path}: {exc}") from exc
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._provider = self.session.get_providers()[0]

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("onnxruntime", self._provider, self.variant, self.threads)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(self._outputs, feeds)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed to run {self.package.name}/{self.variant}: {exc}") from exc
        return dict(zip(self._outputs, values))

    def close(self) -> None:
        self.__dict__.pop("session", None)
        super().close()
