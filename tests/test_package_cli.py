"""``edgefusion package``: Silero VAD from its PyPI package, any ONNX model from a spec of its inputs and outputs."""

from __future__ import annotations

import json

import pytest

from edgefusion.anymodel import SILERO_VAD
from edgefusion.cli import main
from edgefusion.package import load_package

pytest.importorskip("silero_vad")


def test_silero_vad_is_packaged_runs_and_is_not_overwritten_without_force(tmp_path, capsys):
    dest = tmp_path / "vad"
    assert main(["package", "silero-vad", str(dest)]) == 0
    assert "packaged silero_vad" in capsys.readouterr().out
    assert main(["info", str(dest)]) == 0  # opens it and runs one step
    assert "ran one step" in capsys.readouterr().out
    sha = json.loads((dest / "manifest.json").read_text())["artifacts"]["fp32"]["sha256"]
    assert main(["package", "silero-vad", str(dest)]) == 2
    assert "exists and is not empty; choose another directory or pass --force" in capsys.readouterr().err
    assert main(["package", "silero-vad", str(dest), "--force"]) == 0
    assert json.loads((dest / "manifest.json").read_text())["artifacts"]["fp32"]["sha256"] == sha


def test_any_onnx_model_is_packaged_from_a_spec_of_its_inputs_and_outputs(tmp_path, capsys):
    assert main(["package", "silero-vad", str(tmp_path / "vad")]) == 0
    spec = tmp_path / "io.json"
    spec.write_text(json.dumps({"inputs": SILERO_VAD["inputs"], "outputs": SILERO_VAD["outputs"]}))
    dest = tmp_path / "mine"
    assert main(["package", "onnx", str(tmp_path / "vad" / "model.onnx"), str(dest), "--io", str(spec),
                 "--name", "my-vad"]) == 0
    pkg = load_package(dest)
    assert pkg.name == "my-vad" and [o.labels for o in pkg.outputs] == [("speech",)]
    assert pkg.manifest.provenance["command"] == "edgefusion package onnx model.onnx"


@pytest.mark.parametrize("content, message", [
    ("{not json", "not JSON"),
    ('{"inputs": [], "outputs": []}', "'inputs' must be a non-empty list of objects"),
    ('{"inputs": [{"name": "x"}], "outputs": [{}], "extra": 1}', "not ['extra']"),
    ('[1, 2]', "expected an object with the keys 'inputs' and 'outputs'"),
])
def test_a_bad_spec_is_one_line_and_writes_nothing(tmp_path, capsys, content, message):
    assert main(["package", "silero-vad", str(tmp_path / "vad")]) == 0
    spec = tmp_path / "io.json"
    spec.write_text(content)
    dest = tmp_path / "mine"
    assert main(["package", "onnx", str(tmp_path / "vad" / "model.onnx"), str(dest), "--io", str(spec)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not dest.exists()


def test_a_spec_that_names_no_input_of_the_model_is_refused(tmp_path, capsys):
    assert main(["package", "silero-vad", str(tmp_path / "vad")]) == 0
    wrong = [dict(SILERO_VAD["inputs"][0], name="audio_in"), *SILERO_VAD["inputs"][1:]]
    spec = tmp_path / "io.json"
    spec.write_text(json.dumps({"inputs": wrong, "outputs": SILERO_VAD["outputs"]}))
    code = main(["package", "onnx", str(tmp_path / "vad" / "model.onnx"), str(tmp_path / "mine"), "--io", str(spec)])
    err = capsys.readouterr().err
    assert code == 2 and "the manifest declares inputs ['audio_in', 'sr', 'state'], the model has" in err
    assert "nothing written" in err and not (tmp_path / "mine").exists()


def test_errors_name_the_users_files_not_the_trial_package(tmp_path, capsys):
    assert main(["package", "silero-vad", str(tmp_path / "vad")]) == 0
    spec = tmp_path / "io.json"
    spec.write_text(json.dumps({"inputs": SILERO_VAD["inputs"],
                                "outputs": [dict(SILERO_VAD["outputs"][0], kind="multilabel_prob")]}))
    assert main(["package", "onnx", str(tmp_path / "vad" / "model.onnx"), str(tmp_path / "p"), "--io", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"--io {spec}: output 'output': unknown kind 'multilabel_prob'; did you mean 'multilabel_probs'?" in err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    spec.write_text(json.dumps({"inputs": SILERO_VAD["inputs"], "outputs": SILERO_VAD["outputs"]}))
    assert main(["package", "onnx", str(junk), str(tmp_path / "p"), "--io", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"could not open {junk}" in err and "/tmp/tmp" not in err.replace(str(tmp_path), "")
    assert not (tmp_path / "p").exists()


def test_missing_files_are_one_line(tmp_path, capsys):
    assert main(["package", "onnx", str(tmp_path / "none.onnx"), str(tmp_path / "p"), "--io",
                 str(tmp_path / "none.json")]) == 2
    assert "--io" in capsys.readouterr().err and not (tmp_path / "p").exists()
    (tmp_path / "io.json").write_text(json.dumps({"inputs": SILERO_VAD["inputs"], "outputs": SILERO_VAD["outputs"]}))
    assert main(["package", "onnx", str(tmp_path / "none.onnx"), str(tmp_path / "p"), "--io",
                 str(tmp_path / "io.json")]) == 2
    assert "does not exist; give the path of an ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
