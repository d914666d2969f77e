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


# Home Assistant's rules for MQTT discovery, from its MQTT integration (homeassistant/components/mqtt:
# text.py, binary_sensor.py, sensor.py, util.py) and its discovery documentation.
HA_BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window"}
HA_KEYS = {  # keys each platform's discovery schema knows (anything else is dropped or refused)
    "binary_sensor": {"name", "unique_id", "state_topic", "payload_on", "payload_off", "device_class",
                      "availability_topic", "device", "value_template", "expire_after", "force_update", "off_delay"},
    "sensor": {"name", "unique_id", "state_topic", "value_template", "json_attributes_topic", "icon",
               "availability_topic", "device", "device_class", "unit_of_measurement", "expire_after"},
    "text": {"name", "unique_id", "command_topic", "state_topic", "min", "max", "mode", "pattern",
             "availability_topic", "device", "command_template", "value_template"},
}
HA_TOPIC = r"^(?P<prefix>[^+#]+)/(?P<component>\w+)/(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"


def _ha_problems(topic: str, payload: dict) -> list[str]:
    import re

    m = re.match(HA_TOPIC, topic)
    if not m:
        return [f"{topic}: not <prefix>/<component>/<node_id>/<object_id>/config"]
    comp = m["component"]
    out = [f"{topic}: unknown key {k}" for k in payload if k not in HA_KEYS[comp]]
    for key in ("state_topic", "command_topic", "availability_topic", "json_attributes_topic"):
        if key in payload and (not payload[key] or set(payload[key]) & {"+", "#", "\0"}):
            out.append(f"{topic}: {key} is not a valid topic")
    if not payload.get("unique_id") or not payload.get("device", {}).get("identifiers"):
        out.append(f"{topic}: needs unique_id and device.identifiers")
    if comp == "binary_sensor" and payload.get("device_class", "occupancy") not in HA_BINARY_SENSOR_CLASSES:
        out.append(f"{topic}: device_class {payload['device_class']!r}")
    if comp == "text":
        lo, hi = payload.get("min", 0), payload.get("max", 255)
        if not (isinstance(hi, int) and 0 <= lo < hi <= 255):
            out.append(f"{topic}: text length min {lo} / max {hi} (HA: min < max <= 255)")
        if "command_topic" not in payload:
            out.append(f"{topic}: a text entity needs a command_topic")
    if comp in ("binary_sensor", "sensor") and "state_topic" not in payload:
        out.append(f"{topic}: needs a state_topic")
    return out


def test_discovery_follows_home_assistants_rules():
    from edgefusion.package import load_package
    from edgefusion.serve.discovery import DEVICE_CLASSES, HA_TEXT_MAX, discovery_payloads

    assert set(DEVICE_CLASSES.values()) <= HA_BINARY_SENSOR_CLASSES and HA_TEXT_MAX == 255
    for name in ("smart_home", "driving"):
        pkg = load_package(name)
        events = pkg.output("multilabel_logits").labels
        payloads = discovery_payloads(MqttSection(topic_prefix="edge fusion/kitchen cam"), events, pkg.name)
        assert len(payloads) == len(events) + 2
        assert [p for t, m in payloads for p in _ha_problems(t, m)] == []
        classes = {m["name"]: m.get("device_class") for t, m in payloads if "/binary_sensor/" in t}
        assert sum(c is not None for c in classes.values()) >= len(events) - 2  # most labels have a class
    assert _ha_problems("homeassistant/text/n/command/config",  # the old payload: refused by Home Assistant
                        {"name": "c", "unique_id": "n_c", "command_topic": "p/command", "max": 256,
                         "device": {"identifiers": ["n"]}})


def test_connect_failures_are_logged_with_the_reason_and_in_health(caplog):
    import logging

    from edgefusion.serve.mqtt import MqttSink

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edgefusion.mqtt"):
        sink = MqttSink(MqttSection(enabled=True, port=_free_port(), reconnect_max_s=1.0), EVENTS, "m")
        try:
            deadline = time.monotonic() + 5
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.02)
            took = time.monotonic() - t0
            health = sink.health()
        finally:
            sink.close()
    assert took < 2.0
    assert "cannot connect" in caplog.records[0].getMessage() and "refused" in caplog.records[0].getMessage()
    assert not health["connected"] and "refused" in health["last_error"] and health["failures"] >= 1


def _retained(port: int, topic: str) -> dict[str, bytes]:
    """The retained messages under ``topic`` (a fresh subscriber gets them at once)."""
    listener = Listener(port, [topic])
    time.sleep(0.5)
    listener.close()
    return {t: p for t, p, retain in listener.messages if retain and p}


def test_retained_configs_of_labels_no_longer_published_are_cleared():
    from edgefusion.serve.mqtt import MqttSink

    port = _free_port()
    broker = Broker(port)
    broker.start()
    cfg = MqttSection(enabled=True, port=port, topic_prefix="ef/clear", commands=False)
    node = "homeassistant/binary_sensor/ef_clear"
    try:
        first = MqttSink(cfg, ("dark", "person", "smoke_alarm"), "m1")
        _wait_connected(first)
        first.flush()
        first.close()
        assert {t for t in _retained(port, "homeassistant/#") if "/binary_sensor/" in t} == \
            {f"{node}/dark/config", f"{node}/person/config", f"{node}/smoke_alarm/config"}

        second = MqttSink(cfg, ("dark",), "m2")  # a model without person and smoke_alarm
        _wait_connected(second)
        time.sleep(0.5)
        second.flush()
        after_restart = {t for t in _retained(port, "homeassistant/#") if "/binary_sensor/" in t}
        second.set_model(("dark", "door_open"), "m3")  # a reload: door_open appears, nothing else goes
        time.sleep(0.3)
        second.flush()
        after_reload = {t for t in _retained(port, "homeassistant/#") if "/binary_sensor/" in t}
        second.close()
    finally:
        broker.stop()
    assert after_restart == {f"{node}/dark/config"}
    assert after_reload == {f"{node}/dark/config", f"{node}/door_open/config"}


