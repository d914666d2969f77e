"""``edgefusion dataset build|info`` and ``load_split``: windows from labelled logs, split by recording."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from labelled_logs import SPEECH, VIDEO, S, frame_times, plain_log, real_log

from edgefusion.cli import main
from edgefusion.core import windows_of
from edgefusion.dataset import load_split, read_manifest, thin_labels
from edgefusion.dataset.build import build_recorded_dataset
from edgefusion.dataset.recorded import Recording, split_recordings
from edgefusion.errors import ConfigError, InputError
from edgefusion.labels import LabelTrack
from edgefusion.logs import LogReader, decode
from edgefusion.logs.edit import label_log
from edgefusion.logs.timeline import write_synth
from edgefusion.package import load_package
from edgefusion.sources.replay import ReplaySource
from edgefusion.task import load_task

HOME = load_task("smart_home")


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    logs = [write_synth("smart_home", 3.0, seed, d / f"s{seed}.mcap")[0] for seed in (1, 2)]
    manifest = build_recorded_dataset("smart_home", logs, d / "ds", seed=3, command="test")
    return logs, d / "ds", manifest


def _truth(path):
    with LogReader(path) as r:
        return {m.publish_time_ns: decode(m) for m in r.messages(topics=["/truth"])}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synth_logs_give_their_truth_one_recording_per_split(synth_set):
    logs, ds, m = synth_set
    assert m["format"] == "edgefusion-dataset" and m["task"]["name"] == "smart_home" and len(m["task"]["sha256"]) == 64
    assert [i["name"] for i in m["package"]["inputs"]] == ["image", "audio", "tokens", "token_mask", "present"]
    assert sorted(r["split"] for r in m["recordings"]) == ["train", "val"]
    by_sha = {_sha(p): p for p in logs}
    for split in ("train", "val"):
        d = load_split(ds, split)
        (rec,) = set(d["recording"].tolist())  # one recording, whole, per split
        assert m["splits"][split]["recordings"] == [rec]
        truth = _truth(by_sha[rec])
        assert d["t_ns"].tolist() == sorted(truth) and len(d["t_ns"]) == 90  # every frame, in log order
        assert [{HOME.event_names[j] for j in np.flatnonzero(row)} for row in d["events"]] == \
            [set(truth[t]["events"]) for t in d["t_ns"].tolist()]
        assert [HOME.actions[a] for a in d["action"]] == [truth[t]["action"] for t in d["t_ns"].tolist()]
        assert d["image"].shape[1:] == tuple(m["arrays"]["image"]["shape"]) and d["events"].dtype == np.float32
        counts = m["splits"][split]["counts"]
        assert counts["events"] == {e: int(d["events"][:, j].sum()) for j, e in enumerate(HOME.event_names)}
        assert sum(counts["actions"].values()) == sum(counts["intents"].values()) == 90


def test_windows_and_feeds_are_the_runtimes(synth_set):
    logs, ds, m = synth_set
    sha = _sha(logs[0])
    split = next(r["split"] for r in m["recordings"] if r["sha256"] == sha)
    d = load_split(ds, split)
    with ReplaySource(logs[0]) as src:
        windows = windows_of(src)
    feeds, _ = load_package("smart_home").feed_builder().build(windows)
    for name, a in feeds.items():
        np.testing.assert_array_equal(d[name], a, err_msg=name)


def test_the_build_is_deterministic_and_independent_of_log_order(synth_set, tmp_path):
    logs, _, m = synth_set
    mask = os.umask(0o022)
    try:
        again = build_recorded_dataset("smart_home", logs[::-1], tmp_path / "again", seed=3, command="test")
    finally:
        os.umask(mask)
    assert again["splits"] == m["splits"]  # same shards, byte for byte (their sha256), same counts
    assert stat.S_IMODE((tmp_path / "again").stat().st_mode) == 0o755  # not tempfile's 0700


def test_split_is_by_recording_deterministic_and_order_free():
    recs = [Recording(Path(f"{i}.mcap"), f"{i:064x}", LabelTrack()) for i in range(10)]
    split_recordings(recs, 0.3, seed=7)
    first = {r.sha256: r.split for r in recs}
    assert sorted(first.values()).count("val") == 3
    split_recordings(recs[::-1], 0.3, seed=7)
    assert {r.sha256: r.split for r in recs} == first
    split_recordings(recs, 0.3, seed=8)
    assert {r.sha256: r.split for r in recs} != first  # the seed chooses
    split_recordings(recs[:1], 0.5, seed=0)
    assert recs[0].split == "train"  # one recording: no validation split to take it from


def test_load_split_verifies_every_shard(synth_set, tmp_path):
    _, ds, _ = synth_set
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy)
    shard = next((copy / "train").glob("*.npz"))
    shard.write_bytes(shard.read_bytes() + b"\0")
    with pytest.raises(InputError, match="changed after the dataset was built: rebuild it"):
        load_split(copy, "train")
    shard.unlink()
    with pytest.raises(InputError, match="is missing; rebuild the dataset"):
        load_split(copy, "train")
    with pytest.raises(InputError, match="no split 'test'; it has train, val"):
        load_split(copy, "test")
    m = json.loads((copy / "dataset.json").read_text())
    m["splits"]["val"]["shards"][0]["path"] = "../../etc/passwd"
    (copy / "dataset.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="relative path inside the dataset"):
        read_manifest(copy)
    with pytest.raises(InputError, match=r"has no dataset\.json"):
        load_split(tmp_path, "train")


def test_dataset_info_prints_counts_and_warns_about_thin_labels(synth_set, capsys):
    _, ds, m = synth_set
    assert main(["dataset", "info", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "train: 90 windows from 1 recording in 1 shard" in out
    assert f"  dark                  {m['splits']['train']['counts']['events']['dark']:>10}" in out
    assert "warning: train: events with fewer than 20 positive windows:" in out
    assert not any(line.startswith("train") for line in thin_labels(m, min_train=0))


def test_bad_inputs_one_clear_line_each(synth_set, tmp_path, capsys):
    logs, _, _ = synth_set
    unlabelled = plain_log(tmp_path / "plain.mcap")
    notes = tmp_path / "notes.mcap"
    notes.write_text("not a log")

    def build(*args):
        code = main(["dataset", "build", "smart_home", *map(str, args), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        return err

    err = build(unlabelled)
    assert err.count("\n") == 1 and f"{unlabelled} has no /labels track: nothing in it is labelled. Label it " \
        f"first: edgefusion label {unlabelled} --spans SPANS.csv --task smart_home" in err
    assert f"{notes} is not an MCAP file" in build(notes)
    err = build(unlabelled, logs[0], notes)
    assert err.splitlines()[0] == "error: dataset build: 2 of 3 logs are bad:" and len(err.splitlines()) == 3
    driving = write_synth("driving", 1.0, 0, tmp_path / "drive.mcap")[0]
    assert "do not fit task 'smart_home'" in build(driving) and "unknown event" in build(driving)
    spans = tmp_path / "few.csv"
    spans.write_text("start_s,end_s,kind,label\n0.001,0.002,coverage,\n")  # between two frames
    labelled, _ = label_log(unlabelled, spans, "smart_home", out=tmp_path / "few.mcap")
    assert "empty dataset: none of the 30 windows of 1 recording(s) lies inside a coverage span" in build(
        labelled.path)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))  # nothing half-written
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("mine")
    assert "exists; choose another --out or pass --force" in build(logs[0])
    with pytest.raises(ConfigError, match="no built-in package of the same name"):
        build_recorded_dataset(dataclasses.replace(HOME, name="kitchen"), logs, tmp_path / "k")


def test_real_video_and_speech_recorded_labelled_and_cut(tmp_path, capsys):
    """Two logs of real files - one from `edgefusion record`, one written with the LogWriter -
    labelled from span files and cut into a dataset; every window checked against the spans."""
    a = tmp_path / "car_a.mcap"
    assert main(["record", "--camera", str(VIDEO), "--audio", f"{SPEECH / 'yes_1000ms.wav'},"
                 f"{SPEECH / 'noise_1000ms.wav'}", "--max-frames", "60", "--no-pace", "--lossless", "--record",
                 str(a), "--threads", "1"]) == 0
    b = real_log(tmp_path / "car_b.mcap", 45, ["no_1000ms.wav", "yes_1000ms.wav"], commands=((0.3, "let me in"),))
    spans_a = tmp_path / "a.csv"
    spans_a.write_text("start_s,end_s,kind,label\n# the man in the car is there all along\n0,2.5,event,person\n"
                       "0.25,0.75,event,speech\n")
    spans_b = tmp_path / "b.csv"
    spans_b.write_text("start_s,end_s,kind,label\n0,1.2,coverage,\n0,1.5,event,person\n0.2,0.8,event,speech\n"
                       "0.3,1.2,intent,let_in\n0.9,1.0,action,notify_visitor\n")
    for log, spans in ((a, spans_a), (b, spans_b)):
        assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home", "--in-place"]) == 0
    out = tmp_path / "ds"
    assert main(["dataset", "build", "smart_home", str(tmp_path), "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"{b}: " in printed and "36 labelled windows of 45 (9 outside coverage, skipped)" in printed
    m = read_manifest(out)
    assert sorted(r["split"] for r in m["recordings"]) == ["train", "val"]

    def expected(log, person, speech, intent=None, action=None, covered=None):
        with LogReader(log) as r:  # span files count from the first sample, on the samples' clock
            t0 = min(min(m.log_time_ns, m.publish_time_ns) for m in r.messages() if m.topic != "/labels")
        rows = {}
        for t in frame_times(log):
            rel = t - t0
            if covered is not None and not rel < covered:
                continue
            events = set()
            if person[0] <= rel < person[1]:
                events.add("person")
            if min(speech[1], rel) - max(speech[0], rel - S) >= 3 * S // 10:  # the audio overlap rule
                events.add("speech")
            it = intent[2] if intent and intent[0] <= rel < intent[1] else None
            act = action[2] if action and action[0] <= rel < action[1] else HOME.decide(events, it)
            rows[t] = (events, it, act)
        return rows

    ms = S // 1000
    want = {_sha(a): expected(a, (0, 2500 * ms), (250 * ms, 750 * ms)),
            _sha(b): expected(b, (0, 1500 * ms), (200 * ms, 800 * ms), (300 * ms, 1200 * ms, "let_in"),
                              (900 * ms, 1000 * ms, "notify_visitor"), covered=1200 * ms)}
    seen = 0
    for split in ("train", "val"):
        d = load_split(out, split)
        for i, t in enumerate(d["t_ns"].tolist()):
            events, it, act = want[d["recording"][i]][t]
            assert {HOME.event_names[j] for j in np.flatnonzero(d["events"][i])} == events
            assert (HOME.intents[d["intent"][i]] if d["intent"][i] >= 0 else None) == it
            assert HOME.actions[d["action"][i]] == act
            seen += 1
    assert seen == len(want[_sha(a)]) + len(want[_sha(b)]) == 60 + 36
    acts = [row[2] for rows in want.values() for row in rows.values()]
    assert {"none", "unlock_door", "notify_visitor"} <= set(acts)  # rules and explicit spans both decide
    totals = {k: sum(m["splits"][s]["counts"]["events"][k] for s in ("train", "val")) for k in ("person", "speech")}
    speech = sum("speech" in row[0] for rows in want.values() for row in rows.values())
    assert totals == {"person": 96, "speech": speech}
    assert 30 < totals["speech"] < 60  # both clips, about 0.9 s of windows each
    assert main(["dataset", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "events (positive windows):" in info and "warning: " in info


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("task"), "'task' must be a JSON object"),
    (lambda m: m["arrays"]["image"].update(shape="big"), "arrays.image must have a dtype and a shape"),
    (lambda m: m["splits"]["train"].pop("counts"), "splits.train must have shards, windows and counts"),
    (lambda m: m.update(format_version=99), "dataset format version 99; this EdgeFusion reads version 1"),
    (lambda m: m.update(format="zip"), "not an EdgeFusion dataset manifest"),
])
def test_a_damaged_manifest_is_one_line(synth_set, tmp_path, capsys, edit, message):
    _, ds, _ = synth_set
    copy = tmp_path / "ds"
    shutil.copytree(ds, copy)
    m = json.loads((copy / "dataset.json").read_text())
    edit(m)
    (copy / "dataset.json").write_text(json.dumps(m))
    assert main(["dataset", "info", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
