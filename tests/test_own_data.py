"""Your own data, your own model (issue 14): record real files, label, build a dataset, fine-tune, export,
quantize with the gate on the validation split, and replay --check against the labels."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from labelled_logs import SPEECH, VIDEO

from edgefusion.cli import main
from edgefusion.dataset import read_manifest
from edgefusion.errors import ConfigError, IntegrityError
from edgefusion.package import BUILTIN_DIR, load_package
from edgefusion.task import BUILTIN_DIR as TASKS

pytest.importorskip("torch")
pytest.importorskip("mcap")

BELL = SPEECH.parent / "freedesktop" / "bell.oga"
SPANS = {  # the man in the car is there all along; the clips play back to back from the start
    "car_a": "start_s,end_s,kind,label\n0,2.5,event,person\n0.25,0.75,event,speech\n",
    "car_b": "start_s,end_s,kind,label\n0,2.5,event,person\n0.2,0.8,event,speech\n1.0,1.6,event,doorbell\n",
}
AUDIO = {"car_a": f"{SPEECH / 'yes_1000ms.wav'},{SPEECH / 'noise_1000ms.wav'}",
         "car_b": f"{SPEECH / 'no_1000ms.wav'},{BELL}"}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Path]]:
    """Two logs recorded by `edgefusion record` from the real video and real audio files, labelled, cut."""
    d = tmp_path_factory.mktemp("own")
    logs = {}
    for name in ("car_a", "car_b"):
        logs[name] = d / f"{name}.mcap"
        assert main(["record", "--camera", str(VIDEO), "--audio", AUDIO[name], "--max-frames", "60", "--no-pace",
                     "--lossless", "--image-format", "raw", "--record", str(logs[name]), "--threads", "1",
                     "--out", f"jsonl:{d / (name + '.jsonl')}"]) == 0
        (d / f"{name}.csv").write_text(SPANS[name])
        assert main(["label", str(logs[name]), "--spans", str(d / f"{name}.csv"), "--task", "smart_home",
                     "--in-place"]) == 0
    assert main(["dataset", "build", "smart_home", *map(str, logs.values()), "--out", str(d / "ds")]) == 0
    return d, d / "ds", logs


@pytest.mark.slow
def test_end_to_end_on_real_files(recorded, local_corpus, capsys):
    d, ds, logs = recorded
    run, pkg = d / "run", d / "pkg"
    assert main(["train", "--task", "smart_home", "--data", str(ds), "--init", "smart_home", "--steps", "5",
                 "--eval-samples", "0", "--corpus", str(local_corpus), "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "trained 5 steps on 60 recorded + 60 synthetic windows" in out and "val (60 windows)" in out
    m = json.loads((run / "metrics.json").read_text())
    val = m["val"]
    assert val["samples"] == 60 and set(val["events"]) == set(load_package("smart_home").output(
        "multilabel_logits").labels)
    assert sum(map(sum, val["confusion"]["matrix"])) == 60 and (run / val["confusion_png"]).is_file()
    [rec_name] = val["per_recording"]
    assert rec_name.startswith("car_")

    assert main(["export", str(run / "checkpoint.pt"), "--out", str(pkg)]) == 0
    manifest = load_package(pkg).manifest.raw
    prov = manifest["provenance"]
    assert prov["task"]["name"] == "smart_home" and prov["init"]["package"] == "smart_home-attention"
    assert prov["datasets"][0]["manifest_sha256"] == hashlib.sha256((ds / "dataset.json").read_bytes()).hexdigest()
    assert prov["train_command"].startswith("edgefusion train --task smart_home")
    assert manifest["parity"]["dataset"] == str(ds) and manifest["parity"]["samples"] == 120

    # 60 val windows: one changed decision is 1.67 points, so the tolerance allows a few (a 5-step model)
    code = main(["quantize", str(pkg), "--gate-data", str(ds), "--max-drop", "5", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "calibration: 60 samples (dataset" in out and out.count("on 60 windows of dataset") == 2
    cal = json.loads((pkg / "calibration.int8.json").read_text())
    assert cal["gate"]["dataset"] == str(ds) and cal["gate"]["split"] == "val"
    assert cal["calibration_data"]["split"] == "train"

    val_log = logs["car_a"] if rec_name == "car_a.mcap" else logs["car_b"]
    again = d / "again.mcap"
    assert main(["replay", str(val_log), "--model", str(pkg), "--record", str(again), "--threads", "1",
                 "--out", f"jsonl:{d / 'again.jsonl'}"]) == 0
    capsys.readouterr()
    assert main(["replay", str(again), "--check", "--threads", "1", "--out", f"jsonl:{d / 'check.jsonl'}"]) == 0
    out = capsys.readouterr().out
    assert "against recorded results: MATCH: 60 of 60 compared" in out
    assert "against the labels (/labels, task smart_home; 0 frames outside coverage): action accuracy" in out


def test_a_task_whose_labels_disagree_with_init_is_one_line(recorded, tmp_path, capsys):
    _, ds, _ = recorded
    spec = (TASKS / "smart_home.toml").read_text()
    swapped = spec.replace('{ name = "dark", modality = "image" },\n    { name = "person", modality = "image" },',
                           '{ name = "person", modality = "image" },\n    { name = "dark", modality = "image" },')
    assert swapped != spec
    (tmp_path / "smart_home.toml").write_text(swapped)
    args = ["train", "--data", str(ds), "--init", "smart_home", "--steps", "1", "--out", str(tmp_path / "r")]
    assert main([*args, "--task", str(tmp_path / "smart_home.toml")]) == 2
    line = one_error_line(capsys)
    assert "disagree on the events" in line and "the same labels in another order" in line
    assert main([*args, "--task", "driving"]) == 2
    line = one_error_line(capsys)
    assert "task 'driving' and package 'smart_home-attention' (--init) disagree on the events" in line
    assert "missing: 'pedestrian'" in line
    assert not (tmp_path / "r").exists()


def test_a_dataset_for_other_feeds_is_one_line(recorded, tmp_path, capsys):
    _, ds, _ = recorded
    other = tmp_path / "ds"
    shutil.copytree(ds, other)
    m = json.loads((other / "dataset.json").read_text())
    m["package"]["inputs"][0]["preprocess"]["size"] = 64
    (other / "dataset.json").write_text(json.dumps(m))
    assert main(["train", "--task", "smart_home", "--data", str(other), "--init", "smart_home", "--steps", "1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "was built for other feeds (input 'image': size = 64, the model's is 96)" in one_error_line(capsys)
    assert main(["quantize", "driving", "--gate-data", str(ds), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"dataset {ds} was built for other feeds than package 'driving-attention'" in line


def test_task_options_need_task_and_a_task_without_generator_needs_data(tmp_path, capsys):
    assert main(["train", "--scenario", "smart_home", "--data", "x", "--freeze", "image"]) == 2
    assert "--data, --freeze train on a task: use --task" in one_error_line(capsys)
    (tmp_path / "kitchen.toml").write_text((TASKS / "smart_home.toml").read_text().replace(
        'name = "smart_home"', 'name = "kitchen"'))
    assert main(["train", "--task", str(tmp_path / "kitchen.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "task 'kitchen' has no synthetic generator" in one_error_line(capsys)
    assert main(["train", "--task", "smart_home", "--freeze", "image,wheels", "--out", str(tmp_path / "r")]) == 2
    assert "--freeze wheels: the encoders are image, audio, text" in one_error_line(capsys)


def test_freeze_keeps_the_named_encoders_fixed(recorded, tmp_path):
    import torch

    from export.finetune import TaskTrainConfig, train_task
    from export.train import load_checkpoint

    _, ds, _ = recorded
    cfg = TaskTrainConfig(task="smart_home", data=(str(ds),), init="smart_home", freeze=("image", "text"), steps=2,
                          n_eval=0, synthetic_fraction=0.0, lr=1e-2)
    res = train_task(cfg, tmp_path, progress=False)
    assert res.metrics["train_windows"] == {"recorded": 60, "synthetic": 0}
    before = load_checkpoint(BUILTIN_DIR / "smart_home" / "checkpoint.pt")[0].state_dict()
    after = load_checkpoint(res.checkpoint)[0].state_dict()
    same = {k for k in before if torch.equal(before[k], after[k])}
    for prefix in ("image_enc.", "embed.", "text_block.", "pos"):  # running BatchNorm statistics included
        assert all(k in same for k in before if k.startswith(prefix)), prefix
    assert not any(k in same for k in before if k.startswith("gru.weight"))
    ck = torch.load(res.checkpoint, weights_only=True)
    assert ck["provenance"]["init"]["package"] == "smart_home-attention"
    assert ck["train_config"]["freeze"] == ["image", "text"]


def test_quantize_a_package_without_scenario_on_a_dataset(recorded, pkg_copy, capsys):
    _, ds, _ = recorded
    m = json.loads((pkg_copy / "manifest.json").read_text())
    del m["scenario"]
    (pkg_copy / "manifest.json").write_text(json.dumps(m))
    assert main(["quantize", str(pkg_copy), "--variants", "int8", "--quiet"]) == 2
    assert "gate on a recorded dataset's val split: --gate-data DIR" in one_error_line(capsys)
    # 60 val windows: one window is 1.67 points, so the default 1-point gate cannot tell noise from harm here
    assert main(["quantize", str(pkg_copy), "--variants", "int8", "--gate-data", str(ds), "--samples", "32",
                 "--max-drop", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "calibration: 32 samples (dataset" in out and "on 60 windows of dataset" in out
    assert "int8" in load_package(pkg_copy).variants


def test_dataset_gate_refuses_an_empty_val_split(recorded, tmp_path):
    from calibration.gate import dataset_eval_set

    _, ds, _ = recorded
    m = read_manifest(ds)
    one = tmp_path / "one"
    shutil.copytree(ds, one)
    m["splits"]["val"] = {**m["splits"]["val"], "shards": [], "windows": 0}
    (one / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(ConfigError, match=r"has no window in its 'val' split \(give at least two labelled recordings"):
        dataset_eval_set(load_package("smart_home"), one, 100)


def test_label_report_counts_per_label_and_recording():
    from export.evaluate import label_report

    ev = np.array([[2.0, -2.0], [-2.0, -2.0], [2.0, 2.0]])
    act = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    r = label_report(ev, act, np.array([[1, 0], [1, 0], [0, 0]], np.float32), np.array([0, 1, 0]), ("a", "b"),
                     ("go", "stop"), recordings=np.array(["x", "x", "y"]))
    assert r["events"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r["events"]["b"] == {"precision": 0.0, "recall": None, "f1": 0.0, "support": 0}
    assert r["confusion"]["matrix"] == [[1, 1], [0, 1]]
    assert r["per_recording"] == {"x": {"samples": 2, "action_accuracy": 1.0}, "y": {"samples": 1,
                                                                                     "action_accuracy": 0.0}}


def test_check_reads_labels_only_with_a_task(recorded):
    from edgefusion.logs import LogReader
    from edgefusion.logs.check import check_against_log
    from edgefusion.samples import Result
    from edgefusion.task import load_task

    _, _, logs = recorded
    rep = check_against_log(logs["car_a"], [])
    assert not rep.truth and "no built-in task to read them with" in rep.lines()[-1]
    with LogReader(logs["car_a"]) as r:
        t = [m.publish_time_ns for m in r.messages(topics=["/results"])]
    new = [Result(t_ns=x, seq=i, action="none", action_score=1.0, scores={}, events=("person",))
           for i, x in enumerate(t)]
    rep = check_against_log(logs["car_a"], new, task=load_task("smart_home"))
    assert rep.truth["source"] == "/labels" and rep.truth["frames"] == 60
    assert rep.truth["action_accuracy"] == 1.0  # person and speech decide 'none' in smart_home's rules


def test_a_package_carries_the_task_it_was_trained_on(recorded, tmp_path):
    """A user's task.toml is packed into the package, so its rules and policy reach the device without it."""
    from edgefusion.policy import decider_for, task_of
    from edgefusion.task import load_task
    from export.finetune import TaskTrainConfig, train_task
    from export.onnx_export import export_package

    _, ds, _ = recorded
    spec = tmp_path / "kitchen.toml"
    spec.write_text((TASKS / "smart_home.toml").read_text().replace('name = "smart_home"', 'name = "kitchen"'))
    cfg = TaskTrainConfig(task=str(spec), data=(str(ds),), init="smart_home", steps=1, n_eval=0,
                          synthetic_fraction=0.0)
    res = train_task(cfg, tmp_path / "run", progress=False)
    out = export_package(res.checkpoint, tmp_path / "pkg", n_parity=4, parity_data=ds)
    spec.unlink()  # the user's spec stays on the training machine
    pkg = load_package(out)
    assert pkg.manifest.sources["task"].path == "task.toml" and pkg.manifest.scenario is None
    assert "text" not in pkg.manifest.provenance["task"]
    task = task_of(pkg)
    assert task is not None and task.name == "kitchen" and task.policy == load_task("smart_home").policy
    assert decider_for(pkg) is not None
    (out / "task.toml").write_text((out / "task.toml").read_text() + "\n# edited\n")
    with pytest.raises(IntegrityError, match=r"task\.toml has sha256"):
        load_package(out)
