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
from edgefusion.scenarios.base import FRAME_SIZE, UNRELATED, Scenario, noise_and_blur
from edgefusion.scenarios.grammar import Grammar
from edgefusion.scenarios.smart_home import _color, draw_person

W, H = FRAME_SIZE


# -- the command grammar: every phrase list of this task, in one place ------------------------------
#: intents -> templates; slots below. ``unrelated`` holds out-of-domain sentences (questions,
#: chit-chat, the car's other functions), which decide like no command. The paraphrase test set
#: (tests/data/paraphrases/) was written apart from this grammar and must never be copied in.
GRAMMAR = Grammar(
    templates={
        "turn_left": (
            "turn left", "turn left {where}", "turn to the left", "turn to the left {where}", "{left_verb} left",
            "{left_verb} left {where}", "take {a} left", "take {a} left {where}", "take {a} left turn {where}",
            "make {a} left", "make {a} left {where}", "hang {a} left", "left {where}", "left turn {where}",
            "{next} left", "{next} left {please_word}", "go left", "go left {where}", "go to the left {where}",
            "we need to turn left {where}", "i want to turn left", "i'd like to go left", "you need to go left",
            "we're turning left {where}", "left left left", "turn left not right", "left not right",
            "turn left don't go straight", "don't go straight turn left", "take the left {road}",
            "take the left {road} {where}", "the left {road} {where}", "left is the way", "it's a left {where}",
            "we go left {where}", "turn left into {road_name}", "left into {road_name}", "left onto {road_name}",
            "take the exit on the left", "left lane then turn", "turn left when it's clear",
        ),
        "pull_over": (
            "pull over", "pull over {where_stop}", "pull over to {side}", "pull in", "pull in {where_stop}",
            "pull up {where_stop}", "pull off the road", "pull off {where_stop}", "{stop_verb} the car",
            "{stop_verb} the car {where_stop}", "stop {where_stop}", "stop the vehicle", "park {where_stop}",
            "park on {side}", "park by {side}", "stop on {side}", "stop at {side}", "stop by {side}",
            "find {place_to} to {stop_or_park}", "look for {place_to} to {stop_or_park}",
            "get off the road", "get over to {side}", "let me out {where_stop}", "drop me off {where_stop}",
            "i need to get out", "i need you to stop", "i need to stop", "we have to stop {where_stop}",
            "we need to stop {where_stop}", "i feel {sick} {stop_tail}", "i'm {sick} {stop_tail}",
            "come to a stop {where_stop}", "bring the car to a stop", "halt", "halt {where_stop}",
            "emergency stop", "stop stop stop", "stop now", "please stop", "can we stop {where_stop}",
            "can we pull over", "let's pull over", "pull aside", "move over and stop",
        ),
        "continue": (
            "continue", "continue {straight}", "keep going", "keep going {straight}", "keep driving",
            "keep driving {straight}", "keep moving", "keep on", "keep on driving", "carry on", "carry on {straight}",
            "go on", "go on driving", "go {straight}", "drive {straight}", "drive on", "just drive", "just keep going",
            "proceed", "proceed {straight}", "move on", "go ahead", "onwards", "keep it going",
            "don't stop", "don't stop {where_stop}", "do not stop", "don't {stop_verb}", "don't pull over",
            "don't pull in", "don't park {where_stop}", "don't turn", "don't turn left", "do not turn",
            "no need to stop", "no need to turn", "no turning", "no stopping", "we're not stopping",
            "we don't need to stop", "we're fine {keep_tail}", "ignore that {keep_tail}", "never mind {keep_tail}",
            "false alarm {keep_tail}", "stay on {road_name}", "stay on the {road}", "stay in {lane}",
            "follow the {road}", "follow this {road}", "straight", "straight on", "straight ahead",
            "keep straight", "keep straight on", "stay the course", "as you were", "you can keep going",
            "all good {keep_tail}", "it's ok {keep_tail}", "don't worry {keep_tail}",
        ),
        "unrelated": (
            "turn {on_off} the {car_device}", "turn the {car_device} {on_off}", "switch {on_off} the {car_device}",
            "{car_device} {on_off}", "turn the {level} {up_down}", "turn it {up_down}", "{level} {up_down}",
            "open the {openable}", "close the {openable}", "play {media}", "pause {media}", "stop {media}",
            "stop the {media_thing}", "skip this {song}", "next {song}", "previous {song}", "keep the {media_thing} on",
            "keep playing", "pull up {screen}", "show me {screen}", "navigate to {place}", "take me to {place}",
            "how far is {place}", "how long until we {arrive}", "when do we {arrive}", "are we there yet",
            "where are we", "what's the speed limit {here}", "is there traffic {on_road}", "any traffic {on_road}",
            "find {a} {shop} nearby", "where's the nearest {shop}", "how much {fuel} is left",
            "what's my {fuel} level", "check the {car_part}", "call {person}", "text {person}",
            "send a message to {person}", "read my messages", "answer the call", "hang up", "{chat}",
            "what's the weather {when}", "is it going to {weather_v} {when}", "what's the temperature {outside}",
            "what time is it", "what day is it", "tell me {tell}", "what's {fact}", "who sings this {song}",
            "what's on the radio", "i'm {feeling}", "it's {feeling_env} in here", "nice {thing}",
            "look at that {sight}", "did you see that {sight}", "set a timer for {number} minutes",
            "remind me to {chore}", "how many miles {miles_q}", "what's my speed", "how fast are we going",
            "record this", "take a picture", "where did we park",
        ),
    },
    slots={
        "where": ("here", "now", "{-}", "at the junction", "at the lights", "at the corner", "at the intersection",
                  "at the next street", "up ahead", "in 100 meters", "after the bridge", "at the roundabout",
                  "at the next light", "at the crossroads", "after the gas station", "by the church",
                  "just ahead", "at the end of the road", "in a moment", "when you can"),
        "left_verb": ("head", "bear", "swing", "veer", "go", "cut", "steer", "hook"),
        "a": ("a", "the", "the next", "that", "this"),
        "next": ("next", "the next", "first", "the first", "second", "the second"),
        "please_word": ("{-}", "please", "now", "thanks"),
        "road": ("road", "street", "lane", "turn", "turning", "exit", "way", "fork", "path", "junction",
                 "one", "avenue"),
        "road_name": ("main street", "the high street", "oak avenue", "the motorway", "the highway",
                      "the parking lot", "the station road", "this road", "the ring road"),
        "where_stop": ("here", "now", "{-}", "right here", "over there", "up ahead", "at the side", "by the curb",
                       "on the right", "somewhere safe", "when it's safe", "as soon as you can", "at the next spot",
                       "in front of that shop", "by the bus stop", "over here", "immediately", "please"),
        "side": ("the side", "the side of the road", "the curb", "the kerb", "the shoulder", "the roadside",
                 "the verge", "the hard shoulder", "the lay-by", "the edge of the road", "the right"),
        "stop_verb": ("stop", "halt", "park", "pull up"),
        "place_to": ("a place", "somewhere", "a spot", "a safe place", "somewhere safe", "a parking spot"),
        "stop_or_park": ("stop", "park", "pull over", "pull in"),
        "sick": ("ill", "dizzy", "unwell", "carsick", "like throwing up"),
        "stop_tail": ("stop the car", "pull over", "please stop", "we need to stop", "pull in"),
        "straight": ("straight", "straight ahead", "straight on", "ahead", "forward", "down this road",
                     "on this road", "along the road", "past it", "through"),
        "keep_tail": ("keep going", "carry on", "keep driving", "drive on", "continue", "go on", "just drive"),
        "lane": ("this lane", "the lane", "your lane", "the middle lane", "the right lane"),
        "on_off": ("on", "off"),
        "car_device": ("radio", "music", "headlights", "lights inside", "wipers", "air conditioning", "ac",
                       "heater", "heating", "seat heater", "fog lights", "defroster", "fan", "cruise control",
                       "navigation", "sat nav", "gps", "bluetooth", "dashcam", "interior light", "reading light",
                       "hazard lights", "screen"),
        "level": ("volume", "music", "radio", "heat", "heating", "ac", "fan", "temperature", "bass"),
        "up_down": ("up", "down"),
        "openable": ("window", "windows", "sunroof", "trunk", "boot", "glove box", "roof", "app", "map",
                     "garage", "gate"),
        "media": ("some music", "music", "the radio", "a song", "my playlist", "the news", "a podcast",
                  "jazz", "something", "an audiobook", "rock music", "the music"),
        "media_thing": ("music", "song", "radio", "podcast", "audiobook", "playlist", "navigation voice", "video"),
        "song": ("song", "track", "one", "station", "episode"),
        "screen": ("the map", "directions", "the route", "my calendar", "my messages", "the weather"),
        "place": ("home", "work", "the airport", "the station", "the hospital", "my office", "the city centre",
                  "the beach", "grandma's", "the mall", "paris"),
        "arrive": ("arrive", "get there", "get home", "reach the hotel"),
        "here": ("{-}", "here", "on this road", "around here"),
        "on_road": ("{-}", "on the highway", "ahead", "on the way", "on the bridge", "in town"),
        "shop": ("cafe", "gas station", "petrol station", "restaurant", "charging station", "hotel",
                 "pharmacy", "supermarket", "parking garage", "toilet"),
        "fuel": ("fuel", "gas", "petrol", "battery", "charge", "range"),
        "car_part": ("tyre pressure", "oil", "engine", "battery", "brakes"),
        "person": ("dad", "my husband", "my boss", "the office", "john", "sarah", "home"),
        "chat": ("hello", "hi", "hey", "thanks", "thank you", "good morning", "good evening", "how are you",
                 "what's up", "never mind", "cancel", "nothing", "yes", "no", "ok", "okay", "cool", "wow",
                 "sorry", "bye", "oh no", "what was that", "who are you", "what can you do",
                 "i love this song", "this is fun", "we're late", "hurry up"),
        "when": ("{-}", "today", "tomorrow", "tonight", "later", "this afternoon", "at the destination"),
        "weather_v": ("rain", "snow", "be sunny", "be cold", "freeze"),
        "outside": ("{-}", "outside", "in here", "at home", "there"),
        "tell": ("a joke", "a story", "the news", "the score", "something interesting", "about this town"),
        "fact": ("the score", "the news", "the date", "the population of london"),
        "feeling": ("hungry", "tired", "thirsty", "bored", "cold", "hot", "happy", "sleepy"),
        "feeling_env": ("cold", "hot", "stuffy", "noisy", "warm"),
        "thing": ("car", "song", "view", "road", "weather", "day"),
        "sight": ("bird", "sunset", "rainbow", "building", "car", "truck"),
        "number": ("five", "ten", "twenty", "two", "thirty", "15"),
        "chore": ("buy bread", "call grandma", "get gas", "pick up the kids", "charge my phone"),
        "miles_q": ("to go", "left", "today"),
    },
)


class Driving(Scenario):
    """Forward road scene: pedestrian, vehicle ahead, traffic light, emergency lights; siren, horn."""

    name = "driving"
    visual_events = ("pedestrian", "vehicle_close", "red_light", "emergency_lights")
    audio_events = ("siren", "horn")
    actions = ("proceed", "slow_down", "brake", "stop", "turn_left", "pull_over")
    intents = ("turn_left", "pull_over", "continue", UNRELATED)
    audio_event_prob = {"siren": 0.25, "horn": 0.25}
    no_command_prob = 0.15
    event_sounds = {"siren": sounds.siren, "horn": sounds.horn}
    distractor_sounds = {"music": sounds.music, "babble": sounds.babble}
    grammar = GRAMMAR

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
        # (n + 0.5) / SR: n / SR * SR can come back as n - 1 in floating point (n = 1025599 for
        # 64.1 s), and the mix needs exactly n samples; where it came back as n the rumble is the same
        return sounds.engine((n + 0.5) / sounds.SR, rng) * np.float32(level)
