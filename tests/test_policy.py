"""The decision policy (DESIGN.md contract 13): the model proposes, the task's [policy] decides.

Safety acceptance on the shipped packages through ONNX Runtime: driving without a camera
never proceeds or turns left and says it is degraded; unlock_door never without a command.
Stub models with chosen probabilities pin abstention and the policy around smoothing.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from edgefusion.backends import open_backend
from edgefusion.backends.base import Backend, BackendInfo
from edgefusion.core import FusionCore
from edgefusion.demo import policy_counts, run_timeline, timeline_windows
from edgefusion.errors import ConfigError
from edgefusion.package import ModelPackage, load_package
from edgefusion.policy import describe_policy, task_of
from edgefusion.samples import Command, FusionWindow, Result
from edgefusion.scenarios import generate_timeline, get_scenario
from edgefusion.sinks import JsonlSink
from edgefusion.task import BUILTIN_DIR, load_task
from edgefusion.task.tool import main as task_main

IMAGE = np.zeros((64, 64, 3), np.uint8)
AUDIO = np.zeros(16000, np.float32)


class Stub(Backend):
    """A model whose action (``probs``) and intent (``intents``) probabilities are set per call; event logits are
    zeros. Without ``intents`` set, the intent output (when the package has one) agrees with the action."""

    name = "stub"

    def __init__(self, package: ModelPackage) -> None:
        super().__init__(package)
        self.actions = package.output("class_logits")
        self.events = package.output("multilabel_logits")
        self.probs: dict[str, float] = {}
        self.intent_out = package.output_role("intent")
        #: None: the intent output agrees with the action (an intent whose rules decide it, else none)
        self.intents: dict[str, float] | None = None
        task = task_of(package)
        self.enabling = {a: sorted(i for r in task.rules if r.action == a for i in r.intent) for a in task.actions} \
            if task else {}

    @property
    def info(self) -> BackendInfo:
        return BackendInfo("stub", "none", "fp32", None)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rest = (1.0 - sum(self.probs.values())) / (len(self.actions.labels) - len(self.probs))
        p = np.array([self.probs.get(a, rest) for a in self.actions.labels])
        outs = {self.actions.name: np.log(p)[None].astype(np.float32),
                self.events.name: np.full((1, len(self.events.labels)), -5.0, np.float32)}
        if self.intent_out is not None:
            labels = self.intent_out.labels
            best = self.actions.labels[int(np.argmax(p))]
            intents = self.intents if self.intents is not None else {
                (self.enabling.get(best) or ["none"])[0]: 0.99}
            rest = (1.0 - sum(intents.values())) / max(1, len(labels) - len(intents))
            q = np.array([intents.get(i, rest) for i in labels]).clip(1e-9)
            outs[self.intent_out.name] = np.log(q)[None].astype(np.float32)
        return outs


def window(t: int, image: bool = True, audio: bool = True, command: str | None = None,
           said: int | None = None) -> FusionWindow:
    """Step ``t`` of a 30 fps stream; the command was said at step ``said`` (default: this one)."""
    t_ns = t * 33_333_333
    cmd = None if command is None else Command(t_ns=(t if said is None else said) * 33_333_333, text=command)
    return FusionWindow(t_ns=t_ns, image=IMAGE if image else None, audio=AUDIO if audio else None, command=cmd)


def run(core: FusionCore, windows: list[FusionWindow]) -> list[Result]:
    return [core.finish(core.preprocess(w)) for w in windows]


# -- the spec ---------------------------------------------------------------------------

def test_builtin_policies():
    home, drive = load_task("smart_home").policy, load_task("driving").policy
    assert home.secure == ("unlock_door",) and home.threshold_of("unlock_door") == 0.8
    assert home.threshold_of("lights_on") == 0.5 and home.fallback("image").forbid == ("unlock_door",)
    assert drive.fallback("image").forbid == ("proceed", "turn_left") and drive.fallback("image").action == "slow_down"
    assert drive.fallback("audio").forbid == () and drive.fallback("audio").degraded
    assert drive.fallback("text") is None


SPEC = (BUILTIN_DIR / "smart_home.toml").read_text()


@pytest.mark.parametrize("old, new, expected", [
    ("threshold = 0.5 ", "threshold = 1.5 ", r": policy\.threshold: expected a probability from 0 to 1, got 1\.5$"),
    ("threshold = 0.5 ", "treshold = 0.5 ", r": policy: unknown key 'treshold'; did you mean 'threshold'\?"),
    ('safe_action = "none" ', "", r": policy\.safe_action: missing; expected the action a refused one becomes"),
    ('safe_action = "none" ', 'safe_action = "nothing" ', r": policy\.safe_action: unknown action 'nothing'"),
    ("unlock_door = 0.8 ", "unlock_dor = 0.8 ",
     r": policy\.thresholds\.unlock_dor: unknown action 'unlock_dor'; did you mean 'unlock_door'\?"),
    ("unlock_door = 0.8 ", 'unlock_door = "high" ', r": policy\.thresholds\.unlock_door: expected a probability"),
    ('secure = ["unlock_door"]', 'secure = ["emergency"]',
     r": policy\.secure\[1\]: 'emergency' is also decided by rules\[1\] \('smoke'\) without a command intent"),
    ('secure = ["unlock_door"]', 'secure = ["unlock_door", "none"]',
     r": policy\.secure\[2\]: 'none' is the safe action"),
    ("secure_unknown_words = 1 ", "secure_unknown_words = -1 ",
     r": policy\.secure_unknown_words: expected a number of words \(0 or more\), got -1"),
    ('forbid = ["unlock_door"]', 'forbid = ["unlock_door", "none"]',
     r": policy\.missing\.image\.action: the safe action 'none' is itself forbidden without image"),
    ('forbid = ["unlock_door"]', 'forbid = ["unlock_door"]\naction = "unlock_door"',
     r": policy\.missing\.image\.action: 'unlock_door' is itself forbidden"),
    ('forbid = ["unlock_door"]', 'forbid = []\naction = "unlock_door"',
     r": policy\.missing\.image\.action: 'unlock_door' is security-sensitive"),
    ('forbid = ["unlock_door"]', 'forbid = ["unlock"]', r": policy\.missing\.image\.forbid\[1\]: unknown action"),
    ('forbid = ["unlock_door"]', 'degraded = "yes"', r": policy\.missing\.image\.degraded: expected true or false"),
    ("[policy.missing.audio]", "[policy.missing.smell]", r": policy\.missing\.smell: unknown modality 'smell'"),
    ("[policy.missing.audio]", '[policy.missing.audio]\nforbid = ["none"]\naction = "emergency"',
     r": policy\.missing\.image\.action: 'none' is forbidden without audio; fallbacks must not forbid"),
])
def test_a_bad_policy_is_one_clear_line(tmp_path, old, new, expected):
    assert old in SPEC
    path = tmp_path / "task.toml"
    path.write_text(SPEC.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_task(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: "), message
    assert re.search(expected, message), message


def test_task_check_prints_a_bad_policy_as_one_error_line(tmp_path, capsys):
    path = tmp_path / "task.toml"
    path.write_text(SPEC.replace("threshold = 0.5 ", "threshold = 2 ", 1))
    assert task_main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "policy.threshold" in err, err
    assert task_main(["show", "smart_home"]) == 0
    assert "only with a command: unlock_door" in capsys.readouterr().out


# -- packages name their task -----------------------------------------------------------

def without_task(pkg: ModelPackage) -> ModelPackage:
    """``pkg`` renamed, with no scenario and no packed task spec: a package that names no task."""
    sources = {k: v for k, v in pkg.manifest.sources.items() if k != "task"}
    return dataclasses.replace(pkg, manifest=dataclasses.replace(pkg.manifest, name="mine", scenario=None,
                                                                 sources=sources))


def test_packages_resolve_their_task_and_a_package_without_one_runs_without_policy():
    home = load_package("smart_home")
    assert home.name == "smart_home-attention" and task_of(home).name == "smart_home"
    assert describe_policy(home)[0].startswith("task      smart_home")
    bare = without_task(home)
    assert task_of(bare) is None and "runs without a policy" in describe_policy(bare)[0]
    with Stub(bare) as be:
        be.probs = {"lights_on": 0.3}
        r = run(FusionCore(bare, be), [window(0), window(1)])
        assert [x.action for x in r] == ["lights_on"] * 2 and r[1].rule == "no_policy" and not r[1].abstained
        # the API chooses: the smart_home task's policy for the same package
        assert run(FusionCore(bare, be, task="smart_home"), [window(0)])[0].abstained


def test_a_task_that_does_not_fit_the_package_is_refused():
    with Stub(load_package("driving")) as be, pytest.raises(ConfigError) as e:
        FusionCore(be.package, be, task="smart_home")
    assert "\n" not in str(e.value) and "does not fit task 'smart_home'" in str(e.value)


# -- abstention, with smoothing -----------------------------------------------------------

def test_a_low_confidence_window_abstains_instead_of_taking_the_argmax():
    pkg = load_package("smart_home")
    with Stub(pkg) as be:
        core = FusionCore(pkg, be)
        be.probs = {"lights_on": 0.3}  # the argmax, but far from sure
        first = run(core, [window(0)])[0]
        assert (first.raw_action, first.action, first.abstained, first.rule) == ("lights_on", "none", True, "abstain")
        be.probs = {"none": 0.95}
        run(core, [window(1), window(2)])
        be.probs = {"lights_on": 0.3}
        low = run(core, [window(t) for t in range(3, 9)])
        assert all(r.raw_action == "lights_on" and r.action == "none" and r.abstained and not r.emitted for r in low)
        n = len(pkg.output("class_logits").labels)
        assert low[0].confidence == pytest.approx(0.7 / (n - 1), abs=1e-6)  # the model's probability for 'none'
        be.probs = {"lights_on": 0.9}
        sure = run(core, [window(t) for t in range(9, 11)])
        assert [(r.action, r.emitted, r.abstained) for r in sure] == [("none", False, False),
                                                                      ("lights_on", True, False)]
        assert sure[1].confidence == pytest.approx(0.9, abs=1e-6)
        # without the policy the same low-confidence window is taken as it is
        plain = FusionCore(pkg, be, policy=False)
        be.probs = {"lights_on": 0.3}
        assert [r.action for r in run(plain, [window(0), window(1)])] == ["lights_on"] * 2


def test_an_abstained_step_neither_breaks_nor_extends_a_streak():
    pkg = load_package("driving")
    with Stub(pkg) as be:
        core = FusionCore(pkg, be)
        out = []
        for t, p in enumerate([{"proceed": 0.9}] * 3 + [{"brake": 0.9}, {"brake": 0.3}, {"brake": 0.9}]):
            be.probs = p
            out.append(run(core, [window(t)])[0])
    assert [r.action for r in out] == ["proceed", "proceed", "proceed", "proceed", "proceed", "brake"]
    assert [r.emitted for r in out] == [False, True, False, False, False, True]
    # no event is seen, so no task rule decides brake: the model's word alone
    assert [r.rule for r in out][3:] == ["smoothing", "abstain", "model"]
    assert out[0].rule == "default"


# -- missing modalities -------------------------------------------------------------------

def test_a_held_action_the_missing_camera_forbids_is_replaced_at_once():
    pkg = load_package("driving")
    with Stub(pkg) as be:
        core = FusionCore(pkg, be)
        be.probs = {"proceed": 0.95}
        assert run(core, [window(0), window(1)])[1].action == "proceed"
        be.probs = {"proceed": 0.6}  # the camera drops; the model still leans to proceed
        blind = run(core, [window(t, image=False) for t in range(2, 6)])
        assert [r.action for r in blind] == ["slow_down"] * 4
        assert [r.emitted for r in blind] == [True, False, False, False]
        assert all(r.degraded and r.rule == "missing_image" and r.raw_action == "proceed" for r in blind)
        be.probs = {"pull_over": 0.3}  # unsure and blind: abstains, and the held action stays safe
        r = run(core, [window(6, image=False)])[0]
        assert (r.action, r.abstained, r.degraded) == ("slow_down", True, True)
        be.probs = {"proceed": 0.95}
        back = run(core, [window(t) for t in range(7, 9)])
        assert [(r.action, r.degraded) for r in back] == [("slow_down", False), ("proceed", False)]


def test_no_command_is_told_from_no_text_source():
    pkg = load_package("smart_home")
    with Stub(pkg) as be:
        be.probs = {"none": 0.9}
        assert run(FusionCore(pkg, be, text_source=True), [window(0)])[0].text_status == "no_command"
        assert run(FusionCore(pkg, be, text_source=False), [window(0)])[0].text_status == "text_missing"
        core = FusionCore(pkg, be)
        assert run(core, [window(0)])[0].text_status == "unknown"
        core.add(Command(t_ns=0, text="lights on"))
        statuses = [run(core, [w])[0].text_status for w in (window(1, command="lights on"), window(2))]
        assert statuses == ["command", "no_command"]  # a command arrived: some source sends them
        r = run(FusionCore(pkg, be, text_source=False), [window(0)])[0]
        assert r.missing == ("text",) and not r.degraded  # the task has no fallback for text


def test_results_carry_the_policy_in_every_output(tmp_path):
    pkg = load_package("smart_home")
    with Stub(pkg) as be:
        be.probs = {"unlock_door": 0.99}
        r = run(FusionCore(pkg, be, text_source=True), [window(0)])[0]
    d = r.to_dict()
    assert {k: d[k] for k in ("action", "raw_action", "abstained", "degraded", "rule", "text_status")} == {
        "action": "none", "raw_action": "unlock_door", "abstained": False, "degraded": False,
        "rule": "secure_no_command", "text_status": "no_command"}
    assert d["confidence"] == pytest.approx(0.01 / (len(pkg.output("class_logits").labels) - 1), abs=1e-5)
    path = tmp_path / "r.jsonl"
    with JsonlSink(str(path)) as sink:
        sink.write(r)
    assert json.loads(Path(path).read_text())["rule"] == "secure_no_command"
    assert policy_counts([r]) == {"abstained": 0, "degraded": 0, "replaced": {"secure_no_command": 1}}


# -- security-sensitive actions -----------------------------------------------------------

def without_intent(pkg: ModelPackage) -> ModelPackage:
    """The package as one without an intent output (v1) would be."""
    outs = tuple(o for o in pkg.manifest.outputs if o.role != "intent")
    return dataclasses.replace(pkg, manifest=dataclasses.replace(pkg.manifest, outputs=outs))


def test_unlock_door_needs_a_clear_command_even_when_the_model_is_sure():
    pkg = without_intent(load_package("smart_home"))  # no intent output: the command's unknown words decide
    with Stub(pkg) as be:
        be.probs = {"unlock_door": 0.99}
        core = FusionCore(pkg, be)
        silent = run(core, [window(t) for t in range(5)])
        assert {(r.action, r.rule) for r in silent} == {("none", "secure_no_command")}
        told = run(core, [window(t, command="let them in", said=5) for t in range(5, 8)])
        assert [(r.action, r.emitted) for r in told] == [("none", False), ("unlock_door", True), ("unlock_door", False)]
        unclear = run(core, [window(8, command="could you frobnicate the quux")])[0]  # two unknown words
        assert (unclear.action, unclear.rule, unclear.emitted) == ("none", "secure_unclear_command", True)
        typo = run(core, [window(t, command="let tehm in", said=9) for t in (9, 10)])  # one unknown word is fine
        assert typo[1].action == "unlock_door" and typo[1].unknown_words == 1
        after = run(core, [window(11)])[0]  # the command is gone: the stable unlock_door is not held
        assert (after.action, after.rule) == ("none", "secure_no_command")


@pytest.fixture(scope="module")
def home_windows():
    tl = generate_timeline(get_scenario("smart_home"), 10.0, seed=5)
    return [(w, ev) for w, ev in zip(timeline_windows(tl), tl.truth_events) if "person" in ev]


def test_unlock_door_is_never_taken_without_a_command_on_real_windows(home_windows):
    """Real smart_home windows with a person in view, through the shipped model."""
    pkg = load_package("smart_home")
    assert sum("doorbell" in ev for _, ev in home_windows) >= 20
    got = {}
    with open_backend("onnxruntime", pkg, threads=2) as be:
        for text in (None, "what is the temperature in the garage", "let them in"):
            core = FusionCore(pkg, be, text_source=True)
            got[text] = run(core, [FusionWindow(t_ns=w.t_ns, image=w.image, audio=w.audio, command=text)
                                   for w, _ in home_windows])
    for text in (None, "what is the temperature in the garage"):
        assert not any(r.action == "unlock_door" for r in got[text]), text
    # the v1 package (a closed vocabulary) proposed unlock_door for this unrelated question in most
    # windows, and the policy had to refuse it; the open-vocabulary package reads it as unrelated
    unclear = got["what is the temperature in the garage"]
    assert collections.Counter(r.intent for r in unclear)["unrelated"] == len(unclear)
    assert sum(r.raw_action == "unlock_door" for r in unclear) == 0
    # with the command, the door is unlocked: the policy does not refuse everything
    assert sum(r.action == "unlock_door" for r in got["let them in"]) > 50


@pytest.mark.slow  # two passes of 600 real windows through the model (~4 s)
def test_driving_without_a_camera_never_proceeds_or_turns_left():
    """Real driving windows with the camera missing, through the shipped model."""
    tl = generate_timeline(get_scenario("driving"), 20.0, seed=11)
    windows = timeline_windows(tl)
    pkg = load_package("driving")
    raw, final = collections.Counter(), collections.Counter()
    with open_backend("onnxruntime", pkg, threads=2) as be:
        for text in (None, "go left here"):
            core = FusionCore(pkg, be, text_source=True)
            run(core, windows[:30])  # with the camera first, so a stable action exists when it drops
            for r in run(core, [FusionWindow(t_ns=w.t_ns, image=None, audio=w.audio,
                                             command=w.command if text is None else text) for w in windows[30:]]):
                raw[r.raw_action] += 1
                final[r.action] += 1
                assert r.degraded and r.missing[0] == "image", r
                assert r.action not in ("proceed", "turn_left"), r
    assert raw["proceed"] + raw["turn_left"] > 300, raw  # the model alone would go
    assert final["slow_down"] >= raw["proceed"] + raw["turn_left"], final


def test_the_demo_prints_what_the_policy_did():
    """The null model's zeros are never a confident proposal: every step abstains, and the demo says so."""
    out = io.StringIO()
    tl = generate_timeline(get_scenario("smart_home"), 2.0, seed=3)
    rep = run_timeline(tl, "smart_home", backend="null", out=out)
    text = out.getvalue()
    assert rep.policy["abstained"] == rep.frames == 60 and rep.policy_task == "smart_home"
    assert re.search(r"^ +0\.00s  none .*  \[abstained; degraded: no audio\]$", text, re.M), text
    assert f"policy of task smart_home: 60 of 60 steps abstained, {rep.policy['degraded']} degraded" in text


