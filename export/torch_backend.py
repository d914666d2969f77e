"""Eager PyTorch as a backend, for comparison in benchmarks (toolchain only: needs torch).

Runs the checkpoint a reference package was exported from, on the same feeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.dataset import INPUT_ORDER
from edgefusion.errors import PackageError
from edgefusion.package import ModelPackage
from export.train import load_checkpoint

__all__ = ["TorchBackend"]


class TorchBackend(Backend):
    """``torch:fp32``: the package's ``checkpoint.pt`` in eager mode, inference only."""

    name = "torch"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | None = None,
                 **options: Any) -> None:
        super().__init__(package, variant, threads, **options)
        if variant != "fp32":
            raise PackageError(f"torch backend runs fp32 only, not {variant!r}")
        src = package.manifest.sources.get("checkpoint")
        if src is None:
            raise PackageError(f"package '{package.name}' has no PyTorch checkpoint to compare against")
        self.model, _ = load_checkpoint(package.file(src))
        if threads:
            torch.set_num_threads(threads)
        self._outputs = [o.name for o in package.outputs]

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("torch", f"eager CPU (torch {torch.__version__})", "fp32", torch.get_num_threads())

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outs = self.model(*(torch.from_numpy(feeds[k]) for k in INPUT_ORDER))
        return {name: o.numpy() for name, o in zip(self._outputs, outs)}
