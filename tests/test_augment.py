"""Real-world perturbations (edgefusion.augment) and the band-limited input detector."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgefusion import augment as aug
from edgefusion.errors import ConfigError
from edgefusion.preprocess.audio import BandLimitDetector, band_energies

DATA = Path(__file__).parent / "data" / "audio"


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV as float32 in [-1, 1] (the standard library is enough for these files)."""
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return read_wav(DATA / "speech_commands" / "yes_1000ms.wav")


@pytest.fixture(scope="module")
def real_noise() -> np.ndarray:
    return read_wav(DATA / "speech_commands" / "noise_1000ms.wav")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    from edgefusion.scenarios import generate_samples, get_scenario

    return next(generate_samples(get_scenario("smart_home"), 1, seed=3)).image


def high_share(x: np.ndarray, rate: int = 16000, cutoff: float = 4000.0) -> float:
    power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    return float(power[np.fft.rfftfreq(len(x), 1 / rate) > cutoff].sum() / power.sum())


# -- audio -------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 0.0, -5.0])
def test_mix_at_snr_measures_back(speech: np.ndarray, real_noise: np.ndarray, snr_db: float) -> None:
    y = aug.mix_at_snr(speech, real_noise, snr_db, np.random.default_rng(1))
    measured = aug.power_db(speech) - aug.power_db(y - speech)
    assert abs(measured - snr_db) < 0.5


def test_mix_at_snr_loops_a_short_background_and_is_seeded(speech: np.ndarray, real_noise: np.ndarray) -> None:
    short = real_noise[:3000]
    a = aug.mix_at_snr(speech, short, 5.0, np.random.default_rng(7))
    b = aug.mix_at_snr(speech, short, 5.0, np.random.default_rng(7))
    c = aug.mix_at_snr(speech, short, 5.0, np.random.default_rng(8))
    assert len(a) == len(speech) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs(aug.power_db(speech) - aug.power_db(a - speech) - 5.0) < 0.5


def test_mix_at_snr_caps_the_gain_of_a_silent_background(speech: np.ndarray) -> None:
    hum = np.full(16000, 1e-7, np.float32)
    y = aug.mix_at_snr(speech, hum, 0.0, max_gain_db=40.0)
    assert np.abs(y - speech).max() <= 1e-7 * 100 * 1.01  # +40 dB at most, not the +130 dB asked for
    with pytest.raises(ConfigError, match="empty"):
        aug.mix_at_snr(speech, np.zeros(0, np.float32), 0.0)


def test_band_limit_leaves_under_one_percent_above_4k(speech: np.ndarray) -> None:
    white = np.random.default_rng(0).normal(0, 0.2, 16000).astype(np.float32)
    assert high_share(white) > 0.4 and high_share(speech) > 0.01  # wideband before
    for x in (white, speech):
        y = aug.band_limit(x, 16000, 8000)
        assert len(y) == len(x)
        assert high_share(y) < 0.01
    low = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    assert abs(aug.power_db(aug.band_limit(low)) - aug.power_db(low)) < 0.2  # the pass band is kept


def test_gain_and_clip(speech: np.ndarray) -> None:
    assert aug.power_db(aug.gain_db(speech, -20.0)) == pytest.approx(aug.power_db(speech) - 20.0, abs=0.01)
    loud = aug.clip(aug.gain_db(speech, 20.0))
    assert loud.max() == pytest.approx(1.0) and loud.min() == pytest.approx(-1.0) and loud.dtype == np.float32


# -- image -------------------------------------------------------------------------------------


def test_brightness_and_contrast(frame: np.ndarray) -> None:
    up, down = aug.brightness(frame, 40), aug.brightness(frame, -40)
    assert up.dtype == np.uint8 and up.shape == frame.shape
    assert 30 < up.mean() - frame.mean() <= 40 and 30 < frame.mean() - down.mean() <= 40
    flat = aug.contrast(frame, 0.6)
    assert abs(flat.mean() - frame.mean()) < 2.0
    assert flat.std() == pytest.approx(0.6 * frame.std(), rel=0.05)


def test_auto_exposure_normalises_the_mean_level(frame: np.ndarray) -> None:
    def grey(img: np.ndarray) -> float:
        return float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean())

    dim = (frame.astype(np.float32) * 0.6).astype(np.uint8)
    assert abs(grey(aug.auto_exposure(dim, target=118.0)) - 118.0) < 8.0  # saturation keeps it from landing exactly
    very_dark = frame // 16
    capped = aug.auto_exposure(very_dark, max_gain=8.0)
    assert grey(capped) == pytest.approx(8.0 * grey(very_dark), rel=0.05)  # a sensor's gain has a limit
    assert aug.auto_exposure(np.zeros((4, 4, 3), np.uint8)).max() == 0  # no signal, nothing to expose