def test_with_an_intent_output_unlock_door_needs_the_let_in_intent_above_its_threshold():
    pkg = load_package("smart_home")
    assert pkg.output_role("intent") is not None and pkg.output("class_logits").name == "action_logits"
    with Stub(pkg) as be:
        be.probs = {"unlock_door": 0.99}
        core = FusionCore(pkg, be)
        be.intents = {"unrelated": 0.97}  # the model is sure of the action but reads another intent
        asked = run(core, [window(0, command="what is the temperature in the garage")])[0]
        assert (asked.action, asked.rule, asked.intent) == ("none", "secure_intent", "unrelated")
        assert asked.intent_confidence == pytest.approx(0.97, abs=1e-4)
        assert asked.to_dict()["intent"] == "unrelated"
        be.intents = {"let_in": 0.7}  # the right intent, below unlock_door's threshold (0.8)
        unsure = run(core, [window(t, command="let them in", said=1) for t in (1, 2)])
        assert {(r.action, r.rule) for r in unsure} == {("none", "secure_intent")}
        be.intents = {"let_in": 0.95}
        told = run(core, [window(t, command="let them in", said=3) for t in (3, 4)])
        assert (told[1].action, told[1].intent) == ("unlock_door", "let_in") and not told[1].abstained
        silent = run(core, [window(30)])[0]  # no command: never, whatever the intent output says
        assert (silent.action, silent.rule) == ("none", "secure_no_command")


def test_with_an_intent_output_a_command_action_the_intent_does_not_back_abstains():
    pkg = load_package("smart_home")
    with Stub(pkg) as be:
        core = FusionCore(pkg, be)
        be.probs, be.intents = {"lock_door": 0.95}, {"unrelated": 0.9}
        r = run(core, [window(0, command="what did the dog eat")])[0]
        assert (r.action, r.rule, r.abstained) == ("none", "intent_mismatch", True)
        be.intents = {"lock_door": 0.9}
        r = run(core, [window(t, command="lock up", said=1) for t in (1, 2)])[1]
        assert (r.action, r.abstained) == ("lock_door", False)
        be.probs, be.intents = {"emergency": 0.95}, {"unrelated": 0.9}  # not a command's action: no say
        r = run(core, [window(t, command="hello", said=3) for t in (3, 4)])[1]
        assert r.action == "emergency" and r.rule != "intent_mismatch" and not r.abstained