def _wait_connected(sink, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sink.connects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sink.connects > 0, "the sink did not connect"


def _service_config(http_port: int, mqtt_port: int, prefix: str, task: str, mqtt_extra: str = "") -> str:
    """A service on ``task``'s built-in package and synthesized camera, publishing to the broker on ``mqtt_port``."""
    return f"""
[model]
package = "{task}"
threads = 1
[sources.camera]
uri = "synth:{task}"
loop = true
[sinks.mqtt]
enabled = true
port = {mqtt_port}
topic_prefix = "{prefix}"
{mqtt_extra}[http]
port = {http_port}
[logging]
json = true
"""


@pytest.mark.slow
def test_service_with_the_broker_down_at_start_logs_it_reports_it_and_delivers_in_order(tmp_path):
    from serve_kit import Served, free_port, wait_for

    http_port, mqtt_port = free_port(), _free_port()
    cfg = _service_config(http_port, mqtt_port, "ef/svc", "smart_home", "reconnect_max_s = 2.0\n")
    svc = Served(tmp_path, cfg)
    broker, listener = Broker(mqtt_port), None
    try:
        svc.port = http_port
        rz = wait_for(lambda: (r := svc.readyz())["warm"] and r["sinks"].get("mqtt") and r, 60, "the service")
        logs = [json.loads(x) for x in svc.log().splitlines() if x.startswith("{")]
        ready_t = next(x["t"] for x in logs if x["msg"].startswith("ready"))
        warning = wait_for(lambda: next((json.loads(x) for x in svc.log().splitlines()
                                         if "cannot connect" in x), None), 5, "the connect failure in the log")
        rz = svc.readyz()
        assert rz["code"] == 503 and "mqtt_disconnected" in rz["reasons"]
        assert rz["sinks"]["mqtt"]["connected"] is False and "refused" in rz["sinks"]["mqtt"]["last_error"]
        assert rz["streams"]["camera"]["fresh"]  # only the sink is missing
        # start the broker right after a failed attempt: the next one is a second or more away
        failures = rz["sinks"]["mqtt"]["failures"]
        wait_for(lambda: svc.readyz()["sinks"]["mqtt"]["failures"] > failures, 10, "another attempt")
        broker.start()
        listener = Listener(mqtt_port, ["ef/svc/result"])
        wait_for(lambda: svc.readyz()["code"] == 200, 15, "readiness once the broker is up")
        wait_for(lambda: len(listener.seqs("ef/svc")) > 100, 15, "the buffered results")
        rc, _ = svc.stop()
        time.sleep(0.3)
    finally:
        if listener is not None:
            listener.close()
        svc.close()
        broker.stop()
    assert warning["t"] - ready_t < 2.0 and warning["level"] == "warning"
    seqs = [json.loads(p)["seq"] for t, p, _ in listener.messages if t == "ef/svc/result"]
    assert seqs[0] == 0 and seqs == sorted(set(seqs))  # from the first buffered result on, in order, once each
    assert seqs == list(range(len(seqs)))
    assert rc == 0


@pytest.mark.slow
def test_a_stages_events_are_announced_published_and_cleared_when_a_reload_drops_it(tmp_path):
    """driving has no `speech`; a VAD stage whose events join the results' makes Home Assistant see a
    `speech` entity and its state topic, and a reload without the stage clears that entity."""
    pytest.importorskip("silero_vad")
    import signal

    from serve_kit import Served, free_port, wait_for

    from edgefusion.anymodel import silero_vad_package

    vad = silero_vad_package(tmp_path / "silero_vad").path
    http_port, mqtt_port = free_port(), _free_port()
    base = _service_config(http_port, mqtt_port, "ef/stage", "driving")
    broker = Broker(mqtt_port)
    broker.start()
    svc = Served(tmp_path, base + f'[[stages]]\nname = "vad"\npackage = "{vad}"\nevents = true\n')

    def speech_config() -> list[str]:
        return [t for t in _retained(mqtt_port, "homeassistant/#") if t.endswith("/speech/config")]

    try:
        svc.wait_ready(http_port)
        announced = wait_for(lambda: speech_config() or None, 15, "the stage's entity")
        assert announced and "/binary_sensor/" in announced[0]
        wait_for(lambda: "ef/stage/events/speech" in _retained(mqtt_port, "ef/stage/#"), 15, "the stage's state")
        svc.cfg.write_text(base)  # the stage goes
        svc.send(signal.SIGHUP)
        wait_for(lambda: svc.readyz()["last_reload"].get("ok") is True, 30, "the reload")
        wait_for(lambda: not speech_config(), 15, "the entity cleared")
        rc, _ = svc.stop()
    finally:
        svc.close()
        broker.stop()
    assert rc == 0, svc.log()
