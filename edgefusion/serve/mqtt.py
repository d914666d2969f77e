"""MQTT: results and device state out, text commands in, Home Assistant discovery (paho-mqtt).

Topics under ``topic_prefix`` (``P``):

- ``P/availability`` — ``online`` (retained); the last will sets ``offline``;
- ``P/result`` — every result as JSON (QoS 1);
- ``P/action`` — each emitted action as JSON;
- ``P/state`` — the current action and events (retained);
- ``P/events/<label>`` — ``ON``/``OFF`` on change (retained), for the model's labels and those of the stages
  whose events join the results (:func:`~edgefusion.stages.result_events`);
- ``P/command`` — text commands to the device (when ``commands`` is on).

Home Assistant discovery (:mod:`edgefusion.serve.discovery`, retained) makes the scene
events, the action and the command box appear by themselves; the retained configs of
labels the model no longer has are cleared on connect and on a model reload.

While the broker is down, messages wait in a bounded buffer (oldest dropped first,
counted); on reconnect (with backoff) they are sent in order. A message leaves the
buffer only when handed to paho, which keeps it until the broker acknowledged it (QoS 1)
and sends it again after a reconnect, before anything newer goes out. So a connection
lost mid-flight costs a duplicate, never a loss or a reordering. Every failure to
connect is logged with its reason (repeats of the same reason once a minute) and
:meth:`MqttSink.health` reports the connection for ``/readyz``.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import sys
import threading
import time
from typing import Any

from edgefusion.config import MqttSection
from edgefusion.errors import MissingDependencyError
from edgefusion.queues import DropCounter
from edgefusion.samples import Result
from edgefusion.serve.discovery import discovery_payloads, discovery_topics, node_id
from edgefusion.sinks import Sink
from edgefusion.sources.text import CallTextSource

__all__ = ["MqttSink", "discovery_payloads"]

log = logging.getLogger("edgefusion.mqtt")

_Msg = tuple[str, bytes, int, bool]
#: messages handed to paho and not yet acknowledged, at most
WINDOW = 100
#: after a reconnect, new messages wait this long at most for paho to resend the unacknowledged ones
RESYNC_S = 5.0
#: a connection failure with the same reason as the last one is logged again after this long
REMIND_S = 60.0


def _paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as exc:
        raise MissingDependencyError("paho-mqtt", "serve", "the MQTT sink") from exc
    return mqtt


class MqttSink(Sink):
    """Publishes results; optionally feeds ``commands`` (a text source) from ``P/command``."""

    name = "mqtt"

    def __init__(self, cfg: MqttSection, events: tuple[str, ...], model: str, drops: DropCounter | None = None,
                 commands: CallTextSource | None = None) -> None:
        mqtt = _paho()
        self._ok, self._no_conn = mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN
        self.cfg, self.events, self.model = cfg, events, model
        self.drops = drops or DropCounter()
        self.commands = commands
        self._buf: collections.deque[_Msg] = collections.deque()
        self._inflight: dict[int, _Msg] = {}
        self._lock = threading.Condition()
        self._connected = False
        self._closing = False
        self._resync_until = 0.0
        self._state: dict[str, bool] = {}
        self._announced: set[str] = set()  # the discovery config topics of the current model
        self.published = 0
        self.connects = 0
        self.failures = 0
        self.last_error: str | None = None
        self._last_logged = ("", 0.0)
        p = cfg.topic_prefix
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id or node_id(cfg),
                        clean_session=True)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None)
        c.will_set(f"{p}/availability", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=max(1, int(cfg.reconnect_max_s)))
        c.max_inflight_messages_set(WINDOW)
        c.on_connect, c.on_disconnect, c.on_connect_fail = self._on_connect, self._on_disconnect, self._on_connect_fail
        c.on_publish, c.on_message = self._on_publish, self._on_message
        self.client = c
        c.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        c.loop_start()
        self._worker = threading.Thread(target=self._loop, name="sinks-mqtt", daemon=True)
        self._worker.start()

    # -- paho callbacks (its network thread) ------------------------------------------

    def _failed(self, reason: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = reason
            last, at = self._last_logged
            due = reason != last or time.monotonic() - at >= REMIND_S
            if due:
                self._last_logged = (reason, time.monotonic())
        if due:
            log.warning("MQTT broker %s:%s: %s (attempt %d; retrying with backoff up to %.0f s; results wait in the "
                        "buffer)", self.cfg.host, self.cfg.port, reason, self.failures, self.cfg.reconnect_max_s)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this inside its `except OSError:` block, so the reason is the exception being handled
        exc = sys.exc_info()[1]
        self._failed(f"cannot connect: {exc}" if exc is not None else "cannot connect")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            self._failed(f"the broker refused the connection: {reason}")
            return
        p = self.cfg.topic_prefix
        if self.cfg.commands and self.commands is not None:
            client.subscribe(f"{p}/command", qos=1)
        if self.cfg.discovery:
            client.subscribe(discovery_topics(self.cfg), qos=1)  # retained configs of ours: stale ones get cleared
        with self._lock:
            head: list[_Msg] = [(f"{p}/availability", b"online", 1, True), *self._discovery()]
            self._buf.extendleft(reversed(head))
            self._connected = True
            # paho resends the unacknowledged messages itself; newer ones wait for them, so order holds
            self._resync_until = time.monotonic() + RESYNC_S if self._inflight else 0.0
            self.connects += 1
            self.last_error = None
            self._lock.notify_all()
        log.info("MQTT connected to %s:%s", self.cfg.host, self.cfg.port)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        with self._lock:
            self._connected = False
            if not self._closing:
                self.last_error = f"connection lost: {reason}"
        if not self._closing:
            log.warning("MQTT connection to %s:%s lost (%s); buffering, reconnecting", self.cfg.host, self.cfg.port,
                        reason)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any = None, props: Any = None) -> None:
        with self._lock:
            if self._inflight.pop(mid, None) is not None:
                self.published += 1
            self._lock.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        if msg.topic == f"{self.cfg.topic_prefix}/command":
            if self.commands is not None:
                self.commands.send(msg.payload.decode("utf-8", errors="replace"))
            return
        with self._lock:
            stale = msg.payload and msg.topic.endswith("/config") and msg.topic not in self._announced
            if stale:
                self._buf.append((msg.topic, b"", 1, True))
                self._lock.notify_all()
        if stale:
            log.info("MQTT: clearing the retained discovery config %s (no longer published)", msg.topic)

    # -- sink -------------------------------------------------------------------------

    def _discovery(self) -> list[_Msg]:
        """The discovery messages of the current model (under the lock)."""
        if not self.cfg.discovery:
            return []
        payloads = discovery_payloads(self.cfg, self.events, self.model)
        self._announced = {t for t, _ in payloads}
        return [(t, json.dumps(m).encode(), 1, True) for t, m in payloads]

    def set_model(self, events: tuple[str, ...], model: str) -> None:
        """A reload changed the model: announce its entities, clear those of labels it no longer has."""
        with self._lock:
            old = set(self._announced)
            self.events, self.model, self._state = events, model, {}
            msgs = self._discovery()
            msgs += [(t, b"", 1, True) for t in sorted(old - self._announced)]
            for m in msgs:
                self._buf.append(m)
            self._lock.notify_all()

    def _enqueue(self, topic: str, payload: bytes, retain: bool = False) -> None:
        with self._lock:
            if len(self._buf) + len(self._inflight) >= self.cfg.buffer and self._buf:
                self._buf.popleft()
                self.drops.add("mqtt", "buffer_full")
            self._buf.append((topic, payload, self.cfg.qos, retain))
            self._lock.notify_all()

    def write(self, r: Result) -> None:
        p = self.cfg.topic_prefix
        self._enqueue(f"{p}/result", json.dumps(r.to_dict(), separators=(",", ":")).encode())
        if r.emitted:
            self._enqueue(f"{p}/action", json.dumps({"seq": r.seq, "t_ns": r.t_ns, "action": r.action,
                                                     "command": r.command, "confidence": round(r.confidence, 5),
                                                     "rule": r.rule, "degraded": r.degraded}).encode())
        with self._lock:
            events = self.events
            state = {e: e in r.events for e in events}
            changed = [e for e in events if self._state.get(e) != state[e]]
            self._state = state
        if changed or r.emitted:
            self._enqueue(f"{p}/state", json.dumps({"action": r.action, "events": list(r.events)}).encode(), True)
        for e in changed:
            self._enqueue(f"{p}/events/{e}", b"ON" if state[e] else b"OFF", True)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._buf) + len(self._inflight)

    def health(self) -> dict[str, Any]:
        """The connection for ``/readyz``: connected, waiting messages, failures and the last error."""
        with self._lock:
            return {"connected": self._connected, "broker": f"{self.cfg.host}:{self.cfg.port}",
                    "buffered": len(self._buf) + len(self._inflight), "published": self.published,
                    "connects": self.connects, "failures": self.failures, "last_error": self.last_error}

    def _can_send(self) -> bool:
        if not (self._buf and self._connected) or len(self._inflight) >= WINDOW:
            return False
        return not (self._inflight and time.monotonic() < self._resync_until)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._can_send() and not (self._closing and not self._buf):
                    self._lock.wait(0.1)
                if self._closing and not self._buf:
                    return
                msg = self._buf.popleft()
            info = self.client.publish(msg[0], msg[1], qos=msg[2], retain=msg[3])
            with self._lock:
                if info.rc == self._no_conn and msg[2] == 0:  # QoS 0 is not kept by paho: back to the front
                    self._buf.appendleft(msg)
                    self._connected = False
                elif info.rc not in (self._ok, self._no_conn):
                    self.drops.add("mqtt", "publish_error")
                    log.error("MQTT: publishing to %s failed (%s); message dropped", msg[0], info.rc)
                elif msg[2] > 0:  # paho keeps it (also when the connection just dropped) until acknowledged
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
