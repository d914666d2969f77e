"""The hot path, every measure of issue 20 in one run: pipeline overhead, preprocessing, INT8 speed.

For each package, measured side by side in one process (variants alternate round by round,
and each figure is the median over ``--rounds``):
- preprocessing alone, back to back ("hot") and once per frame period ("paced");
- single-threaded loop: preprocess + ``backend.infer`` per window, one at a time (the
  reference the pipeline's throughput is held against), and ``infer`` alone on pre-made feeds;
- pipeline, lossless at max rate: throughput (steps/s), its ratio to the loop, INT8 / FP32;
- pipeline paced at 30 fps: per-step overhead = end to end - inference, and the machinery
  part of it (end to end - inference - preprocess: queues, sync, decoding/policy) plus the sink;
- the lossless run again with ONNX Runtime's spinning threads (``spin=True``), against the default;
- pipeline with the ``null`` backend: throughput of everything but the model;
- model only (the rows of ``edgefusion bench --model-only``, the sessions taking turns call by
  call): INT8 vs FP32 at batch 1 and 8, and 2 threads vs 1;
- ``replay --rate max`` of a 60 s MCAP log (INT8): times real time.
The JSON's ``table`` holds one row per measure with its goal and whether it was met;
``bench/hotpath_table.py`` writes it into the README. Machine load is recorded (loadavg before
and after): on a shared machine the ratios are the figures to read, not the absolute times.

    python bench/pipeline_overhead.py [--packages smart_home driving] [--duration 10] [--threads 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion import load_package, open_backend
from edgefusion.benchmark.model_only import model_only_ratios
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.benchmark.runner import BenchConfig
from edgefusion.demo import timeline_windows
from edgefusion.metrics import percentiles_ms
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.scenarios import FPS, generate_timeline, get_scenario
from edgefusion.sources import TimelineSource

#: the issue's table: key, measure, goal text, test
GOALS: list[tuple[str, str, str, Callable[[float], bool]]] = [
    ("overhead_p50_ms", "per-step overhead at 30 fps (end to end − inference), p50 ms", "≤ 0.5", lambda v: v <= 0.5),
    ("machinery_p50_ms", "… of which machinery (queues, sync, post, sink), p50 ms", "≤ 0.2", lambda v: v <= 0.2),
    ("preprocess_paced_p50_ms", "preprocessing, once per 33 ms frame, p50 ms (back to back)", "≤ 0.4",
     lambda v: v <= 0.4),
    ("throughput_ratio", "lossless pipeline throughput / single-threaded preprocess + infer loop", "≥ 0.9",
     lambda v: v >= 0.9),
    ("pipeline_int8_vs_fp32", "pipeline throughput, INT8 / FP32 (steps/s)", "≥ 1.5", lambda v: v >= 1.5),
    ("model_int8_vs_fp32_b1", "INT8 vs FP32, model only, batch 1, 2 threads", "≥ 2", lambda v: v >= 2.0),
    ("model_int8_vs_fp32_b8", "INT8 vs FP32, model only, batch 8, 2 threads", "≥ 2", lambda v: v >= 2.0),
    ("model_int8_2t_vs_1t_b8", "INT8 model only, batch 8: 1-thread time / 2-thread time", "≥ 1 (never slower)",
     lambda v: v >= 1.0),
    ("null_steps_per_s", "`null` backend (everything but the model), steps/s", "≥ 5,000", lambda v: v >= 5000),
    ("replay_x_realtime", "`replay --rate max` of a 60 s log, INT8, × real time", "≥ 30", lambda v: v >= 30),
]
#: not goals of the issue: CPU time, which the machine's load inflates far less than wall time
INFO: list[tuple[str, str]] = [
    ("preprocess_cpu_ms", "preprocessing CPU time per frame, back to back, ms"),
    ("null_cpu_ms_per_step", "`null` backend: CPU time per step, all threads, ms"),
    ("int8_cpu_ms_per_step", "INT8 lossless pipeline: CPU time per step, all threads, ms"),
]


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _pipeline(pkg: Any, backend: str, variant: str, threads: int, tl: Any, paced: bool,
              **options: Any) -> dict[str, Any]:
    rows: list[tuple[int, int, int]] = []
    with open_backend(backend, pkg, variant=variant, threads=threads, **options) as be:
        pipe = Pipeline(pkg, be, [TimelineSource(tl, pace=paced)], [], PipelineConfig(lossless=not paced),
                        on_result=lambda r: rows.append((r.timings_ns["end_to_end"], r.timings_ns["inference"],
                                                         r.timings_ns["preprocess"])))
        cpu0 = time.process_time()  # all threads of the process: ONNX Runtime's too
        stats = pipe.run()
    cpu_s = time.process_time() - cpu0
    e2e, inf, pre = (np.array([r[i] for r in rows]) for i in range(3))
    return {"steps": stats.steps, "cpu_ms_per_step": round(1e3 * cpu_s / max(stats.steps, 1), 4),
            "wall_s": round(stats.wall_s, 3), "steps_per_s": round(stats.steps / stats.wall_s, 1),
            "drops": stats.drops, "end_to_end_ms": percentiles_ms(e2e), "inference_ms": percentiles_ms(inf),
            "overhead_ms": percentiles_ms(e2e - inf), "machinery_ms": percentiles_ms(e2e - inf - pre),
            "stages_ms": stats.latency_ms}


def _loop(pkg: Any, variant: str, threads: int, builder: Any, windows: list[Any],
          feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Single-threaded: preprocess + infer per window; and infer alone over pre-made feeds."""
    with open_backend("onnxruntime", pkg, variant=variant, threads=threads) as be:
        for f in feeds[:20]:
            be.infer(f)
        t0 = time.perf_counter()
        for w in windows:
            be.infer(builder.build([w])[0])
        both = time.perf_counter() - t0
        times = []
        t0 = time.perf_counter()
        for f in feeds:
            a = time.perf_counter_ns()
            be.infer(f)
            times.append(time.perf_counter_ns() - a)
        bare = time.perf_counter() - t0
    return {"calls": len(feeds), "preprocess_infer_steps_per_s": round(len(windows) / both, 1),
            "infer_steps_per_s": round(len(feeds) / bare, 1), "call_ms": percentiles_ms(times)}


