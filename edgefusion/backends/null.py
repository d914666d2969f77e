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
    """Returns float32 zeros shaped (batch, len(labels)) for every output (no detections for a detector;
    a recurrent state returned as it came).

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
        outs = {}
        for o in self.package.outputs:
            if o.kind == "detections":  # no detections: empty boxes and scores of the declared layout
                n = len(o.labels)
                outs[o.name] = np.zeros((batch, 0, 4) if "scores" in o.params else (batch, 0, 4 + max(1, n)),
                                        np.float32)
                if "scores" in o.params:
                    outs[o.params["scores"]] = np.zeros((batch, 0, max(1, n)), np.float32)
                if "classes" in o.params:
                    outs[o.params["classes"]] = np.zeros((batch, 0), np.int64)
            else:
                outs[o.name] = np.zeros((batch, max(1, len(o.labels))), np.float32)
        for i in self.package.inputs:  # a recurrent state comes back as it went in
            if i.preprocess.get("kind") == "state":
                outs[str(i.preprocess.get("from"))] = feeds[i.name]
        return outs
