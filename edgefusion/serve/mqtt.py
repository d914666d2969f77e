"""MQTT: results and device state out, text commands in, Home Assistant discovery (paho-mqtt).

Topics under ``topic_prefix`` (``P``):

- ``P/availability`` — ``online`` (retained); the last will sets ``offline``;
- ``P/result`` — every result as JSON (QoS 1);
- ``P/action`` — each emitted action as JSON;
- ``P/state`` — the current action and events (retained);
- ``P/events/<label>`` — ``ON``/``OFF`` on change (retained);
- ``P/command`` — text commands to the device (when ``commands`` is on).

Home Assistant discovery (``<discovery_prefix>/binary_sensor|sensor|text/<node>/<id>/config``,
retained) makes the scene events, the action and the command box appear by themselves.

While the broker is down, messages wait in a bounded buffer (oldest dropped first,
counted); on reconnect (with backoff) they are sent in order. A message leaves the
buffer only when the broker acknowledged it (QoS 1), so a connection lost mid-flight
costs a duplicate, never a loss.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import re
import threading
import time
from typing import Any

from edgefusion import __version__
from edgefusion.config import MqttSection
from edgefusion.errors import MissingDependencyError
from edgefusion.queues import DropCounter
from edgefusion.samples import Result
from edgefusion.sinks import Sink
from edgefusion.sources.text import CallTextSource

__all__ = ["MqttSink", "discovery_payloads"]

log = logging.getLogger("edgefusion.mqtt")

_Msg = tuple[str, bytes, int, bool]


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MissingDependencyError("paho-mqtt", "serve", "the MQTT sink") from exc
    return mqtt


def node_id(cfg: MqttSection) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", cfg.client_id or cfg.topic_prefix).strip("_") or "edgefusion"


def discovery_payloads(cfg: MqttSection, events: tuple[str, ...], model: str) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of the Home Assistant discovery messages."""
    node, p, d = node_id(cfg), cfg.topic_prefix, cfg.discovery_prefix
    device: dict[str, Any] = {"identifiers": [node], "name": cfg.device_name, "manufacturer": "EdgeFusion",
                              "model": model, "sw_version": __version__}
    common: dict[str, Any] = {"availability_topic": f"{p}/availability", "device": device}
    out = [(f"{d}/binary_sensor/{node}/{label}/config",
            {"name": label.replace("_", " "), "unique_id": f"{node}_{label}", "state_topic": f"{p}/events/{label}",
             "payload_on": "ON", "payload_off": "OFF", **common}) for label in events]
    out.append((f"{d}/sensor/{node}/action/config",
                {"name": "action", "unique_id": f"{node}_action", "state_topic": f"{p}/state",
                 "value_template": "{{ value_json.action }}", "json_attributes_topic": f"{p}/state", **common}))
    if cfg.commands:
        out.append((f"{d}/text/{node}/command/config",
                    {"name": "command", "unique_id": f"{node}_command", "command_topic": f"{p}/command",
                     "max": 256, **common}))
    return out


