"""The recorder: every raw input and every result of a run, written to MCAP on its own thread.

It is both a pipeline *tap* (raw inputs, handed over by the source threads) and a
*sink* (results). Everything goes through its own bounded queue: in live mode a slow
disk costs recorded messages (counted as ``recorder/queue_full``), never pipeline
latency; in lossless mode the queue back-pressures instead and nothing is lost.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from edgefusion.errors import EdgeFusionError
from edgefusion.labels import Span
from edgefusion.logs.writer import LogWriter
from edgefusion.queues import BoundedQueue, DropCounter, Overflow, QueueClosed
from edgefusion.samples import AudioChunk, Command, Frame, Result
from edgefusion.sinks import Sink

__all__ = ["Recorder"]


class Recorder(Sink):
    """Records a run. Use as a sink *and* pass :meth:`tap` to the pipeline.

    Args:
        writer: an open :class:`LogWriter` (the recorder closes it).
        lossless: back-pressure instead of dropping when the disk falls behind.
        capacity: messages buffered before dropping (live) or blocking (lossless).
        drops: where drops are counted (the pipeline's counter, so they are reported with the rest).
    """

    name = "recorder"

    def __init__(self, writer: LogWriter, lossless: bool = False, capacity: int = 512,
                 drops: DropCounter | None = None) -> None:
        self.writer = writer
        self.lossless = lossless
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
        w = self.writer
        try:
            while True:
                try:
                    item = self._q.get(timeout=0.1)
                except QueueClosed:
                    break
                if item is None:
                    continue
                if isinstance(item, Frame):
                    w.frame(item, item.t_ns)
                elif isinstance(item, AudioChunk):
                    w.audio(item, item.t_ns)
                elif isinstance(item, Command):
                    w.command(item, item.t_ns)
                elif isinstance(item, Result):
                    w.result(item, item.t_ns)
                elif item[0] == "truth":
                    _, t, msg = item
                    w.truth(t, msg.get("action", ""), list(msg.get("events", [])), t)
                elif item[0] == "label":
                    w.label(item[1])
                else:
                    _, manifest, config, sha, ref = item
                    w.attachment("manifest.json", "application/json", json.dumps(manifest, indent=2).encode())
                    w.attachment("config.json", "application/json", json.dumps(config, indent=2, default=str).encode())
                    w.metadata("edgefusion", {"package": manifest.get("name", ""), "package_ref": ref,
                                              "package_sha256": sha,
                                              "clock_epoch_offset_ns": str(time.time_ns() - time.monotonic_ns())})
                    continue
                self.written += 1
        except BaseException as exc:
            self._error = exc
            self._q.close()

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
