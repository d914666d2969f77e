"""A failing source is reopened with backoff while the rest keeps running."""

import numpy as np

from edgefusion.errors import InputError
from edgefusion.samples import Frame
from edgefusion.sources import RetryingSource, Source


class Flaky(Source):
    name = "camera"

    def __init__(self, attempt: int) -> None:
        super().__init__()
        self.attempt = attempt

    def open(self) -> None:
        if self.attempt < 2:
            raise InputError("camera: OpenCV could not open device '0' (test)")

    def __iter__(self):
        for i in range(3):
            yield Frame(t_ns=self.attempt * 10 + i, image=np.zeros((2, 2, 3), np.uint8))
        if self.attempt == 2:
            raise OSError("device unplugged (test)")


def test_retrying_source_backs_off_and_recovers():
    attempts = []
    restarts = []

    def factory():
        attempts.append(len(attempts))
        return Flaky(len(attempts) - 1)

    src = RetryingSource(factory, "camera", True, initial_s=0.01, max_s=0.04, on_restart=restarts.append)
    frames = [f.t_ns for f in src]
    assert frames == [20, 21, 22, 30, 31, 32]  # attempts 0 and 1 failed to open, 2 failed mid-stream
    assert restarts == ["camera", "camera", "camera"]
    assert src.failing is None  # recovered, then ended normally


def test_retrying_source_stops_while_waiting():
    import threading
    import time

    def factory():
        raise InputError("gone (test)")

    src = RetryingSource(factory, "audio", False, initial_s=5.0, max_s=5.0)
    threading.Timer(0.2, src.stop.set).start()
    t0 = time.monotonic()
    assert list(src) == []
    assert time.monotonic() - t0 < 1.0 and src.failing and "gone (test)" in src.failing
