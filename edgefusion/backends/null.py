"""The ``null`` backend: zeros of the right shapes, to measure pipeline overhead.

Output shapes come from the ONNX artifact when ``onnx`` can be read, else from the
manifest's labels. ``delay_ms`` makes each call sleep a known time (for testing timing).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.package import ModelPackage

__all__ = ["NullBackend"]


class NullBackend(Backend):
    """Returns float32 zeros shaped (batch, len(labels)) for every output.

    Example:
        >>> from edgefusion.package import load_package
        >>> with NullBackend(load_package("smart_home")) as b:
        ...     print(b.info.provider)
        none
    """

    name = "null"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None,
                 delay_ms: float = 0.0, **options: Any) -> None:
        super().__init__(package, variant, threads, **options)
        self.delay_ns = int(delay_ms * 1e6)

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("null", "none", self.variant, self.threads)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = next(iter(feeds.values())).shape[0]
        if self.delay_ns:
            end = time.perf_counter_ns() + self.delay_ns
            time.sleep(self.delay_ns / 1e9)
            while time.perf_counter_ns() < end:  # sleep() may return early on some systems
                pass
        return {o.name: np.zeros((batch, len(o.labels)), np.float32) for o in self.package.outputs}
