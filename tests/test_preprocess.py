import numpy as np
import pytest

from edgefusion.errors import ConfigError
from edgefusion.preprocess import (
    PAD,
    UNK,
    AudioParams,
    FeedBuilder,
    HashedParams,
    ImageParams,
    TextParams,
    hashed_ngrams,
    preprocess_audio,
    preprocess_image,
    resample,
    tokenize,
)
from edgefusion.preprocess.text import word_ngrams
from edgefusion.samples import FusionWindow


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("rate_in", [8000, 22050, 44100, 48000])
def test_resample_keeps_frequency_and_length(rate_in):
    t = np.arange(rate_in) / rate_in
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), rate_in, 16000)
    assert len(y) == 16000
    assert abs(_peak_hz(y, 16000) - 1000) < 2
    assert 0.9 < np.abs(y[200:-200]).max() < 1.1


def test_resample_removes_content_above_the_new_nyquist():
    rate = 48000
    t = np.arange(rate) / rate
    y = resample(np.sin(2 * np.pi * 12000 * t).astype(np.float32), rate, 16000)  # 12 kHz > 8 kHz Nyquist
    assert np.abs(y[200:-200]).max() < 0.05


def _resample_uncached(x: np.ndarray, rate_in: int, rate_out: int, taps: int = 32) -> np.ndarray:
    """resample() as it was before its weights were cached: every weight computed per call."""
    n_out = len(x) * rate_out // rate_in
    pos = np.arange(n_out) * (rate_in / rate_out)
    idx = np.floor(pos).astype(np.int64)[:, None] + np.arange(-taps // 2 + 1, taps // 2 + 1)[None, :]
    d = pos[:, None] - idx
    cutoff = min(1.0, rate_out / rate_in)
    w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * d / (taps // 2 + 1)))
    w /= w.sum(axis=1, keepdims=True)
    return (x[np.clip(idx, 0, len(x) - 1)] * w).sum(axis=1).astype(np.float32)


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16000, 8000), (8000, 16000), (44100, 16000), (22050, 16000),
                                                   (16000, 11025), (48000, 16000)])
def test_resample_cached_weights_give_the_same_output(rate_in, rate_out):
    x = np.random.default_rng(rate_in).normal(0, 0.3, rate_in + 123).astype(np.float32)
    want = _resample_uncached(x, rate_in, rate_out)
    for _ in range(2):  # the first call fills the cache, the second reads it
        got = resample(x, rate_in, rate_out)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    short = resample(x[:77], rate_in, rate_out)  # another length, same cached weights
    np.testing.assert_allclose(short, _resample_uncached(x[:77], rate_in, rate_out), rtol=0, atol=1e-6)


def test_audio_features_same_at_any_input_rate():
    p = AudioParams()
    rng = np.random.default_rng(0)
    t16 = np.arange(16000) / 16000
    t48 = np.arange(48000) / 48000
    x16 = (np.sin(2 * np.pi * 440 * t16) * 0.5).astype(np.float32)
    x48 = (np.sin(2 * np.pi * 440 * t48) * 0.5).astype(np.float32)
    f16, f48 = preprocess_audio(x16, 16000, p), preprocess_audio(x48, 48000, p)
    assert f16.shape == (p.n_frames, p.n_mels) == (49, 40)
    assert np.corrcoef(f16.ravel(), f48.ravel())[0, 1] > 0.99
    short = preprocess_audio(rng.standard_normal(4000).astype(np.float32), 16000, p)
    assert short.shape == f16.shape  # short audio is padded at the start


def test_logmel_matches_a_numpy_rfft_reference():
    from edgefusion.preprocess.audio import _hann, _mel_filterbank, logmel

    p = AudioParams()
    x = (np.random.default_rng(4).standard_normal(16000) * 0.1).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft)[:: p.hop][: p.n_frames]
    spec = np.fft.rfft(frames.astype(np.float64) * _hann(p.n_fft), axis=1)
    fb = _mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    want = np.log(np.abs(spec) ** 2 @ fb.T + 1e-6)
    np.testing.assert_allclose(logmel(x, p), want, atol=1e-4)


