"""Writing EdgeFusion logs with the ``mcap`` library: chunked, compressed, log-time order.

Example:
    >>> import tempfile, os
    >>> from edgefusion.samples import Command
    >>> path = os.path.join(tempfile.mkdtemp(), "x.mcap")
    >>> with LogWriter(path) as w:
    ...     w.command(Command(t_ns=5, text="lights on"), log_time_ns=5)
    >>> os.path.getsize(path) > 0
    True
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import cv2
import numpy as np
from mcap.writer import CompressionType, Writer

from edgefusion import __version__
from edgefusion.errors import ConfigError, InputError
from edgefusion.labels import LabelTrack, Span
from edgefusion.logs.schemas import SCHEMAS, TOPICS, b64, to_time
from edgefusion.samples import AudioChunk, Command, Frame, Result, SpokenCommand

__all__ = ["LogWriter", "encode_message"]

PROFILE = "edgefusion"


def encode_message(msg: dict[str, Any]) -> bytes:
    """A JSON message as EdgeFusion writes it (compact separators)."""
    return json.dumps(msg, separators=(",", ":")).encode()


class LogWriter:
    """An MCAP file being written. Not thread-safe: one writer thread owns it.

    Args:
        path: output file (``-`` is not supported: MCAP needs a file).
        image_format: ``raw`` (foxglove.RawImage bgr8, lossless: replays bit-identically)
            or ``jpeg`` (foxglove.CompressedImage, ~10x smaller, lossy).
        compression: ``zstd`` (default), ``lz4`` or ``none``.
        chunk_size: target uncompressed chunk size in bytes.
    """

    def __init__(self, path: str | Path, image_format: str = "raw", compression: str = "zstd",
                 chunk_size: int = 1 << 20, jpeg_quality: int = 90) -> None:
        if image_format not in ("raw", "jpeg"):
            raise ConfigError(f"image format must be 'raw' or 'jpeg', got {image_format!r}")
        comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in comp:
            raise ConfigError(f"compression must be one of {sorted(comp)}, got {compression!r}")
        self.path = Path(path)
        self.image_format, self.jpeg_quality = image_format, jpeg_quality
        try:
            self._f: IO[bytes] = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise InputError(f"cannot write log {self.path}: {exc}") from exc
        self._w = Writer(self._f, chunk_size=chunk_size, compression=comp[compression])
        self._w.start(profile=PROFILE, library=f"edgefusion {__version__}")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._last_log_time = 0
        self.messages = 0
        self._closed = False

    # -- records ----------------------------------------------------------------------

    def _channel(self, topic: str, schema: str) -> int:
        if topic not in self._channels:
            if schema not in self._schemas:
                self._schemas[schema] = self._w.register_schema(schema, "jsonschema", SCHEMAS[schema])
            self._channels[topic] = self._w.register_channel(topic, "json", self._schemas[schema])
        return self._channels[topic]

    def write(self, topic: str, schema: str, msg: dict[str, Any], log_time_ns: int, publish_time_ns: int) -> None:
        """Write one JSON message; log times are clamped to be non-decreasing."""
        log_time = max(int(log_time_ns), self._last_log_time)
        self._last_log_time = log_time
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        data = encode_message(msg)
        self._w.add_message(self._channel(topic, schema), log_time=log_time, data=data,
                            publish_time=int(publish_time_ns), sequence=seq)
        self.messages += 1

    def frame(self, f: Frame, log_time_ns: int, topic: str = TOPICS["camera"]) -> None:
        img = f.image
        if self.image_format == "jpeg":
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise InputError("JPEG encoding of a frame failed")
            msg = {"timestamp": to_time(f.t_ns), "frame_id": f.source, "format": "jpeg", "data": b64(buf.tobytes())}
            self.write(topic, "foxglove.CompressedImage", msg, log_time_ns, f.t_ns)
        else:
            h, w = img.shape[:2]
            msg = {"timestamp": to_time(f.t_ns), "frame_id": f.source, "width": w, "height": h, "encoding": "bgr8",
                   "step": w * 3, "data": b64(np.ascontiguousarray(img))}
            self.write(topic, "foxglove.RawImage", msg, log_time_ns, f.t_ns)

    def audio(self, c: AudioChunk, log_time_ns: int, topic: str = TOPICS["audio"]) -> None:
        pcm = np.clip(np.round(c.samples * 32768.0), -32768, 32767).astype("<i2")
        msg = {"timestamp": to_time(c.t_ns), "format": "pcm-s16", "sample_rate": int(c.sample_rate),
               "number_of_channels": 1, "data": b64(pcm)}
        self.write(topic, "foxglove.RawAudio", msg, log_time_ns, c.t_ns)

    def command(self, c: Command, log_time_ns: int, topic: str = TOPICS["text"]) -> None:
        self.write(topic, "edgefusion.Command", {"timestamp": to_time(c.t_ns), "text": c.text}, log_time_ns, c.t_ns)

    def speech(self, c: SpokenCommand, log_time_ns: int, topic: str = TOPICS["speech"]) -> None:
        """A spoken command: the recognized text, its intent and confidence, the utterance's span."""
        msg = {"timestamp": to_time(c.t_ns), "start": to_time(c.start_ns), "end": to_time(c.end_ns), "text": c.text,
               "intent": c.intent, "confidence": float(c.confidence)}
        self.write(topic, "edgefusion.Speech", msg, log_time_ns, c.t_ns)

    def result(self, r: Result, log_time_ns: int, topic: str = TOPICS["results"], timings: bool = True) -> None:
        """A result; ``timings=False`` leaves out its stage timings (host measurements) for a repeatable file."""
        msg = r.to_dict()
        if not timings:
            del msg["timings_ns"]
        msg["timestamp"] = to_time(r.t_ns)
        self.write(topic, "edgefusion.Result", msg, log_time_ns, r.t_ns)

    def truth(self, t_ns: int, action: str, events: list[str], log_time_ns: int) -> None:
        msg = {"timestamp": to_time(t_ns), "action": action, "events": sorted(events)}
        self.write(TOPICS["truth"], "edgefusion.Truth", msg, log_time_ns, t_ns)

    def label(self, span: Span) -> None:
        """One label span on ``/labels``, at its start time (write spans in time order with the samples)."""
        self.write(TOPICS["labels"], "edgefusion.Label", span.to_dict(), span.start_ns, span.start_ns)

    def labels(self, track: LabelTrack) -> None:
        """Every span of a track (in time order)."""
        for span in track:
            self.label(span)

    def metadata(self, name: str, data: dict[str, str]) -> None:
        self._w.add_metadata(name, {k: str(v) for k, v in data.items()})

    def attachment(self, name: str, media_type: str, data: bytes, log_time_ns: int = 0) -> None:
        self._w.add_attachment(create_time=int(log_time_ns), log_time=int(log_time_ns), name=name,
                               media_type=media_type, data=data)

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._w.finish()
            self._f.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
