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
from edgefusion.scenarios.base import FRAME_SIZE, UNRELATED, Scenario, noise_and_blur, pink_background
from edgefusion.scenarios.grammar import Grammar

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


# -- the command grammar: every phrase list of this task, in one place ------------------------------
#: intents -> templates; slots below. ``unrelated`` holds out-of-domain sentences (questions,
#: chit-chat, other devices), which decide like no command. The paraphrase test set
#: (tests/data/paraphrases/) was written apart from this grammar and must never be copied in.
GRAMMAR = Grammar(
    templates={
        "lights_on": (
            "turn on {the} {light}", "turn {the} {light} on", "switch on {the} {light}", "switch {the} {light} on",
            "{light} on", "put {the} {light} on", "put on {the} {light}", "get {the} {light} on",
            "flip {the} {light} on", "power on {the} {light}", "power up {the} {light}", "{light} on in {room}",
            "turn on {the} {light} in {room}", "{on_verb} {the} {light}",
            "i want {the} {light} on", "we need some light", "give me some light", "some light {here}",
            "more light {here}", "light up {room}", "brighten {room}", "brighten things up",
            "it is {dark_adj} {here}", "its {dark_adj} {here}", "it's {dark_adj} {here}", "too dark {here}",
            "i can't see {see_what}", "i cannot see {see_what}", "why is it so dark {here}",
            "can we have {the} {light} on", "could we get {the} {light} on", "let there be light",
            "{the} {light} should be on", "{the} {light} need to be on", "leave {the} {light} on",
            "don't leave me in the dark", "don't keep it dark {here}", "no more darkness",
            "don't turn {the} {light} off", "make {room} brighter", "i want it brighter {here}", "more brightness",
            "i don't want it dark {here}", "{the} {light} shouldn't be off", "why are {the} {light} off",
            "lights up", "on with {the} {light}", "{the} {light} please", "{light} please",
            "is {the} {light} on turn it on",
        ),
        "lights_off": (
            "turn off {the} {light}", "turn {the} {light} off", "switch off {the} {light}", "switch {the} {light} off",
            "{light} off", "shut off {the} {light}", "shut {the} {light} off", "put {the} {light} out",
            "put out {the} {light}", "{light} out", "power off {the} {light}", "{off_verb} {the} {light}",
            "turn off {the} {light} in {room}", "{light} off in {room}", "no more {light}", "no light {here}",
            "it's too bright {here}", "its too bright {here}", "too bright {here}", "{the} {light} is too bright",
            "darken {room}", "dim {the} {light} all the way", "i don't need {the} {light}",
            "we don't need {the} {light} anymore", "don't keep {the} {light} on",
            "don't waste electricity turn {the} {light} off", "{the} {light} can go off",
            "{the} {light} should be off", "i'm off to bed turn {the} {light} off", "time for bed {light} off",
            "leave {the} {light} off", "are {the} {light} still on turn them off", "no lights {please_word}",
            "enough light", "lights down", "off with {the} {light}", "i want {the} {light} off",
            "i want it dark {here}", "we need it dark {here}", "nobody needs {the} {light} now",
            "don't {keep_verb} {the} {light} on", "i don't {keep_verb} {the} {light} on", "no need for {the} {light}",
            "make it darker {here}", "make {room} darker", "{the} {light} shouldn't be on", "why are {the} {light} on",
        ),
        "lock_door": (
            "lock {the} {door}", "lock up", "lock up {the} {house}", "lock it", "lock it up", "lock {the} {door} up",
            "lock {the} {door} {when_lock}", "{lock_verb} {the} {door}",
            "make sure {the} {door} is locked", "check {the} {door} is locked", "check that {the} {door} is locked",
            "is {the} {door} locked", "did you lock {the} {door}", "the {door} should be locked",
            "the {door} needs to be locked", "keep {the} {door} locked", "{door} locked", "lock down {the} {house}",
            "don't forget to lock {the} {door}", "don't let {them} in",
            "don't open {the} {door}", "don't unlock {the} {door}", "nobody gets in", "keep {them} out",
            "i'm {leaving} lock {the} {door}", "we're {leaving} lock up", "turn the lock", "put the lock on",
            "time to lock {the} {door}", "lock everything", "don't keep {the} {door} unlocked",
            "{the} {door} shouldn't be unlocked", "never leave {the} {door} unlocked",
            "why is {the} {door} unlocked", "lock all the doors", "locking up please",
            "secure {the} {house}", "close and lock {the} {door}",
        ),
        "let_in": (
            "let {them} in", "let {them} inside", "let {them} come in", "let {them} through",
            "let {them} in {please_word}",
            "unlock {the} {door}", "unlock {the} {door} for {them}", "unlock it", "unlock it for {them}",
            "open {the} {door}", "open {the} {door} for {them}", "open up", "open up for {them}", "open it for {them}",
            "{them} can come in", "{them} may come in", "{them} is here let them in",
            "{them} is here open {the} {door}",
            "{them} is at the door let them in", "buzz {them} in", "allow {them} in", "admit {them}",
            "give {them} access", "get {the} {door} for {them}", "answer {the} {door} and let them in",
            "can {them} come in", "could you let {them} in", "open {the} {door} {them} is waiting",
            "don't keep {them} waiting open {the} {door}", "don't leave {them} outside", "unlatch {the} {door}",
            "release the lock", "unbolt {the} {door}", "{door} open for {them}", "i'm expecting {them} let them in",
            "that's {them} let them in", "it's {them} open up",
        ),
        "unrelated": (
            "what is the {measure} in {room}", "what's the {measure} {where_else}", "how {adj_q} is it {where_else}",
            "is it {weather} {when}", "will it {weather_v} {when}", "what's the weather {when}",
            "what is the weather like {when}", "what time is it", "what day is it", "what's the date today",
            "turn {on_off} {the} {device}", "turn {the} {device} {on_off}", "switch {on_off} {the} {device}",
            "switch {the} {device} {on_off}", "put {the} {device} on", "{device} {on_off}",
            "open {the} {openable}", "close {the} {openable}", "shut {the} {openable}", "is {the} {openable} open",
            "start {the} {appliance}", "stop {the} {appliance}", "run {the} {appliance}", "is {the} {appliance} done",
            "play {media}", "pause {media}", "stop {media}", "skip this {song}", "next {song}", "turn it {up_down}",
            "turn {the} {level} {up_down}", "set {the} {level} to {number}", "set a timer for {number} minutes",
            "set an alarm for {clock}", "wake me up at {clock}", "remind me to {chore}", "add {item} to the {list}",
            "order {item}", "call {person}", "text {person}", "send a message to {person}", "{chat}",
            "tell me {tell}", "how do you {how}", "what is {fact}", "who is {who}", "where is {where_is}",
            "i'm {feeling}", "can you {can}", "do you {do}", "{the} {light_colour} light is nice",
            "{greet}", "{greet} {name_call}", "{greet} how are you", "{greet} there what's up",
        ),
    },
    slots={
        "the": ("the", "the", "the", "{-}", "my", "all the", "those", "these", "our"),
        "light": ("light", "lights", "lamp", "lamps", "ceiling light", "overhead light", "light in {room}",
                  "lights in {room}", "{room_adj} light", "{room_adj} lights", "main light", "big light",
                  "reading lamp", "floor lamp", "lighting", "bulbs"),
        "room": ("here", "the room", "the living room", "the kitchen", "the hall", "the hallway", "the bedroom",
                 "the lounge", "this room", "the house"),
        "room_adj": ("kitchen", "hall", "bedroom", "living room", "hallway", "porch", "front", "lounge"),
        "here": ("{-}", "in here", "here", "in this room", "around here"),
        "on_verb": ("activate", "enable", "light", "turn up", "fire up", "illuminate"),
        "keep_verb": ("keep", "want", "need", "have"),
        "greet": ("hello", "hi", "hey", "good morning", "good evening", "good night", "morning", "evening", "yo"),
        "name_call": ("there", "buddy", "home", "assistant", "everyone", "friend", "again", "you"),
        "off_verb": ("kill", "cut", "deactivate", "disable", "turn down", "extinguish"),
        "dark_adj": ("dark", "so dark", "too dark", "pitch black", "very dark", "really dark", "dim", "gloomy"),
        "see_what": ("{-}", "a thing", "anything", "my hands", "where i'm going"),
        "please_word": ("{-}", "please", "now", "thanks"),
        "door": ("door", "front door", "back door", "main door", "side door", "entrance", "entry door",
                 "porch door", "door downstairs"),
        "house": ("house", "home", "place", "flat", "apartment"),
        "when_lock": ("now", "tonight", "for the night", "before bed", "when they leave", "right away"),
        "lock_verb": ("bolt", "deadbolt", "secure", "latch"),
        "me": ("me", "us", "them", "him", "her"),
        "leaving": ("leaving", "going out", "heading out", "off to work", "going to sleep", "off to bed"),
        "them": ("them", "him", "her", "the guest", "the guests", "the visitor", "the visitors", "my friend",
                 "my friends", "my sister", "my brother", "my dad", "my mother", "the kids", "the neighbour",
                 "the courier", "the plumber", "the cleaner", "whoever it is", "the postman", "our guests",
                 "grandma", "the babysitter", "the electrician", "the nanny", "my son", "my daughter", "tom",
                 "anna", "the delivery driver", "the man at the door", "the woman at the door", "the people outside"),
        "measure": ("temperature", "humidity", "air quality", "heating", "thermostat setting", "power usage"),
        "where_else": ("{-}", "outside", "in the garage", "in the garden", "upstairs", "in the basement",
                       "in the attic", "in the kitchen", "in the bedroom", "today"),
        "adj_q": ("hot", "cold", "warm", "humid", "windy", "sunny", "loud"),
        "weather": ("sunny", "cold", "warm", "rainy", "windy", "snowing"),
        "weather_v": ("snow", "be sunny", "be cold", "freeze", "be windy"),
        "when": ("{-}", "today", "tomorrow", "tonight", "this weekend", "later", "in the morning", "next week"),
        "on_off": ("on", "off"),
        "device": ("tv", "television", "radio", "fan", "heating", "heater", "air conditioning", "ac",
                   "oven", "stove", "kettle", "coffee machine", "dishwasher", "washing machine", "dryer",
                   "speaker", "music", "computer", "printer", "projector", "sprinklers", "alarm clock",
                   "hot water", "boiler", "microwave", "vacuum", "robot vacuum", "xbox", "wifi", "router"),
        "openable": ("window", "windows", "garage", "garage door", "curtains", "blinds", "shutters", "fridge",
                     "oven", "app", "skylight", "mailbox", "cupboard", "closet", "drawer", "browser", "email"),
        "appliance": ("dishwasher", "washing machine", "dryer", "vacuum cleaner", "robot vacuum", "oven",
                      "microwave", "coffee machine", "kettle", "sprinklers", "timer", "countdown"),
        "media": ("some music", "music", "the radio", "a song", "my playlist", "the news", "a podcast",
                  "jazz", "something relaxing", "the movie", "the video", "the next episode", "an audiobook"),
        "song": ("song", "track", "one", "episode"),
        "up_down": ("up", "down"),
        "level": ("volume", "heating", "thermostat", "temperature", "fan", "brightness of the tv"),
        "number": ("five", "ten", "twenty", "15", "3", "two", "thirty", "21 degrees", "a minute"),
        "clock": ("six thirty", "6 am", "half past six", "noon", "eight thirty", "tomorrow morning"),
        "chore": ("call grandma", "buy bread", "take out the trash", "feed the cat",
                  "pay the bills", "check the mail", "book a dentist appointment"),
        "item": ("eggs", "bread", "cheese", "coffee", "dog food", "batteries", "toilet paper"),
        "list": ("shopping list", "grocery list", "to do list", "list"),
        "person": ("dad", "grandpa", "peter", "the office", "my wife", "my husband", "the doctor", "sarah"),
        "chat": ("hello", "hi", "hi there", "hey", "good morning", "good evening", "good night", "thank you",
                 "thanks", "how are you", "how's it going", "what's up", "never mind", "cancel", "stop",
                 "nothing", "yes", "no", "maybe later", "sorry", "i love you", "you're great", "well done",
                 "ok", "okay", "cool", "nice", "bye", "see you later", "who are you", "what's your name",
                 "what can you do", "are you there", "testing testing", "i'm home", "i'm back",
                 "i'm going out", "goodbye"),
        "tell": ("a joke", "a story", "the news", "something interesting", "the time", "about yourself",
                 "my schedule", "what's on my calendar", "the score"),
        "how": ("make pancakes", "say hello in french", "work", "feel"),
        "fact": ("two plus two", "the meaning of life", "a black hole",
                 "the tallest mountain"),
        "who": ("the president", "that singer", "at the door", "calling"),
        "where_is": ("my phone", "the remote", "my keys", "the nearest pharmacy", "paris"),
        "feeling": ("tired", "bored", "hungry", "happy", "cold", "sad", "busy"),
        "can": ("hear me", "sing", "dance", "help me", "find my phone", "recommend a movie",
                "translate this", "order a taxi"),
        "do": ("like music", "know any jokes", "dream", "speak spanish"),
        "light_colour": ("morning", "evening", "sun", "candle"),
    },
)


class SmartHome(Scenario):
    """Indoor scene: light level, person, door; doorbell, glass, smoke alarm, speech."""

    name = "smart_home"
    visual_events = ("dark", "person", "door_open")
    audio_events = ("doorbell", "glass_break", "smoke_alarm", "speech")
    actions = ("none", "lights_on", "lights_off", "lock_door", "notify_door_open", "unlock_door",
               "notify_visitor", "intrusion_alert", "emergency")
    intents = ("lights_on", "lights_off", "lock_door", "let_in", UNRELATED)
    audio_event_prob = {"doorbell": 0.22, "glass_break": 0.2, "smoke_alarm": 0.18, "speech": 0.3}
    event_sounds = {"doorbell": sounds.chime, "glass_break": sounds.glass_break,
                    "smoke_alarm": sounds.beeps, "speech": sounds.babble}
    distractor_sounds = {"music": sounds.music, "whistle": sounds.whistle}
    grammar = GRAMMAR

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
