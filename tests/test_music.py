"""Procedural music backgrounds for training (export/music.py) and their place in the augmentation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefusion.augment import power_db
from export import corpus
from export.music import RATE, music_clips

REPO = Path(__file__).resolve().parents[1]


def test_clips_are_seeded_bounded_and_audible() -> None:
    a, b, c = music_clips(6, seconds=2.0, seed=3), music_clips(6, seconds=2.0, seed=3), music_clips(6, 2.0, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x, y) for x, y in zip(a, c))
    for x in a:
        assert x.dtype == np.float32 and x.shape == (2 * RATE,)
        assert np.abs(x).max() <= 0.9 + 1e-6 and power_db(x) > -30.0


def test_clips_are_tonal_not_noise() -> None:
    """Music is mostly a few strong partials: the spectrum's top 1% of bins hold most of the energy."""
    noise = np.random.default_rng(0).standard_normal(2 * RATE).astype(np.float32)

    def top_share(x: np.ndarray) -> float:
        p = np.sort(np.abs(np.fft.rfft(x)) ** 2)[::-1]
        return float(p[: len(p) // 100].sum() / p.sum())

    shares = [top_share(x) for x in music_clips(8, seconds=2.0, seed=0)]
    assert min(shares) > 3 * top_share(noise), shares


@pytest.mark.parametrize("n", [0, 3])
def test_the_augmenter_adds_the_clips_to_the_backgrounds(tmp_path: Path, n: int) -> None:
    pytest.importorskip("torch")
    from edgefusion.scenarios import get_scenario
    from export.train import TrainConfig, augmenter

    corpus.prepare(tmp_path, only=["local"], progress=False)
    aug, info = augmenter(TrainConfig(scenario="smart_home", corpus=str(tmp_path), music=n), get_scenario("smart_home"))
    assert aug is not None and len(aug.backgrounds) == 1 + n  # the corpus' one train background, bell_local
    assert info.get("music", {}).get("clips", 0) == n


def test_a_negative_music_count_is_one_clear_error() -> None:
    pytest.importorskip("torch")
    p = subprocess.run([sys.executable, "-m", "edgefusion", "train", "--scenario", "driving", "--music", "-2"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == "error: --music is a number of clips, 0 or more; got -2"
