"""Camera frames through OpenCV ``VideoCapture``.

``spec`` may be a device index (``0``, V4L2 on Linux), a video file, a stream URL
(``rtsp://…``, ``http://…``) or a GStreamer pipeline ending in ``appsink`` (the Jetson
CSI path: ``nvarguscamerasrc ! … ! appsink``). A device path (``/dev/video0``) counts as
a device.

Only a file ends: when reading fails, a file is over (container metadata such as the
frame count is reported but not trusted; an early end is normal). A live source (device,
URL, GStreamer) has no end: a failed read means the camera was unplugged or the stream
dropped, and raises :class:`~edgefusion.errors.SourceError` so that a
:class:`~edgefusion.sources.retry.RetryingSource` reconnects (the service) or the run
stops with the reason (the CLI). Streams are opened with bounded open and read timeouts,
so a dead network peer is noticed in seconds rather than never.

Example:
    >>> [_kind(s) for s in ("0", "/dev/video2", "rtsp://cam/1", "clip.mp4", "videotestsrc ! appsink")]
    ['device', 'device', 'url', 'file', 'gstreamer']
    >>> redact_uri("rtsp://admin:secret@10.0.0.5/stream")
    'rtsp://admin:***@10.0.0.5/stream'
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import cv2

from edgefusion.clock import Clock
from edgefusion.errors import InputError, SourceError
from edgefusion.samples import Frame
from edgefusion.sources.base import Source, pace_until

__all__ = ["STREAM_TIMEOUT_MS", "CameraSource", "redact_uri"]

#: open and read timeout of network streams (FFmpeg): a silent peer is a lost stream after this long
STREAM_TIMEOUT_MS = 5000
_CREDENTIALS = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*):[^@/]*@")


def redact_uri(uri: str) -> str:
    """The URI with the password of ``scheme://user:password@host`` replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1:***@", uri)


def _kind(spec: str) -> str:
    if spec.isdigit() or re.fullmatch(r"/dev/video\d+", spec):
        return "device"
    if "!" in spec:
        return "gstreamer"
    if "://" in spec:
        return "url"
    return "file"


class CameraSource(Source):
    """Frames from a camera, file, URL or GStreamer pipeline.

    Args:
        spec: what to open (see module docstring).
        pace: for files, deliver frames at the file's own rate (default) or as fast as
            possible (``False``). Live sources are always real time.
        width, height, fps: requested capture settings (devices); the actual values are
            reported in :attr:`info`.
        max_frames: stop after this many frames.
        loop: for files, start again at the end (time keeps increasing).
    """

    name = "camera"
    drives_run = True

    def __init__(self, spec: str | int, clock: Clock | None = None, pace: bool = True, width: int | None = None,
                 height: int | None = None, fps: float | None = None, max_frames: int | None = None,
                 name: str = "camera", loop: bool = False) -> None:
        super().__init__(clock)
        self.spec = str(spec)
        self.kind = _kind(self.spec)
        self.pace = pace
        self.requested = {"width": width, "height": height, "fps": fps}
        self.max_frames = max_frames
        self.name = name
        self.loop = loop and self.kind == "file"
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        if self.kind == "file" and not Path(self.spec).is_file():
            raise SourceError(f"camera: video file {self.spec} does not exist")
        if self.kind == "device":
            cap = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
        elif self.kind == "gstreamer":
            if "GStreamer:                   YES" not in cv2.getBuildInformation():
                raise SourceError("camera: this OpenCV build has no GStreamer support (opencv-python-headless "
                                 "from PyPI is built without it); on Jetson use the system OpenCV from JetPack")
            cap = cv2.VideoCapture(self.spec, cv2.CAP_GSTREAMER)
        elif self.kind == "url":
            cap = cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                               cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            raise SourceError(f"camera: OpenCV could not open {self.kind} '{redact_uri(self.spec)}'")
        for prop, key in ((cv2.CAP_PROP_FRAME_WIDTH, "width"), (cv2.CAP_PROP_FRAME_HEIGHT, "height"),
                          (cv2.CAP_PROP_FPS, "fps")):
            if self.requested[key]:
                cap.set(prop, float(self.requested[key]))  # type: ignore[arg-type]
        fps = cap.get(cv2.CAP_PROP_FPS)
        actual = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                  "fps": fps}
        self.info = {
            "kind": self.kind, "spec": redact_uri(self.spec), "requested": self.requested, "actual": actual,
            "container_frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), "frames_read": 0,
        }
        self._cap = cap

    def __iter__(self) -> Iterator[Frame]:
        cap = self._cap
        if cap is None:
            raise InputError("camera: iterate inside 'with source:' (it is not open)")
        fps = self.info["actual"]["fps"]
        period_ns = int(1e9 / fps) if fps and 1 <= fps <= 240 else int(1e9 / 30)
        start_clock = self.clock.now_ns()
        start_mono = time.monotonic_ns()
        n = 0
        last_t = None
        base = 0  # offset of the current pass through a looped file
        while not self.stop.is_set() and (self.max_frames is None or n < self.max_frames):
            ok, img = cap.read()
            if not ok or img is None:
                if self.loop and last_t is not None:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    base = last_t - start_clock + period_ns
                    continue
                if self.kind != "file" and not self.stop.is_set():
                    raise SourceError(f"camera: lost the {self.kind} '{redact_uri(self.spec)}' (a read failed after "
                                      f"{n} frames)")
                break  # the end of a file: normal, whatever the container claimed
            if self.kind == "file":
                pos_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                offset = base + (int(pos_ms * 1e6) if pos_ms > 0 else 0)
                if last_t is not None and start_clock + offset <= last_t:
                    offset = last_t - start_clock + period_ns  # metadata went backwards: keep time monotonic
                if self.pace and not pace_until(self.stop, start_mono + offset):
                    break
                t = start_clock + offset
            else:
                t = self.clock.now_ns()
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            last_t = t
            n += 1
            self.info["frames_read"] = n
            yield Frame(t_ns=t, image=img, source=self.name)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
