"""The live view: a Foxglove WebSocket client subscribes and receives camera and results; slow viewers cost drops."""

from __future__ import annotations

import asyncio
import json
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import websockets
from conftest import Ticker
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage

from edgefusion import load_package, open_backend
from edgefusion.errors import ConfigError
from edgefusion.liveview import LiveView, parse_address
from edgefusion.pipeline import PipelineConfig
from edgefusion.queues import DropCounter
from edgefusion.runbuild import RunBuilder
from edgefusion.samples import Frame

# foxglove-sdk's server speaks the Foxglove WebSocket protocol under its current name, foxglove.sdk.v1 (the same
# protocol as foxglove.websocket.v1, renamed; the SDK refuses the old name with HTTP 400). Offer both, as viewers do.
SUBPROTOCOLS = ["foxglove.sdk.v1", "foxglove.websocket.v1"]


async def _watch(port: int, topics: set[str], started: threading.Event, need: int = 3,
                 timeout_s: float = 20.0) -> dict[str, list[bytes]]:
    """Connect, subscribe to ``topics``, collect message payloads until each has ``need`` (or time runs out)."""
    got: dict[str, list[bytes]] = {t: [] for t in topics}
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=SUBPROTOCOLS) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol in SUBPROTOCOLS
        channels: dict[str, dict] = {}
        while not topics <= set(channels):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if msg["op"] == "advertise":
                channels.update({c["topic"]: c for c in msg["channels"]})
        subs = {i: t for i, t in enumerate(sorted(topics), start=1)}
        await ws.send(json.dumps({"op": "subscribe", "subscriptions": [
            {"id": i, "channelId": channels[t]["id"]} for i, t in subs.items()]}))
        await asyncio.sleep(0.3)  # the server applies the subscription before the run starts
        started.set()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and any(len(v) < need for v in got.values()):
            data = await asyncio.wait_for(ws.recv(), max(0.1, end - time.monotonic()))
            if isinstance(data, bytes) and data[0] == 0x01:  # message data: opcode, subscription, time, payload
                sub, _ = struct.unpack_from("<IQ", data, 1)
                got[subs[sub]].append(data[13:])
    return got


def test_a_websocket_client_subscribes_and_receives_camera_and_results():
    pkg = load_package("smart_home")
    builder = RunBuilder(PipelineConfig())
    builder.add_source(Ticker(n=90, fps=30))
    builder.live_view("127.0.0.1:0")
    started = threading.Event()
    with open_backend("null", pkg) as be, builder.build(pkg, be) as run:
        port = run.live_view.port
        stats: list = []

        def go() -> None:
            started.wait(30)
            stats.append(run.pipeline.run())

        t = threading.Thread(target=go)
        t.start()
        got = asyncio.run(_watch(port, {"/camera", "/results", "/audio_level"}, started))
        t.join(30)
    assert len(got["/camera"]) >= 3 and len(got["/results"]) >= 3 and len(got["/audio_level"]) >= 3
    img = CompressedImage.FromString(got["/camera"][0])
    assert img.format == "jpeg" and img.data[:2] == b"\xff\xd8"
    result = json.loads(got["/results"][0])
    assert {"action", "scores", "seq", "timestamp"} <= set(result)
    assert abs(result["timestamp"]["sec"] - time.time()) < 120  # on the wall clock, not the monotonic one
    # a live run drops frames when this shared machine is busy: every frame is either a step or a counted drop
    assert stats[0].steps + stats[0].drops.get("frames/queue_full", 0) == 90


def test_a_viewer_that_cannot_keep_up_costs_counted_drops_not_the_caller():
    drops = DropCounter()
    view = LiveView("127.0.0.1:0", drops=drops, capacity=4, camera_fps=1000)
    publish = view._publish
    view._publish = lambda item: (time.sleep(0.05), publish(item))  # type: ignore[method-assign]
    try:
        img = np.zeros((48, 64, 3), np.uint8)
        for i in range(100):
            view.tap(Frame(t_ns=i * 10**6, image=img))
    finally:
        view.close()
    assert drops.snapshot().get("liveview/queue_full", 0) >= 80
    assert view.sent < 20


@pytest.mark.parametrize("bad", ["", "host:", ":99", "70000", "a:b"])
def test_a_bad_address_is_one_line(bad):
    with pytest.raises(ConfigError, match=r"--foxglove: expected \[HOST:\]PORT"):
        parse_address(bad)


def test_serve_with_foxglove_streams_results_to_a_viewer(tmp_path):
    from serve_kit import free_port, get, wait_for
    from test_serve import _config

    http, fox = free_port(), free_port()
    cfg = tmp_path / "service.toml"
    cfg.write_text(_config("smart_home", http, tmp_path / "results.jsonl"))
    proc = subprocess.Popen([sys.executable, "-m", "edgefusion", "serve", "--config", str(cfg), "--foxglove",
                             f"127.0.0.1:{fox}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: proc.poll() is None and get(http, "/readyz")[0] == 200, 60, "the service to be ready")
        got = asyncio.run(_watch(fox, {"/results", "/camera"}, threading.Event(), need=2))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert len(got["/results"]) >= 2 and len(got["/camera"]) >= 2
    assert json.loads(got["/results"][0])["model"] == "smart_home-attention"


def test_a_detectors_boxes_reach_the_viewer_as_image_annotations():
    from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations

    from edgefusion.samples import Result

    person = [{"label": "person", "score": 0.9, "box": [10.0, 20.0, 50.0, 80.0]}]

    def result(seq: int) -> Result:
        return Result(t_ns=seq * 33_000_000, seq=seq, action="none", action_score=1.0, scores={}, events=(),
                      model="m", stages={"det": {"events": ["person"], "scores": {}, "outputs": {"boxes": person}}})

    view = LiveView("127.0.0.1:0")
    try:
        view.write(result(0))  # the first boxes make the channel, which a viewer then sees advertised
        deadline = time.monotonic() + 10
        while view.sent < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = threading.Event()

        def feed() -> None:
            started.wait(30)
            for seq in range(1, 30):
                view.write(result(seq))
                time.sleep(0.02)

        t = threading.Thread(target=feed)
        t.start()
        got = asyncio.run(_watch(view.port, {"/stages/det/boxes"}, started))
        t.join(30)
    finally:
        view.close()
    m = ImageAnnotations.FromString(got["/stages/det/boxes"][0])
    assert [x.text for x in m.texts] == ["person 0.90"] and len(m.points[0].points) == 4