def test_image_preprocess_layout_and_normalization():
    img = np.zeros((120, 160, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    x = preprocess_image(img, ImageParams(size=64))
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.allclose(x[0], (1 - 0.5) / 0.25) and np.allclose(x[2], (0 - 0.5) / 0.25)


@pytest.mark.parametrize("color,layout", [("RGB", "CHW"), ("BGR", "CHW"), ("RGB", "HWC"), ("BGR", "HWC")])
def test_image_preprocess_matches_the_formula_per_channel(color, layout):
    import cv2

    img = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    p = ImageParams(size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), color=color, layout=layout)
    small = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    if color == "RGB":
        small = small[..., ::-1]
    want = (small - np.float32(p.mean)) / np.float32(p.std)
    if layout == "CHW":
        want = want.transpose(2, 0, 1)
    got = preprocess_image(img, p)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_image_preprocess_rejects_unknown_layout():
    with pytest.raises(ConfigError, match="layout"):
        preprocess_image(np.zeros((8, 8, 3), np.uint8), ImageParams(size=4, layout="NCHW"))


def test_tokenizer_unknown_truncation_and_mask():
    p = TextParams(vocab=(PAD, UNK, "lock", "the", "door"), max_tokens=4)
    tok = tokenize("LOCK the garage door now!", p)
    assert tok.ids.tolist() == [2, 3, 1, 4]
    assert tok.mask.tolist() == [1, 1, 1, 1]
    assert tok.unknown == 1 and tok.truncated
    short = tokenize("lock", p)
    assert short.ids.tolist() == [2, 0, 0, 0] and short.mask.tolist() == [1, 0, 0, 0] and not short.truncated


def test_feed_builder_masks_missing_modalities():
    specs = [("img", ImageParams(size=8).to_dict()), ("aud", AudioParams().to_dict()),
             ("ids", TextParams(vocab=(PAD, UNK, "hi")).to_dict()), ("m", {"kind": "token_mask"}),
             ("p", {"kind": "presence", "order": ["image", "audio", "text"]})]
    b = FeedBuilder(specs)
    w = FusionWindow(t_ns=0, image=np.full((4, 4, 3), 200, np.uint8), audio=None, command="hi there")
    feeds, info = b.build([w, w])
    assert feeds["img"].shape == (2, 3, 8, 8)
    assert feeds["aud"].shape == (2, 49, 40) and not feeds["aud"].any()
    assert feeds["ids"][0, :2].tolist() == [2, 1]
    assert feeds["p"][0].tolist() == [1.0, 0.0, 1.0]
    assert info[0].unknown_words == 1 and info[0].missing == ("audio",)


def test_feed_builder_rejects_unknown_kind():
    with pytest.raises(ConfigError, match="input 'x': unknown preprocess kind 'depth'"):
        FeedBuilder([("x", {"kind": "depth"})])


def _logmel_complex_dft(x: np.ndarray, p: AudioParams) -> np.ndarray:
    """The previous implementation (complex DFT output, then re^2 + im^2), kept as the parity reference."""
    import cv2

    from edgefusion.preprocess.audio import _hann, _mel_filterbank

    x = np.asarray(x, np.float32)[-p.window_samples :]
    frames = np.lib.stride_tricks.sliding_window_view(x, p.n_fft)[:: p.hop][: p.n_frames]
    spec = cv2.dft(frames * _hann(p.n_fft), flags=cv2.DFT_ROWS | cv2.DFT_COMPLEX_OUTPUT)
    half = spec[:, : p.n_fft // 2 + 1]
    power = half[..., 0] ** 2 + half[..., 1] ** 2
    fb = _mel_filterbank(p.sample_rate, p.n_fft, p.n_mels, p.fmin, p.fmax)
    return np.log(power @ fb.T + 1e-6).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop", [(512, 320), (400, 160), (401, 200)])
def test_logmel_packed_dft_matches_the_complex_dft_formula(n_fft, hop):
    from edgefusion.preprocess.audio import logmel

    p = AudioParams(n_fft=n_fft, hop=hop, mean=-3.0, std=2.5)
    rng = np.random.default_rng(7)
    for scale in (1e-4, 0.1, 1.0):  # near-silence too: the log amplifies rounding there
        x = (rng.standard_normal(16000) * scale).astype(np.float32)
        want = _logmel_complex_dft(x, p)
        got = logmel(x, p)
        assert got.dtype == np.float32 and got.shape == (p.n_frames, p.n_mels)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
        # normalization in place: bit for bit the (feats - mean) / std of the same features
        norm = preprocess_audio(x, 16000, p)
        np.testing.assert_array_equal(norm, (got - np.float32(-3.0)) / np.float32(2.5))
        assert not np.shares_memory(norm, preprocess_audio(x, 16000, p))  # every call returns a fresh array


# -- open-vocabulary text: hashed character n-grams ---------------------------------------------

def test_hashed_ngrams_are_crc32_of_the_documented_grams_and_stable():
    import zlib

    p = HashedParams(buckets=1 << 13, max_tokens=3, max_ngrams=8)
    t = hashed_ngrams("Off!", p)
    grams = ["<off>", "<of", "off", "ff>", "<off", "off>"]
    assert word_ngrams("off") == grams
    assert t.ids[0].tolist() == [zlib.crc32(g.encode()) % (p.buckets - 1) + 1 for g in grams] + [0, 0]
    assert t.ids[1:].tolist() == [[0] * 8] * 2 and t.mask.tolist() == [1.0, 0.0, 0.0]
    assert t.ids[0, 0] == 7496  # pinned: the ids of a shipped package must never change between releases


def test_misspelt_and_inflected_words_share_ngrams_and_unrelated_words_none():
    p = HashedParams(max_ngrams=32)

    def grams(word: str) -> set[int]:
        return set(hashed_ngrams(word, p).ids[0].tolist()) - {0}

    def overlap(a: str, b: str) -> float:
        return len(grams(a) & grams(b)) / len(grams(a) | grams(b))

    # Jaccard overlap of the words' id sets: a typo or an ending keeps the n-grams away from the change
    assert overlap("unlock", "unlcok") > 0.1 and overlap("lights", "lighs") > 0.25 and overlap("lock", "locking") > 0.25
    assert overlap("lights", "garage") == 0.0
    assert hashed_ngrams("don't", p).ids.tolist() == hashed_ngrams("dont", p).ids.tolist()


def test_hashed_ngrams_truncate_count_unknown_words_and_cut_long_words():
    p = HashedParams(max_tokens=2, max_ngrams=4, known=("lock", "the"))
    t = hashed_ngrams("lock teh door", p)
    assert t.truncated and t.unknown == 1 and t.mask.tolist() == [1.0, 1.0]
    assert (t.ids > 0).sum(1).tolist() == [4, 4]  # 'lock' has 7 grams: cut to max_ngrams
    assert HashedParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="hash 'md5' is not supported"):
        HashedParams.from_dict({**p.to_dict(), "hash": "md5"})


def test_feed_builder_builds_hashed_ngram_feeds_and_zeros_without_a_command():
    p = HashedParams(max_tokens=5, max_ngrams=6, known=("lights", "off"))
    b = FeedBuilder([("tokens", p.to_dict()), ("m", {"kind": "token_mask", "of": "tokens"}),
                     ("p", {"kind": "presence", "order": ["image", "audio", "text"]})])
    said = FusionWindow(t_ns=0, image=None, audio=None, command="lihgts off")
    feeds, info = b.build([said, FusionWindow(t_ns=0, image=None, audio=None, command=None)])
    assert feeds["tokens"].shape == (2, 5, 6) and feeds["tokens"].dtype == np.int64
    assert feeds["m"].tolist() == [[1, 1, 0, 0, 0], [0] * 5] and not feeds["tokens"][1].any()
    assert info[0].unknown_words == 1 and info[1].unknown_words == 0
