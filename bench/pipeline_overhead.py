"""Pipeline overhead: the streaming pipeline against a bare loop of the model call.

For each package and variant (fp32, and int8 when the package has it):
- bare loop: ``backend.infer`` over the same preprocessed feeds, one at a time;
- pipeline, lossless at max rate: throughput (steps/s) and the ratio to the bare loop;
- pipeline paced at 30 fps: per-step overhead = end to end - inference (p50/p99);
- pipeline with the ``null`` backend: throughput of everything but the model;
- preprocessing alone, back to back ("hot") and once per frame period ("paced"): the gap
  is what caches and clocks cost after the core idled between frames.
Writes JSON (default bench/results/pipeline_overhead.json).

    python bench/pipeline_overhead.py [--packages smart_home driving] [--duration 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np

from edgefusion import load_package, open_backend
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.demo import timeline_windows
from edgefusion.metrics import percentiles_ms
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.scenarios import FPS, generate_timeline, get_scenario
from edgefusion.sources import TimelineSource


def _pipeline(pkg: Any, backend: str, variant: str, threads: int, tl: Any, paced: bool) -> dict[str, Any]:
    rows: list[tuple[int, int]] = []
    with open_backend(backend, pkg, variant=variant, threads=threads) as be:
        pipe = Pipeline(pkg, be, [TimelineSource(tl, pace=paced)], [], PipelineConfig(lossless=not paced),
                        on_result=lambda r: rows.append((r.timings_ns["end_to_end"], r.timings_ns["inference"])))
        stats = pipe.run()
    e2e = np.array([r[0] for r in rows])
    inf = np.array([r[1] for r in rows])
    return {"steps": stats.steps, "wall_s": round(stats.wall_s, 3), "steps_per_s": round(stats.steps / stats.wall_s, 1),
            "drops": stats.drops, "end_to_end_ms": percentiles_ms(e2e), "inference_ms": percentiles_ms(inf),
            "overhead_ms": percentiles_ms(e2e - inf), "stages_ms": stats.latency_ms}


def _bare(pkg: Any, variant: str, threads: int, feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    with open_backend("onnxruntime", pkg, variant=variant, threads=threads) as be:
        for f in feeds[:20]:
            be.infer(f)
        times = []
        t0 = time.perf_counter()
        for f in feeds:
            a = time.perf_counter_ns()
            be.infer(f)
            times.append(time.perf_counter_ns() - a)
        wall = time.perf_counter() - t0
    return {"calls": len(feeds), "steps_per_s": round(len(feeds) / wall, 1), "call_ms": percentiles_ms(times)}


def _preprocess(builder: Any, windows: list[Any], period_s: float) -> dict[str, Any]:
    def once(w: Any) -> int:
        a = time.perf_counter_ns()
        builder.build([w])
        return time.perf_counter_ns() - a

    hot = [once(w) for w in windows]
    paced = []
    for w in windows[:150]:
        time.sleep(period_s)
        paced.append(once(w))
    return {"hot_ms": percentiles_ms(hot), "paced_ms": percentiles_ms(paced), "period_s": round(period_s, 4)}


def bench(name: str, duration: float, threads: int) -> list[dict[str, Any]]:
    pkg = load_package(name)
    tl = generate_timeline(get_scenario(pkg.manifest.scenario or pkg.name), duration, seed=11)
    builder = pkg.feed_builder()
    windows = timeline_windows(tl)
    feeds = [builder.build([w])[0] for w in windows]
    pre = _preprocess(builder, windows, 1.0 / FPS)
    print(json.dumps({"package": pkg.name, "preprocess_hot_p50_ms": pre["hot_ms"]["p50"],
                      "preprocess_paced_p50_ms": pre["paced_ms"]["p50"]}))
    out: list[dict[str, Any]] = [{"package": pkg.name, "variant": "preprocess", "preprocess": pre}]
    for variant in [v for v in ("fp32", "int8") if v in pkg.variants]:
        bare = _bare(pkg, variant, threads, feeds)
        lossless = _pipeline(pkg, "onnxruntime", variant, threads, tl, paced=False)
        paced = _pipeline(pkg, "onnxruntime", variant, threads, tl, paced=True)
        row = {"package": pkg.name, "variant": variant, "threads": threads, "frames": len(feeds), "bare_loop": bare,
               "pipeline_lossless_max_rate": lossless, "pipeline_paced_30fps": paced,
               "throughput_ratio": round(lossless["steps_per_s"] / bare["steps_per_s"], 3)}
        brief = {k: row[k] for k in ("package", "variant", "throughput_ratio")}
        brief.update(bare_steps_per_s=bare["steps_per_s"], pipeline_steps_per_s=lossless["steps_per_s"],
                     overhead_p50_ms=paced["overhead_ms"]["p50"], overhead_p99_ms=paced["overhead_ms"]["p99"])
        print(json.dumps(brief))
        out.append(row)
    null = _pipeline(pkg, "null", "fp32", threads, tl, paced=False)
    out.append({"package": pkg.name, "variant": "null", "pipeline_lossless_max_rate": null})
    print(json.dumps({"package": pkg.name, "null_backend_steps_per_s": null["steps_per_s"]}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--duration", type=float, default=20.0, help="timeline seconds per run (default 20)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/pipeline_overhead.json")
    a = ap.parse_args()
    report = {"machine": machine_facts(),
              "results": [r for p in a.packages for r in bench(p, a.duration, a.threads)]}
    save_json(report, a.out)

if __name__ == "__main__":
    main()