class MqttSink(Sink):
    """Publishes results; optionally feeds ``commands`` (a text source) from ``P/command``."""

    name = "mqtt"

    def __init__(self, cfg: MqttSection, events: tuple[str, ...], model: str, drops: DropCounter | None = None,
                 commands: CallTextSource | None = None) -> None:
        mqtt = _paho()
        self.cfg, self.events, self.model = cfg, events, model
        self.drops = drops or DropCounter()
        self.commands = commands
        self._buf: collections.deque[_Msg] = collections.deque()
        self._inflight: dict[int, _Msg] = {}
        self._lock = threading.Condition()
        self._connected = False
        self._closing = False
        self._state: dict[str, bool] = {}
        self.published = 0
        self.connects = 0
        p = cfg.topic_prefix
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id or node_id(cfg),
                        clean_session=True)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None)
        c.will_set(f"{p}/availability", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(cfg.reconnect_max_s)))
        c.max_inflight_messages_set(200)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        c.on_publish, c.on_message = self._on_publish, self._on_message
        self.client = c
        c.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        c.loop_start()
        self._worker = threading.Thread(target=self._loop, name="sinks-mqtt", daemon=True)
        self._worker.start()

    # -- paho callbacks (its network thread) ------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT broker %s:%s refused the connection: %s", self.cfg.host, self.cfg.port, reason)
            return
        p = self.cfg.topic_prefix
        head: list[_Msg] = [(f"{p}/availability", b"online", 1, True)]
        if self.cfg.discovery:
            head += [(t, json.dumps(m).encode(), 1, True) for t, m in discovery_payloads(self.cfg, self.events,
                                                                                        self.model)]
        if self.cfg.commands and self.commands is not None:
            client.subscribe(f"{p}/command", qos=1)
        with self._lock:
            # unacknowledged messages go back first, in order, then the connection's own announcements
            pending = [m for _, m in sorted(self._inflight.items())]
            self._inflight.clear()
            self._buf.extendleft(reversed(head + pending))
            self._connected = True
            self.connects += 1
            self._lock.notify_all()
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        with self._lock:
            self._connected = False
        if not self._closing:
            log.warning("MQTT connection to %s:%s lost (%s); buffering, reconnecting", self.cfg.host, self.cfg.port,
                        reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None, props: Any = None) -> None:
        with self._lock:
            if self._inflight.pop(mid, None) is not None:
                self.published += 1
            self._lock.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if self.commands is not None:
            self.commands.send(msg.payload.decode("utf-8", errors="replace"))

    # -- sink -------------------------------------------------------------------------

    def _enqueue(self, topic: str, payload: bytes, retain: bool = False) -> None:
        with self._lock:
            if len(self._buf) >= self.cfg.buffer:
                self._buf.popleft()
                self.drops.add("mqtt", "buffer_full")
            self._buf.append((topic, payload, self.cfg.qos, retain))
            self._lock.notify_all()

    def write(self, r: Result) -> None:
        p = self.cfg.topic_prefix
        d = r.to_dict()
        self._enqueue(f"{p}/result", json.dumps(d, separators=(",", ":")).encode())
        if r.emitted:
            self._enqueue(f"{p}/action", json.dumps({"seq": r.seq, "t_ns": r.t_ns, "action": r.action,
                                                     "command": r.command, "confidence": round(r.confidence, 5),
                                                     "rule": r.rule, "degraded": r.degraded}).encode())
        state = {e: e in r.events for e in self.events}
        changed = [e for e in self.events if self._state.get(e) != state[e]]
        if changed or r.emitted:
            self._enqueue(f"{p}/state", json.dumps({"action": r.action, "events": list(r.events)}).encode(), True)
        for e in changed:
            self._enqueue(f"{p}/events/{e}", b"ON" if state[e] else b"OFF", True)
        self._state = state

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._buf) + len(self._inflight)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not (self._buf and self._connected) and not (self._closing and not self._buf):
                    self._lock.wait(0.1)
                if self._closing and not self._buf:
                    return
                msg = self._buf.popleft()
            info = self.client.publish(msg[0], msg[1], qos=msg[2], retain=msg[3])
            with self._lock:
                if info.rc != 0:  # not connected after all: back to the front
                    self._buf.appendleft(msg)
                    self._connected = False
                elif msg[2] > 0:
                    self._inflight[info.mid] = msg
                    if info.is_published():
                        self._inflight.pop(info.mid, None)
                        self.published += 1
                else:
                    self.published += 1

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until everything buffered has been acknowledged."""
        end = time.monotonic() + timeout_s
        with self._lock:
            while (self._buf or self._inflight) and self._connected and time.monotonic() < end:
                self._lock.wait(0.05)

    def close(self) -> None:
        self.flush()
        self._closing = True
        with self._lock:
            left = len(self._buf) + len(self._inflight)
            self._buf.clear()
            self._lock.notify_all()
        if left:
            self.drops.add("mqtt", "unsent_at_exit", left)
            log.warning("MQTT: %d messages were not delivered before shutdown", left)
        self._worker.join(2)
        if self._connected:
            info = self.client.publish(f"{self.cfg.topic_prefix}/availability", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()
