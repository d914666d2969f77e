"""Benchmark reports: JSON (schema in docs/bench.schema.json), Markdown, PNG plots."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from edgefusion import __version__
from edgefusion.pipeline import STAGES

__all__ = ["SCHEMA_VERSION", "machine_facts", "save_json", "write_reports"]

SCHEMA_VERSION = 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> str | None:
    try:
        p = subprocess.run(["nvidia-smi", "--query-gpu=name,clocks.sm,clocks.mem", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=5)
        return p.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_facts() -> dict[str, Any]:
    import numpy
    import onnxruntime

    versions = {"edgefusion": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                "onnxruntime": onnxruntime.__version__}
    # the installed version, without loading torch into the process being measured
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        versions["torch"] = importlib.metadata.version("torch")
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(), "gpu": _gpu(),
            "versions": versions}


def save_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write a benchmark's JSON (creating its folder) and say where."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def save_json_and_markdown(report: dict[str, Any], path: str | Path, markdown_text: str) -> Path:
    """A bench script's JSON at ``path`` and its Markdown table beside it (same name, ``.md``); say where."""
    save_json(report, path)
    md = Path(path).with_suffix(".md")
    md.write_text(markdown_text)
    print(f"wrote {md}")
    return md


def write_reports(report: dict[str, Any], out_dir: Path, plots_wanted: bool = True) -> list[Path]:
    """bench.json, bench.md and the plots; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "bench.json", out_dir / "bench.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    if plots_wanted:
        paths += plots(report, out_dir)
    return paths


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# EdgeFusion benchmark: {report['package']}", ""]
    if report.get("model_only") and not report["runs"]:  # --model-only: no streaming run to describe
        lines += [f"{m['cpu']}, {m['cores']} cores; the bare model call on windows of "
                  f"{report['input']['description']}."]
    else:
        lines += [f"{m['cpu']}, {m['cores']} cores; {report['input']['description']}; rate "
                  f"{report['rate_fps'] or 'max'} fps; warm-up {report['warmup_s']} s of input excluded. "
                  "Latencies in ms.", "",
                  "| config | results | e2e p50 | e2e p99 | e2e p99.9 | inference p50 | jitter p99 | loss | CPU "
                  "| RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        e, i = r["stages_ms"]["end_to_end"], r["stages_ms"]["inference"]
        lines.append(f"| {r['config']} | {r['results']} | {e.get('p50')} | {e.get('p99')} | {e.get('p99.9')} | "
                     f"{i.get('p50')} | {r['jitter_ms'].get('deviation_p99_ms', '-')} | {100 * r['loss']:.2f}% | "
                     f"{r['cpu_utilization']} | {r['peak_rss_mb']} |")
    for s in report.get("skipped", []):
        lines.append(f"| {s['config']} | skipped: {s['reason']} |||||||||")
    per_stage = [(r["config"], k, v) for r in report["runs"] for k, v in r["stages_ms"].items()
                 if k.startswith("stage:")]
    if per_stage:
        lines += ["", "## Models before the main one (each its own stage)", "",
                  "| config | stage | p50 ms | p99 ms |", "|---|---|---|---|"]
        lines += [f"| {c} | {k[6:]} | {v.get('p50')} | {v.get('p99')} |" for c, k, v in per_stage]
    if report.get("peak"):
        lines += ["", "## Peak sustainable rate (loss ≤ 1%, end-to-end p99 < frame period)", "",
                  "| config | peak fps |", "|---|---|"]
        lines += [f"| {p['config']} | {p['peak_fps']} |" for p in report["peak"]]
    if report.get("model_only"):
        lines += ["", "## Model only", "", "| config | batch | p50 ms | p99 ms | samples/s |", "|---|---|---|---|---|"]
        lines += [f"| {r['config']} | {r['batch']} | {r['latency_ms'].get('p50')} | {r['latency_ms'].get('p99')} | "
                  f"{r['samples_per_s']} |" for r in report["model_only"]]
    if report.get("model_only_ratios"):
        lines += ["", "| variant | vs | batch | threads | speed-up (p50) |", "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['vs']} | {r['batch']} | {r['threads']} | {r['speedup']}× |"
                  for r in report["model_only_ratios"]]
    return "\n".join(lines) + "\n"


def plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    runs = report["runs"]
    if not runs:
        return []
    written = []
    # latency CDF per configuration, from each run's end-to-end series
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        v = np.sort([p[1] for p in r["series"]])
        if len(v):
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=r["config"])
    ax.set(xlabel="end-to-end latency (ms)", ylabel="fraction of results", xscale="log",
           title=f"End-to-end latency CDF: {report['package']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    written.append(_save(fig, out_dir / "latency_cdf.png"))
    # stacked per-stage breakdown (p50)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    stages = [s for s in STAGES if s != "end_to_end"]
    bottom = np.zeros(len(runs))
    for s in stages:
        vals = np.array([r["stages_ms"][s].get("p50", 0.0) for r in runs])
        ax.barh([r["config"] for r in runs], vals, left=bottom, label=s)
        bottom += vals
    ax.set(xlabel="milliseconds (p50 of each stage)", title=f"Per-stage latency breakdown: {report['package']}")
    ax.legend(fontsize=8)
    written.append(_save(fig, out_dir / "stages.png"))
    # end-to-end latency over time
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        if r["series"]:
            ts, e2e_ms = zip(*r["series"])
            ax.plot(ts, e2e_ms, ".", ms=2, label=r["config"])
    ax.set(xlabel="time since first result (s)", ylabel="end-to-end latency (ms)", yscale="log",
           title=f"End-to-end latency over time: {report['package']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, markerscale=4)
    written.append(_save(fig, out_dir / "e2e_over_time.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
