"""The MQTT sink against a real mosquitto broker on 127.0.0.1 (started here)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest

from edgefusion.config import MqttSection
from edgefusion.queues import DropCounter
from edgefusion.samples import Result

mqtt = pytest.importorskip("paho.mqtt.client")
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if shutil.os.path.exists(p)), None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (.ci/run installs it)")

EVENTS = ("dark", "person")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, port: int) -> None:
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class Listener:
    """A subscriber collecting everything under the prefix and the discovery prefix."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listener-{port}-{time.monotonic_ns()}")
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe([(t, 1) for t in topics])
        c.on_subscribe = lambda *a: self.subscribed.set()
        c.on_message = lambda cl, u, m: self.messages.append((m.topic, m.payload, m.retain))
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c
        assert self.subscribed.wait(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def seqs(self, prefix: str) -> set[int]:
        return {json.loads(p)["seq"] for t, p, _ in self.messages if t == f"{prefix}/result"}


def _result(seq: int) -> Result:
    return Result(t_ns=seq * 33_333_333, seq=seq, action="none" if seq % 10 else "lights_on", action_score=0.9,
                  scores={"dark": 0.9 if seq % 20 < 10 else 0.1, "person": 0.2}, events=("dark",) if seq % 20 < 10
                  else (), emitted=seq % 10 == 0, model="test")


def test_results_discovery_and_no_loss_across_a_broker_outage():
    from edgefusion.serve.mqtt import MqttSink

    port = _free_port()
    broker = Broker(port)
    broker.start()
    prefix = "edgefusion/test_dev"
    listener = Listener(port, [f"{prefix}/#", "homeassistant/#"])
    drops = DropCounter()
    cfg = MqttSection(enabled=True, port=port, topic_prefix=prefix, buffer=1000, reconnect_max_s=2.0)
    sink = MqttSink(cfg, EVENTS, "test-model", drops)
    try:
        seq = 0
        for _ in range(30):
            sink.write(_result(seq))
            seq += 1
            time.sleep(0.01)
        sink.flush()
        assert listener.seqs(prefix) == set(range(30))

        # discovery payloads and availability
        disc = {t: json.loads(p) for t, p, _ in listener.messages if t.startswith("homeassistant/")}
        assert set(disc) == {"homeassistant/binary_sensor/edgefusion_test_dev/dark/config",
                             "homeassistant/binary_sensor/edgefusion_test_dev/person/config",
                             "homeassistant/sensor/edgefusion_test_dev/action/config",
                             "homeassistant/text/edgefusion_test_dev/command/config"}
        for payload in disc.values():
            for key in ("name", "unique_id", "availability_topic", "device"):
                assert key in payload
            assert payload["device"]["identifiers"] == ["edgefusion_test_dev"]
        assert disc["homeassistant/binary_sensor/edgefusion_test_dev/dark/config"]["state_topic"] == \
            f"{prefix}/events/dark"
        assert (f"{prefix}/availability", b"online") in [(t, p) for t, p, _ in listener.messages]

        # the broker goes away for 5 s while results keep coming
        listener.close()
        broker.stop()
        t_end = time.monotonic() + 5.0
        while time.monotonic() < t_end:
            sink.write(_result(seq))
            seq += 1
            time.sleep(1 / 30)
        broker.start()
        listener = Listener(port, [f"{prefix}/#"])
        deadline = time.monotonic() + 20
        while listener.seqs(prefix) != set(range(30, seq)) and time.monotonic() < deadline:
            time.sleep(0.1)
        got = listener.seqs(prefix)
        assert set(range(30, seq)) <= got, f"lost {sorted(set(range(30, seq)) - got)[:10]}"
        assert seq - 30 > 120  # results really were produced during the outage
        assert drops.total() == 0
        assert sink.connects >= 2
    finally:
        sink.close()
        time.sleep(0.2)
        listener.close()
        broker.stop()


def test_buffer_overflow_is_counted_when_no_broker_is_there():
    from edgefusion.serve.mqtt import MqttSink

    drops = DropCounter()
    sink = MqttSink(MqttSection(enabled=True, port=_free_port(), buffer=5, reconnect_max_s=1.0), EVENTS, "m", drops)
    try:
        for i in range(20):
            sink.write(_result(i * 10 + 1))  # not emitted, no state change after the first: one message each
    finally:
        sink.close()
    snap = drops.snapshot()
    assert snap["mqtt/buffer_full"] >= 15
    assert snap.get("mqtt/unsent_at_exit", 0) <= 5


def test_commands_arrive_on_the_command_topic():
    from edgefusion.serve.mqtt import MqttSink
    from edgefusion.sources import CallTextSource

    port = _free_port()
    broker = Broker(port)
    broker.start()
    commands = CallTextSource()
    sink = MqttSink(MqttSection(enabled=True, port=port, topic_prefix="ef/cmd"), EVENTS, "m", DropCounter(),
                    commands=commands)
    try:
        deadline = time.monotonic() + 10
        while sink.connects == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the subscription is made in on_connect
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        pub.publish("ef/cmd/command", "turn on the lights", qos=1).wait_for_publish(5)
        pub.publish("ef/cmd/command", "lock\x07 the door", qos=1).wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()
        got = []
        for cmd in commands:
            got.append(cmd.text)
            if len(got) == 2:
                break
        assert got == ["turn on the lights", "lock the door"]
    finally:
        sink.close()
        broker.stop()
