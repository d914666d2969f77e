"""Message schemas of EdgeFusion logs: our own records as JSON, with complete JSON schemas.

Sensor data (camera, audio) and the run's log records use Foxglove's protobuf schemas
(:mod:`edgefusion.logs.foxproto`). Our own records - commands, results, ground truth and
label spans - stay JSON, each with a schema that names every field its messages carry and
which are ``required``. A result's ``scores`` and ``action_scores`` list the package's labels
as properties (:func:`result_schema`), so Foxglove offers each one for a plot.

To add a channel of another stage (a detector's boxes, speech), add its schema here with
:func:`obj` and declare the stream it feeds with :func:`edgefusion.logs.decode.register`.

Example:
    >>> s = json.loads(result_schema(["dark", "doorbell"], ["none", "lights_on"]))
    >>> sorted(s["properties"]["scores"]["properties"]), "action_score" in s["required"]
    (['dark', 'doorbell'], True)
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SCHEMAS", "STAGES_TOPIC", "TOPICS", "obj", "result_schema", "to_time"]

_TIME = {"type": "object", "description": "the sample's time on the recording's clock",
         "properties": {"sec": {"type": "integer", "minimum": 0}, "nsec": {"type": "integer", "minimum": 0,
                                                                          "maximum": 999_999_999}},
         "required": ["sec", "nsec"]}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_NUMBERS = {"type": "object", "additionalProperties": {"type": "number"}}


def obj(title: str, description: str, props: dict[str, Any], optional: tuple[str, ...] = ()) -> bytes:
    """A JSON schema for a flat record: every property required unless named in ``optional``."""
    return json.dumps({
        "title": title, "description": description, "type": "object", "properties": props,
        "required": [k for k in props if k not in optional],
    }).encode()


def _scores(labels: list[str], what: str) -> dict[str, Any]:
    return {**_NUMBERS, "description": what,
            "properties": {name: {"type": "number", "minimum": 0, "maximum": 1} for name in labels}}


def result_schema(scores: list[str] | None = None, action_scores: list[str] | None = None) -> bytes:
    """``edgefusion.Result``: every field of :meth:`edgefusion.samples.Result.to_dict`, with the scores named.

    ``timings_ns`` (host measurements) is optional: a repeatable recording leaves it out.
    """
    return obj("edgefusion.Result", "One fusion step's outcome (DESIGN.md contracts 2 and 13)", {
        "timestamp": _TIME,
        "seq": {"type": "integer", "description": "step number of the run"},
        "t_ns": {"type": "integer", "description": "the frame's time, ns on the recording's clock"},
        "action": {"type": "string", "description": "the decision (after policy and smoothing)"},
        "emitted": {"type": "boolean", "description": "the action changed at this step"},
        "raw_action": {"type": "string", "description": "the model's per-step argmax"},
        "action_score": {"type": "number", "description": "the model's probability for raw_action"},
        "events": {**_STRINGS, "description": "events over their threshold"},
        "scores": _scores(scores or [], "event probabilities by label"),
        "action_scores": _scores(action_scores or [], "action probabilities by label"),
        "missing": {**_STRINGS, "description": "modalities missing at this step"},
        "command": {"type": ["string", "null"], "description": "the command text in effect, if any"},
        "model": {"type": "string", "description": "the package that produced it"},
        "unknown_words": {"type": "integer", "minimum": 0},
        "truncated": {"type": "boolean", "description": "the command was cut to fit the text input"},
        "confidence": {"type": "number", "description": "the model's probability for action"},
        "abstained": {"type": "boolean"},
        "degraded": {"type": "boolean", "description": "a modality with a fallback was missing"},
        "rule": {"type": "string", "description": "what decided the action"},
        "text_status": {"type": "string", "enum": ["command", "no_command", "text_missing", "unknown"]},
        "timings_ns": {**_NUMBERS, "description": "per-stage wall time, ns (absent in repeatable recordings)"},
        "outputs": {"type": "object", "description": "the model's other outputs by name (detections, tensors)"},
        "stages": {"type": "object", "description": "each model stage's outcome by stage name"},
        "intent": {"type": "string", "description": "the command's intent by the package's intent output "
                                                    "(none: no command)"},
        "intent_confidence": {"type": "number", "minimum": 0, "maximum": 1,
                              "description": "the intent output's probability for intent"},
    }, optional=("timings_ns", "outputs", "stages", "intent", "intent_confidence"))


SCHEMAS: dict[str, bytes] = {
    "edgefusion.Command": obj("edgefusion.Command", "A text command as the text source delivered it",
                              {"timestamp": _TIME, "text": {"type": "string"}}),
    # a spoken command: the utterance spans start .. end; timestamp is when the command was issued
    "edgefusion.Speech": obj("edgefusion.Speech", "A spoken command as the speech source recognized it", {
        "timestamp": _TIME, "start": _TIME, "end": _TIME, "text": {"type": "string"}, "intent": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1}}),
    "edgefusion.Result": result_schema(),
    # one model stage of a multi-model pipeline, per window, on /stages/<name> (the main Result holds it too)
    "edgefusion.StageResult": obj("edgefusion.StageResult", "One model stage's outcome for one window", {
        "timestamp": _TIME, "seq": {"type": "integer", "description": "step number of the run"},
        "model": {"type": "string", "description": "the stage's package"},
        "events": {**_STRINGS, "description": "events over their threshold"},
        "scores": {**_NUMBERS, "description": "probabilities by label"},
        "outputs": {"type": "object", "description": "the stage's other outputs (detections, tensors)"},
        "gated": {"type": "boolean", "description": "this stage masked a modality of the main model"},
        "timings_ns": {**_NUMBERS, "description": "per-stage wall time, ns (absent in repeatable recordings)"},
    }, optional=("timings_ns", "outputs")),
    "edgefusion.Truth": obj("edgefusion.Truth", "The synthesized ground truth of one frame", {
        "timestamp": _TIME, "action": {"type": "string"}, "events": _STRINGS}),
    # labels are written by people and other tools, so nothing else is allowed either
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

#: a multi-model pipeline's stage <name> is recorded on STAGES_TOPIC/<name>
STAGES_TOPIC = "/stages"

#: default topic per stream
TOPICS = {"camera": "/camera", "audio": "/audio", "text": "/text", "speech": "/speech", "results": "/results",
          "truth": "/truth", "labels": "/labels", "log": "/log"}


def to_time(t_ns: int) -> dict[str, int]:
    sec, nsec = divmod(int(t_ns), 1_000_000_000)
    return {"sec": sec, "nsec": nsec}
