"""Message schemas of EdgeFusion logs (MCAP, JSON message encoding).

Sensor data uses Foxglove's well-known schemas so a log opens in Foxglove with images
and audio visible; ``bytes`` fields are base64 strings, as Foxglove expects in JSON. Our
own records (commands, results, ground truth, label spans) have small JSON schemas of their own.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

__all__ = ["SCHEMAS", "TOPICS", "from_time", "to_time"]

_TIME = {"type": "object", "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}}}


def _obj(title: str, props: dict[str, Any]) -> bytes:
    return json.dumps({"title": title, "type": "object", "properties": props}).encode()


SCHEMAS: dict[str, bytes] = {
    "foxglove.RawImage": _obj("foxglove.RawImage", {
        "timestamp": _TIME, "frame_id": {"type": "string"}, "width": {"type": "integer"},
        "height": {"type": "integer"}, "encoding": {"type": "string"}, "step": {"type": "integer"},
        "data": {"type": "string", "contentEncoding": "base64"}}),
    "foxglove.CompressedImage": _obj("foxglove.CompressedImage", {
        "timestamp": _TIME, "frame_id": {"type": "string"}, "format": {"type": "string"},
        "data": {"type": "string", "contentEncoding": "base64"}}),
    "foxglove.RawAudio": _obj("foxglove.RawAudio", {
        "timestamp": _TIME, "format": {"type": "string"}, "sample_rate": {"type": "integer"},
        "number_of_channels": {"type": "integer"}, "data": {"type": "string", "contentEncoding": "base64"}}),
    "foxglove.Log": _obj("foxglove.Log", {
        "timestamp": _TIME, "level": {"type": "integer"}, "message": {"type": "string"}, "name": {"type": "string"},
        "file": {"type": "string"}, "line": {"type": "integer"}}),
    "edgefusion.Command": _obj("edgefusion.Command", {"timestamp": _TIME, "text": {"type": "string"}}),
    # a spoken command: the utterance spans start .. end; timestamp is when the command was issued
    "edgefusion.Speech": _obj("edgefusion.Speech", {
        "timestamp": _TIME, "start": _TIME, "end": _TIME, "text": {"type": "string"}, "intent": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}}),
    "edgefusion.Result": _obj("edgefusion.Result", {
        "timestamp": _TIME, "seq": {"type": "integer"}, "action": {"type": "string"},
        "emitted": {"type": "boolean"}, "events": {"type": "array"}, "scores": {"type": "object"},
        "missing": {"type": "array"}, "timings_ns": {"type": "object"}}),
    "edgefusion.Truth": _obj("edgefusion.Truth", {
        "timestamp": _TIME, "action": {"type": "string"}, "events": {"type": "array"}}),
    # Complete, unlike the others: labels are written by people and other tools, so every field
    # is required and nothing else is allowed.
    "edgefusion.Label": json.dumps({
        "title": "edgefusion.Label",
        "description": "One label span [start_ns, end_ns) on the recording's sample clock (DESIGN.md contract 12).",
        "type": "object",
        "properties": {
            "start_ns": {"type": "integer", "description": "start of the span, ns, inclusive"},
            "end_ns": {"type": "integer", "description": "end of the span, ns, exclusive; after start_ns"},
            "kind": {"type": "string", "enum": ["event", "intent", "action", "coverage"],
                     "description": "coverage: the time that is labelled at all"},
            "label": {"type": "string", "pattern": "^([a-z][a-z0-9_]*)?$",
                      "description": "an event, intent or action of the task; may be empty for coverage"},
            "source": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,63}$",
                       "description": "who labelled it: human, synth or a tool's name"},
        },
        "required": ["start_ns", "end_ns", "kind", "label", "source"],
        "additionalProperties": False,
    }).encode(),
}

#: default topic per stream
TOPICS = {"camera": "/camera", "audio": "/audio", "text": "/text", "speech": "/speech", "results": "/results",
          "truth": "/truth", "labels": "/labels", "log": "/log"}


def to_time(t_ns: int) -> dict[str, int]:
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}


def from_time(t: dict[str, int]) -> int:
    return int(t.get("sec", 0)) * 1_000_000_000 + int(t.get("nsec", 0))


def b64(data: bytes | np.ndarray) -> str:
    return base64.b64encode(data if isinstance(data, bytes) else data.tobytes()).decode("ascii")


def unb64(s: str) -> bytes:
    return base64.b64decode(s)
