"""Driving: a forward camera, cabin and traffic sounds, and driver commands.

The rules are the task spec's (``edgefusion/task/builtin/driving.toml``, the one place they
are written; ``python -m edgefusion.task show driving`` prints them and the README table
copies them): :meth:`Scenario.decide` applies them to the generated truth.

A pedestrian on the sidewalk, a vehicle's red tail lights and a yellow or green light
are distractors, not events.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edgefusion.scenarios import sounds
from edgefusion.scenarios.base import FRAME_SIZE, Scenario, noise_and_blur
from edgefusion.scenarios.smart_home import _color, draw_person

W, H = FRAME_SIZE


class Driving(Scenario):
    """Forward road scene: pedestrian, vehicle ahead, traffic light, emergency lights; siren, horn."""

    name = "driving"
    visual_events = ("pedestrian", "vehicle_close", "red_light", "emergency_lights")
    audio_events = ("siren", "horn")
    actions = ("proceed", "slow_down", "brake", "stop", "turn_left", "pull_over")
    intents = ("turn_left", "pull_over", "continue")
    audio_event_prob = {"siren": 0.25, "horn": 0.25}
    no_command_prob = 0.15
    event_sounds = {"siren": sounds.siren, "horn": sounds.horn}
    distractor_sounds = {"music": sounds.music, "babble": sounds.babble}
    phrases = {
        "turn_left": ("turn left", "take the next left", "go left here", "left turn please",
                      "make a left", "turn left at the junction", "hang a left"),
        "pull_over": ("pull over", "stop at the side of the road", "pull over here", "park on the side",
                      "find a place to pull over", "get off the road and stop"),
        "continue": ("continue", "keep going", "carry on straight", "just drive on", "go straight ahead",
                     "follow the road", "stay on this road"),
    }

    def sample_visual(self, rng: np.random.Generator, hard: bool) -> dict[str, Any]:
        light = int(rng.choice(4, p=[0.4, 0.15, 0.2, 0.25]))  # none, red, yellow, green
        vehicle = rng.random() < 0.7
        close = vehicle and rng.random() < 0.45
        return {
            "pedestrian": bool(rng.random() < 0.12),
            "sidewalk_pedestrian": bool(rng.random() < (0.4 if hard else 0.25)),
            "vehicle": bool(vehicle),
            "vehicle_close": bool(close),
            "distance_m": float(rng.uniform(4, 11) if close else rng.uniform(22, 60)),
            "light": light,
            "red_light": light == 1,
            "emergency_lights": bool(rng.random() < 0.15),
            "layout_seed": int(rng.integers(2**31)),
        }

    def visual_labels(self, visual: dict[str, Any]) -> frozenset[str]:
        return frozenset(k for k in self.visual_events if visual[k])

    def render(self, visual: dict[str, Any], rng: np.random.Generator, hard: bool) -> np.ndarray:
        lay = np.random.default_rng(visual["layout_seed"])
        img = np.empty((H, W, 3), np.uint8)
        hz = int(lay.integers(42, 54))
        sky = np.array(_color(lay, 120, 250), np.float32)
        img[:hz] = (sky * np.linspace(0.7, 1.0, hz)[:, None]).astype(np.uint8)[:, None, :]
        img[hz:] = _color(lay, 40, 130)
        cx = W // 2 + int(lay.integers(-12, 13))
        road = np.array([[cx - 6, hz], [cx + 6, hz], [W + 30, H], [-30, H]])
        cv2.fillPoly(img, [road], _color(lay, 60, 110))
        for y in range(hz + 4, H, 12):
            f = (y - hz) / (H - hz)
            cv2.line(img, (cx, y), (cx, min(H, y + int(2 + 6 * f))), (220, 220, 220), max(1, int(3 * f)))
        for _ in range(int(lay.integers(3, 10 if hard else 6))):  # buildings and trees
            x = int(lay.choice([lay.integers(0, 40), lay.integers(W - 40, W)]))
            if lay.random() < 0.5:
                cv2.rectangle(img, (x, hz - int(lay.integers(10, 40))), (x + int(lay.integers(8, 25)), hz + 4),
                              _color(lay, 40, 200), -1)
            else:
                cv2.circle(img, (x, hz - int(lay.integers(5, 15))), int(lay.integers(5, 12)),
                           (30, int(lay.integers(80, 160)), 40), -1)
        if visual["light"]:
            self._traffic_light(img, lay, hz, visual["light"])
        if visual["sidewalk_pedestrian"]:
            side = int(lay.choice([lay.integers(4, 22), lay.integers(W - 22, W - 4)]))
            draw_person(img, side, int(lay.integers(hz + 14, hz + 30)), float(lay.uniform(0.5, 0.9)), lay)
        if visual["vehicle"]:
            self._vehicle(img, lay, hz, cx, visual["distance_m"], visual["emergency_lights"])
        elif visual["emergency_lights"]:
            self._vehicle(img, lay, hz, cx + int(lay.choice([-40, 40])), float(lay.uniform(12, 25)), True)
        if visual["pedestrian"]:
            feet = int(lay.integers(hz + 25, H - 8))
            f = (feet - hz) / (H - hz)
            draw_person(img, cx + int(lay.integers(-25, 26) * f), feet, 0.5 + 0.9 * f, lay)
        gain = rng.uniform(0.35, 1.1)
        lit = img.astype(np.float32) * np.float32(gain)
        return noise_and_blur(np.clip(lit, 0, 255).astype(np.uint8), rng, hard, dark=gain < 0.5)

    @staticmethod
    def _traffic_light(img: np.ndarray, lay: np.random.Generator, hz: int, state: int) -> None:
        x = int(lay.choice([lay.integers(8, 40), lay.integers(W - 40, W - 8)]))
        top = int(lay.integers(4, max(5, hz - 34)))
        cv2.line(img, (x, top + 26), (x, hz + 10), (50, 50, 50), 2)
        cv2.rectangle(img, (x - 6, top), (x + 6, top + 28), (25, 25, 25), -1)
        lit = {1: (30, 30, 255), 2: (30, 200, 255), 3: (60, 230, 60)}[state]
        for i in range(3):
            on = i == state - 1
            cv2.circle(img, (x, top + 5 + 9 * i), 4, lit if on else (45, 45, 45), -1)

    @staticmethod
    def _vehicle(img: np.ndarray, lay: np.random.Generator, hz: int, cx: int, dist: float, siren: bool) -> None:
        w = int(np.clip(420 / dist, 6, 120))
        h = int(w * 0.75)
        bottom = hz + int((H - hz) * min(1.0, 4.0 / dist) * 0.9) + 2
        x0 = cx - w // 2 + int(lay.integers(-5, 6))
        cv2.rectangle(img, (x0, bottom - h), (x0 + w, bottom), _color(lay, 20, 230), -1)
        cv2.rectangle(img, (x0 + w // 6, bottom - h + h // 8), (x0 + w - w // 6, bottom - h // 2), (40, 40, 40), -1)
        tl = max(1, w // 10)
        for xx in (x0 + tl, x0 + w - 2 * tl):
            cv2.rectangle(img, (xx, bottom - h // 3), (xx + tl, bottom - h // 3 + tl), (20, 20, 200), -1)
        if siren:
            bar = max(4, w // 5)
            cv2.rectangle(img, (x0 + w // 2 - bar - 1, bottom - h - bar), (x0 + w // 2, bottom - h), (255, 60, 0), -1)
            cv2.rectangle(img, (x0 + w // 2, bottom - h - bar), (x0 + w // 2 + bar + 1, bottom - h), (0, 0, 255), -1)

    def background(self, n: int, rng: np.random.Generator, hard: bool) -> np.ndarray:
        level = 10 ** (rng.uniform(-30, -16 if hard else -20) / 20)
        return sounds.engine(n / sounds.SR, rng) * np.float32(level)
