"""Training-time augmentation (export/augmented.py): label-safe, seeded, with real backgrounds."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgefusion.augment import AugmentPolicy, RandomAugment, crop_aspect
from edgefusion.dataset import build_dataset, data_hash
from edgefusion.errors import ConfigError
from edgefusion.package import load_package
from edgefusion.scenarios import generate_samples, get_scenario
from export.augmented import (
    SAFE_ANCHOR_Y,
    SAFE_ASPECTS,
    augmented_samples,
    bench_crop,
    build_augmented,
    load_backgrounds,
    load_event_recordings,
    robust_rows,
    training_policy,
)

REPO = Path(__file__).resolve().parents[1]


def test_backgrounds_leave_out_the_scenarios_own_event_classes(local_corpus: Path) -> None:
    home = load_backgrounds(local_corpus, get_scenario("smart_home").events)
    drive = load_backgrounds(local_corpus, get_scenario("driving").events)
    assert "speech_commands_yes" not in home.ids and "bell_local" in home.ids  # speech is a smart_home event
    assert "speech_commands_yes" in drive.ids
    held = load_backgrounds(local_corpus, get_scenario("driving").events, "heldout")
    assert not set(held.ids) & set(drive.ids)
    assert load_backgrounds(None, ("x",)).describe()["recordings"] == 0


def test_a_corpus_prepared_from_an_older_list_is_refused(local_corpus: Path, tmp_path: Path) -> None:
    import shutil

    stale = tmp_path / "corpus"
    shutil.copytree(local_corpus, stale)
    prov = json.loads((stale / "provenance.json").read_text())
    prov["list_sha256"] = "0" * 64  # as if export/corpus.toml had changed since
    (stale / "provenance.json").write_text(json.dumps(prov))
    with pytest.raises(ConfigError, match=r"prepared from an older export/corpus\.toml; prepare it again: make corpus"):
        load_backgrounds(stale, ("doorbell",))
    prov["list"] = "my_list.toml"  # a corpus from the user's own list is theirs to keep current
    (stale / "provenance.json").write_text(json.dumps(prov))
    assert load_backgrounds(stale, ("doorbell",)).ids


def test_a_missing_corpus_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"make corpus.*--no-real-backgrounds"):
        load_backgrounds(tmp_path / "nothing", ("siren",))


def test_augmented_data_is_seeded_and_keeps_the_labels(local_corpus: Path) -> None:
    scen, builder = get_scenario("smart_home"), load_package("smart_home").feed_builder()
    aug = RandomAugment(training_policy("smart_home"), load_backgrounds(local_corpus, scen.events).audio)
    a = build_augmented(scen, builder, 24, 5, aug)
    b = build_augmented(scen, builder, 24, 5, aug)
    clean = build_dataset(scen, builder, 24, 5)
    assert data_hash(a) == data_hash(b) != data_hash(clean)
    assert np.array_equal(a.y_events, clean.y_events) and np.array_equal(a.y_action, clean.y_action)
    assert data_hash(build_augmented(scen, builder, 24, 5, None)) == data_hash(clean)


def test_real_event_recordings_are_labelled_as_their_event_and_the_action_is_decided_again(
        local_corpus: Path) -> None:
    scen, builder = get_scenario("smart_home"), load_package("smart_home").feed_builder()
    real = load_event_recordings(local_corpus, scen.audio_events)
    assert list(real) == ["speech"]  # the spoken 'yes' of the local corpus; the bell is no doorbell recording
    assert load_event_recordings(local_corpus, get_scenario("driving").audio_events) == {}
    assert load_event_recordings(None, scen.audio_events) == {}
    policy = replace(training_policy("smart_home"), p_real_event=0.5)
    aug = RandomAugment(policy, load_backgrounds(local_corpus, scen.events).audio, events=real)
    got = list(augmented_samples(scen, 60, 5, aug))
    plain = list(generate_samples(scen, 60, 5))
    added = [(s, p) for (s, _), p in zip(got, plain) if s.events != p.events]
    assert 12 <= len(added) <= 40
    for s, p in added:
        assert s.events == p.events | {"speech"} and "speech" not in p.events
        assert s.action == scen.decide(s.events, s.intent)
    # the other samples draw their perturbations as before: the same windows with real events switched off
    off = RandomAugment(replace(policy, p_real_event=0.0), aug.backgrounds, events=real)
    kept = [(s, w) for (s, w), p in zip(got, plain) if s.events == p.events]
    base = {i: w for i, (_, w) in enumerate(augmented_samples(scen, 60, 5, off))}
    idx = [i for i, ((s, _), p) in enumerate(zip(got, plain)) if s.events == p.events]
    assert all(np.array_equal(got[i][1].audio, base[i].audio) for i in idx) and len(kept) == len(idx)
    ds = build_augmented(scen, builder, 60, 5, aug)
    assert int(ds.y_events[:, scen.events.index("speech")].sum()) == sum("speech" in s.events for s, _ in got)


def test_training_crops_keep_drivings_red_lights_in_the_frame() -> None:
    def red(img: np.ndarray) -> int:
        i = img.astype(int)
        return int(((i[..., 2] > 120) & (i[..., 1] < 90) & (i[..., 0] < 90)).sum())

    lights = [s.image for s in generate_samples(get_scenario("driving"), 400, 5) if "red_light" in s.events]
    lights = [im for im in lights if red(im) >= 10]
    assert len(lights) > 30
    def lost(aspect: float, anchor: float) -> int:
        return sum(red(crop_aspect(im, aspect, anchor_y=anchor)) < 0.3 * red(im) for im in lights)

    assert lost(16 / 9, 0.5) > 0.1 * len(lights)  # why driving's wide crops are not centred
    lo, hi = SAFE_ANCHOR_Y["driving"]
    assert all(lost(a, y) == 0 for a in SAFE_ASPECTS["driving"] for y in (lo, hi))
    policy = training_policy("driving")
    assert policy.aspects == SAFE_ASPECTS["driving"] and policy.crop_anchor_y == (lo, hi)
    assert AugmentPolicy().snr_db == training_policy("smart_home").snr_db
    name, crop = bench_crop("driving")  # the bench's 16:9 row crops where training does, and says so
    assert name == "16:9 crop (top-aligned)" and sum(red(crop(im)) < 0.3 * red(im) for im in lights) == 0


def test_robust_rows_mirror_the_bench_with_held_out_noise(local_corpus: Path) -> None:
    bg = load_backgrounds(local_corpus, get_scenario("smart_home").events, "heldout")
    names = [r.name for r in robust_rows("smart_home", bg)]
    assert names[-2:] == ["real noise SNR 10 dB", "real noise SNR 0 dB"] and "16:9 crop" in names


@pytest.mark.slow
def test_a_tiny_augmented_training_reports_robust_metrics(local_corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from export.train import TrainConfig, train

    cfg = TrainConfig(scenario="smart_home", n_train=64, n_eval=40, epochs=1, batch_size=32, corpus=str(local_corpus))
    res = train(cfg, tmp_path, progress=False)
    m = json.loads((tmp_path / "metrics.json").read_text())
    rob = m["held_out_robust"]
    assert rob["samples"] == 40 and len(rob["action_accuracy_per_row"]) == 10
    assert rob["backgrounds"]["ids"] == ["speech_commands_noise"]  # held-out, and 'no' is speech: an event
    assert m["augment"]["enabled"] and m["augment"]["backgrounds"]["ids"] == ["bell_local"]
    assert res.metrics["train_config"]["augment"] is True


def test_train_without_the_corpus_says_make_corpus(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    p = subprocess.run([sys.executable, "-m", "edgefusion", "train", "--scenario", "driving", "--corpus",
                        str(tmp_path / "none"), "--out", str(tmp_path / "run")], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "make corpus" in lines[0]
    assert not (tmp_path / "run").exists()


def test_only_windows_without_an_audio_event_get_a_drowning_background() -> None:
    from edgefusion.augment import power_db

    scen = get_scenario("smart_home")
    policy = AugmentPolicy.only(p_background=1.0, snr_db=(20.0, 20.0), snr_db_no_event=(-10.0, -10.0))
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    augment = RandomAugment(policy, [noise])
    seen = set()
    for s, (_, w) in zip(generate_samples(scen, 40, 9), augmented_samples(scen, 40, 9, augment)):
        event = bool(s.events & set(scen.audio_events))
        seen.add(event)
        snr = power_db(s.audio) - power_db(w.audio - s.audio)
        assert abs(snr - (20.0 if event else -10.0)) < 1.0, (sorted(s.events), snr)
    assert seen == {True, False}
