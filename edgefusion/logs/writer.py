"""Writing EdgeFusion logs with the ``mcap`` library: chunked, compressed, log-time order.

Camera frames, audio and log records are protobuf (Foxglove's official schemas); commands,
results, truth and labels are JSON with complete schemas (:mod:`edgefusion.logs.schemas`).
With ``time_offset_ns`` every time written (log, publish and message times, label spans)
is the sample time plus that offset: a live recording is put on the wall clock that way, so
Foxglove shows when it was captured, and the whole file stays on one clock.

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

from mcap.writer import CompressionType, Writer

from edgefusion import __version__
from edgefusion.errors import ConfigError, InputError
from edgefusion.labels import LabelTrack, Span
from edgefusion.logs import foxproto
from edgefusion.logs.schemas import SCHEMAS, STAGES_TOPIC, TOPICS, result_schema, to_time
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
                 chunk_size: int = 1 << 20, jpeg_quality: int = 90, time_offset_ns: int = 0) -> None:
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
        #: added to every time written (see the module's docstring); set before the first message
        self.time_offset_ns = int(time_offset_ns)
        self._json_schemas = dict(SCHEMAS)
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._last_log_time = 0
        self._boxes_on: set[str] = set()  # annotation topics whose last message drew boxes
        self.messages = 0
        self._closed = False

    # -- records ----------------------------------------------------------------------

    def describe_outputs(self, scores: list[str], action_scores: list[str]) -> None:
        """Name the package's event and action labels in the result schema (before the first result)."""
        self._json_schemas["edgefusion.Result"] = result_schema(scores, action_scores)

    def _channel(self, topic: str, schema: str, encoding: str = "json") -> int:
        if topic not in self._channels:
            if schema not in self._schemas:
                if encoding == "protobuf":
                    data, kind = foxproto.schema_data(schema), "protobuf"
                else:
                    data, kind = self._json_schemas[schema], "jsonschema"
                self._schemas[schema] = self._w.register_schema(schema, kind, data)
            self._channels[topic] = self._w.register_channel(topic, encoding, self._schemas[schema])
        return self._channels[topic]

    def _t(self, t_ns: int) -> int:
        return int(t_ns) + self.time_offset_ns

    def write(self, topic: str, schema: str, msg: dict[str, Any], log_time_ns: int, publish_time_ns: int) -> None:
        """Write one JSON message (times on the sample clock); log times are clamped to be non-decreasing."""
        self.write_encoded(topic, schema, "json", encode_message(msg), log_time_ns, publish_time_ns)

    def write_encoded(self, topic: str, schema: str, encoding: str, data: bytes, log_time_ns: int,
                      publish_time_ns: int) -> None:
        """Write one encoded message (``json`` or ``protobuf``); times on the sample clock."""
        log_time = max(self._t(log_time_ns), self._last_log_time)
        self._last_log_time = log_time
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        self._w.add_message(self._channel(topic, schema, encoding), log_time=log_time, data=data,
                            publish_time=self._t(publish_time_ns), sequence=seq)
        self.messages += 1

    def frame(self, f: Frame, log_time_ns: int, topic: str = TOPICS["camera"]) -> None:
        t = self._t(f.t_ns)
        try:
            if self.image_format == "jpeg":
                data = foxproto.compressed_image(t, f.source, f.image, self.jpeg_quality)
            else:
                data = foxproto.raw_image(t, f.source, f.image)
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        schema = "foxglove.CompressedImage" if self.image_format == "jpeg" else "foxglove.RawImage"
        self.write_encoded(topic, schema, "protobuf", data, log_time_ns, f.t_ns)

    def audio(self, c: AudioChunk, log_time_ns: int, topic: str = TOPICS["audio"]) -> None:
        self.write_encoded(topic, "foxglove.RawAudio", "protobuf",
                           foxproto.raw_audio(self._t(c.t_ns), c.samples, c.sample_rate), log_time_ns, c.t_ns)

    def log(self, t_ns: int, level: int, message: str, name: str, file: str = "", line: int = 0,
            topic: str = TOPICS["log"]) -> None:
        """A log record of the run (``level`` as in :mod:`logging`) as ``foxglove.Log`` at sample time ``t_ns``."""
        self.write_encoded(topic, "foxglove.Log", "protobuf",
                           foxproto.log_record(self._t(t_ns), level, message, name, file, line), t_ns, t_ns)

    def command(self, c: Command, log_time_ns: int, topic: str = TOPICS["text"]) -> None:
        self.write(topic, "edgefusion.Command", {"timestamp": to_time(self._t(c.t_ns)), "text": c.text}, log_time_ns,
                   c.t_ns)

    def speech(self, c: SpokenCommand, log_time_ns: int, topic: str = TOPICS["speech"]) -> None:
        """A spoken command: the recognized text, its intent and confidence, the utterance's span."""
        msg = {"timestamp": to_time(self._t(c.t_ns)), "start": to_time(self._t(c.start_ns)),
               "end": to_time(self._t(c.end_ns)), "text": c.text,
               "intent": c.intent, "confidence": float(c.confidence)}
        self.write(topic, "edgefusion.Speech", msg, log_time_ns, c.t_ns)

    def result(self, r: Result, log_time_ns: int, topic: str = TOPICS["results"], timings: bool = True) -> None:
        """A result; ``timings=False`` leaves out its stage timings (host measurements) for a repeatable file."""
        msg = r.to_dict()
        if not timings:
            del msg["timings_ns"]
            msg["stages"] = {k: {f: v for f, v in rec.items() if f != "timings_ns"} for k, rec in r.stages.items()}
            if not msg["stages"]:
                del msg["stages"]
        msg["t_ns"] = self._t(r.t_ns)
        msg["timestamp"] = to_time(self._t(r.t_ns))
        self.write(topic, "edgefusion.Result", msg, log_time_ns, r.t_ns)
        for name, rec in r.stages.items():  # each model of the pipeline on its own track
            stage = {**rec, "seq": r.seq, "timestamp": to_time(self._t(r.t_ns))}
            if not timings:
                stage.pop("timings_ns", None)
            self.write(f"{STAGES_TOPIC}/{name}", "edgefusion.StageResult", stage, log_time_ns, r.t_ns)
        # detections as boxes over the camera image in Foxglove (foxglove.ImageAnnotations)
        for box_topic, found in foxproto.box_topics(r, topic, STAGES_TOPIC, self._boxes_on):
            self.write_encoded(box_topic, "foxglove.ImageAnnotations", "protobuf",
                               foxproto.image_annotations(self._t(r.t_ns), found), log_time_ns, r.t_ns)

    def truth(self, t_ns: int, action: str, events: list[str], log_time_ns: int) -> None:
        msg = {"timestamp": to_time(self._t(t_ns)), "action": action, "events": sorted(events)}
        self.write(TOPICS["truth"], "edgefusion.Truth", msg, log_time_ns, t_ns)

    def label(self, span: Span) -> None:
        """One label span on ``/labels``, at its start time (write spans in time order with the samples)."""
        d = span.to_dict()
        d["start_ns"], d["end_ns"] = self._t(span.start_ns), self._t(span.end_ns)
        self.write(TOPICS["labels"], "edgefusion.Label", d, span.start_ns, span.start_ns)

    def labels(self, track: LabelTrack) -> None:
        """Every span of a track (in time order)."""
        for span in track:
            self.label(span)

    def metadata(self, name: str, data: dict[str, str]) -> None:
        self._w.add_metadata(name, {k: str(v) for k, v in data.items()})

    def attachment(self, name: str, media_type: str, data: bytes, log_time_ns: int = 0) -> None:
        self._w.add_attachment(create_time=self._t(log_time_ns), log_time=self._t(log_time_ns), name=name,
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
