"""Foxglove's well-known sensor schemas in protobuf: encoding for the writer, careful decoding for replays.

Camera frames, audio and the run's log records are written with the official classes of
``foxglove-schemas-protobuf`` (a 720p bgr8 frame encodes in ~1.5 ms; as JSON with base64 it
took ~35 ms, more than a frame period at 30 fps). The schema record of each channel is the
message's ``FileDescriptorSet``, as Foxglove and the ``mcap`` tools expect.

Example:
    >>> from edgefusion.samples import Command
    >>> import numpy as np
    >>> data = raw_image(1_500_000_000, "camera", np.zeros((2, 3, 3), np.uint8))
    >>> RawImage.FromString(data).timestamp.ToNanoseconds(), RawImage.FromString(data).step
    (1500000000, 9)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Log_pb2 import Log
from foxglove_schemas_protobuf.RawAudio_pb2 import RawAudio
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from edgefusion.logs.limits import MAX_AUDIO_CHANNELS, MAX_IMAGE_BYTES, MAX_SAMPLE_RATE, MAX_SIDE, MAX_TIME_NS
from edgefusion.samples import AudioChunk, Frame

if TYPE_CHECKING:
    from edgefusion.logs.reader import LogMessage

__all__ = ["MESSAGES", "RawImage", "compressed_image", "decode_protobuf", "log_record", "raw_audio", "raw_image",
           "schema_data"]

#: schema name -> the official protobuf class
MESSAGES: dict[str, Any] = {"foxglove.RawImage": RawImage, "foxglove.CompressedImage": CompressedImage,
                            "foxglove.RawAudio": RawAudio, "foxglove.Log": Log}

#: Python logging levels -> foxglove.Log levels (UNKNOWN 0, DEBUG 1, INFO 2, WARNING 3, ERROR 4, FATAL 5)
_LEVELS = ((logging.CRITICAL, 5), (logging.ERROR, 4), (logging.WARNING, 3), (logging.INFO, 2), (logging.DEBUG, 1))


def schema_data(name: str) -> bytes:
    """The ``FileDescriptorSet`` of a schema: its file and every file it imports, dependencies first."""
    fds = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name not in seen:
            seen.add(fd.name)
            for dep in fd.dependencies:
                add(dep)
            fd.CopyToProto(fds.file.add())

    add(MESSAGES[name].DESCRIPTOR.file)
    return fds.SerializeToString(deterministic=True)


def raw_image(t_ns: int, frame_id: str, img: np.ndarray) -> bytes:
    h, w = img.shape[:2]
    m = RawImage(frame_id=frame_id, width=w, height=h, encoding="bgr8", step=w * 3,
                 data=np.ascontiguousarray(img).tobytes())
    m.timestamp.FromNanoseconds(int(t_ns))
    return m.SerializeToString()


def compressed_image(t_ns: int, frame_id: str, img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding of a frame failed")
    m = CompressedImage(frame_id=frame_id, format="jpeg", data=buf.tobytes())
    m.timestamp.FromNanoseconds(int(t_ns))
    return m.SerializeToString()


def raw_audio(t_ns: int, samples: np.ndarray, sample_rate: int) -> bytes:
    pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")
    m = RawAudio(format="pcm-s16", sample_rate=int(sample_rate), number_of_channels=1, data=pcm.tobytes())
    m.timestamp.FromNanoseconds(int(t_ns))
    return m.SerializeToString()


def log_record(t_ns: int, level: int, message: str, name: str, file: str, line: int) -> bytes:
    """A ``foxglove.Log`` from a Python log record's fields (``level`` is Python's)."""
    fox = next((f for py, f in _LEVELS if level >= py), 0)
    m = Log(message=message, name=name, file=file, line=max(0, int(line)))
    m.level = fox  # type: ignore[assignment]  # the enum's values are ints
    m.timestamp.FromNanoseconds(int(t_ns))
    return m.SerializeToString()


def decode_protobuf(m: LogMessage, source: str | None) -> Frame | AudioChunk | dict[str, Any]:
    """The sample of a protobuf-encoded Foxglove message (a dict for ``foxglove.Log``).

    Raises:
        ValueError: the bytes are not that message, or a field is out of range (the caller adds where).
    """
    cls = MESSAGES[m.schema]
    if len(m.data) > MAX_IMAGE_BYTES + 4096:
        raise ValueError(f"message of {len(m.data)} bytes is over {MAX_IMAGE_BYTES >> 20} MiB")
    try:
        msg = cls.FromString(m.data)
    except (DecodeError, RuntimeError) as exc:
        raise ValueError(f"not a protobuf {m.schema} ({exc})") from exc
    t = _time(msg, m.publish_time_ns)
    if m.schema == "foxglove.RawImage":
        return _raw_image(msg, t, source)
    if m.schema == "foxglove.CompressedImage":
        decoded = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR) if msg.data else None
        if decoded is None:
            raise ValueError(f"a {msg.format[:20]!r} image could not be decoded")
        return Frame(t_ns=t, image=np.asarray(decoded, np.uint8), source=source or "camera")
    if m.schema == "foxglove.RawAudio":
        if msg.format != "pcm-s16":
            raise ValueError(f"audio format {msg.format!r} is not supported (pcm-s16 is)")
        return pcm_chunk(msg.data, t, msg.sample_rate, msg.number_of_channels or 1, source)
    return {"t_ns": t, "level": msg.level, "message": msg.message, "name": msg.name}


def _time(msg: Any, publish_ns: int) -> int:
    if not msg.HasField("timestamp"):
        return publish_ns
    ts = msg.timestamp
    if ts.seconds < 0 or not 0 <= ts.nanos < 10**9:
        raise ValueError(f"timestamp {ts.seconds} s {ts.nanos} ns is not a time after 1970")
    t = ts.seconds * 10**9 + ts.nanos
    if t > MAX_TIME_NS:
        raise ValueError(f"time {t} ns is outside 0 .. 2**63-1")
    return t


def _raw_image(msg: Any, t: int, source: str | None) -> Frame:
    w, h = msg.width, msg.height
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise ValueError(f"a {w}x{h} image: width and height must be from 1 to {MAX_SIDE}")
    return Frame(t_ns=t, image=image_from(msg.encoding, w, h, msg.step or 0, bytes(msg.data)),
                 source=source or "camera")


#: raw pixel encodings we turn into BGR: channels and the OpenCV conversion (None: already BGR)
_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None), "rgb8": (3, cv2.COLOR_RGB2BGR), "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR), "mono8": (1, cv2.COLOR_GRAY2BGR),
}


def image_from(encoding: str, w: int, h: int, step: int, data: bytes) -> np.ndarray:
    """A BGR uint8 image from raw rows (``step`` bytes each, padding allowed; 0 means packed)."""
    if encoding not in _ENCODINGS:
        raise ValueError(f"image encoding {encoding[:20]!r} is not supported ({', '.join(_ENCODINGS)} are)")
    ch, conv = _ENCODINGS[encoding]
    row = w * ch
    step = step or row
    if step < row or h * step > MAX_IMAGE_BYTES:
        raise ValueError(f"step {step} does not fit a {w}x{h} {encoding} image (rows of {row} bytes, at most "
                         f"{MAX_IMAGE_BYTES >> 20} MiB)")
    if len(data) != h * step:
        raise ValueError(f"a {w}x{h} {encoding} image with step {step} needs {h * step} bytes, data has {len(data)}")
    img = np.frombuffer(data, np.uint8).reshape(h, step)[:, :row].reshape(h, w, ch)
    return np.ascontiguousarray(img) if conv is None else cv2.cvtColor(img, conv)


def pcm_chunk(data: bytes, t: int, rate: int, channels: int, source: str | None) -> AudioChunk:
    """Mono float32 audio from interleaved little-endian 16-bit PCM."""
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer from 1 to {MAX_SAMPLE_RATE}, got {rate}")
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise ValueError(f"number_of_channels must be from 1 to {MAX_AUDIO_CHANNELS}, got {channels}")
    if len(data) % (2 * channels):
        raise ValueError(f"{len(data)} bytes is not a whole number of {channels}-channel 16-bit frames")
    x = np.frombuffer(data, "<i2").astype(np.float32) / np.float32(32768.0)
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1).astype(np.float32)
    return AudioChunk(t_ns=t, samples=x, sample_rate=rate, source=source or "audio")
