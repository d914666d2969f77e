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
