"""The ``onnxruntime`` backend: the CPU by default; CUDA or TensorRT execution providers on request.

Providers are named ``cpu``, ``cuda`` and ``tensorrt``; the registry's ``onnxruntime-cuda``
and ``onnxruntime-trt`` backends ask for the GPU ones from the command line and configs.
Either one provider (``provider="cuda"``: it must be available) or an ordered preference
(``providers=["tensorrt", "cuda", "cpu"]``: the first available one leads; at least one must
be, and the CPU leads only when listed). After the leader come the GPU providers that may
run the operators it cannot (TensorRT, then CUDA), then ONNX Runtime's CPU.

A provider that was asked for is never silently replaced by the CPU: when ONNX Runtime
drops one while opening the session (a CUDA, cuDNN or TensorRT library it cannot load
is only a log line to it) the backend raises, and ONNX Runtime's retry of a failed GPU run
on the CPU is switched off. :attr:`OnnxRuntimeBackend.info` names the provider that leads
the open session, and so do the demo's and the bench's reports.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.errors import BackendError
from edgefusion.package import ModelPackage

__all__ = ["GPU_INSTALL_HINT", "PROVIDERS", "OnnxRuntimeBackend", "resolve_providers", "trt_cache_dir"]

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
             "tensorrt": "TensorrtExecutionProvider"}
# after a leading provider: the GPU providers for the operators it cannot run (the CPU is ONNX Runtime's own last)
_FALLBACKS = {"tensorrt": ("cuda",), "cuda": (), "cpu": ()}

GPU_INSTALL_HINT = ("x86-64: pip uninstall -y onnxruntime && pip install onnxruntime-gpu (with the CUDA and cuDNN "
                    "versions its release notes name); Jetson: the onnxruntime-gpu wheel built for your JetPack, "
                    "see deploy/jetson/requirements.txt")


def resolve_providers(available: Sequence[str], provider: str | None = None,
                      providers: Sequence[str] | None = None) -> list[str]:
    """The providers to register, by short name, leader first.

    Args:
        available: what this onnxruntime build offers (``ort.get_available_providers()``).
        provider: one provider that must be available (``cpu`` when neither argument is given).
        providers: an ordered preference instead: the first available one leads.

    Raises:
        BackendError: an unknown name, both arguments, or nothing asked for is available.

    Example:
        >>> resolve_providers(["CPUExecutionProvider"], providers=["cuda", "cpu"])
        ['cpu']
        >>> resolve_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        ...                   provider="tensorrt")
        ['tensorrt', 'cuda']
    """
    if provider is not None and providers is not None:
        raise BackendError("give the ONNX Runtime provider or a list of providers, not both")
    asked = [provider or "cpu"] if providers is None else list(providers)
    unknown = [p for p in asked if p not in PROVIDERS]
    if unknown or not asked:
        raise BackendError(f"unknown ONNX Runtime provider '{unknown[0] if unknown else ''}'; expected one of "
                           f"{sorted(PROVIDERS)}")
    usable = [p for p in asked if PROVIDERS[p] in available]
    if providers is None and not usable:
        raise BackendError(f"ONNX Runtime provider {PROVIDERS[asked[0]]} was requested but this onnxruntime build has "
                           f"only {list(available)}; install onnxruntime-gpu for CUDA/TensorRT ({GPU_INSTALL_HINT}), "
                           "or use provider 'cpu'")
    if not usable:
        raise BackendError(f"none of the ONNX Runtime providers {asked} is available: this onnxruntime build has only "
                           f"{list(available)}. Install onnxruntime-gpu ({GPU_INSTALL_HINT}), or add 'cpu' to the list")
    return usable + [p for p in _FALLBACKS[usable[0]] if PROVIDERS[p] in available and p not in usable]


def trt_cache_dir(package: ModelPackage, variant: str) -> Path:
    """Where the TensorRT provider keeps the engines it builds for an artifact (a user cache, per artifact hash).

    Building them takes a minute or more on a Jetson; the cache makes every later session
    start in seconds. A changed artifact gets a new folder, so a stale engine is never used.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    sha = package.manifest.artifacts[variant].sha256[:12]
    return base / "edgefusion" / "ort-tensorrt" / f"{package.name}-{variant}-{sha}"


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime session over a package artifact.

    Args:
        package: the loaded model package.
        variant: artifact to run (``fp32``; ``int8`` once quantized; ``int8_trt`` on the TensorRT provider).
        threads: intra-op threads (None: ONNX Runtime's default); ``"auto"``: open a session with
            each count from 1 to the number of cores (at most 4), time a few calls on zero inputs
            of the package's shapes, and keep the fastest (:attr:`auto_threads` has the timings).
        provider: ``cpu`` (default), ``cuda`` or ``tensorrt``; it must be available.
        providers: an ordered preference instead, e.g. ``["tensorrt", "cuda", "cpu"]``.
        provider_options: options of the leading provider, over the defaults (``device_id``; for
            TensorRT an engine cache in :func:`trt_cache_dir`).
        device: the GPU the CUDA and TensorRT providers run on.
        spin: whether idle intra-op threads spin between operators (True, ONNX Runtime's own
            default) or sleep (False, the default here: on a 2-core machine a spinning worker takes
            the core the pipeline's preprocessing needs: the lossless INT8 pipeline made a median
            1.7-1.8x the steps/s without it, bench/pipeline_overhead.py; a bare model call at
            batch 1 on an idle machine is faster with spinning).

    Example:
        >>> from edgefusion.package import load_package
        >>> with OnnxRuntimeBackend(load_package("driving"), threads=1) as b:
        ...     print(b.info, b.providers)
        onnxruntime (CPUExecutionProvider, fp32, 1 threads) ['CPUExecutionProvider']
    """

    name = "onnxruntime"

    def __init__(self, package: ModelPackage, variant: str = "fp32", threads: int | str | None = None,
                 provider: str | None = None, providers: Sequence[str] | None = None,
                 provider_options: dict[str, Any] | None = None, device: int = 0, spin: bool = False,
                 **options: Any) -> None:
        super().__init__(package, variant, threads if isinstance(threads, int) else None, **options)
        names = resolve_providers(ort.get_available_providers(), provider, providers)
        path = package.artifact(variant)
        chain: list[Any] = [(PROVIDERS[n], self._options(n, device, provider_options if i == 0 else None))
                            for i, n in enumerate(names)]
        if "cpu" not in names:
            chain.append(PROVIDERS["cpu"])  # for the operators no GPU provider runs
        #: with ``threads="auto"``: median ms of a batch-1 call per thread count tried
        self.auto_threads: dict[int, float] = {}
        if threads == "auto":
            self.session, self.threads = self._fastest(path, chain, spin)
        else:
            self.session = self._open(path, chain, self.threads, spin)
        #: the providers the open session registered, leader first (ONNX Runtime's CPU last)
        self.providers: list[str] = list(self.session.get_providers())
        # one provider must lead as asked; from a preference, the first that really started leads
        wanted = [PROVIDERS[n] for n in (names[:1] if providers is None else [p for p in providers if p in names])]
        dropped = [p for p in wanted if p not in self.providers]
        if len(dropped) == len(wanted):
            self.close()
            raise BackendError(f"ONNX Runtime dropped {', '.join(dropped)} while opening {path} (the session would run "
                               f"on {self.providers}); usually a CUDA, cuDNN or TensorRT library that this onnxruntime "
                               "build needs could not be loaded: `edgefusion doctor` shows what is installed")
        if dropped:
            log.warning("ONNX Runtime could not start %s; running on %s", ", ".join(dropped), self.providers[0])
        if self.providers[0] != PROVIDERS["cpu"] and hasattr(self.session, "disable_fallback"):
            self.session.disable_fallback()  # a failed GPU run must raise, not quietly rerun on the CPU
        self._outputs = [o.name for o in self.session.get_outputs()]
        self._provider = self.providers[0]

    def _open(self, path: Path, chain: list[Any], threads: int | None, spin: bool) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if threads:
            so.intra_op_num_threads = int(threads)
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3
        try:
            return ort.InferenceSession(str(path), sess_options=so, providers=chain)
        except Exception as exc:  # onnxruntime raises several untyped errors
            raise BackendError(f"ONNX Runtime could not open {path}: {exc}") from exc

    def _fastest(self, path: Path, chain: list[Any], spin: bool, calls: int = 15) -> tuple[Any, int]:
        """``threads="auto"``: the session with the thread count whose batch-1 call is fastest here, now."""
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.dtype(i.dtype))
                 for i in self.package.inputs}
        best: tuple[float, int, Any] | None = None
        for n in range(1, min(os.cpu_count() or 1, 4) + 1):
            sess = self._open(path, chain, n, spin)
            for _ in range(3):
                sess.run(None, feeds)
            times = []
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                sess.run(None, feeds)
                times.append(time.perf_counter_ns() - t0)
            ms = float(np.median(times)) / 1e6
            self.auto_threads[n] = round(ms, 4)
            if best is None or ms < best[0]:
                best = (ms, n, sess)
        assert best is not None
        log.info("threads auto: %s ms per call by thread count; using %d", self.auto_threads, best[1])
        return best[2], best[1]

    def _options(self, name: str, device: int, given: dict[str, Any] | None) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if name in ("cuda", "tensorrt"):
            opts["device_id"] = device
        if name == "tensorrt":
            cache = trt_cache_dir(self.package, self.variant)
            try:
                cache.mkdir(parents=True, exist_ok=True)
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                            trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
            except OSError as exc:  # a read-only home (a locked-down service): build the engines at every start
                log.warning("no TensorRT engine cache (%s): each session builds its engines again", exc)
        return {**opts, **(given or {})}

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("onnxruntime", self._provider, self.variant, self.threads)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            values = self.session.run(self._outputs, feeds)
        except Exception as exc:
            raise BackendError(f"ONNX Runtime failed to run {self.package.name}/{self.variant} on {self._provider}: "
                               f"{exc}") from exc
        return dict(zip(self._outputs, values))

    def close(self) -> None:
        self.__dict__.pop("session", None)
        super().close()
