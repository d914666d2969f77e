"""Audio: files through ``soundfile`` (WAV, FLAC, OGG, any rate and channel count) and a
microphone through ``sounddevice``. Both are optional extras, imported on first use.

Output: mono float32 chunks at ``rate`` (the model rate by default), resampled without
seams by :class:`~edgefusion.preprocess.audio.StreamResampler`.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.clock import Clock
from edgefusion.errors import InputError, MissingDependencyError, SourceError
from edgefusion.preprocess.audio import StreamResampler
from edgefusion.samples import AudioChunk
from edgefusion.sources.base import Source, pace_until

__all__ = ["AudioFileSource", "MicrophoneSource"]

SECOND = 1_000_000_000


def _soundfile() -> Any:
    try:
        import soundfile
    except ImportError as exc:
        raise MissingDependencyError("soundfile", "audio", "reading audio files") from exc
    return soundfile


class AudioFileSource(Source):
    """Chunks of an audio file, paced in real time by default.

    Args:
        path: WAV, FLAC, OGG (anything libsndfile reads), or a list of files played back to back.
        rate: output sample rate (default 16000).
        chunk_ms: chunk length (default 50 ms).
        pace: deliver each chunk when it would have been complete live (default), or at once.
        loop: start again at the end (for long runs on short files).
    """

    name = "audio"

    def __init__(self, path: str | Path | list[str | Path], clock: Clock | None = None, rate: int = 16000,
                 chunk_ms: int = 50, pace: bool = True, loop: bool = False, name: str = "audio") -> None:
        super().__init__(clock)
        self.paths = [Path(p) for p in (path if isinstance(path, list) else [path])]
        self.rate, self.chunk_ms, self.pace, self.loop, self.name = rate, chunk_ms, pace, loop, name
        self._files: list[Any] = []

    def open(self) -> None:
        sf = _soundfile()
        if not self.paths:
            raise SourceError("audio: no audio file given")
        for p in self.paths:
            if not p.is_file():
                self.close()
                raise SourceError(f"audio: file {p} does not exist")
            try:
                self._files.append(sf.SoundFile(str(p)))
            except (RuntimeError, sf.LibsndfileError) as exc:
                self.close()
                raise SourceError(f"audio: cannot read {p}: {exc}") from exc
        self.info = {"files": [{"path": str(p), "rate_in": f.samplerate, "channels": f.channels, "format": f.format}
                               for p, f in zip(self.paths, self._files)], "rate_out": self.rate, "chunks": 0}

    def __iter__(self) -> Iterator[AudioChunk]:
        if not self._files:
            raise InputError("audio: iterate inside 'with source:' (it is not open)")
        t0, mono0 = self.clock.now_ns(), time.monotonic_ns()
        sent = 0
        i = 0
        res = StreamResampler(self._files[0].samplerate, self.rate)
        while not self.stop.is_set():
            f = self._files[i]
            data = f.read(max(1, f.samplerate * self.chunk_ms // 1000), dtype="float32", always_2d=True)
            if len(data):
                out = res.process(data.mean(axis=1))
            else:  # this file is done: flush its resampler, go to the next (or around)
                out = res.flush()
                i += 1
                if i == len(self._files):
                    if not self.loop:
                        i = -1
                    else:
                        i = 0
                        for g in self._files:
                            g.seek(0)
                if i >= 0:
                    res = StreamResampler(self._files[i].samplerate, self.rate)
            if len(out):
                t = t0 + sent * SECOND // self.rate
                sent += len(out)
                if self.pace and not pace_until(self.stop, mono0 + sent * SECOND // self.rate):
                    return
                self.info["chunks"] += 1
                yield AudioChunk(t_ns=t, samples=out.astype(np.float32), sample_rate=self.rate, source=self.name)
            if i < 0:
                return

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._files = []


class MicrophoneSource(Source):
    """The default (or a named) input device through ``sounddevice``; mono at ``rate``."""

    name = "audio"

    def __init__(self, device: str | int | None = None, clock: Clock | None = None, rate: int = 16000,
                 chunk_ms: int = 50, name: str = "audio") -> None:
        super().__init__(clock)
        self.device, self.rate, self.chunk_ms, self.name = device, rate, chunk_ms, name
        self._q: queue.Queue[tuple[int, np.ndarray]] = queue.Queue(maxsize=200)
        self._stream: Any = None

    def open(self) -> None:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise MissingDependencyError("sounddevice", "audio", "microphone capture") from exc

        def callback(indata: np.ndarray, frames: int, t: Any, status: Any) -> None:
            now = self.clock.now_ns() - frames * SECOND // self.rate  # time of the first sample
            try:
                self._q.put_nowait((now, indata.mean(axis=1).astype(np.float32)))
            except queue.Full:
                self.rejected["queue_full"] += 1

        try:
            self._stream = sd.InputStream(device=self.device, samplerate=self.rate, channels=1,
                                          blocksize=self.rate * self.chunk_ms // 1000, callback=callback)
            self._stream.start()
        except Exception as exc:  # PortAudio raises its own error types
            raise SourceError(f"microphone: cannot open device {self.device or 'default'}: {exc}") from exc
        self.info = {"device": self.device or "default", "rate": self.rate}

    def __iter__(self) -> Iterator[AudioChunk]:
        while not self.stop.is_set():
            try:
                t, x = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            yield AudioChunk(t_ns=t, samples=x, sample_rate=self.rate, source=self.name)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
