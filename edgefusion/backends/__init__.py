"""Backends by name: ``onnxruntime`` (default), ``onnxruntime-cuda``, ``onnxruntime-trt``, ``null``,
``tensorrt``, and ``torch``.

``onnxruntime-cuda`` and ``onnxruntime-trt`` are ONNX Runtime on its CUDA or TensorRT
execution provider (onnxruntime-gpu): the ``onnxruntime`` backend with ``provider`` set, a
name the command line's ``--backend`` and a service config's ``model.backend`` can carry.

``torch`` is eager PyTorch on the checkpoint a package was exported from, for comparison
in benchmarks. Its code belongs to the toolchain (``export/``), which the runtime never
imports: the registry names it by string and imports it only when it is opened, failing
with the ``pip install`` to run when torch (or the toolchain) is missing.

Example:
    >>> from edgefusion.package import load_package
    >>> with open_backend("null", load_package("smart_home")) as b:
    ...     print(b.info.backend)
    null
"""

from __future__ import annotations

import importlib
from typing import Any

from edgefusion.backends.base import Backend, BackendInfo, check_feeds
from edgefusion.errors import ConfigError, MissingDependencyError, unknown_name
from edgefusion.package import ModelPackage

__all__ = ["BACKENDS", "BACKEND_OPTIONS", "EXTRAS", "Backend", "BackendInfo", "availability", "check_feeds",
           "open_backend"]

# name -> "module:Class", imported on first use so optional dependencies stay optional
BACKENDS = {
    "onnxruntime": "edgefusion.backends.onnxruntime:OnnxRuntimeBackend",
    "onnxruntime-cuda": "edgefusion.backends.onnxruntime:OnnxRuntimeBackend",
    "onnxruntime-trt": "edgefusion.backends.onnxruntime:OnnxRuntimeBackend",
    "null": "edgefusion.backends.null:NullBackend",
    "tensorrt": "edgefusion.backends.tensorrt:TensorRTBackend",
    "torch": "export.torch_backend:TorchBackend",
}
# name -> the options a name stands for (the caller's own options come on top)
BACKEND_OPTIONS: dict[str, dict[str, Any]] = {"onnxruntime-cuda": {"provider": "cuda"},
                                              "onnxruntime-trt": {"provider": "tensorrt"}}
# name -> the extra whose packages the backend's module imports (checked when it fails to import)
EXTRAS = {"torch": "train"}


def availability(package: ModelPackage) -> list[tuple[str, str, bool, str]]:
    """(variant, backend, runnable here?, why) for each artifact and engine variant of ``package``.

    An ONNX Runtime variant "runs" only once :func:`~edgefusion.backends.probe.probe` has opened
    a session on it and run one step on generated inputs; otherwise ``why`` says what failed.
    A backend that runs no variant here has one row, with variant ``*``.
    """
    import onnxruntime as ort

    from edgefusion.backends.onnxruntime import PROVIDERS
    from edgefusion.backends.probe import probe

    rows = []
    available = ort.get_available_providers()
    cpu = PROVIDERS["cpu"] in available
    for variant in package.variants:
        if not cpu:
            rows.append((variant, "onnxruntime", False, "this onnxruntime has no CPU provider"))
            continue
        ok, why = probe(package, "onnxruntime", variant)
        if ok and variant.endswith("_trt"):
            why = f"meant for TensorRT; on the CPU for checks only: {why}"
        rows.append((variant, "onnxruntime", ok, why if ok else f"does not run here: {why}"))
    on_gpu = {"onnxruntime-cuda": [v for v in package.variants if not v.endswith("_trt")],
              "onnxruntime-trt": [v for v in package.variants if v in ("fp32", "int8_trt")]}
    for backend, variants in on_gpu.items():
        provider = PROVIDERS[BACKEND_OPTIONS[backend]["provider"]]
        if provider in available:
            for v in variants:
                ok, why = probe(package, backend, v)
                rows.append((v, backend, ok, why if ok else f"does not run here: {why}"))
        else:
            rows.append(("*", backend, False, f"this onnxruntime has no {provider}: it needs onnxruntime-gpu "
                                              "(`edgefusion doctor` says which)"))
    engine_variants = sorted({k.rsplit("/", 1)[-1] for k in package.manifest.engines} |
                             ({"fp16", "int8"} if "int8_trt" in package.variants else {"fp16"}))
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        reason = ("TensorRT is not installed (x86-64: pip install 'edgefusion[tensorrt]'; Jetson: it comes with "
                  "JetPack)")
        return rows + [(v, "tensorrt", False, reason) for v in engine_variants]
    engines = package.manifest.engines
    for v in engine_variants:
        keys = [k for k in engines if k.endswith("/" + v)]
        if keys:
            ok, why = probe(package, "tensorrt", v)  # picks the engine for this GPU and TensorRT, or says why not
            rows.append((v, "tensorrt", ok, why if ok else f"does not run here: {why} (engines recorded: "
                                                          f"{', '.join(keys)})"))
        else:
            rows.append((v, "tensorrt", False, f"no engine yet: edgefusion build-engine {package.path} --variant {v}"))
    return rows


def open_backend(name: str, package: ModelPackage, variant: str = "fp32", threads: int | str | None = None,
                 **options: Any) -> Backend:
    """Open a session of backend ``name`` on ``package``'s ``variant``.

    ``threads="auto"`` (the ONNX Runtime backends only) times each thread count and keeps the fastest.

    Raises:
        ConfigError: ``name`` is not a registered backend, or ``threads="auto"`` for a backend that cannot measure.
        MissingDependencyError: the backend's module needs an extra that is not installed.
    """
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    if threads == "auto" and not name.startswith("onnxruntime"):
        if name != "null":
            raise ConfigError(f"threads 'auto' is measured by the ONNX Runtime backends only; give the '{name}' "
                              "backend a number of threads")
        threads = None  # nothing to measure
    module, cls = BACKENDS[name].split(":")
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        if name not in EXTRAS or (exc.name or "").startswith("edgefusion"):
            raise  # a missing name inside edgefusion is a bug, not a missing extra
        raise MissingDependencyError(exc.name or module, EXTRAS[name], f"the '{name}' backend") from exc
    backend_cls: type[Backend] = getattr(found, cls)
    # "auto" reaches the ONNX Runtime backend only (checked above), whose threads take it
    return backend_cls(package, variant=variant, threads=threads,  # type: ignore[arg-type]
                       **{**BACKEND_OPTIONS.get(name, {}), **options})
