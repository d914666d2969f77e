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
import zlib
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.Log_pb2 import Log
from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation
from foxglove_schemas_protobuf.RawAudio_pb2 import RawAudio
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError

from edgefusion.logs.limits import MAX_AUDIO_CHANNELS, MAX_IMAGE_BYTES, MAX_SAMPLE_RATE, MAX_SIDE, MAX_TIME_NS
from edgefusion.samples import AudioChunk, Frame

if TYPE_CHECKING:
    from edgefusion.logs.reader import LogMessage

__all__ = ["MESSAGES", "RawImage", "box_topics", "compressed_image", "decode_protobuf", "image_annotations",
           "log_record", "raw_audio", "raw_image", "schema_data"]

#: schema name -> the official protobuf class
MESSAGES: dict[str, Any] = {"foxglove.RawImage": RawImage, "foxglove.CompressedImage": CompressedImage,
                            "foxglove.RawAudio": RawAudio, "foxglove.Log": Log,
                            "foxglove.ImageAnnotations": ImageAnnotations}
#: box outline colours (r, g, b), one per label (chosen by the label's CRC-32: the same in every frame and run)
_PALETTE = ((0.90, 0.30, 0.24), (0.18, 0.55, 0.85), (0.30, 0.75, 0.35), (0.95, 0.65, 0.15), (0.60, 0.35, 0.80),
            (0.10, 0.70, 0.70))

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


def box_topics(result: Any, results_topic: str, stages_topic: str,
               drawn: set[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The (topic, detections) to publish as :func:`image_annotations` for a Result: each ``detections``
    output of the main model (``RESULTS/OUTPUT``) and of each stage (``STAGES/NAME/OUTPUT``); an empty one
    only when ``drawn`` (topics whose last message had boxes, updated here) says boxes are to be cleared."""
    found = [(f"{stages_topic}/{name}", rec.get("outputs") or {}) for name, rec in result.stages.items()]
    out = []
    for parent, outputs in [(results_topic, result.outputs or {}), *found]:
        for name, value in outputs.items():
            topic = f"{parent}/{name}"
            boxes = isinstance(value, list) and bool(value) and all(
                isinstance(d, dict) and {"label", "score", "box"} <= d.keys() for d in value)
            if boxes or (value == [] and topic in drawn):
                out.append((topic, value))
                (drawn.add if boxes else drawn.discard)(topic)
    return out


def image_annotations(t_ns: int, detections: list[dict[str, Any]]) -> bytes:
    """Detections (``label``, ``score``, ``box`` [x1, y1, x2, y2] in frame pixels) as foxglove.ImageAnnotations:
    a box outline and a "label score" text per detection, which Foxglove's Image panel draws over the camera
    frame of the same time. No detections: an empty message, which clears the boxes drawn before.

    Example:
        >>> m = ImageAnnotations.FromString(image_annotations(5, [{"label": "person", "score": 0.9,
        ...                                                      "box": [10.0, 20.0, 50.0, 80.0]}]))
        >>> [(p.x, p.y) for p in m.points[0].points], m.texts[0].text
        ([(10.0, 20.0), (50.0, 20.0), (50.0, 80.0), (10.0, 80.0)], 'person 0.90')
    """
    m = ImageAnnotations()
    m.timestamp.FromNanoseconds(int(t_ns))
    for d in detections:
        x1, y1, x2, y2 = (float(v) for v in d["box"])
        r, g, b = _PALETTE[zlib.crc32(str(d["label"]).encode()) % len(_PALETTE)]
        box = m.points.add(type=PointsAnnotation.LINE_LOOP, thickness=2.0)
        box.timestamp.FromNanoseconds(int(t_ns))
        for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
            box.points.add(x=x, y=y)
        box.outline_color.r, box.outline_color.g, box.outline_color.b, box.outline_color.a = r, g, b, 1.0
        text = m.texts.add(text=f"{d['label']} {float(d['score']):.2f}", font_size=14.0)
        text.timestamp.FromNanoseconds(int(t_ns))
        text.position.x, text.position.y = x1, max(0.0, y1 - 16.0)
        text.text_color.r = text.text_color.g = text.text_color.b = text.text_color.a = 1.0
        text.background_color.r, text.background_color.g, text.background_color.b = r, g, b
        text.background_color.a = 0.8
    return m.SerializeToString(deterministic=True)


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
