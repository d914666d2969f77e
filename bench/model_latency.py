"""Model-only latency: ONNX Runtime FP32 against eager PyTorch on the same inputs.

For each reference package: batch 1 and 8, 1 and 2 threads; p50/p99 of the bare model
call after a warm-up. Writes JSON (default bench/results/model_latency.json).

    python bench/model_latency.py [--packages smart_home driving] [--iters 300] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from edgefusion import FusionWindow, load_package, open_backend
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.metrics import percentiles_ms
from edgefusion.scenarios import generate_samples, get_scenario


def _time(fn: Any, iters: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return {k: round(v, 4) for k, v in percentiles_ms(samples).items()}


def bench_package(name: str, iters: int, warmup: int) -> list[dict[str, Any]]:
    pkg = load_package(name)
    scen = get_scenario(pkg.manifest.scenario or pkg.name)
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)
            for s in generate_samples(scen, 8, seed=42)]
    rows = []
    try:
        import torch

        from edgefusion.dataset import INPUT_ORDER
        from export.train import load_checkpoint

        model, _ = load_checkpoint(pkg.file(pkg.manifest.sources["checkpoint"]))
    except ImportError:
        torch = None  # type: ignore[assignment]
    for batch in (1, 8):
        feeds, _ = pkg.feed_builder().build(wins[:batch])
        for threads in (1, 2):
            with open_backend("onnxruntime", pkg, threads=threads) as be:
                ort_ms = _time(lambda: be.infer(feeds), iters, warmup)  # noqa: B023
                ort_out = be.infer(feeds)
            row: dict[str, Any] = {"package": pkg.name, "batch": batch, "threads": threads,
                                   "onnxruntime_fp32_ms": ort_ms}
            if torch is not None:
                torch.set_num_threads(threads)
                args = [torch.from_numpy(feeds[k]) for k in INPUT_ORDER]
                with torch.inference_mode():
                    row["torch_eager_fp32_ms"] = _time(lambda: model(*args), iters, warmup)  # noqa: B023
                    _, act = model(*args)
                row["max_abs_diff"] = float(np.abs(act.numpy() - ort_out["action_logits"]).max())
                row["speedup_p50"] = round(row["torch_eager_fp32_ms"]["p50"] / ort_ms["p50"], 2)
            rows.append(row)
            print(json.dumps(row))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--out", default="bench/results/model_latency.json")
    a = ap.parse_args()
    report = {"machine": machine_facts(), "iters": a.iters, "warmup": a.warmup,
              "results": [r for p in a.packages for r in bench_package(p, a.iters, a.warmup)]}
    save_json(report, a.out)

if __name__ == "__main__":
    main()
