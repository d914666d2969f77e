from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgefusion.package import BUILTIN_DIR

REPO = Path(__file__).resolve().parents[1]
#: third-party files the tests read, copied in with their licences: tests read nothing outside the repository
TEST_DATA = REPO / "tests" / "data"


@pytest.fixture(scope="session")
def local_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped corpus list's ``local`` files, prepared once (no network, no Debian tools needed): train = a
    bell and a spoken 'yes', held out = a spoken 'no' and Speech Commands' background noise. Read-only: a test
    that edits it works on a copy."""
    pytest.importorskip("soundfile")
    from export import corpus

    cache = tmp_path_factory.mktemp("corpus")
    corpus.prepare(cache, only=["local"], progress=False)
    return cache


@pytest.fixture
def pkg_copy(tmp_path: Path) -> Path:
    """A writable copy of the built-in smart_home package."""
    dst = tmp_path / "pkg"
    shutil.copytree(BUILTIN_DIR / "smart_home", dst)
    return dst


import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import numpy as np  # noqa: E402

from edgefusion.samples import AudioChunk, Frame  # noqa: E402
from edgefusion.sources import Source  # noqa: E402
from edgefusion.sources.base import pace_until  # noqa: E402


class Ticker(Source):
    """Random frames (and optionally audio) at ``fps``, paced in real time or not; a test source."""

    name = "camera"
    drives_run = True

    def __init__(self, n: int, fps: float = 30.0, pace: bool = True, audio: bool = True, seed: int = 0,
                 gap_after: int | None = None, gap_s: float = 0.0, fail_open: bool = False,
                 fail_after: int | None = None) -> None:
        super().__init__()
        self.n, self.fps, self.pace, self.audio = n, fps, pace, audio
        self.rng = np.random.default_rng(seed)
        self.gap_after, self.gap_s = gap_after, gap_s
        self.fail_open, self.fail_after = fail_open, fail_after
        self.frames_out = 0

    def open(self) -> None:
        if self.fail_open:
            raise OSError("camera unplugged (test)")

    def __iter__(self) -> Iterator:
        period = int(1e9 / self.fps)
        t0 = time.monotonic_ns()
        img = self.rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        delay = 0
        for i in range(self.n):
            if self.stop.is_set():
                return
            if self.fail_after is not None and i == self.fail_after:
                raise RuntimeError("read failed (test)")
            if self.gap_after is not None and i == self.gap_after:
                delay = int(self.gap_s * 1e9)
            t = t0 + i * period + delay
            if self.pace and not pace_until(self.stop, t):
                return
            if self.audio:
                yield AudioChunk(t_ns=t - period, samples=np.zeros(16000 // int(self.fps), np.float32),
                                 sample_rate=16000, source="audio")
            self.frames_out += 1
            yield Frame(t_ns=t, image=img, source="camera")


def our_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("source-", "fusion-", "sinks"))]
