"""INT8 quantization of a model package: calibrate, quantize, guard, gate, then write - or write nothing.

:func:`quantize_package` runs the whole pipeline for the variants asked for (``int8`` for
CPUs, ``int8_trt`` for TensorRT; see :mod:`calibration.recipes`):

1. calibration data from a :class:`~calibration.sources.CalibrationSource`;
2. ONNX shape inference and graph optimization of the FP32 model (``quant_pre_process``);
3. ``quantize_static`` (QDQ) with the recipe's settings;
4. the guard: the written graph is read back and any inf / NaN / zero scale fails the run;
5. the accuracy gate on the held-out set (:mod:`calibration.gate`);
6. only if every variant passed: the artifacts, a ``calibration.<variant>.json``
   provenance file each, and the manifest entries are swapped into the package at once.

Example (what the tests run, on a copy of a package)::

    from calibration.quantize import QuantizeConfig, quantize_package
    report = quantize_package("pkg_copy", QuantizeConfig(samples=16, eval_samples=64))
    print(report.describe())
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import edgefusion
from calibration.gate import EvalSet, GateResult, dataset_eval_set, held_out_set, judge, run_onnx
from calibration.qdq import QdqSummary, check_scales, summarize_qdq
from calibration.recipes import METHODS, RECIPES, Recipe
from calibration.sources import EVAL_SEED_OFFSET, CalibrationSource, FeedSource, ScenarioSource, train_seed
from edgefusion.errors import ConfigError, QuantizationError
from edgefusion.package import ModelPackage, load_package, sha256_file
from edgefusion.packaging import file_record, staged_package, write_json

__all__ = ["QuantizeConfig", "QuantizeReport", "VariantResult", "quantize_model", "quantize_package"]

PROVENANCE_FORMAT = "edgefusion-calibration/1"


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of one quantization run (the CLI maps its flags onto these).

    Example:
        >>> QuantizeConfig(method="entropy", samples=256).variants
        ('int8', 'int8_trt')
    """

    method: str = "minmax"
    samples: int = 512
    eval_samples: int = 2000
    max_drop_points: float = 1.0
    variants: tuple[str, ...] = ("int8", "int8_trt")
    seed: int | None = None  # calibration seed; default: training seed + CALIBRATION_SEED_OFFSET
    batch: int = 16
    threads: int = 2
    calibration_feeds: str | None = None  # an .npz of feeds instead of synthesized windows
    calibration_log: str | None = None  # a recorded MCAP log (its fusion windows) or a dataset directory (its train
    #                                     split), up to ``samples`` windows
    gate_data: str | None = None  # a recorded dataset directory: the gate runs on its val split

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"--method must be one of {', '.join(METHODS)}; got '{self.method}'")
        unknown = [v for v in self.variants if v not in RECIPES]
        if unknown or not self.variants:
            raise ConfigError(f"--variants must name one or more of {', '.join(RECIPES)}; got "
                              f"'{','.join(self.variants)}'")
        if not 0.0 <= self.max_drop_points <= 100.0:
            raise ConfigError(f"--max-drop is in accuracy points (0-100); got {self.max_drop_points}")
        for flag, v in (("--samples", self.samples), ("--eval-samples", self.eval_samples),
                        ("--batch", self.batch), ("--threads", self.threads)):
            if v < 1:
                raise ConfigError(f"{flag} must be at least 1, got {v}")


@dataclass
class VariantResult:
    variant: str
    path: Path
    bytes: int
    gate: GateResult
    graph: QdqSummary


