"""TensorRT engines for a model package, built against the API common to TensorRT 10.3 and 11.x.

Precision comes from the ONNX graph, never from builder flags: the network is created
strongly typed (required on 10.x to opt in, accepted and ignored on 11.x, where strong
typing is always on), so

- ``fp32`` builds from the FP32 artifact;
- ``fp16`` builds from an FP16 ONNX converted here with ONNX Runtime's converter
  (inputs and outputs stay float32, so feeds do not change);
- ``int8`` builds from the ``int8_trt`` Q/DQ artifact (explicit quantization).

The deprecated implicit-INT8 calibrators and ``BuilderFlag.FP16/INT8`` are not used
(TensorRT 11 removed them). One optimization profile covers the dynamic batch axis; the
workspace is capped; the timing cache lives beside the engines and is reused by the next
build on the same TensorRT and GPU. The engine, its key and the ONNX hash it came from
are written into the package atomically (:mod:`edgefusion.packaging`).

Example (on a machine with TensorRT and a GPU)::

    from export.tensorrt_build import BuildConfig, build_engine
    print(build_engine("packages/sh", BuildConfig(variant="int8")).describe())
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefusion.backends.tensorrt import (
    ENGINE_SOURCES,
    engine_key,
    import_tensorrt,
    load_cuda,
    this_machine,
)
from edgefusion.errors import ConfigError, ExportError, MissingArtifactError
from edgefusion.package import load_package
from edgefusion.packaging import file_record, staged_package

__all__ = ["VARIANTS", "BuildConfig", "EngineRecord", "build_engine", "convert_fp16"]

VARIANTS = tuple(ENGINE_SOURCES)


@dataclass(frozen=True)
class BuildConfig:
    """Options of one engine build.

    Example:
        >>> BuildConfig(variant="fp16", max_batch=8).opt_batch
        1
    """

    variant: str
    max_batch: int = 16
    opt_batch: int = 1
    workspace_mib: int = 1024
    device: int = 0

    def validate(self) -> None:
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be one of {', '.join(VARIANTS)}; got '{self.variant}'")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ConfigError(f"need 1 <= --opt-batch <= --max-batch; got {self.opt_batch} and {self.max_batch}")
        if self.workspace_mib < 1:
            raise ConfigError(f"--workspace-mib must be positive, got {self.workspace_mib}")


@dataclass
class EngineRecord:
    package: Path
    key: str
    entry: dict[str, Any]

    def describe(self) -> str:
        e = self.entry
        return (f"engine {self.key}\n  file     {self.package / e['path']}  {e['bytes'] / 1e6:.2f} MB  sha256 "
                f"{e['sha256'][:16]}…\n  from     {e['onnx_variant']} ONNX sha256 {e['onnx_sha256'][:16]}…\n"
                f"  profile  batch {e['profile']['min']}..{e['profile']['max']} (tuned for {e['profile']['opt']})\n"
                f"  built in {e['build_seconds']:.1f} s; timing cache {e['timing_cache']}")


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """Write an FP16 copy of the ONNX at ``src`` (float32 inputs/outputs kept); return the settings used."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    try:
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
    except Exception as exc:  # the converter raises assorted errors on unsupported graphs
        raise ExportError(f"FP16 conversion of {src.name} failed ({type(exc).__name__}: {exc}); no engine was "
                          "built. Build the fp32 or int8 engine instead") from exc
    return {"tool": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True,
            "op_block_list": sorted(DEFAULT_OP_BLOCK_LIST)}


def _network(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> Any:
    # STRONGLY_TYPED: precision follows the ONNX (10.x needs the flag; 11.x ignores it, always strong).
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors}")
    return network, parser


def _build(trt: Any, onnx_path: Path, cfg: BuildConfig, cache_path: Path) -> tuple[bytes, bytes]:
    """The serialized engine and the updated timing cache."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, logger, onnx_path)  # the parser must outlive the network's use
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dims = list(t.shape)
        if dims[0] != -1 or any(d < 0 for d in dims[1:]):
            raise ExportError(f"input '{t.name}' has shape {dims}; expected a dynamic batch axis (-1) first and "
                              "fixed dimensions after it, as 'edgefusion export' writes")
        profile.set_shape(t.name, [1, *dims[1:]], [cfg.opt_batch, *dims[1:]], [cfg.max_batch, *dims[1:]])
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, False):
        print(f"note: TensorRT did not accept the timing cache {cache_path.name}; building without it",
              file=sys.stderr)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path.name} (see the TensorRT log above); "
                          "nothing was written")
    return bytes(plan), bytes(config.get_timing_cache().serialize())


def build_engine(where: str | Path, cfg: BuildConfig, command: str | None = None) -> EngineRecord:
    """Build the ``cfg.variant`` engine for this machine and store it in the package at ``where``."""
    cfg.validate()
    pkg = load_package(where)
    source = ENGINE_SOURCES[cfg.variant]
    arts = pkg.manifest.artifacts
    if source not in arts:
        raise MissingArtifactError(f"package '{pkg.name}' has no '{source}' artifact, which the {cfg.variant} engine "
                                   f"is built from; create it first: edgefusion quantize {pkg.path} --variants "
                                   f"{source}")
    purpose = "edgefusion build-engine"
    trt = import_tensorrt(purpose)
    cuda = load_cuda(cfg.device, purpose)
    machine = this_machine(trt, cuda)
    key = engine_key(machine, cfg.variant)
    tag = key.replace("/", "_")
    eng_rel = f"engines/{tag}.engine"
    cache_rel = f"engines/timing_trt{machine.tensorrt}_{machine.sm}_{machine.gpu_slug}.cache"
    with staged_package(pkg.path) as st, tempfile.TemporaryDirectory(prefix="edgefusion-engine-") as tmp:
        onnx_path = pkg.artifact(source)
        conversion = None
        if cfg.variant == "fp16":
            fp16_path = Path(tmp) / "model.fp16.onnx"
            conversion = convert_fp16(onnx_path, fp16_path)
            onnx_path = fp16_path
        (st.path / "engines").mkdir(exist_ok=True)
        t0 = time.perf_counter()
        with cuda.active():
            plan, cache = _build(trt, onnx_path, cfg, st.path / cache_rel)
        seconds = time.perf_counter() - t0
        (st.path / eng_rel).write_bytes(plan)
        (st.path / cache_rel).write_bytes(cache)
        entry = file_record(
            st.path, eng_rel, format="tensorrt", variant=cfg.variant, precision=cfg.variant,
            onnx_variant=source, onnx_sha256=arts[source].sha256, tensorrt=machine.tensorrt,
            compute_capability=list(machine.compute_capability), gpu=machine.gpu, strongly_typed=True,
            profile={"input_axis": 0, "min": 1, "opt": cfg.opt_batch, "max": cfg.max_batch},
            workspace_mib=cfg.workspace_mib, timing_cache=cache_rel, fp16_conversion=conversion,
            build_seconds=round(seconds, 1), command=command or f"edgefusion build-engine {pkg.path} --variant "
                                                               f"{cfg.variant}",
            built_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        st.manifest.setdefault("engines", {})[key] = entry
        st.commit()
    return EngineRecord(pkg.path, key, entry)
