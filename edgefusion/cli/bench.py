"""``edgefusion bench``: every configuration run the same way, reports in JSON, Markdown and PNG."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command
from edgefusion.errors import ConfigError, EdgeFusionError

EPILOG = """examples:
  edgefusion bench smart_home                                   # ONNX Runtime variants, 30 fps, 20 s
  edgefusion bench driving --configs onnxruntime:fp32,onnxruntime:int8,torch:fp32 --threads 1,2 --peak
  edgefusion bench smart_home --rate max --duration 10 --out bench/out/sh
  edgefusion bench smart_home --model-only --threads 1,2        # bare model call, batch 1 and 8
  edgefusion bench smart_home --log drive.mcap                  # a recorded log instead of a synthesized one

Configurations that cannot run here (TensorRT without a GPU, torch without the 'train' extra, a
variant the package lacks) are skipped with the reason, in the table and the JSON.
"""


def _default_configs(pkg: Any) -> str:
    return ",".join(f"onnxruntime:{v}" for v in pkg.variants if not v.endswith("_trt"))


def cmd_bench(a: argparse.Namespace) -> None:
    from tqdm import tqdm

    from edgefusion.benchmark.model_only import model_only
    from edgefusion.benchmark.peak import peak_rate
    from edgefusion.benchmark.report import SCHEMA_VERSION, machine_facts, write_reports
    from edgefusion.benchmark.runner import parse_configs, run_once
    from edgefusion.package import load_package
    from edgefusion.scenarios import generate_timeline, get_scenario

    pkg = load_package(a.package)
    if a.rate != "max" and (not a.rate.replace(".", "", 1).isdigit() or float(a.rate) <= 0):
        raise ConfigError(f"--rate must be a positive number of frames per second or 'max', got {a.rate!r}")
    rate = None if a.rate == "max" else float(a.rate)
    if a.warmup < 0 or a.duration <= a.warmup:
        raise ConfigError(f"--duration ({a.duration} s) must be longer than --warmup ({a.warmup} s)")
    if a.log:
        timeline, desc = _timeline_from_log(a.log), f"log {a.log}"
    else:
        scen = a.scenario or pkg.manifest.get("scenario")
        if not scen:
            raise ConfigError("the package names no scenario; pass --scenario or --log")
        timeline = generate_timeline(get_scenario(scen), a.duration, a.seed)
        desc = f"{a.duration:g} s synthesized {scen} timeline (seed {a.seed}, {len(timeline.frames)} frames)"
    configs = parse_configs(a.configs or _default_configs(pkg), a.threads)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "package": pkg.name, "package_path": str(pkg.path),
        "input": {"description": desc, "frames": len(timeline.frames)}, "rate_fps": rate, "warmup_s": a.warmup,
        "machine": machine_facts(), "command": sys.argv, "runs": [], "skipped": [], "peak": [], "model_only": [],
    }
    t0 = time.monotonic()
    with tqdm(configs, desc="bench", unit="config", file=sys.stderr) as bar:
        for cfg in bar:
            bar.set_postfix_str(cfg.label)
            try:
                if a.model_only:
                    from edgefusion.demo import timeline_windows

                    report["model_only"] += model_only(pkg, cfg, timeline_windows(timeline)[:64])
                    continue
                rep = run_once(pkg, cfg, timeline, rate, a.warmup)
                report["runs"].append(rep.to_json())
                if a.peak:
                    report["peak"].append(peak_rate(pkg, cfg, timeline))
            except EdgeFusionError as exc:
                report["skipped"].append({"config": cfg.label, "reason": str(exc)})
                print(f"skipped {cfg.label}: {exc}", file=sys.stderr)
    report["elapsed_s"] = round(time.monotonic() - t0, 1)
    out = Path(a.out or f"bench/out/{pkg.name}")
    paths = write_reports(report, out, plots_wanted=not a.no_plots)
    from edgefusion.benchmark.report import markdown

    print(markdown(report))
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)


def _timeline_from_log(path: str) -> Any:
    """A recorded log as a Timeline (frames, audio, commands) so every configuration sees the same input."""
    import numpy as np

    from edgefusion.logs import LogReader, decode
    from edgefusion.samples import AudioChunk, Command, Frame
    from edgefusion.scenarios import Timeline, TimelineCommand

    frames, times, audio, cmds, rate = [], [], [], [], 16000
    with LogReader(path) as r:
        for m in r.messages(topics=["/camera", "/audio", "/text"]):
            s = decode(m)
            if isinstance(s, Frame):
                frames.append(s.image)
                times.append(s.t_ns)
            elif isinstance(s, AudioChunk):
                audio.append(s.samples)
                rate = s.sample_rate
            elif isinstance(s, Command):
                cmds.append(TimelineCommand(s.t_ns, s.text, ""))
    if not frames:
        raise ConfigError(f"{path} has no /camera frames to benchmark with")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ConfigError(f"{path}: frames of several sizes {sorted(shapes)}; benchmark one camera at a time")
    t0 = times[0]
    return Timeline("log", 0, np.asarray(times, np.int64) - t0, np.stack(frames),
                    np.concatenate(audio) if audio else np.zeros(0, np.float32), rate,
                    [TimelineCommand(c.t_ns - t0, c.text, c.intent) for c in cmds], [frozenset()] * len(frames),
                    [""] * len(frames))


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
    sp.add_argument("--warmup", type=float, default=2.0, help="seconds of results excluded at the start (default 2)")
    sp.add_argument("--peak", action="store_true", help="also search the peak sustainable rate per configuration")
    sp.add_argument("--model-only", action="store_true", help="time the bare model call (batch 1 and 8) instead")
    sp.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    sp.add_argument("--out", help="output directory (default bench/out/PACKAGE)")
