"""ROS 2 messages in (CDR): camera images, audio and text commands from the bags robots record.

A ROS 2 bag in MCAP carries each type's message definition (``ros2msg`` schema); the
``mcap-ros2-support`` library turns it into a CDR decoder, so types defined outside the core
packages (``audio_common_msgs``) decode as well as ``sensor_msgs``. Every field that reaches a
sample is checked as for our own logs; anything else is one line naming the message.

``audio_common_msgs/msg/AudioData`` carries no format: it is read as 16 kHz mono 16-bit
little-endian PCM (the ``audio_capture`` default); ``AudioStamped`` carries its rate and
channels and is read as it says.

Example:
    >>> from edgefusion.logs.reader import LogMessage
    >>> from mcap_ros2._dynamic import serialize_dynamic
    >>> enc = serialize_dynamic("std_msgs/msg/String", "string data")["std_msgs/msg/String"]
    >>> m = LogMessage("/cmd", "std_msgs/msg/String", "cdr", 7, 7, enc({"data": "lights on"}),
    ...                schema_data=b"string data")
    >>> decode_cdr(m, "text").text
    'lights on'
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgefusion.errors import MissingDependencyError
from edgefusion.logs.foxproto import image_from, pcm_chunk
from edgefusion.logs.limits import MAX_IMAGE_BYTES, MAX_TIME_NS
from edgefusion.samples import AudioChunk, Command, Frame

if TYPE_CHECKING:
    from edgefusion.logs.reader import LogMessage

__all__ = ["AUDIO_DATA_RATE", "decode_cdr"]

log = logging.getLogger("edgefusion.logs")
#: the format assumed for AudioData, which carries none
AUDIO_DATA_RATE = 16_000
#: pyaudio sample formats used by audio_common_msgs/AudioInfo: (array field, scale to [-1, 1]); uint8 (32) is not
#: read: the library does not bound-check byte arrays, and here it is not the message's last field
_PA_FORMATS = {1: ("float32_data", 1.0), 2: ("int32_data", 2.0**31), 8: ("int16_data", 2.0**15),
               16: ("int8_data", 2.0**7)}

_decoders: dict[tuple[str, bytes], Callable[[bytes], Any]] = {}
_warned: set[str] = set()


def _decoder(name: str, definition: bytes) -> Callable[[bytes], Any]:
    key = (name, definition)
    if key not in _decoders:
        try:
            from mcap_ros2._dynamic import generate_dynamic
        except ImportError as exc:
            raise MissingDependencyError("mcap_ros2", "ros2", "Replaying ROS 2 bags (CDR messages)") from exc
        try:
            types = generate_dynamic(name, definition.decode("utf-8"))
        except Exception as exc:  # the library's parser raises many kinds on a bad definition
            raise ValueError(f"the bag's definition of {name} cannot be parsed ({type(exc).__name__}: "
                             f"{str(exc)[:120]})") from exc
        if name not in types:
            raise ValueError(f"the bag's schema does not define {name}")
        if len(_decoders) > 256:  # a hostile bag with endless schemas costs no memory
            _decoders.clear()
        _decoders[key] = types[name]
    return _decoders[key]


def decode_cdr(m: LogMessage, source: str | None) -> Frame | AudioChunk | Command:
    """The sample of a CDR-encoded message of a supported type.

    Raises:
        ValueError: the bytes do not decode, or a field is out of range (the caller adds where).
    """
    if len(m.data) > MAX_IMAGE_BYTES + 4096:
        raise ValueError(f"message of {len(m.data)} bytes is over {MAX_IMAGE_BYTES >> 20} MiB")
    try:
        msg = _decoder(m.schema, m.schema_data)(m.data)
    except ValueError:
        raise
    except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError from a torn message
        raise ValueError(f"not a CDR {m.schema} ({type(exc).__name__}: {str(exc)[:120]})") from exc
    kind = m.schema.rsplit("/", 1)[-1]
    if kind == "String":
        return Command(t_ns=m.publish_time_ns, text=_text(msg.data), source=source or "text")
    t = _stamp(getattr(msg, "header", None), m.publish_time_ns)
    if kind == "Image":
        w, h = int(msg.width), int(msg.height)
        if msg.is_bigendian and msg.encoding not in ("bgr8", "rgb8", "bgra8", "rgba8", "mono8"):
            raise ValueError("big-endian multi-byte pixels are not supported")
        img = image_from(str(msg.encoding), w, h, int(msg.step), _tail(m.data, msg.data))
        return Frame(t_ns=t, image=img, source=source or "camera")
    if kind == "CompressedImage":
        data = _tail(m.data, msg.data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if decoded is None:
            raise ValueError(f"a {str(msg.format)[:30]!r} image could not be decoded")
        return Frame(t_ns=t, image=np.asarray(decoded, np.uint8), source=source or "camera")
    if kind == "AudioStamped":
        return _audio_stamped(msg, t, source)
    return _audio_data(msg, m, source)


def _tail(raw: bytes, data: Any) -> bytes:
    """``data``, the message's last field (a byte array), checked against its length prefix.

    The library slices a byte array without checking that the message holds as many bytes as
    its length prefix claims: a torn message would come back shorter, quietly. Here the prefix
    must match and the array must end the message (CDR pads to at most 4 bytes).
    """
    data = bytes(data)
    fmt = "<I" if len(raw) > 1 and raw[1] & 1 else ">I"  # the encapsulation header's endianness bit
    for pad in range(4):
        pos = len(raw) - pad - len(data)
        if pos >= 8 and struct.unpack_from(fmt, raw, pos - 4)[0] == len(data) and raw[pos:pos + len(data)] == data:
            return data
    raise ValueError(f"its data field is torn: the length prefix does not match the {len(raw)} bytes of the "
                     "message (or the bag's definition puts fields after it)")


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"data must be a string, got {type(v).__name__}")
    return v


def _stamp(header: Any, fallback: int) -> int:
    """The header's stamp (the capture time), or the message's publish time when it is unset."""
    stamp = getattr(header, "stamp", None)
    if stamp is None or (stamp.sec == 0 and stamp.nanosec == 0):
        return fallback
    if stamp.sec < 0 or not 0 <= stamp.nanosec < 10**9:
        raise ValueError(f"header stamp {stamp.sec} s {stamp.nanosec} ns is not a time after 1970")
    t = int(stamp.sec) * 10**9 + int(stamp.nanosec)
    if t > MAX_TIME_NS:
        raise ValueError(f"time {t} ns is outside 0 .. 2**63-1")
    return t


def _audio_data(msg: Any, m: LogMessage, source: str | None) -> AudioChunk:
    """``AudioData``: ``uint8[] data`` (audio_common) or typed arrays (audio_common 4); no format in either."""
    if m.schema not in _warned:
        _warned.add(m.schema)
        log.warning("%s carries no sample format: read as %d Hz mono 16-bit PCM", m.schema, AUDIO_DATA_RATE)
    if hasattr(msg, "data"):
        return pcm_chunk(_tail(m.data, msg.data), m.publish_time_ns, AUDIO_DATA_RATE, 1, source)
    return _typed(msg, 8, AUDIO_DATA_RATE, 1, m.publish_time_ns, source)


def _audio_stamped(msg: Any, t: int, source: str | None) -> AudioChunk:
    """``AudioStamped``: a header and ``audio`` with ``info`` (format, channels, rate) and typed arrays."""
    audio: Any = getattr(msg, "audio", None)
    info = getattr(audio, "info", None)
    if info is None:
        raise ValueError("AudioStamped without audio.info (format, channels, rate) is not supported")
    return _typed(audio.audio_data, int(info.format), int(info.rate), int(info.channels), t, source)


def _typed(data: Any, fmt: int, rate: int, channels: int, t: int, source: str | None) -> AudioChunk:
    if fmt not in _PA_FORMATS:
        raise ValueError(f"audio format {fmt} is not supported ({sorted(_PA_FORMATS)} are: float32, int32, int16, "
                         "int8)")
    name, scale = _PA_FORMATS[fmt]
    values = getattr(data, name, None)
    if values is None:
        raise ValueError(f"audio data has no {name}")
    x = np.asarray(values, dtype=np.float32)
    if channels < 1 or x.size % channels:
        raise ValueError(f"{x.size} samples is not a whole number of {channels}-channel frames")
    x = (x / np.float32(scale)).astype(np.float32)
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return pcm_chunk(pcm, t, rate, channels, source)
