"""Training-time augmentation (export/augmented.py): label-safe, seeded, with real backgrounds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefusion.augment import AugmentPolicy, RandomAugment, crop_aspect
from edgefusion.dataset import build_dataset, data_hash
from edgefusion.errors import ConfigError
from edgefusion.package import load_package
from edgefusion.scenarios import generate_samples, get_scenario
from export import corpus
from export.augmented import (
    SAFE_ANCHOR_Y,
    SAFE_ASPECTS,
    bench_crop,
    build_augmented,
    load_backgrounds,
    robust_rows,
    training_policy,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The corpus' committed files only (no network): train = a bell and a spoken 'yes'."""
    cache = tmp_path_factory.mktemp("corpus")
    corpus.prepare(cache, only=["local"], progress=False)
    return cache


def test_backgrounds_leave_out_the_scenarios_own_event_classes(local_corpus: Path) -> None:
    home = load_backgrounds(local_corpus, get_scenario("smart_home").events)
    drive = load_backgrounds(local_corpus, get_scenario("driving").events)
    assert "speech_commands_yes" not in home.ids and "bell_local" in home.ids  # speech is a smart_home event
    assert "speech_commands_yes" in drive.ids
    held = load_backgrounds(local_corpus, get_scenario("driving").events, "heldout")
    assert not set(held.ids) & set(drive.ids)
    assert load_backgrounds(None, ("x",)).describe()["recordings"] == 0


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
