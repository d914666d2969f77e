"""Audio preprocessing: any rate -> the model rate, then log-mel features, in numpy.

The runtime's dependencies are numpy, OpenCV and ONNX Runtime only, and none of them
resamples audio or computes mel spectrograms, so both are written here (a windowed-sinc
resampler and an HTK mel filterbank; the DFT is OpenCV's). They are the only implementation: training,
calibration and the runtime all call these functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from math import gcd

import cv2
import numpy as np

__all__ = ["AudioParams", "BandLimitDetector", "StreamResampler", "band_energies", "logmel", "preprocess_audio",
           "resample"]

_log = logging.getLogger("edgefusion.audio")


@dataclass(frozen=True)
class AudioParams:
    """Parameters of the log-mel front end.

    Example:
        >>> p = AudioParams()
        >>> p.n_frames
        49
    """

    sample_rate: int = 16000
    window_ms: int = 1000
    n_fft: int = 512
    hop: int = 320
    n_mels: int = 40
    fmin: float = 50.0
    fmax: float = 7600.0
    mean: float = 0.0
    std: float = 1.0

    @property
    def window_samples(self) -> int:
        return self.sample_rate * self.window_ms // 1000

    @property
    def n_frames(self) -> int:
        return 1 + (self.window_samples - self.n_fft) // self.hop

    @classmethod
    def from_dict(cls, d: dict) -> AudioParams:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["kind"] = "logmel"
        return d


def resample(x: np.ndarray, rate_in: int, rate_out: int, taps: int = 32) -> np.ndarray:
    """Band-limited resampling by windowed-sinc interpolation (Hann window).

    The filter weights repeat every ``rate_out / gcd(rate_in, rate_out)`` outputs; one period
    of them is computed once per (rates, taps) and cached (:func:`_sinc_table`), so a call
    only gathers and sums (the band-limit augmentation calls this twice per training sample).

    Example:
        >>> y = resample(np.ones(441, np.float32), 44100, 16000)
        >>> len(y)
        160
    """
    x = np.asarray(x, dtype=np.float32)
    if rate_in == rate_out or len(x) == 0:
        return x.copy()
    n_out = int(len(x) * rate_out // rate_in)
    base, w, p, q = _sinc_table(int(rate_in), int(rate_out), taps)
    m = np.arange(n_out)
    r = m % q
    idx = ((m // q) * p + base[r])[:, None] + np.arange(-taps // 2 + 1, taps // 2 + 1)[None, :]
    xs = x[np.clip(idx, 0, len(x) - 1)]
    return (xs * w[r]).sum(axis=1).astype(np.float32)


@lru_cache(maxsize=16)
def _sinc_table(rate_in: int, rate_out: int, taps: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One period of :func:`resample`'s weights: output ``m`` reads input ``m * p / q`` (``p / q`` =
    ``rate_in / rate_out`` reduced), so its integer part and weights depend on ``m % q`` only.

    Returns (integer part of the position per phase, weights per phase x tap, p, q). The
    positions are exact fractions, so a position on an input sample is never taken for the one
    before it by float rounding. At most ``q`` x ``taps`` float64 (4 MB for coprime 16 kHz rates).
    """
    g = gcd(rate_in, rate_out)
    p, q = rate_in // g, rate_out // g
    phase = np.arange(q, dtype=np.int64)
    base = phase * p // q
    frac = (phase * p % q) / q
    k = np.arange(-taps // 2 + 1, taps // 2 + 1)
    d = frac[:, None] - k[None, :]
    cutoff = min(1.0, q / p)
    w = cutoff * np.sinc(cutoff * d) * (0.5 + 0.5 * np.cos(np.pi * d / (taps // 2 + 1)))
    w /= w.sum(axis=1, keepdims=True)
    base.setflags(write=False)
    w.setflags(write=False)
    return base, w, p, q


def _sinc_interp(x: np.ndarray, pos: np.ndarray, cutoff: float, taps: int) -> np.ndarray:
    """Values of ``x`` at fractional positions ``pos``, lowpassed at ``cutoff`` (1 = Nyquist).

    :class:`StreamResampler` uses it directly: its positions continue across chunks.
    """
    base = np.floor(pos).astype(np.int64)
    k = np.arange(-taps // 2 + 1, taps // 2 + 1)
    idx = base[:, None] + k[None, :]
    d = pos[:, None] - idx
    win = 0.5 + 0.5 * np.cos(np.pi * d / (taps // 2 + 1))
    w = cutoff * np.sinc(cutoff * d) * win
    w /= w.sum(axis=1, keepdims=True)
    xs = x[np.clip(idx, 0, len(x) - 1)]
    return (xs * w).sum(axis=1).astype(np.float32)


class StreamResampler:
    """Chunk-by-chunk resampling with the same filter as :func:`resample`, no seams.

    Example:
        >>> r = StreamResampler(48000, 16000)
        >>> sum(len(r.process(np.zeros(480, np.float32))) for _ in range(100)) + len(r.flush())
        16000
    """

    def __init__(self, rate_in: int, rate_out: int, taps: int = 32) -> None:
        self.ratio = rate_in / rate_out
        self.cutoff = min(1.0, 1.0 / self.ratio)
        self.taps = taps
        self.same = rate_in == rate_out
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # absolute input index of _buf[0]
        self._n_in = 0
        self._k = 0  # next output index

    def _emit(self, last_pos: float) -> np.ndarray:
        k_end = int(np.floor(last_pos / self.ratio)) + 1 if last_pos >= 0 else self._k
        if k_end <= self._k:
            return np.zeros(0, np.float32)
        pos = np.arange(self._k, k_end) * self.ratio
        out = _sinc_interp(self._buf, pos - self._buf_start, self.cutoff, self.taps)
        self._k = k_end
        keep_from = int(np.floor(self._k * self.ratio)) - self.taps
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start :]
            self._buf_start = keep_from
        return out

    def process(self, chunk: np.ndarray) -> np.ndarray:
        chunk = np.asarray(chunk, np.float32)
        if self.same:
            return chunk.copy()
        self._buf = np.concatenate([self._buf, chunk])
        self._n_in += len(chunk)
        # outputs whose filter taps all lie inside what has arrived
        return self._emit(self._n_in - 1 - self.taps // 2 - 1)

    def flush(self) -> np.ndarray:
        """The outputs still owed at the end of the stream (edge samples repeated)."""
        if self.same:
            return np.zeros(0, np.float32)
        total = int(self._n_in / self.ratio)
        return self._emit((total - 1) * self.ratio) if total > self._k else np.zeros(0, np.float32)


@lru_cache(maxsize=8)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(fmin)), hz_to_mel(np.array(fmax)), n_mels + 2)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(n_fft, 1.0 / sr)
    fb = np.zeros((n_mels, len(bins)), np.float32)
    for m in range(n_mels):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        up = (bins - lo) / (c - lo)
        down = (hi - bins) / (hi - c)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
    return fb


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n + 1)[:-1].astype(np.float32)


def logmel(x: np.ndarray, params: AudioParams) -> np.ndarray:
    """Natural-log mel power spectrogram, (frames, n_mels), float32, not normalized."""
    n = params.window_samples
    x = np.asarray(x, np.float32)
    if len(x) < n:  # pad at the start: the window ends at the frame's time
        x = np.concatenate([np.zeros(n - len(x), np.float32), x])
    x = x[-n:]
    frames = np.lib.stride_tricks.sliding_window_view(x, params.n_fft)[:: params.hop][: params.n_frames]
    # OpenCV's row-wise DFT: the same spectrum as np.fft.rfft to float32 rounding, ~8x faster
    spec = cv2.dft(frames * _hann(params.n_fft), flags=cv2.DFT_ROWS | cv2.DFT_COMPLEX_OUTPUT)
    half = spec[:, : params.n_fft // 2 + 1]
    power = half[..., 0] ** 2 + half[..., 1] ** 2
    fb = _mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    return np.log(power @ fb.T + 1e-6).astype(np.float32)


def preprocess_audio(x: np.ndarray, rate: int, params: AudioParams) -> np.ndarray:
    """Mono float32 audio at ``rate`` -> normalized log-mel (n_frames, n_mels)."""
    if rate != params.sample_rate:
        x = resample(x, rate, params.sample_rate)
    feats = logmel(x, params)
    return ((feats - np.float32(params.mean)) / np.float32(params.std)).astype(np.float32)



def band_energies(x: np.ndarray, rate: int, cutoff_hz: float = 4000.0) -> tuple[float, float, float]:
    """Energies of ``x`` (Hann window) above ``1.1 * cutoff_hz``, in 0.6-0.95 ``cutoff_hz``, and in total.

    An 8 kHz source resampled up has a wall at 4 kHz: the band above it holds ~1e-6 of the
    band just below it, where natural sound (speech, noise, a microphone's own hiss) holds
    ~1e-2 and more. Comparing neighbouring bands, not the high band with the total, keeps
    loud low-frequency sound (engines) from passing as band-limited. The window keeps a
    strong tone from leaking across the edge.

    Example:
        >>> t = np.arange(1600) / 16000
        >>> high, mid, total = band_energies(np.sin(2 * np.pi * 3000 * t), 16000)
        >>> high / mid < 1e-6, mid / total > 0.99
        (True, True)
    """
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return 0.0, 0.0, 0.0
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    high = float(power[f > 1.1 * cutoff_hz].sum())
    mid = float(power[(f > 0.6 * cutoff_hz) & (f < 0.95 * cutoff_hz)].sum())
    return high, mid, float(power.sum())


class BandLimitDetector:
    """Notices audio with (near) no energy above ~4 kHz over a sustained period: an 8 kHz source.

    Feed it every chunk as it arrives (at any rate above ``2.2 * cutoff_hz``). Chunks
    quieter than ``min_level_db`` are skipped: silence says nothing about bandwidth. Each time
    ``period_s`` of sound has accumulated, the energy above the cutoff is compared with the
    energy just below it (:func:`band_energies`); below ``max_ratio`` the period is
    band-limited. A period with (almost) nothing just below the cutoff either (a pure low
    hum) is inconclusive and not judged. The first band-limited period logs one warning;
    later ones are only counted in ``band_limited_periods``, until a wideband period re-arms
    the warning.

    Example:
        >>> det = BandLimitDetector(16000, period_s=1.0, log=False)
        >>> noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
        >>> det.update(noise), det.update(resample(resample(noise, 16000, 8000), 8000, 16000))
        (False, True)
        >>> det.band_limited_periods, det.warnings
        (1, 1)
    """

    def __init__(self, rate: int, cutoff_hz: float = 4000.0, max_ratio: float = 1e-4, period_s: float = 5.0,
                 min_level_db: float = -60.0, min_mid_share: float = 1e-3, log: bool = True) -> None:
        self.rate = rate
        self.cutoff_hz = cutoff_hz
        self.max_ratio = max_ratio
        self.period_samples = int(period_s * rate)
        self.min_level_db = min_level_db
        self.min_mid_share = min_mid_share
        self.log = log
        self.band_limited = False
        self.band_limited_periods = 0
        self.warnings = 0
        self.last_ratio: float | None = None
        self._high = self._mid = self._total = 0.0
        self._n = 0

    def update(self, chunk: np.ndarray) -> bool:
        """Account ``chunk``; True exactly when it completes a period judged band-limited."""
        chunk = np.asarray(chunk, np.float32)
        if len(chunk) == 0 or 2.2 * self.cutoff_hz >= self.rate:
            return False  # a stream at 8 kHz is band-limited by its declared rate: nothing to discover
        if 10 * np.log10(float(np.mean(np.square(chunk, dtype=np.float64))) + 1e-20) < self.min_level_db:
            return False
        high, mid, total = band_energies(chunk, self.rate, self.cutoff_hz)
        self._high += high
        self._mid += mid
        self._total += total
        self._n += len(chunk)
        if self._n < self.period_samples:
            return False
        high, mid, total = self._high, self._mid, self._total
        self._high = self._mid = self._total = 0.0
        self._n = 0
        if mid < self.min_mid_share * total:
            return False  # nothing near the cutoff to compare with
        self.last_ratio = high / mid
        if self.last_ratio >= self.max_ratio:
            self.band_limited = False
            return False
        self.band_limited_periods += 1
        if not self.band_limited:
            self.band_limited = True
            self.warnings += 1
            if self.log:
                _log.warning("audio input has almost no energy above %.0f Hz (%.1e of the band below it, over %.0f s):"
                             " an 8 kHz source (a phone, a cheap microphone) resampled up? The models expect 16 kHz"
                             " audio and are less accurate on band-limited sound",
                             self.cutoff_hz, self.last_ratio, self.period_samples / self.rate)
        return True
