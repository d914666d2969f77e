"""Sources from URIs: what ``run``, ``record`` and ``serve`` accept for each stream.

- camera: a device index (``0``), a video file, a stream URL (``rtsp://…``), a GStreamer
  pipeline ending in ``appsink``, or ``synth:SCENARIO`` (a synthesized scenario timeline,
  which also carries that scenario's audio and commands);
- audio: ``default`` or ``device:N`` (a microphone), audio files separated by commas
  (played back to back), or ``none``;
- text: ``stdin``, ``tcp://HOST:PORT``, ``unix:///PATH`` or ``none``.

Each function returns a *factory*: a callable that builds a fresh, unopened source. A run
calls it once; a service hands it to :class:`~edgefusion.sources.retry.RetryingSource`,
which calls it again after a failure. Work that should happen once (synthesizing a
timeline, parsing the URI) happens when the factory is made, not on every reopen.

Example:
    >>> audio_factory("none") is None
    True
    >>> audio_factory("device:2")().device
    2
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from edgefusion.clock import Clock
from edgefusion.errors import ConfigError
from edgefusion.scenarios import generate_timeline, get_scenario
from edgefusion.sources.audio import AudioFileSource, MicrophoneSource
from edgefusion.sources.base import Source
from edgefusion.sources.camera import CameraSource
from edgefusion.sources.text import open_text_source
from edgefusion.sources.timeline import TimelineSource

__all__ = ["SYNTH_SECONDS", "SYNTH_SEED", "SourceFactory", "audio_factory", "camera_factory", "text_factory"]

SourceFactory = Callable[[], Source]

#: a ``synth:SCENARIO`` camera plays this much of the scenario (looped with ``loop``)
SYNTH_SECONDS = 20.0
SYNTH_SEED = 1


def camera_factory(uri: str, pace: bool = True, loop: bool = False,
                   max_frames: int | None = None, clock: Clock | None = None) -> SourceFactory:
    """The camera stream: ``CameraSource`` for devices, files, URLs and GStreamer; a timeline for ``synth:``.

    Args:
        uri: see the module docstring.
        pace: files and timelines in real time (default) or as fast as the pipeline takes them.
        loop: files and timelines start again at their end.
        max_frames: stop after this many frames (not for ``synth:``; bound it by time instead).
        clock: where the source reads its start time (default: monotonic).

    Raises:
        ConfigError: an unknown scenario, or ``max_frames`` with ``synth:``.
    """
    if uri.startswith("synth:"):
        if max_frames is not None:
            raise ConfigError(f"camera {uri!r}: a frame limit applies to cameras and video files, not to a "
                              "synthesized timeline; bound the run by its duration instead")
        timeline = generate_timeline(get_scenario(uri.split(":", 1)[1]), SYNTH_SECONDS, seed=SYNTH_SEED)
        # an endless loop that is not paced would only spin the CPU: a loop is always real time
        # paced, it stands in for a live camera: its samples go on the live clock, as a typed command's do
        return lambda: TimelineSource(timeline, clock=clock, pace=pace or loop, loop=loop, live=pace or loop)
    return lambda: CameraSource(uri, clock=clock, pace=pace, loop=loop, max_frames=max_frames)


def audio_factory(uri: str, pace: bool = True, loop: bool = False, clock: Clock | None = None) -> SourceFactory | None:
    """The audio stream, or None for ``none``: a microphone (``default``, ``device:N``) or audio files."""
    if uri == "none":
        return None
    if uri == "default" or uri.startswith("device:"):
        name = uri.partition(":")[2] or None
        device: str | int | None = int(name) if name and name.isdigit() else name
        return lambda: MicrophoneSource(device)
    files: list[str | Path] = [p for p in uri.split(",") if p]
    return lambda: AudioFileSource(files, clock=clock, pace=pace, loop=loop)


def text_factory(uri: str) -> SourceFactory | None:
    """The command stream, or None for ``none``: stdin, a TCP port or a UNIX socket."""
    if uri == "none":
        return None
    return lambda: open_text_source(uri)