def test_white_balance_moves_red_and_blue_only(frame: np.ndarray) -> None:
    warm = aug.white_balance(frame, red=1.2, blue=0.8)
    b, g, r = (warm[..., i].astype(float).mean() - frame[..., i].astype(float).mean() for i in range(3))
    assert r > 5 and b < -5 and abs(g) < 0.5


def test_crop_aspect(frame: np.ndarray) -> None:
    wide = aug.crop_aspect(frame, 16 / 9)
    assert wide.shape == (90, 160, 3)
    assert np.array_equal(wide, frame[15:105])  # centred
    assert aug.crop_aspect(frame, 1.0).shape == (120, 120, 3)
    assert aug.crop_aspect(frame, 16 / 9, size=(160, 120)).shape == frame.shape
    assert np.array_equal(aug.crop_aspect(frame, 16 / 9, anchor_y=0.0), frame[:90])  # the top rows kept
    assert np.array_equal(aug.crop_aspect(frame, 16 / 9, anchor_y=1.0), frame[30:])
    with pytest.raises(ConfigError):
        aug.crop_aspect(frame, 0.0)
    with pytest.raises(ConfigError, match="anchor_y"):
        aug.crop_aspect(frame, 16 / 9, anchor_y=1.5)


def test_jpeg_changes_the_image_more_at_lower_quality(frame: np.ndarray) -> None:
    def err(q: int) -> float:
        return float(np.abs(aug.jpeg(frame, q).astype(float) - frame).mean())

    assert err(20) > err(90) > 0.0
    assert aug.jpeg(frame, 20).shape == frame.shape


def test_blur_smooths(frame: np.ndarray) -> None:
    def edges(img: np.ndarray) -> float:
        return float(np.abs(np.diff(img.astype(float), axis=1)).mean())

    assert edges(aug.blur(frame, 2.0)) < 0.6 * edges(frame)
    assert np.array_equal(aug.blur(frame, 0.0), frame)


# -- the random policy -------------------------------------------------------------------------


def test_random_augment_is_seeded_and_keeps_shapes(frame: np.ndarray, speech: np.ndarray,
                                                   real_noise: np.ndarray) -> None:
    every = aug.AugmentPolicy(**{f: 1.0 for f in aug.AugmentPolicy.__dataclass_fields__ if f.startswith("p_")
                                 and f != "p_clean"})
    ra = aug.RandomAugment(every, backgrounds=[real_noise])
    i1, a1, ops1 = ra(frame, speech, np.random.default_rng(5))
    i2, a2, ops2 = ra(frame, speech, np.random.default_rng(5))
    i3, a3, _ = ra(frame, speech, np.random.default_rng(6))
    assert np.array_equal(i1, i2) and np.array_equal(a1, a2) and ops1 == ops2
    assert not np.array_equal(a1, a3) and not np.array_equal(i1, i3)
    assert ops1 == ["background", "band_limit", "gain", "auto_exposure", "brightness", "contrast",
                    "white_balance", "crop", "blur", "jpeg"]
    assert i1.shape == frame.shape and i1.dtype == np.uint8
    assert a1.shape == speech.shape and a1.dtype == np.float32 and np.abs(a1).max() <= 1.0


def test_random_augment_rates_follow_the_policy(frame: np.ndarray, speech: np.ndarray) -> None:
    ra = aug.RandomAugment(aug.AugmentPolicy.only(p_jpeg=0.5))
    rng = np.random.default_rng(0)
    hits = sum(ra(frame, speech, rng)[2] == ["jpeg"] for _ in range(200))
    assert 70 < hits < 130
    none = aug.RandomAugment(aug.AugmentPolicy.only(), backgrounds=[speech])
    img, audio, ops = none(frame, speech, rng)
    assert ops == [] and np.array_equal(img, frame) and np.array_equal(audio, speech)


