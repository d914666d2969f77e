"""Bounds on what a log's author controls: a decoded sample past them is refused, never allocated.

Example:
    >>> MAX_IMAGE_BYTES >> 20
    256
"""

from __future__ import annotations

__all__ = ["MAX_AUDIO_CHANNELS", "MAX_IMAGE_BYTES", "MAX_SAMPLE_RATE", "MAX_SIDE", "MAX_TIME_NS"]

#: a decoded image may hold at most this many bytes (8K video is ~100 MB; a lie is a memory bomb)
MAX_IMAGE_BYTES = 256 << 20
MAX_SIDE = 16384
MAX_AUDIO_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000
#: sample times are int64 nanoseconds on the pipeline's clocks
MAX_TIME_NS = 2**63 - 1
