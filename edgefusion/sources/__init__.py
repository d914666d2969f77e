"""Sources: camera (OpenCV), audio (soundfile / sounddevice), text (stdin, TCP, UNIX socket,
Python call), synthesized timelines and replayed logs. Each is a context manager yielding samples.

:mod:`edgefusion.sources.uri` builds them from the URIs the CLI and the service config
accept; :class:`RetryingSource` reopens a failed one with backoff.
"""

from __future__ import annotations

from edgefusion.sources.audio import AudioFileSource, MicrophoneSource
from edgefusion.sources.base import Sample, Source
from edgefusion.sources.camera import CameraSource
from edgefusion.sources.retry import RetryingSource, RetryPolicy
from edgefusion.sources.text import CallTextSource, SocketTextSource, StdinTextSource, open_text_source, sanitize
from edgefusion.sources.timeline import TimelineSource
from edgefusion.sources.uri import SourceFactory, audio_factory, camera_factory, text_factory


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
    "RetryPolicy",
    "RetryingSource",
    "Sample",
    "SocketTextSource",
    "Source",
    "SourceFactory",
    "StdinTextSource",
    "TimelineSource",
    "audio_factory",
    "camera_factory",
    "open_text_source",
    "sanitize",
    "text_factory",
]
