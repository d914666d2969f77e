"""The recorder: every raw input and every result of a run, written to MCAP on its own thread.

It is both a pipeline *tap* (raw inputs, handed over by the source threads) and a
*sink* (results). Everything goes through its own bounded queue: in live mode a slow
disk costs recorded messages (counted as ``recorder/queue_full``), never pipeline
latency; in lossless mode the queue back-pressures instead and nothing is lost.

The source threads hand over inputs in their own order and the sink thread hands over
results in theirs; how the two interleave is thread timing. So the recorder decides the
order itself: an input waits until the result of its frame (or of a later one) arrives,
and each result is written right after the frame it is for. Two lossless runs over one
input therefore write the same messages in the same order with the same log times; with
``repeatable`` they leave out what the host measured (stage timings, the clock's epoch
offset) and what depends on thread timing (the run's log records), and the files are
byte-identical.

Clock: a live recording (``wall_clock``) is anchored to the wall clock at its first sample
and written on it (the ``clock`` metadata record says how: the offset and the capture's
start time), so Foxglove shows when it was captured; a repeatable recording or a replay
keeps the sample clock it was given (a replay copies the input's ``clock`` record).

The run's log records (``edgefusion.*`` loggers, INFO and up) go to ``/log`` as
``foxglove.Log``, stamped with the newest sample time seen: the sample clock, not the host's.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgefusion.errors import EdgeFusionError
from edgefusion.labels import Span
from edgefusion.logs.writer import LogWriter
from edgefusion.queues import BoundedQueue, DropCounter, Overflow, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame, Result, SpokenCommand
from edgefusion.sinks import Sink

__all__ = ["Recorder"]

#: a sample time this close to time.monotonic_ns() is on the monotonic clock (live sources)
_MONOTONIC_NEAR_NS = 60 * 10**9
#: log records waiting for the writer thread; past it they are dropped and counted (recorder/log_full)
_LOG_CAPACITY = 256


class Recorder(Sink):
    """Records a run. Use as a sink *and* pass :meth:`tap` to the pipeline.

    Args:
        writer: an open :class:`LogWriter` (the recorder closes it).
        lossless: back-pressure instead of dropping when the disk falls behind.
        capacity: messages buffered before dropping (live) or blocking (lossless).
        max_queued_bytes: live mode: image and audio bytes buffered before a new input is dropped
            (counted as ``recorder/queue_full``): 512 raw 720p frames would be 1.4 GB.
        drops: where drops are counted (the pipeline's counter, so they are reported with the rest).
        repeatable: an offline run: write no stage timings, no clock offset and no log records, so
            the same input gives a byte-identical file.
        wall_clock: anchor the file to the wall clock at the first sample (a live run).
    """

    name = "recorder"

    def __init__(self, writer: LogWriter, lossless: bool = False, capacity: int = 512,
                 drops: DropCounter | None = None, repeatable: bool = False, wall_clock: bool = False,
                 max_queued_bytes: int = 256 << 20) -> None:
        self.writer = writer
        self.wall_clock = wall_clock and not repeatable
        #: the ``clock`` metadata of the log being replayed, copied into this recording (set by the run builder)
        self.inherit_clock: Callable[[], dict[str, str]] | None = None
        self._anchor: dict[str, str] | None = None
        self._anchor_lock = threading.Lock()
        self._newest_ns = 0  # the newest sample time handed over: log records are stamped with it
        self._logs: collections.deque[tuple[int, logging.LogRecord]] = collections.deque()
        self._log_handler: logging.Handler | None = None
        self.lossless = lossless
        self.repeatable = repeatable
        # inputs waiting for the result of their frame; bounded so a stalled camera costs order, not memory
        self._pending: collections.deque[Any] = collections.deque()
        self._max_pending = 4 * capacity
        self._max_bytes = max_queued_bytes
        self._queued_bytes = 0  # of inputs between tap() and the writer thread (live mode's memory bound)
        self._bytes_lock = threading.Lock()
        self.drops = drops or DropCounter()
        self._q: BoundedQueue[Any] = BoundedQueue("recorder", capacity,
                                                  Overflow.BLOCK if lossless else Overflow.REJECT, self.drops)
        self._error: BaseException | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="sinks-recorder", daemon=True)
        self._thread.start()
        if not repeatable:
            self._log_handler = _LogTap(self)
            logging.getLogger("edgefusion").addHandler(self._log_handler)

    def describe_run(self, manifest: dict[str, Any], config: dict[str, Any], package_sha256: str,
                     package_ref: str) -> None:
        """Store the model manifest, its hash, how it was named (path or built-in) and the resolved config."""
        labels = {o.get("kind"): list(o.get("labels", [])) for o in manifest.get("outputs", []) if isinstance(o, dict)}
        self.writer.describe_outputs(labels.get("multilabel_logits", []), labels.get("class_logits", []))
        self._q.put(("meta", manifest, config, package_sha256, package_ref))

    def tap(self, sample: Frame | AudioChunk | Command) -> None:
        """Called by source threads for every raw input."""
        self._raise_if_failed()
        if self.wall_clock and self._anchor is None:
            self._anchor_at(sample.t_ns)
        self._newest_ns = max(self._newest_ns, sample.t_ns)
        n = _nbytes(sample)
        if not self.lossless:
            with self._bytes_lock:
                if self._queued_bytes + n > self._max_bytes:
                    self.drops.add("recorder", "queue_full")
                    return
                self._queued_bytes += n
        if not self._q.put(sample) and not self.lossless:
            with self._bytes_lock:
                self._queued_bytes -= n

    def _anchor_at(self, t_ns: int) -> None:
        """Put the file on the wall clock: exactly for a monotonic source, else its first sample is now."""
        with self._anchor_lock:
            if self._anchor is not None:
                return
            wall, mono = time.time_ns(), time.monotonic_ns()
            monotonic = abs(mono - t_ns) < _MONOTONIC_NEAR_NS
            offset = wall - (mono if monotonic else t_ns)
            self.writer.time_offset_ns = offset  # before the sample is queued: the writer thread sees it first
            self._anchor = {"sample_clock": "monotonic" if monotonic else "source (its first sample at capture start)",
                            "wall_offset_ns": str(offset), "capture_start_ns": str(wall),
                            "capture_start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall / 1e9))}

    def _log_record(self, record: logging.LogRecord) -> None:
        """A log record of the run (any thread but the writer's own): queued without ever blocking."""
        if threading.current_thread() is self._thread:
            return
        if len(self._logs) >= _LOG_CAPACITY:
            self.drops.add("recorder", "log_full")
            return
        self._logs.append((self._newest_ns, record))

    def truth(self, t_ns: int, msg: dict[str, Any]) -> None:
        """Copy a ground-truth record (from a replayed log) into the recording, in order."""
        self._q.put(("truth", t_ns, msg))

    def label(self, t_ns: int, msg: dict[str, Any]) -> None:
        """Copy a label span (from a replayed log, ``/labels``) into the recording, in order.

        ``t_ns`` is the span's start as the replay delivers it: a replay that loops shifts its
        time, and the span moves with it.
        """
        span = Span.from_dict(msg)
        shift = int(t_ns) - span.start_ns
        self._q.put(("label", Span(span.start_ns + shift, span.end_ns + shift, span.kind, span.label, span.source)))

    def write(self, result: Result) -> None:
        self._raise_if_failed()
        self._q.put(result)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise EdgeFusionError(f"recorder failed: {self._error}") from self._error

    def _loop(self) -> None:
        try:
            while True:
                try:
                    item = self._q.get(timeout=0.1)
                except QueueClosed:
                    break
                while self._logs:
                    self._pending.append(("log", *self._logs.popleft()))
                if item is None:
                    continue
                if not self.lossless and isinstance(item, (Frame, AudioChunk)):
                    with self._bytes_lock:
                        self._queued_bytes -= _nbytes(item)
                if isinstance(item, Result):
                    self._release(item.t_ns)
                    self._write(item)
                elif isinstance(item, tuple) and item[0] == "meta":
                    self._describe(*item[1:])
                else:
                    self._pending.append(item)
                    if len(self._pending) > self._max_pending:
                        self._write(self._pending.popleft())
            while self._pending:
                self._write(self._pending.popleft())
        except BaseException as exc:
            self._error = exc
            self._q.close()

    def _release(self, t_ns: int) -> None:
        """Write the pending inputs up to the frame at ``t_ns`` (up to the oldest frame if it is not there)."""
        frames = [i for i, x in enumerate(self._pending) if isinstance(x, Frame)]
        if not frames:
            return
        last = next((i for i in frames if self._pending[i].t_ns == t_ns), frames[0])
        items = [self._pending.popleft() for _ in range(last + 1)]
        # A spoken command comes from the audio's thread, which can run behind the camera's. A lossless
        # run orders it by its time, so one issued by the frame's time but handed over after it is written
        # before it: a replay (one thread, in log order) has it for this frame as the run had it. A live
        # run has it only from when it arrived (decoding takes a few hundred ms), so it is written where
        # it arrived, and a replay's steps before that do not have it either.
        spoken = [x for x in self._pending if isinstance(x, SpokenCommand) and x.t_ns <= items[-1].t_ns] \
            if self.lossless else []
        if spoken:
            self._pending = collections.deque(x for x in self._pending if not any(x is y for y in spoken))
            items[-1:-1] = spoken
        for item in items:
            self._write(item)

    def _write(self, item: Any) -> None:
        w = self.writer
        if isinstance(item, Frame):
            w.frame(item, item.t_ns)
        elif isinstance(item, AudioChunk):
            w.audio(item, item.t_ns)
        elif isinstance(item, SpokenCommand):
            w.speech(item, item.t_ns)
        elif isinstance(item, Command):
            w.command(item, item.t_ns)
        elif isinstance(item, Result):
            w.result(item, item.t_ns, timings=not self.repeatable)
        elif item[0] == "log":
            _, t, rec = item
            w.log(t, rec.levelno, rec.getMessage(), rec.name, rec.pathname, rec.lineno or 0)
        elif item[0] == "truth":
            _, t, msg = item
            w.truth(t, msg.get("action", ""), list(msg.get("events", [])), t)
        else:
            w.label(item[1])
        self.written += 1

    def _describe(self, manifest: dict[str, Any], config: dict[str, Any], sha: str, ref: str) -> None:
        w = self.writer
        w.attachment("manifest.json", "application/json", json.dumps(manifest, indent=2).encode())
        w.attachment("config.json", "application/json", json.dumps(config, indent=2, default=str).encode())
        meta = {"package": manifest.get("name", ""), "package_ref": ref, "package_sha256": sha}
        if not self.repeatable:  # maps the run's monotonic times to wall-clock time: differs on every run
            meta["clock_epoch_offset_ns"] = str(time.time_ns() - time.monotonic_ns())
        w.metadata("edgefusion", meta)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        """Write what is queued, finish the file (summary and index), report the first error."""
        if self._log_handler is not None:
            logging.getLogger("edgefusion").removeHandler(self._log_handler)
        self._q.close()
        self._thread.join(30)
        if not self._thread.is_alive() and self._error is None:
            while self._logs:
                t, rec = self._logs.popleft()
                self._write(("log", t, rec))
            self.writer.metadata("clock", self._clock())
        self.writer.close()
        self._raise_if_failed()

    def _clock(self) -> dict[str, str]:
        """The ``clock`` metadata record: how the file's times relate to the wall clock."""
        if self._anchor is not None:
            return self._anchor
        if self.inherit_clock is not None:  # a replay: the input log's clock, as it described it
            return self.inherit_clock() or {"sample_clock": "the replayed log's own", "wall_offset_ns": "0"}
        if self.wall_clock:  # no sample came
            return {"sample_clock": "none (no samples)", "wall_offset_ns": "0"}
        return {"sample_clock": "the sources' own (from 0 for files and synthesized scenarios)",
                "wall_offset_ns": "0"}

    @property
    def path(self) -> Path:
        return self.writer.path


def _nbytes(sample: Any) -> int:
    if isinstance(sample, Frame):
        return int(sample.image.nbytes)
    if isinstance(sample, AudioChunk):
        return int(sample.samples.nbytes)
    return 0


class _LogTap(logging.Handler):
    """Hands the run's log records to the recorder (``/log``)."""

    def __init__(self, recorder: Recorder) -> None:
        super().__init__(logging.INFO)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        self.recorder._log_record(record)
