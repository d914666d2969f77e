"""`edgefusion bench`: a short run validates against the documented schema; figures are honest."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from edgefusion import load_package
from edgefusion.benchmark.runner import BenchConfig, run_once
from edgefusion.cli import main
from edgefusion.scenarios import generate_timeline, get_scenario

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "bench.schema.json").read_text())


@pytest.fixture(scope="module")
def timeline():
    return generate_timeline(get_scenario("smart_home"), 4.0, seed=1)


@pytest.mark.slow
def test_short_bench_writes_valid_json_markdown_and_plots(tmp_path, capsys):
    out = tmp_path / "b"
    rc = main(["bench", "smart_home", "--duration", "3", "--warmup", "0.5", "--threads", "1", "--out", str(out),
               "--configs", "onnxruntime:fp32,null:fp32,tensorrt:fp16,onnxruntime:int9"])
    assert rc == 0
    report = json.loads((out / "bench.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert [r["config"] for r in report["runs"]] == ["onnxruntime:fp32/1t", "null:fp32/1t"]
    skipped = {s["config"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"tensorrt:fp16/1t", "onnxruntime:int9/1t"}
    assert "unknown variant" in skipped["onnxruntime:int9/1t"]
    run = report["runs"][0]
    assert run["warmup_results"] > 0 and run["results"] + run["warmup_results"] <= 90
    assert run["stages_ms"]["end_to_end"]["p50"] >= run["stages_ms"]["inference"]["p50"]
    for name in ("latency_cdf.png", "stages.png", "e2e_over_time.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| onnxruntime:fp32/1t |" in (out / "bench.md").read_text()
    assert "| onnxruntime:fp32/1t |" in capsys.readouterr().out


@pytest.mark.slow
def test_null_backend_sleep_is_reported_within_10_percent(timeline):
    pkg = load_package("smart_home")
    rep = run_once(pkg, BenchConfig("null", "fp32", 1), timeline, rate_fps=20.0, warmup_s=0.3,
                   backend_options={"delay_ms": 20.0})
    p50 = rep.stages_ms["inference"]["p50"]
    assert abs(p50 - 20.0) <= 2.0, p50
    assert rep.loss == 0.0


@pytest.mark.slow
def test_end_to_end_includes_queue_wait_when_overloaded(timeline):
    pkg = load_package("smart_home")
    rep = run_once(pkg, BenchConfig("null", "fp32", 1), timeline, rate_fps=30.0, warmup_s=0.3,
                   backend_options={"delay_ms": 50.0})
    s = rep.stages_ms
    assert rep.loss > 0.2 and sum(rep.drops.values()) > 0
    assert s["queue_wait"]["p50"] > 10.0
    assert s["end_to_end"]["p50"] >= s["inference"]["p50"] + s["queue_wait"]["p50"] * 0.9


def test_torch_config_says_what_to_install_when_torch_is_missing(monkeypatch, timeline):
    import sys

    # a None entry makes `import torch` fail, however it is reached (importlib does not pass builtins.__import__)
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "export.torch_backend", raising=False)
    from edgefusion.errors import EdgeFusionError

    with pytest.raises(EdgeFusionError, match=r"pip install 'edgefusion\[train\]'"):
        run_once(load_package("smart_home"), BenchConfig("torch", "fp32", 1), timeline, None, 0.0)


def test_model_only_reports_int8_and_thread_ratios_that_validate(timeline):
    from edgefusion.benchmark.runner import parse_configs
    from edgefusion.benchmark.suite import run_suite

    pkg = load_package("smart_home")
    report = run_suite(pkg, timeline, "4 s timeline", parse_configs("onnxruntime:fp32,onnxruntime:int8", "1,2"),
                       None, 0.0, model_only_mode=True)
    jsonschema.validate(report, SCHEMA)
    p50 = {(r["config"], r["batch"]): r["latency_ms"]["p50"] for r in report["model_only"]}
    ratios = {(r["variant"], r["vs"], r["batch"], r["threads"]): r["speedup"] for r in report["model_only_ratios"]}
    # every int8 row against fp32 at the same batch and threads, and every variant's 2 threads against 1
    assert set(ratios) == {("int8", "fp32", b, t) for b in (1, 8) for t in (1, 2)} | \
        {(v, "1 thread", b, 2) for v in ("fp32", "int8") for b in (1, 8)}
    want = p50[("onnxruntime:fp32/2t", 8)] / p50[("onnxruntime:int8/2t", 8)]
    assert ratios[("int8", "fp32", 8, 2)] == pytest.approx(want, rel=1e-3)
    want = p50[("onnxruntime:int8/1t", 1)] / p50[("onnxruntime:int8/2t", 1)]
    assert ratios[("int8", "1 thread", 1, 2)] == pytest.approx(want, rel=1e-3)
    from edgefusion.benchmark.report import markdown

    assert f"| int8 | fp32 | 8 | 2 | {ratios[('int8', 'fp32', 8, 2)]}× |" in markdown(report)


def test_hotpath_table_renders_every_measure_and_splices_between_the_markers():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "bench" / "hotpath_table.py"
    spec = importlib.util.spec_from_file_location("hotpath_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    machine = {"cpu": "CPU X", "cores": 2}

    def report(v):
        table = [{"key": "null_steps_per_s", "measure": "null steps/s", "values": {"a": v, "b": 2 * v},
                  "goal": "≥ 5,000", "met": v >= 5000},
                 {"key": "throughput_ratio", "measure": "ratio", "values": {"a": 0.5, "b": None}, "goal": "≥ 0.9",
                  "met": False}]
        return {"machine": machine, "loadavg_before": [1.5, 1.0, 0.5], "rounds": 3, "threads": 2,
                "results": [{"package": "a"}, {"package": "b"}], "table": table}

    text = mod.render(report(3000.0), report(1000.0))
    assert "| null steps/s | 1,000 / 2,000 | 3,000 / 6,000 | ≥ 5,000 | no |" in text
    assert "| ratio | 0.50 / - | 0.50 / - | ≥ 0.9 | no |" in text
    assert "load average 1.5/1.0/0.5" in text
    readme = f"intro\n{mod.BEGIN}\nold table\n{mod.END}\nrest\n"
    out = mod.splice(readme, text)
    assert out.startswith("intro\n") and out.endswith(f"{mod.END}\nrest\n") and "old table" not in out
    assert mod.splice(out, text) == out  # idempotent
    with pytest.raises(ValueError, match="markers"):
        mod.splice("no markers", text)
    a, b = report(6000.0), report(3000.0)
    b["results"] = [{"package": "c"}]
    b["table"][0]["values"] = {"c": 3000.0}
    merged = mod.merge([a, b])
    assert [r["package"] for r in merged["results"]] == ["a", "b", "c"]
    assert merged["table"][0]["values"] == {"a": 6000.0, "b": 12000.0, "c": 3000.0}
    assert merged["table"][0]["met"] is False  # met in one report, missed in the other
    readme_text = (path.parents[1] / "README.md").read_text()
    assert mod.BEGIN in readme_text and mod.END in readme_text  # the README has the table's place


def test_a_max_rate_run_leaves_out_the_warmup_by_input_time(timeline):
    """At --rate max a 4-s timeline runs in well under the 2-s warm-up: counted by wall time, every
    result was left out and the table was empty."""
    report = run_once(load_package("smart_home"), BenchConfig("null", "fp32", 1), timeline, None, 2.0)
    assert report.warmup_results == 60 and report.results == 60  # 2 s of 30-fps input each side


def test_bench_refuses_bad_numbers_an_unwritable_out_and_a_run_of_nothing(tmp_path, capsys):
    for args, msg in ((["--warmup", "-1"], "--warmup must be 0 or more seconds, got -1"),
                      (["--duration", "-1"], "--duration must be a number of seconds longer than --warmup"),
                      (["--out", "/proc/edgefusion-bench"], "--out /proc/edgefusion-bench: cannot write there")):
        assert main(["bench", "smart_home", *args]) == 2
        assert msg in capsys.readouterr().err
    out = tmp_path / "b"
    rc = main(["bench", "smart_home", "--duration", "2", "--warmup", "1", "--configs", "onnxruntime:int9",
               "--no-plots", "--out", str(out)])
    assert rc == 2 and "no configuration could run here (1 skipped" in capsys.readouterr().err
    assert "unknown variant" in (out / "bench.md").read_text()  # the reasons are kept
