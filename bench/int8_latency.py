"""Model-only latency of the INT8 artifacts: ONNX Runtime INT8 vs FP32 vs eager PyTorch.

For each package: batch 1 and 8, 1 and 2 threads; p50/p99 of the bare model call after a
warm-up (the timing helper of bench/model_latency.py). The goal is INT8 >= 1.5x faster
than ONNX Runtime FP32 at batch 8 and >= 1.3x at batch 1, both with 2 threads; the JSON
says whether it was met. ``--profile`` adds ONNX Runtime's per-op-type profile (where the
time goes) for every variant at 2 threads. Writes JSON (default
bench/results/int8_latency.json). Packages need their INT8 artifacts
(``edgefusion quantize PACKAGE``); eager PyTorch is timed only when torch imports.

    python bench/int8_latency.py [--packages smart_home driving | DIR ...] [--iters 200] [--profile] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from model_latency import _time  # bench/ is on sys.path when this script runs

from edgefusion import FusionWindow, ModelPackage, load_package, open_backend
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.scenarios import generate_samples, get_scenario

VARIANTS = ("fp32", "int8", "int8_trt")
GOALS = {1: 1.3, 8: 1.5}  # batch -> required INT8 speedup over FP32 (p50, 2 threads)


def _feeds(pkg: ModelPackage, batch: int) -> dict[str, np.ndarray]:
    scen = get_scenario(pkg.manifest.scenario or pkg.name)
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)
            for s in generate_samples(scen, batch, seed=42)]
    return pkg.feed_builder().build(wins)[0]


def _torch_model(pkg: ModelPackage) -> tuple[Any, str | None]:
    """The eager model, or None and the reason it is not timed (said in the JSON, never skipped silently)."""
    try:
        from export.train import load_checkpoint
    except ImportError as exc:
        return None, f"torch is not importable ({exc})"
    src = pkg.manifest.sources.get("checkpoint")
    if not src:
        return None, "the package has no checkpoint"
    try:
        return load_checkpoint(pkg.file(src))[0], None
    except (RuntimeError, KeyError, OSError) as exc:
        return None, f"the checkpoint does not load into export.model ({str(exc).splitlines()[0]})"


def profile_ops(path: Path, feeds: dict[str, np.ndarray], threads: int, iters: int) -> dict[str, Any]:
    """Per-op-type kernel time (ms per call, share of the total) from ONNX Runtime's profiler."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(iters):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / iters
    total = sum(per_op.values())
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {"kernel_ms_per_call": round(total, 4),
            "op_types": {k: {"ms": round(v, 4), "share": round(v / total, 4)} for k, v in ranked}}


def bench_package(where: str, iters: int, warmup: int, profile: bool, profile_iters: int) -> dict[str, Any]:
    pkg = load_package(where)
    variants = [v for v in VARIANTS if v in pkg.manifest.artifacts]
    if "int8" not in variants:
        print(f"note: {pkg.name} has no int8 artifact; run: edgefusion quantize {pkg.path}", file=sys.stderr)
    model, why_not = _torch_model(pkg)
    if why_not:
        print(f"note: eager PyTorch is not timed for {pkg.name}: {why_not}", file=sys.stderr)
    rows, profiles = [], []
    for batch in (1, 8):
        feeds = _feeds(pkg, batch)
        for threads in (1, 2):
            row: dict[str, Any] = {"package": pkg.name, "batch": batch, "threads": threads}
            for v in variants:
                with open_backend("onnxruntime", pkg, variant=v, threads=threads) as be:
                    row[f"onnxruntime_{v}_ms"] = _time(lambda: be.infer(feeds), iters, warmup)  # noqa: B023
            if model is not None:
                import torch

                from edgefusion.dataset import INPUT_ORDER

                torch.set_num_threads(threads)
                args = [torch.from_numpy(feeds[k]) for k in INPUT_ORDER]
                with torch.inference_mode():
                    row["torch_eager_fp32_ms"] = _time(lambda: model(*args), iters, warmup)  # noqa: B023
            fp32 = row["onnxruntime_fp32_ms"]["p50"]
            for v in variants[1:]:
                row[f"speedup_{v}_vs_fp32_p50"] = round(fp32 / row[f"onnxruntime_{v}_ms"]["p50"], 3)
            rows.append(row)
            print(json.dumps(row))
            if profile and threads == 2:
                for v in variants:
                    p = profile_ops(pkg.artifact(v), feeds, threads, profile_iters)
                    profiles.append({"package": pkg.name, "variant": v, "batch": batch, "threads": threads, **p})
    goals = {}
    for batch, need in GOALS.items():
        row = next(r for r in rows if r["batch"] == batch and r["threads"] == 2)
        got = row.get("speedup_int8_vs_fp32_p50")
        goals[f"batch{batch}_2threads"] = {"speedup": got, "goal": need, "met": got is not None and got >= need}
    return {"package": pkg.name, "path": str(pkg.path), "variants": variants, "torch_eager_skipped": why_not,
            "rows": rows, "goals": goals, "profiles": profiles}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"], help="built-in names or directories")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--profile", action="store_true", help="add ONNX Runtime's per-op-type profile (2 threads)")
    ap.add_argument("--profile-iters", type=int, default=100)
    ap.add_argument("--out", default="bench/results/int8_latency.json")
    a = ap.parse_args()
    results = [bench_package(p, a.iters, a.warmup, a.profile, a.profile_iters) for p in a.packages]
    missed = [f"{r['package']} {k}" for r in results for k, g in r["goals"].items() if not g["met"]]
    report = {
        "machine": machine_facts(),
        "iters": a.iters, "warmup": a.warmup, "goals": {f"batch{b}_2threads": g for b, g in GOALS.items()},
        "goals_missed": missed, "results": results,
    }
    if missed and not a.profile:
        report["hint"] = "goals missed; rerun with --profile to see where the time goes per op type"
    save_json(report, a.out)
    print(f"goals missed: {', '.join(missed)}" if missed else "goals met")


if __name__ == "__main__":
    main()
