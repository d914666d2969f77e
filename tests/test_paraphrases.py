"""The paraphrase test set through the shipped packages (issue 15): open-vocabulary commands.

``tests/data/paraphrases/<task>.tsv`` holds hand-written commands per intent (negations,
questions, misspellings) and out-of-domain sentences, written apart from the training
grammar. Each sentence runs through the runtime as a user's command would: the shipped
package, ONNX Runtime, the real FeedBuilder, and the task's policy on the step's proposal.

- **intent**: the package's intent output (``role: intent``) against the sentence's label;
- **action**: one scene per task in which each intent decides a distinct action (the task's
  rules say which), so a wrong action shows a misread command; an unrelated sentence must
  decide what no command decides, and never a security-sensitive action.

``pytest -s tests/test_paraphrases.py`` prints the confusion tables.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgefusion.backends import open_backend
from edgefusion.engine import FusionStep
from edgefusion.package import load_package
from edgefusion.policy import decider_for
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import get_scenario
from edgefusion.scenarios.sounds import SR
from edgefusion.task import load_task

DATA = Path(__file__).parent / "data" / "paraphrases"
#: per task: a visual state in which every intent decides another action (no sound is playing)
SCENES = {
    "smart_home": {"dark": True, "person": True, "door_open": False, "layout_seed": 7},
    "driving": {"pedestrian": False, "sidewalk_pedestrian": False, "vehicle": False, "vehicle_close": False,
                "distance_m": 40.0, "light": 0, "red_light": False, "emergency_lights": False, "layout_seed": 7},
}
GOALS = {"intent": 0.95, "unrelated_no_action": 0.95}


def read_set(task: str) -> list[tuple[str, str]]:
    """(intent, sentence) rows of a task's paraphrase file."""
    rows = []
    for line in (DATA / f"{task}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, text = line.split("\t")
            rows.append((intent, text))
    return rows


def scene_window(task: str, command: str | None) -> FusionWindow:
    """The task's scene (drawn by its generator, deterministically) with a quiet room or road and ``command``."""
    scen = get_scenario(task)
    rng = np.random.default_rng(0)
    image = scen.render(SCENES[task], rng, hard=False)
    audio = scen.background(SR, rng, hard=False)
    return FusionWindow(t_ns=0, image=image, audio=audio, audio_rate=SR, command=command)


def table(title: str, pairs: list[tuple[str, str]], rows: list[str], cols: list[str]) -> str:
    """A confusion table (rows: truth, columns: predicted) as text."""
    n = Counter(pairs)
    w = max(map(len, rows + cols)) + 1
    lines = [title, " " * w + "".join(f"{c[:w - 1]:>{w}}" for c in cols)]
    lines += [f"{r:<{w}}" + "".join(f"{n[(r, c)]:>{w}}" for c in cols) for r in rows]
    return "\n".join(lines)


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("task", ["smart_home", "driving"])
def test_paraphrases_through_the_shipped_package(task, variant):
    spec, pkg, rows = load_task(task), load_package(task), read_set(task)
    assert {i for i, _ in rows} == set(spec.intents), "the set covers exactly the task's intents"
    counts = Counter(i for i, _ in rows)
    assert min(counts.values()) >= 20 and counts["unrelated"] >= 50, counts
    intent_out = pkg.output_role("intent")
    assert intent_out is not None, "the shipped package has an intent output"
    decider = decider_for(pkg)
    assert decider is not None
    events = set(pkg.output("multilabel_logits").labels)
    with open_backend("onnxruntime", pkg, variant, threads=1) as be:
        step = FusionStep(pkg, be)
        quiet = step(scene_window(task, None))
        truth_events = frozenset(e for e in spec.event_names if SCENES[task].get(e))
        assert set(quiet.events) == truth_events & events, f"the scene reads as {quiet.events}"
        expect = {i: spec.decide(truth_events, i) for i in spec.intents}
        no_action = spec.decide(truth_events, None)
        got_intent, got_action = [], []
        for intent, text in rows:
            w = scene_window(task, text)
            feeds, info = step.preprocess(w)
            decision = step.postprocess(be.infer(feeds))
            verdict = decider.propose(decision, (), info.unknown_words)
            got_intent.append((intent, str(decision.intent)))
            got_action.append((intent, verdict.vote or "(abstain)"))
    intents = list(intent_out.labels)
    print()
    print(table(f"{task} {variant}: intent (rows: truth, columns: intent output)", got_intent, list(spec.intents),
                intents))
    actions = sorted({a for _, a in got_action} | set(expect.values()))
    print(table(f"{task} {variant}: action in the scene (expected: "
                + ", ".join(f"{i} -> {a}" for i, a in expect.items()) + ")", got_action, list(spec.intents), actions))
    intent_acc = np.mean([t == p for t, p in got_intent])
    action_acc = np.mean([expect[t] == a for t, a in got_action])
    unrelated = [a for t, a in got_action if t == "unrelated"]
    quiet_share = np.mean([a in (no_action, "(abstain)") for a in unrelated])
    secure = [a for a in unrelated if a in decider.policy.secure]
    print(f"{task} {variant}: intent accuracy {100 * intent_acc:.1f}%, action accuracy {100 * action_acc:.1f}%, "
          f"unrelated -> no action {100 * quiet_share:.1f}%, security-sensitive actions from unrelated: {len(secure)}")
    assert intent_acc >= GOALS["intent"]
    assert quiet_share >= GOALS["unrelated_no_action"]
    assert not secure
