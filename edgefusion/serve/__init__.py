"""The runtime as a service: config, HTTP health and metrics, MQTT, systemd integration."""

from __future__ import annotations

from edgefusion.serve.service import Service

__all__ = ["Service"]
