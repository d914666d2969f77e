"""Smart home: a fixed indoor camera, room sounds and spoken-style commands.

The rules are the task spec's (``edgefusion/task/builtin/smart_home.toml``, the one place they
are written; ``python -m edgefusion.task show smart_home`` prints them and the README table
copies them): :meth:`Scenario.decide` applies them to the generated truth.

Image decides dark / person / door; audio decides smoke / glass / doorbell; the text
decides which of the command rules applies, so every modality is needed.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgefusion.scenarios import sounds
from edgefusion.scenarios.base import FRAME_SIZE, Scenario, noise_and_blur, pink_background

W, H = FRAME_SIZE


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def draw_person(img: np.ndarray, x: int, feet_y: int, scale: float, rng: np.random.Generator,
                avoid: tuple[int, int, int] | None = None) -> None:
    """A standing figure: head, torso, arms, legs, in random clothes and skin tone.

    ``avoid``: a background colour the shirt must stand out from (as people do, mostly).
    """
    skin = [(80, 110, 160), (110, 150, 200), (60, 80, 120), (150, 180, 225)][int(rng.integers(4))]
    shirt, trousers = _color(rng, 20, 230), _color(rng, 10, 150)
    while avoid is not None and sum(abs(a - b) for a, b in zip(shirt, avoid)) < 150:
        shirt = _color(rng, 20, 230)
    s = scale
    leg = int(22 * s)
    torso = int(24 * s)
    head_r = max(3, int(6 * s))
    hip_y = feet_y - leg
    sh_y = hip_y - torso
    cv2.line(img, (x - int(3 * s), hip_y), (x - int(5 * s), feet_y), trousers, max(2, int(4 * s)))
    cv2.line(img, (x + int(3 * s), hip_y), (x + int(5 * s), feet_y), trousers, max(2, int(4 * s)))
    cv2.rectangle(img, (x - int(7 * s), sh_y), (x + int(7 * s), hip_y), shirt, -1)
    arm = int(rng.integers(-6, 7))
    cv2.line(img, (x - int(7 * s), sh_y + 2), (x - int(10 * s), sh_y + int(18 * s) + arm), shirt, max(2, int(3 * s)))
    cv2.line(img, (x + int(7 * s), sh_y + 2), (x + int(10 * s), sh_y + int(18 * s) - arm), shirt, max(2, int(3 * s)))
    cv2.circle(img, (x, sh_y - head_r), head_r, skin, -1)
    cv2.circle(img, (x, sh_y - head_r - head_r // 2), head_r, _color(rng, 0, 90), -1, lineType=cv2.LINE_AA)
    cv2.circle(img, (x, sh_y - head_r + 1), max(2, head_r - 1), skin, -1)


class SmartHome(Scenario):
    """Indoor scene: light level, person, door; doorbell, glass, smoke alarm, speech."""

    name = "smart_home"
    visual_events = ("dark", "person", "door_open")
    audio_events = ("doorbell", "glass_break", "smoke_alarm", "speech")
    actions = ("none", "lights_on", "lock_door", "notify_door_open", "unlock_door",
               "notify_visitor", "intrusion_alert", "emergency")
    intents = ("lights_on", "lock_door", "let_in")
    audio_event_prob = {"doorbell": 0.22, "glass_break": 0.2, "smoke_alarm": 0.18, "speech": 0.3}
    event_sounds = {"doorbell": sounds.chime, "glass_break": sounds.glass_break,
                    "smoke_alarm": sounds.beeps, "speech": sounds.babble}
    distractor_sounds = {"music": sounds.music, "whistle": sounds.whistle}
    phrases = {
        "lights_on": ("turn on the lights", "switch the lights on", "lights on", "put the light on",
                      "turn the lamp on", "can you switch on the light", "it is dark turn the lights on",
                      "light please"),
        "lock_door": ("lock the door", "lock the front door", "please lock up the door", "door lock",
                      "secure the door", "lock it up", "make sure the door is locked"),
        "let_in": ("let them in", "open the door for them", "let the guest in", "unlock for the visitor",
                   "let him in", "let her in", "open up and let them in", "buzz them in"),
    }

    def sample_visual(self, rng: np.random.Generator, hard: bool) -> dict[str, Any]:
        return {
            "dark": bool(rng.random() < 0.5),
            "person": bool(rng.random() < 0.5),
            "door_open": bool(rng.random() < 0.5),
            "layout_seed": int(rng.integers(2**31)),
        }

    def visual_labels(self, visual: dict[str, Any]) -> frozenset[str]:
        return frozenset(k for k in self.visual_events if visual[k])

    def render(self, visual: dict[str, Any], rng: np.random.Generator, hard: bool) -> np.ndarray:
        lay = np.random.default_rng(visual["layout_seed"])
        img = np.empty((H, W, 3), np.uint8)
        floor_y = int(lay.integers(82, 96))
        wall = _color(lay, 120, 240)
        img[:floor_y] = wall
        img[floor_y:] = _color(lay, 40, 160)
        wx = int(lay.integers(0, W - 40))
        cv2.rectangle(img, (wx, 12), (wx + int(lay.integers(24, 40)), 45), _color(lay, 60, 255), -1)
        cv2.rectangle(img, (wx, 12), (wx + 40, 45), _color(lay, 30, 120), 2)
        door_x = int(lay.integers(4, W - 40))
        door_w = int(lay.integers(26, 36))
        top = floor_y - int(lay.integers(58, 70))
        cv2.rectangle(img, (door_x - 2, top - 2), (door_x + door_w + 2, floor_y), _color(lay, 40, 120), -1)
        if visual["door_open"]:
            cv2.rectangle(img, (door_x, top), (door_x + door_w, floor_y), _color(lay, 5, 40), -1)
            panel = np.array([[door_x, top], [door_x + 7, top + 5], [door_x + 7, floor_y - 3], [door_x, floor_y]])
            cv2.fillPoly(img, [panel], _color(lay, 60, 170))
        else:
            cv2.rectangle(img, (door_x, top), (door_x + door_w, floor_y), _color(lay, 60, 170), -1)
            cv2.circle(img, (door_x + door_w - 5, (top + floor_y) // 2), 2, (40, 200, 220), -1)
        for _ in range(int(lay.integers(4, 9 if hard else 6))):
            self._clutter(img, lay, floor_y)
        if visual["person"]:
            draw_person(img, int(lay.integers(12, W - 12)), int(lay.integers(floor_y + 4, H - 2)),
                        float(lay.uniform(0.9, 1.35)), lay, avoid=wall)
        gain = rng.uniform(0.22, 0.4) if visual["dark"] else rng.uniform(0.65, 1.1)
        tint = np.array([1.0 + rng.uniform(0, 0.3) * visual["dark"], 1.0, rng.uniform(0.85, 1.1)], np.float32)
        lit = img.astype(np.float32) * np.float32(gain) * tint
        return noise_and_blur(np.clip(lit, 0, 255).astype(np.uint8), rng, hard, dark=visual["dark"])

    @staticmethod
    def _clutter(img: np.ndarray, lay: np.random.Generator, floor_y: int) -> None:
        kind = int(lay.integers(5))
        x, y = int(lay.integers(0, W)), int(lay.integers(5, H - 5))
        c = _color(lay, 20, 240)
        if kind == 0:  # picture frame
            cv2.rectangle(img, (x, y), (x + int(lay.integers(8, 20)), y + int(lay.integers(6, 16))), c, 2)
        elif kind == 1:  # plant
            cv2.rectangle(img, (x - 3, floor_y), (x + 3, floor_y + 8), _color(lay, 40, 120), -1)
            cv2.circle(img, (x, floor_y - 4), int(lay.integers(5, 10)), (30, int(lay.integers(90, 180)), 40), -1)
        elif kind == 2:  # sofa / table
            cv2.rectangle(img, (x, floor_y - 10), (x + int(lay.integers(20, 45)), floor_y + 8), c, -1)
        elif kind == 3:  # coat rack: a person-like distractor
            cv2.line(img, (x, floor_y + 6), (x, floor_y - 45), (30, 50, 70), 2)
            cv2.ellipse(img, (x + 3, floor_y - 32), (5, 12), 0, 0, 360, c, -1)
        else:  # lamp
            cv2.line(img, (x, floor_y + 4), (x, floor_y - 30), (60, 60, 60), 1)
            cv2.circle(img, (x, floor_y - 33), 5, (170, 230, 250), -1)

    def background(self, n: int, rng: np.random.Generator, hard: bool) -> np.ndarray:
        return pink_background(n, rng, hard)
