"""``edgefusion bench``: every configuration run the same way, reports in JSON, Markdown and PNG."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from typing import Any

from edgefusion.cli._common import add_command, output_dir, stage_option, stage_specs
from edgefusion.errors import ConfigError

EPILOG = """examples:
  edgefusion bench smart_home                                   # ONNX Runtime variants, 30 fps, 20 s
  edgefusion bench driving --configs onnxruntime:fp32,onnxruntime:int8,torch:fp32 --threads 1,2 --peak
  edgefusion bench smart_home --rate max --duration 10 --out bench/out/sh
  edgefusion bench smart_home --model-only --threads 1,2        # bare model call, batch 1 and 8
  edgefusion bench smart_home --log drive.mcap                  # a recorded log instead of a synthesized one

Configurations that cannot run here (TensorRT without a GPU, torch without the 'train' extra, a
variant the package lacks) are skipped with the reason, in the table and the JSON.
"""


def cmd_bench(a: argparse.Namespace) -> None:
    from edgefusion.benchmark.report import markdown, write_reports
    from edgefusion.benchmark.runner import parse_configs
    from edgefusion.benchmark.suite import bench_input, default_configs, run_suite
    from edgefusion.package import load_package

    pkg = load_package(a.package)
    if a.rate != "max" and (not a.rate.replace(".", "", 1).isdigit() or float(a.rate) <= 0):
        raise ConfigError(f"--rate must be a positive number of frames per second or 'max', got {a.rate!r}")
    rate = None if a.rate == "max" else float(a.rate)
    if not (math.isfinite(a.warmup) and a.warmup >= 0):
        raise ConfigError(f"--warmup must be 0 or more seconds, got {a.warmup:g}")
    if not (math.isfinite(a.duration) and a.duration > a.warmup):
        raise ConfigError(f"--duration must be a number of seconds longer than --warmup ({a.warmup:g} s), "
                          f"got {a.duration:g}")
    out = output_dir(a.out or f"bench/out/{pkg.name}")  # before the runs: an unwritable folder costs nothing
    timeline, desc = bench_input(pkg, log=a.log, scenario=a.scenario, duration_s=a.duration, seed=a.seed)
    configs = parse_configs(a.configs or default_configs(pkg), a.threads)
    report = run_suite(pkg, timeline, desc, _progress(configs), rate, a.warmup, model_only_mode=a.model_only,
                       peak=a.peak, command=sys.argv,
                       on_skip=lambda cfg, why: print(f"skipped {cfg.label}: {why}", file=sys.stderr),
                       stages=stage_specs(a))
    paths = write_reports(report, out, plots_wanted=not a.no_plots)
    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    if not report["runs"] and not report.get("model_only"):
        raise ConfigError(f"no configuration could run here ({len(report['skipped'])} skipped: the reasons are in "
                          f"the table above)")


def _progress(configs: list[Any]) -> Iterator[Any]:
    """The configurations, shown as a progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(configs, desc="bench", unit="config", file=sys.stderr) as bar:
        for cfg in bar:
            bar.set_postfix_str(cfg.label)
            yield cfg


def register(sub: Any) -> None:
    sp = add_command(sub, "bench", "Profile latency: every configuration through the same input and pipeline; "
                                   "per-stage and end-to-end percentiles, jitter, drops, CPU, memory; JSON, "
                                   "Markdown and PNG plots (needs the 'bench' extra).", cmd_bench)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EPILOG
    sp.add_argument("package", help="model package directory or built-in name")
    sp.add_argument("--log", help="benchmark on a recorded MCAP log instead of a synthesized timeline")
    sp.add_argument("--scenario", help="scenario to synthesize (default: the package's)")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds of input per run (default 20)")
    sp.add_argument("--seed", type=int, default=7, help="timeline seed (default 7)")
    sp.add_argument("--configs", help="BACKEND:VARIANT list, e.g. onnxruntime:fp32,onnxruntime:int8,tensorrt:fp16,"
                                      "tensorrt:int8,torch:fp32 (default: every ONNX Runtime variant of the package)")
    sp.add_argument("--threads", default="2", help="thread counts, e.g. 1,2 (default 2)")
    sp.add_argument("--rate", default="30", help="input frames per second, or max (lossless, as fast as possible)")
    sp.add_argument("--warmup", type=float, default=2.0,
                    help="seconds of input at the start whose results are left out (default 2; input time, so "
                         "a --rate max run leaves out the same frames as a paced one)")
    sp.add_argument("--peak", action="store_true", help="also search the peak sustainable rate per configuration")
    sp.add_argument("--model-only", action="store_true", help="time the bare model call (batch 1 and 8) instead")
    sp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sp.add_argument("--out", help="output directory (default bench/out/PACKAGE)")
    stage_option(sp)
