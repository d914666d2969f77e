"""The paraphrase test set through the shipped packages (issue 15): intent and action confusion tables.

``tests/data/paraphrases/<task>.tsv`` holds hand-written commands per intent (negations,
questions, misspellings) and out-of-domain sentences, written apart from the training
grammar. Each sentence runs through the runtime as a user's command would: the package,
ONNX Runtime, the real FeedBuilder, and the task's policy on the step's proposal.

- **intent**: the package's intent output (``role: intent``) against the sentence's label;
- **action**: one scene per task in which each intent decides a distinct action (the task's
  rules say which; in driving ``continue`` and ``unrelated`` both decide ``proceed``), so a
  wrong action shows a misread command; an unrelated sentence must decide what no command
  decides, and never a security-sensitive action (the policy's ``secure``).

The grammar and the set overlap on short, common commands ("pull over", "lights off"):
``verbatim`` counts the sentences that appear word for word among ``--grammar-samples``
generated commands, and the accuracy is also given on the others.

    python bench/paraphrases.py [--packages smart_home driving] [--variants fp32 int8]

Writes bench/results/paraphrases.json and paraphrases.md. ``tests/test_paraphrases.py``
runs :func:`evaluate` and holds the goals (intent >= 95%, unrelated -> no action >= 95%, zero
security-sensitive actions from unrelated sentences).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.backends import open_backend
from edgefusion.engine import FusionStep
from edgefusion.package import ModelPackage, load_package
from edgefusion.policy import decider_for, task_of
from edgefusion.preprocess import normalize_text
from edgefusion.samples import FusionWindow
from edgefusion.scenarios import get_scenario
from edgefusion.scenarios.sounds import SR
from edgefusion.task import load_task

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "paraphrases"
#: per task: a visual state in which every intent decides another action (no sound is playing)
SCENES: dict[str, dict[str, Any]] = {
    "smart_home": {"dark": True, "person": True, "door_open": False, "layout_seed": 7},
    "driving": {"pedestrian": False, "sidewalk_pedestrian": False, "vehicle": False, "vehicle_close": False,
                "distance_m": 40.0, "light": 0, "red_light": False, "emergency_lights": False, "layout_seed": 7},
}
ABSTAIN = "(abstain)"


def read_set(task: str) -> list[tuple[str, str]]:
    """(intent, sentence) rows of a task's paraphrase file."""
    rows = []
    for line in (DATA / f"{task}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, text = line.split("\t")
            rows.append((intent, text))
    return rows


def scene_window(task: str, command: str | None) -> FusionWindow:
    """The task's scene (drawn by its generator, deterministically), a quiet room or road, and ``command``."""
    scen = get_scenario(task)
    rng = np.random.default_rng(0)
    image = scen.render(SCENES[task], rng, hard=False)
    audio = scen.background(SR, rng, hard=False)
    return FusionWindow(t_ns=0, image=image, audio=audio, audio_rate=SR, command=command)


def _key(text: str) -> str:
    return " ".join(w.replace("'", "") for w in normalize_text(text))


def verbatim(task: str, rows: list[tuple[str, str]], samples: int, seed: int = 0) -> set[str]:
    """The set's sentences that the task's grammar generates word for word among ``samples`` commands."""
    scen, rng = get_scenario(task), np.random.default_rng(seed)
    generated = {_key(scen.phrase(scen.command_intent(rng), rng, hard=False)) for _ in range(samples)}
    return {text for _, text in rows if _key(text) in generated}


def evaluate(task: str, variant: str = "fp32", package: ModelPackage | None = None,
             grammar_samples: int = 0) -> dict[str, Any]:
    """Run the task's paraphrase set through ``package`` (default: the shipped one); the results as a dict."""
    spec, rows = load_task(task), read_set(task)
    pkg = package or load_package(task)
    intent_out = pkg.output_role("intent")
    decider = decider_for(pkg)
    if intent_out is None or decider is None:
        raise SystemExit(f"package '{pkg.name}' has no intent output or no policy; nothing to measure")
    truth_events = frozenset(e for e in spec.event_names if SCENES[task].get(e))
    expect = {i: spec.decide(truth_events, i) for i in spec.intents}
    no_action = spec.decide(truth_events, None)
    got: list[dict[str, Any]] = []
    with open_backend("onnxruntime", pkg, variant, threads=1) as be:
        step = FusionStep(pkg, be)
        scene_events = sorted(step(scene_window(task, None)).events)
        for intent, text in rows:
            feeds, info = step.preprocess(scene_window(task, text))
            decision = step.postprocess(be.infer(feeds))
            verdict = decider.propose(decision, (), info.unknown_words)
            got.append({"truth": intent, "text": text, "intent": decision.intent,
                        "intent_confidence": round(decision.intent_score, 4), "action": verdict.vote or ABSTAIN,
                        "rule": verdict.rule})
    same = verbatim(task, rows, grammar_samples) if grammar_samples else set()
    unrelated = [g["action"] for g in got if g["truth"] == "unrelated"]
    unseen = [g for g in got if g["text"] not in same]
    return {
        "task": task, "variant": variant, "package": pkg.name, "sentences": len(got),
        "per_intent": dict(Counter(g["truth"] for g in got)),
        "scene_events": scene_events, "scene_truth": sorted(truth_events), "expected_action": expect,
        "intent_accuracy": float(np.mean([g["intent"] == g["truth"] for g in got])),
        "action_accuracy": float(np.mean([g["action"] == expect[g["truth"]] for g in got])),
        "unrelated_no_action": float(np.mean([a in (no_action, ABSTAIN) for a in unrelated])),
        "unrelated_secure_actions": sum(a in decider.policy.secure for a in unrelated),
        "grammar_samples": grammar_samples, "verbatim_in_grammar": len(same),
        "intent_accuracy_not_verbatim": float(np.mean([g["intent"] == g["truth"] for g in unseen])) if unseen
        else None,
        "intent_labels": list(intent_out.labels), "intents": list(spec.intents),
        "errors": [g for g in got if g["intent"] != g["truth"] or g["action"] != expect[g["truth"]]],
        "rows": got,
    }


def table(title: str, pairs: list[tuple[str, str]], rows: list[str], cols: list[str], md: bool = False) -> str:
    """A confusion table (rows: truth, columns: predicted), as text or Markdown."""
    n = Counter(pairs)
    if md:
        lines = [f"**{title}**", "", "| truth \\ predicted | " + " | ".join(cols) + " |",
                 "|---" * (len(cols) + 1) + "|"]
        return "\n".join(lines + [f"| {r} | " + " | ".join(str(n[(r, c)] or "") for c in cols) + " |" for r in rows])
    w = max(map(len, rows + cols)) + 1
    lines = [title, " " * w + "".join(f"{c[:w - 1]:>{w}}" for c in cols)]
    return "\n".join(lines + [f"{r:<{w}}" + "".join(f"{n[(r, c)]:>{w}}" for c in cols) for r in rows])


def tables(r: dict[str, Any], md: bool = False) -> str:
    """The intent and the action confusion tables of one :func:`evaluate` result."""
    head = f"{r['task']} {r['variant']}"
    intent = table(f"{head}: intent (rows: truth, columns: the intent output)",
                   [(g["truth"], str(g["intent"])) for g in r["rows"]], r["intents"], r["intent_labels"], md)
    actions = sorted({g["action"] for g in r["rows"]} | set(r["expected_action"].values()))
    expected = ", ".join(f"{i} -> {a}" for i, a in r["expected_action"].items())
    action = table(f"{head}: action in the scene (expected {expected})",
                   [(g["truth"], g["action"]) for g in r["rows"]], r["intents"], actions, md)
    summary = (f"{head}: intent accuracy {100 * r['intent_accuracy']:.1f}%, action accuracy "
               f"{100 * r['action_accuracy']:.1f}%, unrelated -> no action {100 * r['unrelated_no_action']:.1f}%, "
               f"security-sensitive actions from unrelated sentences: {r['unrelated_secure_actions']}")
    if r["grammar_samples"]:
        summary += (f"; {r['verbatim_in_grammar']} of {r['sentences']} sentences appear verbatim among "
                    f"{r['grammar_samples']} generated commands, intent accuracy on the others "
                    f"{100 * r['intent_accuracy_not_verbatim']:.1f}%")
    return "\n\n".join([intent, action, summary])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", nargs="+", default=["smart_home", "driving"],
                    help="built-in package names or package directories (each runs under its own task)")
    ap.add_argument("--variants", nargs="+", default=["fp32", "int8"])
    ap.add_argument("--grammar-samples", type=int, default=40_000,
                    help="generated commands the set is compared with, word for word (default 40000)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "paraphrases.json")
    a = ap.parse_args(argv)
    results = []
    for p in a.packages:
        pkg = load_package(p)
        spec = task_of(pkg)
        task = spec.name if spec else pkg.name
        if not (DATA / f"{task}.tsv").is_file():
            raise SystemExit(f"error: package {p}: no paraphrase set for its task '{task}' in {DATA}")
        results += [evaluate(task, v, package=pkg, grammar_samples=a.grammar_samples) for v in a.variants]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    md = "\n\n".join(tables(r, md=True) for r in results)
    a.out.with_suffix(".md").write_text("# Paraphrase test set (bench/paraphrases.py)\n\n" + md + "\n")
    for r in results:
        print(tables(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
