"""The live view: a running pipeline streamed to Foxglove over its WebSocket protocol (``--foxglove``).

:class:`LiveView` is a sink (results) and a tap (camera, audio, commands) like the recorder,
and serves them with ``foxglove-sdk``'s WebSocket server (the ``foxglove`` extra) on
``/camera`` (``foxglove.CompressedImage``, JPEG, at most ``camera_fps``), ``/audio_level``
(RMS and peak in dBFS per chunk), ``/text``, ``/results`` (the recording's JSON schema),
``/log`` (``foxglove.Log``: the run's log records) and, for a model or stage with a ``detections``
output, its boxes as ``foxglove.ImageAnnotations`` on ``/results/OUTPUT`` or ``/stages/NAME/OUTPUT``
(add the topic to the Image panel's annotations to see them over the camera). Open Foxglove, *Open connection*,
*Foxglove WebSocket*, ``ws://127.0.0.1:8765``.

It never slows the pipeline: the taps and the sink only put into a bounded latest-wins
queue (a full queue drops its oldest item, counted as ``liveview/queue_full`` in the run's
drops, stats and metrics); encoding happens on the live view's own thread, and the SDK
keeps a bounded backlog per viewer (``message_backlog_size``), dropping a slow viewer's
oldest messages inside the server (the SDK does not report those).

Times: messages carry the sample time, anchored to the wall clock at the first sample as a
live recording is (so Foxglove shows now); a replay keeps the log's own clock.

Example::

    view = LiveView("127.0.0.1:8765", drops=pipe.drops)
    pipe.sinks.append(view); pipe.taps.append(view.tap)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import numpy as np

from edgefusion.errors import ConfigError, EdgeFusionError, MissingDependencyError
from edgefusion.queues import BoundedQueue, DropCounter, Overflow, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame, Result
from edgefusion.sinks import Sink

__all__ = ["LiveView", "parse_address"]

log = logging.getLogger("edgefusion.liveview")

_LEVEL_SCHEMA = {"title": "edgefusion.AudioLevel", "type": "object", "properties": {
    "timestamp": {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}},
    "rms_dbfs": {"type": "number", "description": "RMS level of the chunk, dB full scale"},
    "peak_dbfs": {"type": "number", "description": "peak level of the chunk, dB full scale"},
    "samples": {"type": "integer"}}, "required": ["timestamp", "rms_dbfs", "peak_dbfs", "samples"]}
_MONOTONIC_NEAR_NS = 60 * 10**9


def parse_address(spec: str) -> tuple[str, int]:
    """``[HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1 (this machine only).

    Example:
        >>> parse_address("8765"), parse_address("0.0.0.0:9000")
        (('127.0.0.1', 8765), ('0.0.0.0', 9000))
    """
    host, sep, port = spec.rpartition(":")
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not 0 <= p <= 65535 or (sep and not host):
        raise ConfigError(f"--foxglove: expected [HOST:]PORT (e.g. 8765 or 0.0.0.0:8765), got {spec!r}")
    return host or "127.0.0.1", p


class LiveView(Sink):
    """Serves a run to Foxglove viewers. Use as a sink *and* pass :meth:`tap` to the pipeline.

    Args:
        address: ``[HOST:]PORT``; port 0 takes a free one (see :attr:`port`).
        drops: the pipeline's drop counter (drops are reported with the rest).
        capacity: items waiting for the live view's thread before the oldest is dropped.
        camera_fps: frames sent per second of sample time at most (the rest are not sent, not counted).
        backlog: messages the server buffers per viewer before dropping that viewer's oldest.
        wall_clock: anchor the times to the wall clock at the first sample (live runs; not replays).
        scores, action_scores: the package's event and action labels, named in the results' schema.
    """

    name = "liveview"

    def __init__(self, address: str = "8765", drops: DropCounter | None = None, capacity: int = 64,
                 camera_fps: float = 15.0, jpeg_quality: int = 80, backlog: int = 256,
                 wall_clock: bool = True, scores: list[str] | None = None,
                 action_scores: list[str] | None = None) -> None:
        try:
            import foxglove
        except ImportError as exc:
            raise MissingDependencyError("foxglove", "foxglove", "The live view (--foxglove)") from exc
        from edgefusion.logs import foxproto
        from edgefusion.logs.schemas import SCHEMAS, result_schema

        host, port = parse_address(address)
        self.host = host
        self.drops = drops or DropCounter()
        self.sent = 0
        self._period_ns = int(1e9 / camera_fps)
        self._quality = jpeg_quality
        self._last_frame_ns: int | None = None
        self._wall_clock = wall_clock
        self._offset: int | None = None if wall_clock else 0
        self._newest_ns = 0
        self._ctx = foxglove.Context()
        try:
            self.server = foxglove.start_server(name="edgefusion", host=host, port=port, context=self._ctx,
                                                message_backlog_size=backlog)
        except Exception as exc:  # the SDK raises its own error for a port in use
            raise ConfigError(f"--foxglove: cannot serve on {host}:{port} ({exc})") from exc

        def proto(topic: str, schema: str) -> Any:
            return foxglove.Channel(topic, schema=foxglove.Schema(name=schema, encoding="protobuf",
                                                                  data=foxproto.schema_data(schema)),
                                    message_encoding="protobuf", context=self._ctx)

        def js(topic: str, schema: bytes) -> Any:
            s = json.loads(schema)
            return foxglove.Channel(topic, schema=foxglove.Schema(name=s["title"], encoding="jsonschema",
                                                                  data=schema),
                                    message_encoding="json", context=self._ctx)

        self._foxproto = foxproto
        self._camera = proto("/camera", "foxglove.CompressedImage")
        self._log = proto("/log", "foxglove.Log")
        self._level = js("/audio_level", json.dumps(_LEVEL_SCHEMA).encode())
        self._text = js("/text", SCHEMAS["edgefusion.Command"])
        self._results = js("/results", result_schema(scores, action_scores))
        self._proto = proto
        self._boxes: dict[str, Any] = {}  # detections' annotation channels, made when first needed
        self._boxes_on: set[str] = set()
        self._q: BoundedQueue[Any] = BoundedQueue("liveview", capacity, Overflow.LATEST, self.drops)
        self._thread = threading.Thread(target=self._loop, name="sinks-liveview", daemon=True)
        self._thread.start()
        self._handler = _LogTap(self)
        logging.getLogger("edgefusion").addHandler(self._handler)
        log.info("live view on ws://%s:%d (Foxglove: Open connection, Foxglove WebSocket)", host, self.port)

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- the pipeline's side: quick, never blocking --------------------------------------

    def tap(self, sample: Frame | AudioChunk | Command) -> None:
        """Called by source threads for every raw input."""
        t = sample.t_ns
        if self._offset is None:
            mono = time.monotonic_ns()
            self._offset = time.time_ns() - (mono if abs(mono - t) < _MONOTONIC_NEAR_NS else t)
        self._newest_ns = max(self._newest_ns, t)
        if isinstance(sample, Frame):
            if self._last_frame_ns is not None and 0 <= t - self._last_frame_ns < self._period_ns:
                return  # over the view's frame rate: not sent (by design, not a drop)
            self._last_frame_ns = t
            self._q.put(("frame", sample))
        elif isinstance(sample, AudioChunk):
            x = sample.samples
            rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
            peak = float(np.max(np.abs(x))) if x.size else 0.0
            self._q.put(("level", t, _db(rms), _db(peak), int(x.size)))
        elif isinstance(sample, Command):
            self._q.put(("text", t, sample.text))

    def write(self, result: Result) -> None:
        self._q.put(("result", result))

    def _record(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is not self._thread:
            self._q.put(("log", self._newest_ns, record))

    # -- the live view's own thread -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=0.1)
            except QueueClosed:
                return
            if item is None:
                continue
            try:
                self._publish(item)
                self.sent += 1
            except Exception as exc:  # a viewer problem must not end the run: count it, say it once
                self.drops.add("liveview", "publish_failed")
                if self.drops.snapshot().get("liveview/publish_failed", 0) == 1:
                    log.warning("live view: publishing failed (%s: %s); counted as liveview/publish_failed",
                                type(exc).__name__, exc)

    def _publish(self, item: tuple[Any, ...]) -> None:
        fp, off = self._foxproto, self._offset or 0
        kind = item[0]
        if kind == "frame":
            f: Frame = item[1]
            self._camera.log(fp.compressed_image(f.t_ns + off, f.source, f.image, self._quality))
        elif kind == "level":
            _, t, rms, peak, n = item
            self._level.log({"timestamp": _time(t + off), "rms_dbfs": rms, "peak_dbfs": peak, "samples": n})
        elif kind == "text":
            self._text.log({"timestamp": _time(item[1] + off), "text": item[2]})
        elif kind == "result":
            r: Result = item[1]
            msg = r.to_dict()
            msg["t_ns"] = r.t_ns + off
            msg["timestamp"] = _time(r.t_ns + off)
            self._results.log(msg)
            for topic, found in fp.box_topics(r, "/results", "/stages", self._boxes_on):
                if topic not in self._boxes:
                    self._boxes[topic] = self._proto(topic, "foxglove.ImageAnnotations")
                self._boxes[topic].log(fp.image_annotations(r.t_ns + off, found))
        else:
            _, t, rec = item
            self._log.log(fp.log_record(t + off, rec.levelno, rec.getMessage(), rec.name, rec.pathname,
                                        rec.lineno or 0))

    def close(self) -> None:
        """Stop serving: the queue is dropped, viewers are disconnected."""
        logging.getLogger("edgefusion").removeHandler(self._handler)
        self._q.close()
        self._thread.join(5)
        try:
            self.server.stop()
        except Exception as exc:  # pragma: no cover - the SDK's own failure on shutdown
            raise EdgeFusionError(f"live view: stopping the server failed: {exc}") from exc


def _db(x: float) -> float:
    return round(20.0 * float(np.log10(max(x, 1e-10))), 2)


def _time(t_ns: int) -> dict[str, int]:
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}


class _LogTap(logging.Handler):
    def __init__(self, view: LiveView) -> None:
        super().__init__(logging.INFO)
        self.view = view

    def emit(self, record: logging.LogRecord) -> None:
        self.view._record(record)