@dataclass
class QuantizeReport:
    """What a successful run wrote."""

    package: Path
    calibration: dict[str, Any]
    results: list[VariantResult] = field(default_factory=list)
    stale_engines: list[str] = field(default_factory=list)

    def describe(self) -> str:
        c = self.calibration
        origin = (f"dataset {c['dataset']} ({c['split']})" if c["kind"] == "dataset" else
                  f"{c['kind']}, seed {c['seed']}")
        lines = [f"package {self.package}",
                 f"calibration: {c['samples']} samples ({origin}, sha256 {c['sha256'][:16]}…)"]
        for r in self.results:
            g = r.gate
            lines.append(f"{r.variant:<9} {r.path.name:<22} {r.bytes / 1e6:6.2f} MB  action accuracy "
                         f"{100 * g.fp32_accuracy:.2f}% -> {100 * g.int8_accuracy:.2f}% ({g.drop_points:+.2f} pts "
                         f"drop, limit {g.max_drop_points:.2f}) on {g.samples} "
                         f"{f'windows of {g.data}' if g.data else 'held-out samples'}; "
                         f"{len(r.graph.quantized_nodes)} nodes INT8, {len(r.graph.nodes_kept_float)} float")
            if r.graph.unit_scales:
                lines.append(f"          note: {len(r.graph.unit_scales)} tensor(s) had an empty calibration range "
                             "(scale 1.0 substituted); see the calibration json")
        for key in self.stale_engines:
            lines.append(f"engine {key} was built from the previous ONNX and is now stale; rebuild it with "
                         "edgefusion build-engine")
        return "\n".join(lines)


@contextlib.contextmanager
def _bar(enabled: bool, total: int, desc: str) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="sample", file=sys.stderr) as bar:
        yield bar


def _reader(source: CalibrationSource, progress: Any) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        """Hands the source's feed dicts to ONNX Runtime's calibrator, one batch per call."""

        def __init__(self) -> None:
            self._it = iter(source)

        def get_next(self) -> dict[str, np.ndarray] | None:
            feeds = next(self._it, None)
            if feeds is not None and progress is not None:
                progress.update(len(next(iter(feeds.values()))))
            return feeds

    return _Reader()


