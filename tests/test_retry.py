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


def test_a_config_error_is_not_retried():
    import pytest

    from edgefusion.errors import ConfigError

    calls = []

    def factory():
        calls.append(1)
        raise ConfigError("text: expected tcp://HOST:PORT, got 'tcp://x' (test)")

    src = RetryingSource(factory, "text", False, initial_s=0.01, max_s=0.01)
    with pytest.raises(ConfigError, match="expected tcp://HOST:PORT"):
        list(src)
    assert calls == [1] and src.state == "ended"


def test_states_and_one_warning_per_outage(caplog):
    import logging

    states = []

    def factory():
        n = len(states)
        states.append(n)
        if n in (1, 2, 3):
            raise InputError("camera: OpenCV could not open device '0' (test)")
        return Flaky(2 if n == 0 else 3)

    src = RetryingSource(factory, "camera", True, initial_s=0.01, max_s=0.02)
    assert src.state == "connecting"
    seen = []
    with caplog.at_level(logging.DEBUG, logger="edgefusion.sources.retry"):
        for _ in src:
            seen.append((src.state, src.failing, src.failures))
    assert seen[0] == ("streaming", None, 0)
    assert seen[3] == ("streaming", None, 4)  # one read failure and three failed opens, then frames again
    assert src.state == "ended"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    # the read failure and the first failed open are worth a warning; the same open failure again is not
    assert len(warnings) == 2, [r.getMessage() for r in warnings]
    assert sum("still failing" in r.getMessage() for r in caplog.records) == 2


def test_a_live_camera_stream_that_drops_raises_instead_of_ending():
    import pytest
    from serve_kit import MjpegServer

    from edgefusion.errors import SourceError
    from edgefusion.sources import CameraSource

    stream = MjpegServer()
    try:
        got = 0
        with CameraSource(stream.url) as cam, pytest.raises(SourceError, match="camera: lost the url"):
            assert cam.kind == "url"
            for _frame in cam:
                got += 1
                if got == 10:
                    stream.cut.set()  # the camera goes away: a live source must not just end
        assert got >= 10
    finally:
        stream.close()


def test_an_unplugged_device_raises_and_a_file_ends(monkeypatch, tmp_path):
    import cv2
    import pytest

    from edgefusion.errors import SourceError
    from edgefusion.sources import CameraSource

    class Capture:  # a V4L2 camera that is unplugged after 5 frames: read() starts failing
        def __init__(self, *args):
            self.n = 0

        def isOpened(self):
            return True

        def get(self, prop):
            return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def set(self, prop, value):
            return True

        def read(self):
            self.n += 1
            return (True, np.zeros((4, 4, 3), np.uint8)) if self.n <= 5 else (False, None)

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", Capture)
    for spec in ("0", "/dev/video2"):
        with CameraSource(spec) as cam, pytest.raises(SourceError, match=f"camera: lost the device '{spec}'"):
            assert cam.kind == "device"
            list(cam)
    clip = tmp_path / "clip.avi"
    clip.write_bytes(b"")  # a file: its reads failing is its end, not an error
    with CameraSource(clip, pace=False) as cam:
        assert len(list(cam)) == 5
