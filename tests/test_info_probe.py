"""`edgefusion info` runs each variant before it says "runs here", and says why not."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from model_kit import image_input, image_scorer, model, write_package  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from edgefusion.backends import availability  # noqa: E402
from edgefusion.backends.probe import model_versions  # noqa: E402
from edgefusion.cli import main  # noqa: E402
from edgefusion.package import load_package  # noqa: E402

SCORES = [{"name": "scores", "kind": "multilabel_logits", "labels": ["a", "b"]}]


def _run_info(capsys, path):
    try:
        status = main(["info", str(path)])
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out + out.err


def test_a_non_square_model_without_class_logits_runs(tmp_path, capsys):
    pkg = write_package(tmp_path / "p", image_scorer(240, 320), [image_input(240, 320, resize="letterbox")], SCORES)
    status, out = _run_info(capsys, pkg)
    assert status == 0, out
    assert "yes  onnxruntime:fp32" in out and "ran one step on generated inputs" in out


def _old_opset_model():
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 2])
    g = helper.make_graph([helper.make_node("Relu", ["image"], ["scores"], consumed_inputs=[0])], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 5)])
    m.ir_version = 3
    return m


def test_a_model_onnx_runtime_cannot_load_gets_the_opset_and_the_fix(tmp_path, capsys):
    inp = [{"name": "image", "modality": "audio", "dtype": "float32", "shape": ["batch", 2],
            "preprocess": {"kind": "waveform", "samples": 2}}]
    pkg = write_package(tmp_path / "old", _old_opset_model(), inp, SCORES)
    assert model_versions(pkg / "model.onnx") == (3, {"": 5})
    status, out = _run_info(capsys, pkg)
    assert status == 1
    line = next(x for x in out.splitlines() if "onnxruntime:fp32" in x)
    assert line.startswith("  no ") and "does not run here: ONNX Runtime could not open" in line
    assert "the model is opset 5, IR version 3" in line and "onnx.version_converter" in line
    assert "convert_version(" in line and ", 17)" in line


def test_the_fix_command_really_converts_the_model(tmp_path):
    pkg = write_package(tmp_path / "old", _old_opset_model(), [{"name": "image", "modality": "audio",
                        "dtype": "float32", "shape": ["batch", 2], "preprocess": {"kind": "waveform", "samples": 2}}],
                        SCORES)
    _, why = availability(load_package(pkg))[0][2:]
    cmd = why.split("Convert it: ")[1].split("; then")[0]
    assert cmd.startswith('python -c "') and cmd.endswith('"')
    exec(cmd[len('python -c "'):-1])  # the same code the user runs, in this interpreter
    m = onnx.load(pkg / "model.onnx")
    assert m.opset_import[0].version == 17


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: m["inputs"][0]["preprocess"].update(kind="depth"), "unknown preprocess kind 'depth'"),
    (lambda m: m["inputs"][0]["preprocess"].update(width=240), "disagrees with the shape"),
    (lambda m: m["outputs"].append(dict(m["outputs"][0])), "duplicate names ['scores']"),
    (lambda m: m["outputs"].__setitem__(0, {"name": "logits", "kind": "multilabel_logits", "labels": ["a", "b"]}),
     "output 'logits' is declared but the model has only ['scores']"),
    (lambda m: m["outputs"][0].update(labels=["a", "b", "c"]), "the model gives 2 values per item"),
    (lambda m: m["outputs"][0].update(kind="heatmap"), "unknown kind 'heatmap'"),
])
def test_each_manifest_mistake_says_does_not_run_here(tmp_path, capsys, mutate, expect):
    pkg = write_package(tmp_path / "p", image_scorer(240, 320), [image_input(240, 320)], SCORES)
    m = json.loads((pkg / "manifest.json").read_text())
    mutate(m)
    (pkg / "manifest.json").write_text(json.dumps(m))
    status, out = _run_info(capsys, pkg)
    assert status in (1, 2), out  # 2: the manifest itself is refused (an input error); 1: it loads, the model refuses
    assert "does not run here" in out and expect in out, out
    assert "Traceback" not in out


def test_a_non_square_model_declared_square_does_not_run(tmp_path, capsys):
    square = {"name": "image", "modality": "image", "dtype": "float32", "shape": ["batch", 3, 96, 96],
              "preprocess": {"kind": "image", "size": 96, "mean": [0, 0, 0], "std": [1, 1, 1]}}
    pkg = write_package(tmp_path / "p", image_scorer(240, 320), [square], SCORES)
    status, out = _run_info(capsys, pkg)
    assert status == 1
    assert ("does not run here: input 'image': the manifest declares ['batch', 3, 96, 96], the model expects "
            "['batch', 3, 240, 320]") in out


def test_a_manifest_that_says_a_model_output_is_probabilities_is_not_squashed_again(tmp_path):
    sig = model([helper.make_node("Sigmoid", ["x"], ["p"])], [("x", TensorProto.FLOAT, ["batch", 1])],
                [("p", TensorProto.FLOAT, ["batch", 1])])
    inp = [{"name": "x", "modality": "audio", "dtype": "float32", "shape": ["batch", 1],
            "preprocess": {"kind": "constant", "value": 2.0}}]
    from edgefusion.backends import open_backend
    from edgefusion.engine import FusionStep
    from edgefusion.samples import FusionWindow
    for kind, want in (("multilabel_probs", 1 / (1 + np.exp(-2.0))), ("multilabel_logits", None)):
        pkg = load_package(write_package(tmp_path / kind, sig, inp, [{"name": "p", "kind": kind, "labels": ["s"]}]))
        with open_backend("onnxruntime", pkg) as be:
            r = FusionStep(pkg, be)(FusionWindow(t_ns=0, image=None, audio=None, command=None))
        if want is not None:
            assert r.scores["s"] == pytest.approx(want, abs=1e-6)
        else:  # declared as logits, the probability goes through a sigmoid again
            assert r.scores["s"] == pytest.approx(1 / (1 + np.exp(-(1 / (1 + np.exp(-2.0))))), abs=1e-6)
        assert r.action == "none" and not r.action_scores
