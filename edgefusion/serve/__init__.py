"""The runtime as a service: config, HTTP health and metrics, MQTT, systemd integration."""

from __future__ import annotations

from edgefusion.serve.service import RetryingSource, Service

__all__ = ["RetryingSource", "Service"]