def quantize_model(pre_path: Path, out_path: Path, recipe: Recipe, source: CalibrationSource, method: str,
                   progress: bool = False) -> QdqSummary:
    """Quantize the pre-processed FP32 model at ``pre_path`` into ``out_path``; return its checked summary."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    n = source.describe().samples
    with _bar(progress, n, f"calibrate {recipe.variant} ({method})") as bar, \
            contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrators print their progress
        try:
            quantize_static(
                str(pre_path), str(out_path), _reader(source, bar), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=recipe.quantizer_op_types, per_channel=recipe.per_channel,
                reduce_range=recipe.reduce_range, activation_type=getattr(QuantType, recipe.activation_type),
                weight_type=getattr(QuantType, recipe.weight_type), calibrate_method=methods[method],
                extra_options=recipe.extra_options(method))
        except Exception as exc:  # the quantizer raises ValueError, AssertionError, onnxruntime errors
            raise QuantizationError(f"ONNX Runtime's quantizer failed on {pre_path.name} for '{recipe.variant}' "
                                    f"({type(exc).__name__}: {exc}); nothing was written") from exc
    summary = summarize_qdq(onnx.load(str(out_path)), recipe.op_types)
    check_scales(summary, f"'{recipe.variant}' ({out_path.name})")
    return summary


def _is_dataset(path: str | None) -> bool:
    return path is not None and (Path(path) / "dataset.json").is_file()


def _dataset_source(pkg: ModelPackage, root: str, cfg: QuantizeConfig) -> CalibrationSource:
    from calibration.datasets import dataset_feeds

    feeds, _, desc = dataset_feeds(pkg, root, "train", limit=cfg.samples)
    return FeedSource(feeds, batch=cfg.batch, kind="dataset", detail=desc)


def _source(pkg: ModelPackage, cfg: QuantizeConfig, progress: bool) -> CalibrationSource:
    if cfg.calibration_feeds:
        return FeedSource.from_npz(cfg.calibration_feeds, pkg, batch=cfg.batch)
    if cfg.calibration_log and (Path(cfg.calibration_log).is_dir() or _is_dataset(cfg.calibration_log)):
        return _dataset_source(pkg, cfg.calibration_log, cfg)
    if cfg.calibration_log:
        from calibration.sources import WindowSource
        from edgefusion.core import windows_of
        from edgefusion.sources.replay import ReplaySource

        with ReplaySource(cfg.calibration_log) as src:
            wins = windows_of(src, limit=cfg.samples)
        if not wins:
            raise QuantizationError(f"{cfg.calibration_log} yielded no fusion windows to calibrate on")
        return WindowSource(wins, pkg.feed_builder(), batch=cfg.batch, kind="mcap log",
                            detail={"log": str(cfg.calibration_log)})
    if cfg.gate_data and (not pkg.manifest.scenario or cfg.seed is None):
        # the gate dataset's own train split: recorded data like the val windows the gate judges, never those
        return _dataset_source(pkg, cfg.gate_data, cfg)
    with _bar(progress, cfg.samples, "synthesize calibration data") as bar:
        return ScenarioSource(pkg, cfg.samples, cfg.seed, cfg.batch, progress=bar)


def _held_out(pkg: ModelPackage, cfg: QuantizeConfig, progress: bool) -> EvalSet:
    if cfg.gate_data:
        return dataset_eval_set(pkg, cfg.gate_data, cfg.eval_samples)
    eval_seed = train_seed(pkg) + EVAL_SEED_OFFSET
    with _bar(progress, cfg.eval_samples, "synthesize held-out data") as bar:
        return held_out_set(pkg, cfg.eval_samples, eval_seed, progress=bar)


def _tools() -> dict[str, str]:
    return {"python": sys.version.split()[0], "onnx": onnx.__version__, "onnxruntime": ort.__version__,
            "numpy": np.__version__, "edgefusion": edgefusion.__version__}


def _opset(path: Path) -> int:
    return next((o.version for o in onnx.load(str(path), load_external_data=False).opset_import
                 if o.domain in ("", "ai.onnx")), 0)


def quantize_package(where: str | Path, cfg: QuantizeConfig | None = None, command: str | None = None,
                     progress: bool = False) -> QuantizeReport:
    """Add the INT8 variants of ``cfg`` to the package at ``where`` (a directory or a built-in name).

    Raises QuantizationError (and leaves the package unchanged) when a scale is degenerate
    or a variant's action accuracy drops by more than ``cfg.max_drop_points``.
    """
    cfg = cfg or QuantizeConfig()
    cfg.validate()
    pkg = load_package(where)
    fp32_path = pkg.artifact("fp32")
    fp32_sha = pkg.manifest.artifacts["fp32"].sha256
    command = command or f"edgefusion quantize {pkg.path}"

    ev = _held_out(pkg, cfg, progress)  # first: a dataset that does not fit the package fails before calibrating
    source = _source(pkg, cfg, progress)
    cal = source.describe()
    with _bar(progress, len(ev), "evaluate fp32") as bar:
        ref = run_onnx(fp32_path, ev.feeds, cfg.threads, progress=bar)

    with staged_package(pkg.path) as st, tempfile.TemporaryDirectory(prefix="edgefusion-quantize-") as tmp:
        pre = Path(tmp) / "model.pre.onnx"
        _pre_process(fp32_path, pre)
        results: list[VariantResult] = []
        for variant in cfg.variants:
            recipe = RECIPES[variant]
            out = st.path / f"model.{variant}.onnx"
            graph = quantize_model(pre, out, recipe, source, cfg.method, progress)
            results.append(_gate(pkg, variant, out, graph, ev, ref, cfg, progress))
        failed = [r for r in results if not r.gate.passed]
        if failed:
            raise QuantizationError(
                f"INT8 accuracy gate failed for {', '.join(r.variant for r in failed)}; nothing was written and "
                f"package {pkg.path} is unchanged. Drift report:\n" + "\n".join(_verdict(r) for r in results)
                + "\nWhat to do: calibrate on more and more representative data (--samples, or recorded feeds), "
                "try --method entropy or percentile, or keep FP32 for this model.")
        for r in results:
            _record(st.manifest, st.path, r, RECIPES[r.variant], cfg, cal.to_dict(), ev, fp32_sha, command)
        stale = [k for k, e in st.manifest.get("engines", {}).items()
                 if e.get("onnx_variant") in cfg.variants
                 and e.get("onnx_sha256") != st.manifest["artifacts"][e["onnx_variant"]]["sha256"]]
        st.commit()
    for r in results:
        r.path = pkg.path / r.path.name
    return QuantizeReport(pkg.path, cal.to_dict(), results, stale)


def _verdict(r: VariantResult) -> str:
    text = r.gate.report()
    if r.graph.unit_scales:
        names = ", ".join(r.graph.unit_scales[:4]) + (" …" if len(r.graph.unit_scales) > 4 else "")
        text += (f"\n  {len(r.graph.unit_scales)} tensor(s) had an empty calibration range (the data never "
                 f"exercised them; scale 1.0 was substituted): {names}")
    return text


def _pre_process(src: Path, dst: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        # Symbolic shape inference is skipped: it fails on the exporter's Unsqueeze nodes, and ONNX
        # shape inference already gives every Conv/MatMul/Gemm input a known rank.
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
    except Exception as exc:
        raise QuantizationError(f"pre-processing {src.name} for quantization failed ({type(exc).__name__}: {exc}); "
                                "nothing was written") from exc


def _gate(pkg: ModelPackage, variant: str, path: Path, graph: QdqSummary, ev: EvalSet,
          ref: dict[str, np.ndarray], cfg: QuantizeConfig, progress: bool) -> VariantResult:
    with _bar(progress, len(ev), f"evaluate {variant}") as bar:
        outs = run_onnx(path, ev.feeds, cfg.threads, progress=bar)
    gate = judge(pkg, variant, ev, ref, outs, cfg.max_drop_points)
    return VariantResult(variant, path, path.stat().st_size, gate, graph)


def _record(manifest: dict[str, Any], root: Path, r: VariantResult, recipe: Recipe, cfg: QuantizeConfig,
            cal: dict[str, Any], ev: EvalSet, fp32_sha: str, command: str) -> None:
    """Write ``calibration.<variant>.json`` and the manifest entry of one artifact."""
    model_name = r.path.name
    prov = {
        "format": PROVENANCE_FORMAT,
        "variant": r.variant,
        "target": recipe.target,
        "artifact": {"path": model_name, "sha256": sha256_file(r.path)},
        "source_model": {"variant": "fp32", "path": manifest["artifacts"]["fp32"]["path"], "sha256": fp32_sha},
        "pre_process": {"onnx_shape_inference": True, "symbolic_shape_inference": False, "optimization": True},
        "method": cfg.method,
        "calibration_data": cal,
        "quantization": recipe.to_dict(cfg.method),
        "graph": r.graph.to_dict(),
        "gate": {**r.gate.to_dict(), "data_sha256": ev.sha256, "hard_split": ev.hard, "provider": "CPU",
                 **({"dataset": cfg.gate_data, "split": "val"} if cfg.gate_data else {})},
        "command": command,
        "tools": _tools(),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    cal_name = f"calibration.{r.variant}.json"
    write_json(root / cal_name, prov)
    g = r.gate
    manifest.setdefault("artifacts", {})[r.variant] = file_record(
        root, model_name, format="onnx", precision="int8", opset=_opset(r.path), target=recipe.target,
        source_variant="fp32", source_sha256=fp32_sha,
        quantization={
            "method": cfg.method, "format": "QDQ", **recipe.summary(), "op_types": r.graph.op_types_quantized,
            "nodes_int8": len(r.graph.quantized_nodes), "nodes_float": len(r.graph.nodes_kept_float),
            "calibration_samples": cal["samples"], "calibration_seed": cal["seed"],
            "calibration_sha256": cal["sha256"],
        },
        accuracy={"samples": g.samples, "seed": g.seed, "fp32": g.fp32_accuracy, "int8": g.int8_accuracy,
                  "drop_points": g.drop_points, "max_drop_points": g.max_drop_points},
        calibration=file_record(root, cal_name, format="json"),
    )
