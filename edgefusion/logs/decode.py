"""Decoding log messages into samples, checking every field a log's author controls.

A log is untrusted input: a negative width, zero audio channels, a timestamp of the year
300 million or a base64 string that is not one must each be one clear line (naming the
topic, the log time and the byte offset of the record that holds the message), never a
traceback, and never a sample that is quietly wrong.

Example:
    >>> from edgefusion.logs.reader import LogMessage
    >>> m = LogMessage("/text", "edgefusion.Command", "json", 5, 5, b'{"text": "lights on"}', offset=4242)
    >>> decode(m).text
    'lights on'
    >>> decode(LogMessage("/text", "edgefusion.Command", "json", 5, 5, b'{"text": 3}', offset=4242))
    Traceback (most recent call last):
    ...
    edgefusion.errors.InputError: /text message at log time 5 ns (record at byte 4242): text must be a string, got int
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edgefusion.errors import InputError
from edgefusion.logs.limits import MAX_AUDIO_CHANNELS, MAX_IMAGE_BYTES, MAX_SAMPLE_RATE, MAX_SIDE, MAX_TIME_NS
from edgefusion.samples import AudioChunk, Command, Frame, SpokenCommand

if TYPE_CHECKING:
    from edgefusion.logs.reader import LogMessage

__all__ = ["CODECS", "MAX_IMAGE_BYTES", "SUPPORTED", "decode", "register", "stream_of", "supported_for"]

#: schema name -> the stream it feeds, for JSON-encoded messages (the previous format's sensor channels included)
SUPPORTED = {
    "foxglove.RawImage": "camera",
    "foxglove.CompressedImage": "camera",
    "foxglove.RawAudio": "audio",
    "edgefusion.Command": "text",
    "edgefusion.Speech": "speech",
    "edgefusion.Result": "results",
    "edgefusion.Truth": "truth",
    "edgefusion.Label": "labels",
}

#: (message encoding, schema name) -> the stream it feeds. Another stage adds its channels with :func:`register`.
CODECS: dict[tuple[str, str], str] = {
    **{("json", s): k for s, k in SUPPORTED.items()},
    ("protobuf", "foxglove.RawImage"): "camera",
    ("protobuf", "foxglove.CompressedImage"): "camera",
    ("protobuf", "foxglove.RawAudio"): "audio",
    ("protobuf", "foxglove.Log"): "log",
    # ROS 2 bags (CDR, decoded with the message definition the bag carries: edgefusion.logs.ros2)
    ("cdr", "sensor_msgs/msg/Image"): "camera",
    ("cdr", "sensor_msgs/msg/CompressedImage"): "camera",
    ("cdr", "std_msgs/msg/String"): "text",
    ("cdr", "audio_common_msgs/msg/AudioData"): "audio",
    ("cdr", "audio_common_msgs/msg/AudioStamped"): "audio",
}


def register(encoding: str, schema: str, stream: str) -> None:
    """Declare that JSON messages of ``schema`` feed ``stream`` (read back as their dict, like results).

    Example:
        >>> register("json", "edgefusion.Example", "example"); stream_of("edgefusion.Example", "json")
        'example'
        >>> del CODECS[("json", "edgefusion.Example")]
    """
    if encoding != "json":
        raise ValueError("only JSON-encoded channels can be registered; sensor decoders are built in")
    CODECS[(encoding, schema)] = stream


def stream_of(schema: str, encoding: str) -> str | None:
    """The stream a channel feeds, or None when EdgeFusion cannot decode it."""
    return CODECS.get((encoding, schema))


def supported_for(stream: str) -> list[str]:
    """What a stream can be read from, as 'schema (encoding)', for an error line."""
    return [f"{s} ({e})" for (e, s), k in CODECS.items() if k == stream]


def _int(msg: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = msg.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ValueError(f"{key} must be an integer from {lo} to {hi}, got {v!r}")
    return v


def _str(msg: dict[str, Any], key: str) -> str:
    v = msg.get(key)
    if not isinstance(v, str):
        raise ValueError(f"{key} must be a string, got {type(v).__name__}")
    return v


def _strings(msg: dict[str, Any], key: str) -> list[str]:
    v = msg.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"{key} must be a list of strings, got {v!r:.80}")
    return v


def _bytes(msg: dict[str, Any], limit: int) -> bytes:
    s = msg.get("data")
    if not isinstance(s, str):
        raise ValueError(f"data must be a base64 string, got {type(s).__name__}")
    if len(s) > limit * 4 // 3 + 4:
        raise ValueError(f"data holds more than {limit} bytes")
    try:
        return base64.b64decode(s, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"data is not base64 ({exc})") from exc


def _time(msg: dict[str, Any], publish_ns: int) -> int:
    """The sample's own time: ``timestamp`` ({sec, nsec}) or the message's publish time."""
    if "timestamp" not in msg:
        t = publish_ns
    else:
        ts = msg["timestamp"]
        if not isinstance(ts, dict):
            raise ValueError(f"timestamp must be {{sec, nsec}}, got {ts!r:.80}")
        t = _int(ts, "sec", 0, MAX_TIME_NS // 10**9, 0) * 10**9 + _int(ts, "nsec", 0, 10**9 - 1, 0)
    if not 0 <= t <= MAX_TIME_NS:
        raise ValueError(f"time {t} ns is outside 0 .. 2**63-1")
    return t


def decode(m: LogMessage, source: str | None = None) -> Frame | AudioChunk | Command | dict[str, Any]:
    """A sample (Frame, AudioChunk, Command) or, for results, truth and labels, the JSON dict.

    Raises:
        InputError: one line naming the message (topic, log time, byte offset) and what is wrong.
    """
    where = m.where()
    if (m.encoding, m.schema) not in CODECS:
        if m.encoding not in {e for e, _ in CODECS}:
            raise InputError(f"{where}: message encoding '{m.encoding}' (schema '{m.schema}') is not supported; "
                             f"EdgeFusion replays {', '.join(sorted(f'{s} ({e})' for e, s in CODECS))}")
        raise InputError(f"{where}: schema '{m.schema}' ({m.encoding}) is not supported; supported: "
                         f"{sorted(s for e, s in CODECS if e == m.encoding)}")
    if m.encoding != "json":
        return _decode_binary(m, source)
    try:
        msg = json.loads(m.data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InputError(f"{where}: not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not isinstance(msg, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(msg).__name__}")
    try:
        return _decode(m, msg, source)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:  # SampleError is an InputError too
        raise InputError(f"{where}: {exc}") from exc
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from exc


def _decode_binary(m: LogMessage, source: str | None) -> Frame | AudioChunk | Command | dict[str, Any]:
    try:
        if m.encoding == "protobuf":
            from edgefusion.logs.foxproto import decode_protobuf

            return decode_protobuf(m, source)
        from edgefusion.logs.ros2 import decode_cdr

        return decode_cdr(m, source)
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise InputError(f"{m.where()}: {exc}") from exc
    except InputError as exc:
        raise InputError(f"{m.where()}: {exc}") from exc


def _decode(m: LogMessage, msg: dict[str, Any], source: str | None) -> Frame | AudioChunk | Command | dict[str, Any]:
    t = _time(msg, m.publish_time_ns)
    if m.schema == "foxglove.RawImage":
        if msg.get("encoding") != "bgr8":
            raise ValueError(f"image encoding {msg.get('encoding')!r} is not supported (bgr8 is)")
        w, h = _int(msg, "width", 1, MAX_SIDE), _int(msg, "height", 1, MAX_SIDE)
        step = _int(msg, "step", w * 3, w * 3, w * 3)  # rows are packed: no padding
        if h * step > MAX_IMAGE_BYTES:
            raise ValueError(f"a {w}x{h} image is over {MAX_IMAGE_BYTES >> 20} MiB")
        data = _bytes(msg, MAX_IMAGE_BYTES)
        if len(data) != h * step:
            raise ValueError(f"a {w}x{h} bgr8 image needs {h * step} bytes, data has {len(data)}")
        img = np.frombuffer(data, np.uint8).reshape(h, w, 3)
        return Frame(t_ns=t, image=img.copy(), source=source or "camera")
    if m.schema == "foxglove.CompressedImage":
        data = _bytes(msg, MAX_IMAGE_BYTES)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if decoded is None:
            raise ValueError(f"a {str(msg.get('format'))[:20]!r} image could not be decoded")
        return Frame(t_ns=t, image=np.asarray(decoded, np.uint8), source=source or "camera")
    if m.schema == "foxglove.RawAudio":
        if msg.get("format") != "pcm-s16":
            raise ValueError(f"audio format {msg.get('format')!r} is not supported (pcm-s16 is)")
        rate = _int(msg, "sample_rate", 1, MAX_SAMPLE_RATE)
        ch = _int(msg, "number_of_channels", 1, MAX_AUDIO_CHANNELS, 1)
        from edgefusion.logs.foxproto import pcm_chunk  # the protobuf channel's own decoder

        return pcm_chunk(_bytes(msg, MAX_IMAGE_BYTES), t, rate, ch, source)
    if m.schema == "edgefusion.Command":
        return Command(t_ns=t, text=_str(msg, "text"), source=source or "text")
    if m.schema == "edgefusion.Speech":
        conf = msg.get("confidence")
        if not isinstance(conf, (int, float)) or isinstance(conf, bool):
            raise ValueError(f"confidence must be a number from 0 to 1, got {conf!r:.40}")
        end = _time({"timestamp": msg["end"]} if "end" in msg else {}, t)
        start = _time({"timestamp": msg["start"]} if "start" in msg else {}, end)
        return SpokenCommand(t_ns=t, text=_str(msg, "text"), intent=_str(msg, "intent"), confidence=float(conf),
                             start_ns=start, end_ns=end, source=source or "speech")
    if m.schema == "edgefusion.Result":
        _str(msg, "action")
        _strings(msg, "events")
        scores = msg.get("scores", {})
        if not isinstance(scores, dict) or not all(isinstance(v, (int, float)) for v in scores.values()):
            raise ValueError("scores must map names to numbers")
    elif m.schema == "edgefusion.Truth":
        _str(msg, "action")
        _strings(msg, "events")
    return msg
