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
offset) and the files are byte-identical.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path
from typing import Any

from edgefusion.errors import EdgeFusionError
from edgefusion.labels import Span
from edgefusion.logs.writer import LogWriter
from edgefusion.queues import BoundedQueue, DropCounter, Overflow, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame, Result, SpokenCommand
from edgefusion.sinks import Sink

__all__ = ["Recorder"]


class Recorder(Sink):
    """Records a run. Use as a sink *and* pass :meth:`tap` to the pipeline.

    Args:
        writer: an open :class:`LogWriter` (the recorder closes it).
        lossless: back-pressure instead of dropping when the disk falls behind.
        capacity: messages buffered before dropping (live) or blocking (lossless).
        drops: where drops are counted (the pipeline's counter, so they are reported with the rest).
        repeatable: an offline run: write no stage timings and no clock offset, so the same input
            gives a byte-identical file.
    """

    name = "recorder"

    def __init__(self, writer: LogWriter, lossless: bool = False, capacity: int = 512,
                 drops: DropCounter | None = None, repeatable: bool = False) -> None:
        self.writer = writer
        self.lossless = lossless
        self.repeatable = repeatable
        # inputs waiting for the result of their frame; bounded so a stalled camera costs order, not memory
        self._pending: collections.deque[Any] = collections.deque()
        self._max_pending = 4 * capacity
        self.drops = drops or DropCounter()
        self._q: BoundedQueue[Any] = BoundedQueue("recorder", capacity,
                                                  Overflow.BLOCK if lossless else Overflow.REJECT, self.drops)
        self._error: BaseException | None = None
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="sinks-recorder", daemon=True)
        self._thread.start()

    def describe_run(self, manifest: dict[str, Any], config: dict[str, Any], package_sha256: str,
                     package_ref: str) -> None:
        """Store the model manifest, its hash, how it was named (path or built-in) and the resolved config."""
        self._q.put(("meta", manifest, config, package_sha256, package_ref))

    def tap(self, sample: Frame | AudioChunk | Command) -> None:
        """Called by source threads for every raw input."""
        self._raise_if_failed()
        self._q.put(sample)

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
                if item is None:
                    continue
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
        # A spoken command comes from the audio's thread, which can run behind the camera's: one issued
        # by the frame's time but handed over after it is written before it, so a replay (one thread, in
        # log order) has it for this frame as surely as the recorded run had it.
        spoken = [x for x in self._pending if isinstance(x, SpokenCommand) and x.t_ns <= items[-1].t_ns]
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
        self._q.close()
        self._thread.join(30)
        self.writer.close()
        self._raise_if_failed()

    @property
    def path(self) -> Path:
        return self.writer.path
