"""Home Assistant MQTT discovery: the config messages that make the device appear by itself.

Checked against Home Assistant's own rules (its MQTT integration's schemas and the MQTT
discovery documentation):

- topics are ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` with node
  and object ids of ``[a-zA-Z0-9_-]``; every entity has a ``unique_id`` and the shared
  ``device`` (``identifiers``), so they group under one device;
- a ``text`` entity's ``max`` is at most 255 (``MAX_LENGTH_STATE_STATE``; above it the
  whole entity is rejected) and above ``min``;
- a ``binary_sensor``'s ``device_class`` is one of ``BinarySensorDeviceClass`` (labels
  with no fitting class have none, which Home Assistant allows);
- an entity is removed by publishing an empty retained payload on its config topic:
  :func:`discovery_topics` lets the sink clear the configs of labels a model no longer has.

Example:
    >>> from edgefusion.config import MqttSection
    >>> cfg = MqttSection(topic_prefix="home/cam")
    >>> [t for t, _ in discovery_payloads(cfg, ("person",), "m")]  # doctest: +NORMALIZE_WHITESPACE
    ['homeassistant/binary_sensor/home_cam/person/config', 'homeassistant/sensor/home_cam/action/config',
     'homeassistant/text/home_cam/command/config']
    >>> dict(discovery_payloads(cfg, ("person",), "m"))["homeassistant/binary_sensor/home_cam/person/config"][
    ...     "device_class"]
    'occupancy'
"""

from __future__ import annotations

import re
from typing import Any

from edgefusion import __version__
from edgefusion.config import MqttSection

__all__ = ["DEVICE_CLASSES", "HA_TEXT_MAX", "discovery_payloads", "discovery_topics", "node_id"]

#: Home Assistant's longest state (``homeassistant.const.MAX_LENGTH_STATE_STATE``), the text entity's ``max``
HA_TEXT_MAX = 255

#: event label -> Home Assistant binary sensor device class (ON means the class's "on": detected, open, unsafe)
DEVICE_CLASSES = {
    # smart home
    "person": "occupancy", "door_open": "door", "doorbell": "sound", "glass_break": "safety",
    "smoke_alarm": "smoke", "speech": "sound",
    # driving
    "pedestrian": "occupancy", "vehicle_close": "safety", "emergency_lights": "safety", "siren": "sound",
    "horn": "sound",
    # "dark" has none: the "light" class means ON = light detected, the opposite of dark
}


def node_id(cfg: MqttSection) -> str:
    """The device's node id: the client id or the topic prefix, cut to ``[a-zA-Z0-9_-]``."""
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", cfg.client_id or cfg.topic_prefix).strip("_") or "edgefusion"


def _object_id(label: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "_", label).strip("_") or "label"


def discovery_payloads(cfg: MqttSection, events: tuple[str, ...], model: str) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every discovery message: one binary sensor per event, the action, the command box."""
    node, p, d = node_id(cfg), cfg.topic_prefix, cfg.discovery_prefix
    device: dict[str, Any] = {"identifiers": [node], "name": cfg.device_name, "manufacturer": "EdgeFusion",
                              "model": model, "sw_version": __version__}
    common: dict[str, Any] = {"availability_topic": f"{p}/availability", "device": device}
    out: list[tuple[str, dict[str, Any]]] = []
    for label in events:
        oid = _object_id(label)
        payload = {"name": label.replace("_", " "), "unique_id": f"{node}_{oid}", "state_topic": f"{p}/events/{label}",
                   "payload_on": "ON", "payload_off": "OFF", **common}
        if label in DEVICE_CLASSES:
            payload["device_class"] = DEVICE_CLASSES[label]
        out.append((f"{d}/binary_sensor/{node}/{oid}/config", payload))
    out.append((f"{d}/sensor/{node}/action/config",
                {"name": "action", "unique_id": f"{node}_action", "state_topic": f"{p}/state",
                 "value_template": "{{ value_json.action }}", "json_attributes_topic": f"{p}/state",
                 "icon": "mdi:gesture-tap", **common}))
    if cfg.commands:
        out.append((f"{d}/text/{node}/command/config",
                    {"name": "command", "unique_id": f"{node}_command", "command_topic": f"{p}/command",
                     "min": 0, "max": HA_TEXT_MAX, "mode": "text", **common}))
    return out


def discovery_topics(cfg: MqttSection) -> str:
    """The subscription that finds this device's retained configs (to clear those no longer published)."""
    return f"{cfg.discovery_prefix}/+/{node_id(cfg)}/+/config"
