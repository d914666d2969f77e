"""Sources: camera (OpenCV), audio (soundfile / sounddevice), text (stdin, TCP, UNIX socket,
Python call), and synthesized timelines. Each is a context manager yielding samples.
"""

from __future__ import annotations

from edgefusion.sources.audio import AudioFileSource, MicrophoneSource
from edgefusion.sources.base import Sample, Source
from edgefusion.sources.camera import CameraSource
from edgefusion.sources.text import CallTextSource, SocketTextSource, StdinTextSource, open_text_source, sanitize
from edgefusion.sources.timeline import TimelineSource


def __getattr__(name: str) -> object:
    # ReplaySource needs the optional 'mcap' extra: imported on first use only
    if name == "ReplaySource":
        from edgefusion.sources.replay import ReplaySource

        return ReplaySource
    raise AttributeError(f"module 'edgefusion.sources' has no attribute {name!r}")


__all__ = [
    "AudioFileSource",
    "CallTextSource",
    "CameraSource",
    "MicrophoneSource",
    "ReplaySource",
    "Sample",
    "SocketTextSource",
    "Source",
    "StdinTextSource",
    "TimelineSource",
    "open_text_source",
    "sanitize",
]