def test_p_clean_leaves_that_share_of_samples_untouched(frame: np.ndarray, speech: np.ndarray,
                                                        real_noise: np.ndarray) -> None:
    ra = aug.RandomAugment(aug.AugmentPolicy(p_clean=0.25), backgrounds=[real_noise])
    rng = np.random.default_rng(3)
    outs = [ra(frame, speech, rng) for _ in range(400)]
    clean = [o for o in outs if o[2] == ["clean"]]
    assert 70 < len(clean) < 130
    assert all(np.array_equal(i, frame) and np.array_equal(a, speech) for i, a, _ in clean)
    assert aug.RandomAugment(aug.AugmentPolicy(p_clean=1.0))(frame, speech, rng)[2] == ["clean"]


def test_policy_rejects_bad_probabilities() -> None:
    with pytest.raises(ConfigError, match="p_blur"):
        aug.AugmentPolicy(p_blur=1.5)
    with pytest.raises(ConfigError, match="crop_anchor_y"):
        aug.AugmentPolicy(crop_anchor_y=(0.6, 0.2))
    with pytest.raises(ConfigError, match="smoke alarm"):
        aug.AugmentPolicy(source_rates=(6000,))


def test_random_crops_follow_the_anchor_range(frame: np.ndarray, speech: np.ndarray) -> None:
    top = aug.RandomAugment(aug.AugmentPolicy.only(p_crop=1.0, aspects=(16 / 9,), crop_anchor_y=(0.0, 0.0)))
    img, _, ops = top(frame, speech, np.random.default_rng(0))
    assert ops == ["crop"] and np.array_equal(img, cv2.resize(frame[:90], (160, 120), interpolation=cv2.INTER_AREA))


def test_augment_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, edgefusion.augment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- band-limited input --------------------------------------------------------------------------


def feed(det: BandLimitDetector, x: np.ndarray, chunk: int = 320) -> list[bool]:
    return [det.update(x[i : i + chunk]) for i in range(0, len(x), chunk)]


def test_band_energies_compare_neighbouring_bands(speech: np.ndarray) -> None:
    high, mid, total = band_energies(speech, 16000)
    assert high / mid > 1e-2 and total > high + mid
    high, mid, _ = band_energies(aug.band_limit(speech), 16000)
    assert high / mid < 1e-4


def test_band_limit_detector_warns_once(speech: np.ndarray, real_noise: np.ndarray,
                                        caplog: pytest.LogCaptureFixture) -> None:
    wide = np.tile(aug.mix_at_snr(speech, real_noise, 20.0), 12)  # 12 s of real speech in real noise
    det = BandLimitDetector(16000, period_s=3.0)
    with caplog.at_level(logging.WARNING, logger="edgefusion.audio"):
        assert not any(feed(det, wide))
        assert det.band_limited_periods == 0 and det.last_ratio is not None and det.last_ratio > 1e-2
        flags = feed(det, aug.band_limit(wide))
    assert sum(flags) == 4 and det.band_limited_periods == 4  # one per 3 s period
    assert det.warnings == 1 and len([r for r in caplog.records if "8 kHz" in r.getMessage()]) == 1
    feed(det, wide)  # wideband again: re-armed
    assert not det.band_limited
    feed(det, aug.band_limit(wide))
    assert det.warnings == 2


def test_band_limit_detector_ignores_silence_and_low_rates(speech: np.ndarray) -> None:
    det = BandLimitDetector(16000, period_s=1.0, log=False)
    assert not any(feed(det, np.zeros(5 * 16000, np.float32)))
    assert det.last_ratio is None  # silence was never judged
    low = BandLimitDetector(8000, period_s=1.0, log=False)
    assert not any(feed(low, np.tile(speech[::2], 4)))


def test_backgrounds_may_be_louder_only_without_an_audio_event(speech: np.ndarray, real_noise: np.ndarray) -> None:
    policy = aug.AugmentPolicy.only(p_background=1.0, snr_db=(10.0, 10.0), snr_db_no_event=(-15.0, -15.0))
    ra = aug.RandomAugment(policy, backgrounds=[real_noise])

    def snr(audio_event: bool) -> float:
        _, y, ops = ra(np.zeros((4, 4, 3), np.uint8), speech, np.random.default_rng(3), audio_event=audio_event)
        assert ops == ["background"]
        return aug.power_db(speech) - aug.power_db(y - speech)

    assert abs(snr(True) - 10.0) < 0.5  # an event keeps the ordinary range: it must stay audible
    assert abs(snr(False) + 15.0) < 0.5  # no event to mask: the background may drown the scene
    assert abs(aug.power_db(speech) - aug.power_db(ra(np.zeros((4, 4, 3), np.uint8), speech,
                                                       np.random.default_rng(3))[1] - speech) - 10.0) < 0.5
