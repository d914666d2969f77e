"""INT8 quantization: both artifacts, their guards, provenance and the accuracy gate (real ONNX Runtime, CPU).

Runs on copies of the built-in smart_home package with a few calibration samples and a
small held-out set; the package under edgefusion/models is never written.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.gate import EvalSet, judge
from calibration.qdq import check_scales, summarize_qdq
from calibration.quantize import QuantizeConfig, quantize_package
from calibration.recipes import OP_TYPES
from calibration.sources import (
    CALIBRATION_SEED_OFFSET,
    EVAL_SEED_OFFSET,
    FeedSource,
    ScenarioSource,
    WindowSource,
)
from edgefusion import FusionWindow, load_package, open_backend
from edgefusion.errors import ConfigError, QuantizationError
from edgefusion.package import BUILTIN_DIR
from edgefusion.scenarios import generate_samples, get_scenario

# 64 held-out samples: one changed decision is 1.56 points, so the happy path allows 5.
SMALL = QuantizeConfig(samples=24, eval_samples=64, max_drop_points=5.0, batch=8, threads=2)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    dst = tmp_path_factory.mktemp("q") / "pkg"
    shutil.copytree(BUILTIN_DIR / "smart_home", dst)
    report = quantize_package(dst, SMALL, command="pytest")
    return dst, report


def _model(pkg_dir: Path, variant: str) -> onnx.ModelProto:
    return onnx.load(str(load_package(pkg_dir).artifact(variant)))


def _consts(m: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def test_both_artifacts_are_written_and_verified_by_load_package(quantized):
    pkg_dir, report = quantized
    pkg = load_package(pkg_dir)  # verifies every sha256
    assert {"fp32", "int8", "int8_trt"} <= set(pkg.variants)
    for v in ("int8", "int8_trt"):
        art = pkg.manifest.raw["artifacts"][v]
        assert art["format"] == "onnx" and art["precision"] == "int8" and art["bytes"] == pkg.artifact(v).stat().st_size
        cal = art["calibration"]
        assert hashlib.sha256((pkg_dir / cal["path"]).read_bytes()).hexdigest() == cal["sha256"]
        assert art["quantization"]["op_types"] == sorted(OP_TYPES)
        assert art["accuracy"]["samples"] == 64 and art["accuracy"]["drop_points"] <= 5.0
    assert [r.variant for r in report.results] == ["int8", "int8_trt"]
    assert not list(pkg_dir.parent.glob(".pkg.*")), "staging directories must not be left behind"


def test_provenance_records_data_method_tools_and_float_nodes(quantized):
    pkg_dir, _ = quantized
    pkg = load_package(pkg_dir)
    fp32_sha = pkg.manifest.raw["artifacts"]["fp32"]["sha256"]
    for v in ("int8", "int8_trt"):
        prov = json.loads((pkg_dir / f"calibration.{v}.json").read_text())
        assert prov["source_model"]["sha256"] == fp32_sha and prov["method"] == "minmax"
        data = prov["calibration_data"]
        assert data["samples"] == 24 and data["kind"] == "scenario" and len(data["sha256"]) == 64
        assert data["seed"] == pkg.manifest.raw["provenance"]["seed"] + CALIBRATION_SEED_OFFSET
        assert set(prov["tools"]) >= {"onnx", "onnxruntime", "numpy", "python"}
        g = prov["graph"]
        assert g["op_types_quantized"] == sorted(OP_TYPES)
        # the rule keeps the GRU, normalizations, softmax and GELU in float, and says so
        assert {"GRU", "LayerNormalization", "Softmax"} <= set(g["kept_float_by_op_type"])
        assert len(g["nodes_kept_float"]) == sum(g["kept_float_by_op_type"].values())
        seed = pkg.manifest.raw["provenance"]["seed"]
        assert prov["gate"]["passed"] and prov["gate"]["seed"] == seed + EVAL_SEED_OFFSET
        assert prov["artifact"]["sha256"] == pkg.manifest.raw["artifacts"][v]["sha256"]


def test_scales_are_finite_and_nonzero_in_both_artifacts(quantized):
    pkg_dir, _ = quantized
    for v in ("int8", "int8_trt"):
        m = _model(pkg_dir, v)
        consts = _consts(m)
        scales = [consts[n.input[1]] for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        assert len(scales) > 20
        allv = np.concatenate([s.ravel() for s in scales])
        assert np.all(np.isfinite(allv)) and np.all(allv > 0)


def test_trt_artifact_is_symmetric_per_channel_with_float_bias(quantized):
    pkg_dir, _ = quantized
    m = _model(pkg_dir, "int8_trt")
    consts = _consts(m)
    qdq = [n for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    zps = [consts[n.input[2]] for n in qdq if len(n.input) > 2]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)  # signed, zero point 0
    weight_dq = [n for n in qdq if n.op_type == "DequantizeLinear" and n.input[0] in consts]
    assert weight_dq and all(consts[n.input[1]].size > 1 for n in weight_dq)  # per-channel weight scales
    assert all(consts[n.input[0]].dtype == np.int8 for n in weight_dq)
    convs = [n for n in m.graph.node if n.op_type == "Conv" and len(n.input) > 2]
    assert convs and all(n.input[2] in consts and consts[n.input[2]].dtype == np.float32 for n in convs)
    cpu = _model(pkg_dir, "int8")
    cpu_zps = [_consts(cpu)[n.input[2]] for n in cpu.graph.node if n.op_type == "DequantizeLinear"
               and len(n.input) > 2 and n.input[0] not in _consts(cpu)]
    assert any(z.dtype == np.uint8 for z in cpu_zps)  # the CPU artifact keeps uint8 asymmetric activations


def test_int8_runs_through_the_onnxruntime_backend(quantized):
    pkg_dir, _ = quantized
    pkg = load_package(pkg_dir)
    wins = [FusionWindow(t_ns=0, image=s.image, audio=s.audio, command=s.command)
            for s in generate_samples(get_scenario("smart_home"), 4, seed=11)]
    feeds = pkg.feed_builder().build(wins)[0]
    with open_backend("onnxruntime", pkg, variant="fp32", threads=1) as f32, \
            open_backend("onnxruntime", pkg, variant="int8", threads=1) as i8:
        a, b = f32.infer(feeds), i8.infer(feeds)
        assert i8.info.precision == "int8"
    assert b["action_logits"].shape == a["action_logits"].shape == (4, len(pkg.output("class_logits").labels))
    assert b["action_logits"].dtype == np.float32
    assert np.abs(a["action_logits"] - b["action_logits"]).max() < 5.0


@pytest.mark.slow
def test_gate_rejects_all_zero_calibration_and_leaves_the_package_unchanged(pkg_copy, tmp_path):
    pkg = load_package(pkg_copy)
    zeros = tmp_path / "zeros.npz"
    arrays: dict[str, Any] = {i.name: np.zeros([1 if isinstance(d, str) else d for d in i.shape], i.dtype)
                              for i in pkg.inputs}
    np.savez(zeros, **arrays)
    before = _digests(pkg_copy)
    p = subprocess.run([sys.executable, "-m", "edgefusion", "quantize", str(pkg_copy), "--calibration-feeds",
                        str(zeros), "--eval-samples", "64", "--quiet"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    err = p.stderr
    assert "error: INT8 accuracy gate failed for int8, int8_trt; nothing was written" in err
    for needle in ("action accuracy FP32", "event_logits", "action_logits", "max|Δ|", "empty calibration range"):
        assert needle in err, err
    assert "Traceback" not in err
    assert _digests(pkg_copy) == before
    assert sorted(p.name for p in pkg_copy.parent.iterdir()) == ["pkg", "zeros.npz"]


def test_scale_guard_refuses_zero_inf_and_nan_scales():
    for bad in (0.0, float("inf"), float("nan")):
        g = helper.make_graph(
            [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
             helper.make_node("MatMul", ["d", "w"], ["y"])], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
            [helper.make_tensor("s", TensorProto.FLOAT, [], [bad]), helper.make_tensor("z", TensorProto.UINT8, [], [0]),
             numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")])
        summary = summarize_qdq(helper.make_model(g))
        assert summary.bad_scales == ["s"] and summary.op_types_quantized == ["MatMul"]
        with pytest.raises(QuantizationError, match=r"1 Q/DQ scale\(s\) are inf, NaN, zero or negative \(s\)"):
            check_scales(summary, "toy")


def test_gate_judges_the_action_drop_against_the_limit(pkg_copy):
    pkg = load_package(pkg_copy)
    n_ev, n_act = len(pkg.output("multilabel_logits").labels), len(pkg.output("class_logits").labels)
    y = np.array([0, 1, 2, 3])
    ref = {"action_logits": np.eye(n_act)[y] * 5, "event_logits": np.full((4, n_ev), -3.0)}
    bad = {"action_logits": np.eye(n_act)[[0, 1, 2, 0]] * 5, "event_logits": np.full((4, n_ev), 3.0)}
    ev = EvalSet({}, y, np.zeros((4, n_ev)), seed=1, sha256="", hard=False)
    intent = pkg.output_role("intent")
    if intent is not None:  # the intent output is judged by agreement only: the gate has no intent labels
        n_int = len(intent.labels)
        ref[intent.name], bad[intent.name] = np.eye(n_int)[[0, 1, 2, 3]], np.eye(n_int)[[0, 1, 2, 2]]
    res = judge(pkg, "int8", ev, ref, bad, max_drop_points=1.0)
    assert not res.passed and res.drop_points == 25.0
    drift = {o.name: o for o in res.outputs}
    if intent is not None:
        assert drift[intent.name].decision_agreement == 0.75 and drift[intent.name].metric == "intent_agreement"
    assert drift["action_logits"].decision_agreement == 0.75 and drift["event_logits"].max_abs_diff == 6.0
    assert drift["event_logits"].decision_agreement == 0.0
    assert "FAILED" in res.report() and "drop 25.00 points (limit 1.00)" in res.report()
    assert judge(pkg, "int8", ev, ref, bad, max_drop_points=25.0).passed


def test_scenario_source_is_seeded_and_keeps_clear_of_training_and_eval_seeds(pkg_copy):
    pkg = load_package(pkg_copy)
    a, b = ScenarioSource(pkg, 6, batch=4), ScenarioSource(pkg, 6, batch=4)
    assert a.describe() == b.describe() and a.describe().batches == 2
    assert [f["image"].shape[0] for f in a] == [4, 2]
    assert ScenarioSource(pkg, 6, seed=5).describe().sha256 != a.describe().sha256
    base = pkg.manifest.raw["provenance"]["seed"]
    for taken in (base, base + EVAL_SEED_OFFSET):
        with pytest.raises(ConfigError, match="choose another"):
            ScenarioSource(pkg, 2, seed=taken)
    masked = ScenarioSource(pkg, 40, missing_rate=0.5)
    present = masked.feeds["present"]
    assert (present[:, 0] == 0).any() and (present[:, 1] == 0).any()  # masked paths are calibrated too


def test_window_and_feed_sources_build_through_the_package_preprocessing(pkg_copy):
    pkg = load_package(pkg_copy)
    x = next(generate_samples(get_scenario("smart_home"), 1, seed=2))
    wins = [FusionWindow(t_ns=0, image=x.image, audio=x.audio, command="lock the door"),
            FusionWindow(t_ns=1, image=None, audio=x.audio, command=None)]
    src = WindowSource(wins, pkg.feed_builder(), batch=1)
    direct = pkg.feed_builder().build(wins)[0]
    got = list(src)
    assert len(got) == 2 and all(np.array_equal(got[i]["image"][0], direct["image"][i]) for i in range(2))
    assert src.describe().kind == "windows" and src.describe().samples == 2
    with pytest.raises(ConfigError, match=r"expects exactly"):
        FeedSource({"image": direct["image"]}).check(pkg)
    bad = dict(direct, tokens=direct["tokens"].astype(np.int32))
    with pytest.raises(ConfigError, match=r"calibration input 'tokens': expected int64"):
        FeedSource(bad).check(pkg)


def test_config_errors_name_the_flag(pkg_copy):
    for cfg, msg in [(QuantizeConfig(method="kl"), "--method must be one of minmax, entropy, percentile"),
                     (QuantizeConfig(variants=("int4",)), "--variants must name one or more of int8, int8_trt"),
                     (QuantizeConfig(max_drop_points=-1), "--max-drop is in accuracy points"),
                     (QuantizeConfig(samples=0), "--samples must be at least 1")]:
        with pytest.raises(ConfigError, match=msg):
            quantize_package(pkg_copy, cfg)


@pytest.mark.parametrize("cmd", ["quantize", "build-engine"])
def test_int8_commands_have_teaching_help(cmd, capsys):
    from edgefusion.cli import main

    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: edgefusion {cmd}" in out and "examples:" in out and len(out) > 1000


def test_quantize_runs_with_torch_unavailable(pkg_copy):
    code = (
        "import importlib.abc, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from edgefusion.cli import main\n"
        f"rc = main(['quantize', {str(pkg_copy)!r}, '--variants', 'int8', '--samples', '8', '--eval-samples', '32',"
        " '--max-drop', '100', '--quiet'])\n"
        "assert 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "int8      model.int8.onnx" in p.stdout
    assert "int8" in load_package(pkg_copy).variants
