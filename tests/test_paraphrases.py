"""The paraphrase test set through the shipped packages (issue 15): open-vocabulary commands.

``tests/data/paraphrases/<task>.tsv`` holds hand-written commands per intent (negations,
questions, misspellings) and out-of-domain sentences, written apart from the training
grammar. ``bench/paraphrases.py`` runs each through the runtime (the shipped package, ONNX
Runtime, the real FeedBuilder, the task's policy); here the goals hold on its result:
intent accuracy >= 95%, unrelated -> no action >= 95%, zero security-sensitive actions from
unrelated sentences. ``pytest -s tests/test_paraphrases.py`` prints the confusion tables.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from edgefusion.package import load_package
from edgefusion.task import load_task

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_paraphrases", REPO / "bench" / "paraphrases.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("task", ["smart_home", "driving"])
def test_the_set_covers_every_intent_with_enough_sentences(task):
    rows = bench.read_set(task)
    counts = Counter(i for i, _ in rows)
    assert set(counts) == set(load_task(task).intents)
    assert min(counts.values()) >= 20 and counts["unrelated"] >= 50, counts
    assert len({t.lower() for _, t in rows}) == len(rows), "no sentence twice"


@pytest.mark.parametrize("variant", ["fp32", "int8"])
@pytest.mark.parametrize("task", ["smart_home", "driving"])
def test_paraphrases_through_the_shipped_package(task, variant):
    pkg = load_package(task)
    assert pkg.output_role("intent") is not None, "the shipped package has an intent output"
    r = bench.evaluate(task, variant, pkg)
    print("\n" + bench.tables(r))
    assert r["scene_events"] == r["scene_truth"], "the scene reads as drawn"
    assert len(set(r["expected_action"].values())) >= len(r["intents"]) - 1  # each intent its action (but one)
    assert r["intent_accuracy"] >= 0.95
    assert r["unrelated_no_action"] >= 0.95
    assert r["unrelated_secure_actions"] == 0
