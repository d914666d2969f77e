"""The live view's cost: end-to-end latency of a real-time run without it, with it, and with a slow viewer.

Each case runs the synthesized smart_home camera, audio and commands at 30 fps in real time
through the model (ONNX Runtime, 1 thread) for ``--duration`` seconds:

- ``off``: no live view;
- ``on_no_viewer``: ``--foxglove`` serving, nobody connected;
- ``fast_viewer``: a WebSocket client subscribed to every channel, reading as fast as it can;
- ``slow_viewer``: a client subscribed to every channel that reads one message per second
  (its socket fills; the server drops that viewer's oldest messages).

Each viewer is a separate process (this script with ``--viewer PORT``), as a real one is.

For each: e2e p50/p99/max, the live view's own counted drops (``liveview/queue_full``),
the messages it sent and the messages the viewer received. Writes JSON (default
bench/results/live_view.json). Timing figures on a shared machine vary between runs: compare
cases within one run.

    python bench/live_view.py [--duration 20] [--out bench/results/live_view.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import threading
from typing import Any

import websockets

from edgefusion import load_package, open_backend
from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.pipeline import PipelineConfig
from edgefusion.runbuild import RunBuilder

SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


class Viewer(threading.Thread):
    """A Foxglove WebSocket client on its own thread: subscribes to everything, reads every ``delay_s``."""

    def __init__(self, port: int, delay_s: float) -> None:
        super().__init__(daemon=True)
        self.port, self.delay_s = port, delay_s
        self.received = 0
        self.subscribed = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{self.port}", subprotocols=SUBPROTOCOLS,  # type: ignore[arg-type]
                                      max_queue=4) as ws:
            channels: list[dict[str, Any]] = []
            while len(channels) < 5:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if msg["op"] == "advertise":
                    channels += msg["channels"]
            await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": i, "channelId": c["id"]} for i, c in enumerate(channels, start=1)]}))
            self.subscribed.set()
            while not self.done.is_set():
                try:
                    data = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                except websockets.ConnectionClosed:
                    return  # the run ended and the server stopped
                if isinstance(data, bytes):
                    self.received += 1
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)


def case(name: str, duration_s: float, viewer_delay_s: float | None, live: bool) -> dict[str, Any]:
    pkg = load_package("smart_home")
    b = RunBuilder(PipelineConfig())
    b.camera("synth:smart_home", pace=True)
    if live:
        b.live_view("127.0.0.1:0")
    viewer = None
    with open_backend("onnxruntime", pkg, threads=1) as be, b.build(pkg, be) as run:
        if viewer_delay_s is not None:
            viewer = subprocess.Popen([sys.executable, __file__, "--viewer", str(run.live_view.port),
                                       "--viewer-delay", str(viewer_delay_s)], stdout=subprocess.PIPE, text=True)
            assert viewer.stdout is not None and viewer.stdout.readline().strip() == "subscribed"
        stats = run.pipeline.run(timeout_s=duration_s)
        view = run.live_view
        received = None
        if viewer is not None:
            viewer.send_signal(signal.SIGTERM)
            out, _ = viewer.communicate(timeout=10)
            received = int(out.split()[-1])
    sent = view.sent if view is not None else 0  # after close: the view's thread has finished
    e2e = stats.latency_ms.get("end_to_end", {})
    return {"case": name, "steps": stats.steps, "e2e_ms": {k: e2e.get(k) for k in ("p50", "p90", "p99", "max")},
            "drops": stats.drops, "liveview_queue_full": stats.drops.get("liveview/queue_full", 0),
            "liveview_sent": sent, "viewer_received": received}


def viewer_main(port: int, delay_s: float) -> None:
    """The viewer process: say when subscribed, count messages until SIGTERM, print the count."""
    v = Viewer(port, delay_s)
    signal.signal(signal.SIGTERM, lambda *_: v.done.set())
    v.start()
    v.subscribed.wait(20)
    print("subscribed", flush=True)
    v.done.wait()
    v.join(5)
    print(v.received, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per case (default 20)")
    ap.add_argument("--out", default="bench/results/live_view.json")
    ap.add_argument("--viewer", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--viewer-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.viewer:
        viewer_main(a.viewer, a.viewer_delay)
        return
    rows = [case("off", a.duration, None, False), case("on_no_viewer", a.duration, None, True),
            case("fast_viewer", a.duration, 0.0, True), case("slow_viewer", a.duration, 1.0, True)]
    for r in rows:
        print(f"{r['case']:<14} e2e p50 {r['e2e_ms']['p50']} p99 {r['e2e_ms']['p99']} ms, liveview drops "
              f"{r['liveview_queue_full']}, sent {r['liveview_sent']}, viewer got {r['viewer_received']}")
    save_json({"machine": machine_facts(), "note": "2 shared CPU cores, loaded by other work while measured; "
               "compare the cases of one run", "duration_s": a.duration, "cases": rows}, a.out)


if __name__ == "__main__":
    main()