def _preprocess(builder: Any, windows: list[Any], period_s: float) -> dict[str, Any]:
    def once(w: Any) -> int:
        a = time.perf_counter_ns()
        builder.build([w])
        return time.perf_counter_ns() - a

    cpu0 = time.thread_time_ns()
    hot = [once(w) for w in windows]
    cpu_ms = (time.thread_time_ns() - cpu0) / len(windows) / 1e6  # CPU time: what load on the machine inflates least
    paced = []
    for w in windows[:150]:
        time.sleep(period_s)
        paced.append(once(w))
    return {"hot_ms": percentiles_ms(hot), "hot_cpu_ms_mean": round(cpu_ms, 4), "paced_ms": percentiles_ms(paced),
            "period_s": round(period_s, 4)}


def _replay(pkg: Any, variant: str, threads: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """``edgefusion replay LOG --rate max`` of a synthesized log, timed like the CLI (pipeline run only)."""
    from edgefusion.logs.timeline import write_synth
    from edgefusion.runbuild import RunBuilder

    log = tmp / f"{pkg.name}-{seconds:g}s.mcap"
    if not log.exists():
        write_synth(pkg.manifest.scenario or pkg.name, seconds, 5, log)
    builder = RunBuilder(PipelineConfig(lossless=True))
    builder.replay(log, rate=None)
    with open_backend("onnxruntime", pkg, variant=variant, threads=threads) as be, builder.build(pkg, be) as run:
        stats = run.pipeline.run()
    return {"log_s": seconds, "steps": stats.steps, "wall_s": round(stats.wall_s, 3),
            "x_realtime": round(seconds / stats.wall_s, 2)}


def _model_only(pkg: Any, variants: list[str], threads: int, builder: Any, windows: list[Any],
                iters: int) -> list[dict[str, Any]]:
    """The bare model call of every variant at 1 and ``threads`` threads, batch 1 and 8, in short turns.

    The rows are those of ``edgefusion bench --model-only`` (``edgefusion.benchmark.model_only``),
    but the sessions take turns of 13 calls (the first 3 not timed: a session whose worker
    threads spin would otherwise slow the next one's first calls), so a load change on a
    shared machine hits them all alike instead of whichever configuration happened to run then.
    """
    counts = sorted({1, threads})
    with contextlib.ExitStack() as stack:
        sessions = {(v, t): stack.enter_context(open_backend("onnxruntime", pkg, variant=v, threads=t))
                    for v in variants for t in counts}
        rows = []
        for b in (1, 8):
            feeds, _ = builder.build([windows[i % len(windows)] for i in range(b)])
            times: dict[tuple[str, int], list[int]] = {k: [] for k in sessions}
            for _ in range(-(-iters // 10)):
                for k, be in sessions.items():
                    for i in range(13):  # each turn: 3 warm-up calls, then 10 timed
                        t0 = time.perf_counter_ns()
                        be.infer(feeds)
                        if i >= 3:
                            times[k].append(time.perf_counter_ns() - t0)
            for (v, t), ns in times.items():
                lat = percentiles_ms(ns)
                rows.append({"config": BenchConfig("onnxruntime", v, t).label, "batch": b, "latency_ms": lat,
                             "samples_per_s": round(b / (lat["p50"] / 1e3), 1)})
    return rows


def _med(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def bench(name: str, duration: float, paced_s: float, threads: int, rounds: int, replay_s: float,
          tmp: Path, iters: int) -> dict[str, Any]:
    pkg = load_package(name)
    tl = generate_timeline(get_scenario(pkg.manifest.scenario or pkg.name), duration, seed=11)
    paced_tl = generate_timeline(get_scenario(pkg.manifest.scenario or pkg.name), paced_s, seed=12)
    builder = pkg.feed_builder()
    windows = timeline_windows(tl)
    feeds = [builder.build([w])[0] for w in windows]
    variants: list[str] = [v for v in ("fp32", "int8") if v in pkg.variants]
    out: dict[str, Any] = {"package": pkg.name, "threads": threads, "frames": len(feeds), "rounds": []}
    for i in range(rounds):
        rnd: dict[str, Any] = {"preprocess": _preprocess(builder, windows, 1.0 / FPS), "variants": {}}
        for v in (variants if i % 2 == 0 else variants[::-1]):
            rnd["variants"][v] = {"loop": _loop(pkg, v, threads, builder, windows, feeds),
                                  "lossless": _pipeline(pkg, "onnxruntime", v, threads, tl, paced=False)}
        # the same lossless run with ONNX Runtime's spinning worker threads (the backend's default is off)
        rnd["spin_on"] = _pipeline(pkg, "onnxruntime", variants[-1], threads, tl, paced=False, spin=True)
        rnd["null"] = _pipeline(pkg, "null", "fp32", threads, tl, paced=False)
        rnd["model_only"] = _model_only(pkg, variants, threads, builder, windows[:64], iters)
        out["rounds"].append(rnd)
        print(json.dumps({"package": pkg.name, "round": i + 1, "load": _loadavg()}), flush=True)
    # once: real-time runs (paced 30 fps) and the replay are long; they are not throughput races
    out["paced_30fps"] = {v: _pipeline(pkg, "onnxruntime", v, threads, paced_tl, paced=True) for v in variants}
    replay_variant = "int8" if "int8" in variants else "fp32"
    out["replay"] = {replay_variant: _replay(pkg, replay_variant, threads, replay_s, tmp)}
    out["summary"] = _summary(out, variants, replay_variant)
    print(json.dumps({"package": pkg.name, **out["summary"]}), flush=True)
    return out


def _summary(out: dict[str, Any], variants: list[str], replay_variant: str) -> dict[str, Any]:
    rounds, main = out["rounds"], "int8" if "int8" in variants else "fp32"
    paced = out["paced_30fps"][main]
    s: dict[str, Any] = {
        "variant": main,
        "overhead_p50_ms": paced["overhead_ms"]["p50"],
        "machinery_p50_ms": round(paced["machinery_ms"]["p50"] + paced["stages_ms"]["sink"].get("p50", 0.0), 4),
        "preprocess_paced_p50_ms": _med([r["preprocess"]["paced_ms"]["p50"] for r in rounds]),
        "preprocess_hot_p50_ms": _med([r["preprocess"]["hot_ms"]["p50"] for r in rounds]),
        "throughput_ratio": _med([r["variants"][main]["lossless"]["steps_per_s"]
                                  / r["variants"][main]["loop"]["preprocess_infer_steps_per_s"] for r in rounds]),
        "null_steps_per_s": _med([r["null"]["steps_per_s"] for r in rounds]),
        "preprocess_cpu_ms": _med([r["preprocess"]["hot_cpu_ms_mean"] for r in rounds]),
        "null_cpu_ms_per_step": _med([r["null"]["cpu_ms_per_step"] for r in rounds]),
        "int8_cpu_ms_per_step": _med([r["variants"][main]["lossless"]["cpu_ms_per_step"] for r in rounds]),
        "replay_x_realtime": out["replay"][replay_variant]["x_realtime"],
        "spin_off_vs_on": _med([r["variants"][main]["lossless"]["steps_per_s"] / r["spin_on"]["steps_per_s"]
                                for r in rounds]),
        "steps_per_s": {v: _med([r["variants"][v]["lossless"]["steps_per_s"] for r in rounds]) for v in variants},
    }
    if "int8" in variants and "fp32" in variants:
        s["pipeline_int8_vs_fp32"] = _med([r["variants"]["int8"]["lossless"]["steps_per_s"]
                                           / r["variants"]["fp32"]["lossless"]["steps_per_s"] for r in rounds])
        ratios = [model_only_ratios(r["model_only"]) for r in rounds]

        def pick(vs: str, batch: int) -> float:
            return _med([x["speedup"] for rr in ratios for x in rr
                         if x["variant"] == "int8" and x["vs"] == vs and x["batch"] == batch and x["threads"] == 2])

        s.update(model_int8_vs_fp32_b1=pick("fp32", 1), model_int8_vs_fp32_b8=pick("fp32", 8),
                 model_int8_2t_vs_1t_b8=pick("1 thread", 8))
    return s


def table(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measure of the issue: the value per package, the goal, and whether every package met it."""
    rows = []
    for key, measure, goal, ok in GOALS:
        values = {r["package"]: r["summary"].get(key) for r in results}
        got = [v for v in values.values() if v is not None]
        rows.append({"key": key, "measure": measure, "values": values, "goal": goal,
                     "met": bool(got) and all(ok(v) for v in got)})
    for key, measure in INFO:
        rows.append({"key": key, "measure": measure, "values": {r["package"]: r["summary"].get(key) for r in results},
                     "goal": None, "met": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--duration", type=float, default=10.0, help="timeline seconds for the throughput runs (10)")
    ap.add_argument("--paced", type=float, default=10.0, help="timeline seconds for the real-time 30 fps run (10)")
    ap.add_argument("--replay", type=float, default=60.0, help="seconds of the replayed log (60)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the throughput measures; medians reported (5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=60, help="model-only calls per configuration and round (60)")
    ap.add_argument("--out", default="bench/results/pipeline_overhead.json")
    a = ap.parse_args()
    load0, t0 = _loadavg(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgefusion-hotpath-") as tmp:
        results = [bench(p, a.duration, a.paced, a.threads, a.rounds, a.replay, Path(tmp), a.iters)
                   for p in a.packages]
    report = {"machine": machine_facts(), "loadavg_before": load0, "loadavg_after": _loadavg(),
              "elapsed_s": round(time.monotonic() - t0, 1), "threads": a.threads, "rounds": a.rounds,
              "table": table(results), "results": results}
    save_json(report, a.out)
    for row in report["table"]:
        verdict = "info" if row["met"] is None else "met " if row["met"] else "MISS"
        print(f"{verdict} {row['measure']}: {row['values']}" + (f" (goal {row['goal']})" if row["goal"] else ""))


if __name__ == "__main__":
    main()
