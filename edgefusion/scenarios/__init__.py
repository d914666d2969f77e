"""The reference scenarios, synthesized deterministically from a seed.

Example:
    >>> s = get_scenario("smart_home")
    >>> s.decide(frozenset({"dark"}), "lights_on")
    'lights_on'
"""

from __future__ import annotations

from edgefusion.errors import unknown_name
from edgefusion.scenarios.base import (
    AUDIO_WINDOW_S,
    COMMAND_HORIZON_S,
    EVAL_SEED_OFFSET,
    FPS,
    FRAME_SIZE,
    LabeledSample,
    Scenario,
    Timeline,
    TimelineCommand,
    generate_samples,
    generate_timeline,
)
from edgefusion.scenarios.driving import Driving
from edgefusion.scenarios.smart_home import SmartHome

__all__ = [
    "AUDIO_WINDOW_S",
    "COMMAND_HORIZON_S",
    "EVAL_SEED_OFFSET",
    "FPS",
    "FRAME_SIZE",
    "SCENARIOS",
    "LabeledSample",
    "Scenario",
    "Timeline",
    "TimelineCommand",
    "generate_samples",
    "generate_timeline",
    "get_scenario",
]

SCENARIOS: dict[str, type[Scenario]] = {"smart_home": SmartHome, "driving": Driving}


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name raises ConfigError with a hint."""
    if name not in SCENARIOS:
        raise unknown_name("scenario", name, SCENARIOS)
    return SCENARIOS[name]()
