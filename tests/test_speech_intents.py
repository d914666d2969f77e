"""The spoken-intent classifier beside the PocketSphinx grammar: its files, its rules, its training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from speech_clips import EVALUATION_SETS, UNRELATED, espeak_available, say, unrelated_sentences

from edgefusion.errors import ConfigError
from edgefusion.sources.speech_asr import (
    RATE,
    CommandGrammar,
    Decoded,
    Listener,
    SpeechConfig,
    sensitive_intents,
    task_phrases,
)
from edgefusion.sources.speech_intents import FILES, OTHER, IntentClassifier, IntentModelInfo, SpeechEmbedder

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (.ci/run installs it)")
TASKS = ("smart_home", "driving")


def _info(tmp_path, **over):
    raw = {"task": "smart_home", "labels": ["lights_on", "other"], "min_probability": 0.7, "min_sensitive": 0.8,
           "min_other": 0.7, **over}
    path = tmp_path / "x.intents.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


# -- the files ------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_each_task_ships_a_classifier_of_its_grammar_intents(task):
    clf = IntentClassifier.for_task(task)
    assert clf is not None
    assert set(clf.intents) == set(task_phrases(task)[0]) and clf.info.labels[-1] == OTHER
    assert 0 < clf.info.min_probability <= clf.info.min_sensitive <= 1 and 0 < clf.info.min_other <= 1
    p = clf.probabilities(np.zeros(RATE, np.float32))
    assert set(p) == set(clf.info.labels) and abs(sum(p.values()) - 1) < 1e-4
    # its training kept every evaluation voice out, and says so
    held = {v for s in EVALUATION_SETS for v, _, _ in s}
    trained = set(clf.info.training["voices"]) | set(clf.info.training["held_back_voices"])
    assert trained and not trained & held
    assert not {v.split("+")[1] for v in trained if "+" in v} & {v.split("+")[1] for v in held if "+" in v}


def test_a_task_without_a_classifier_has_none():
    assert IntentClassifier.for_task("kitchen") is None


def test_the_embedding_gives_one_vector_per_80_ms_and_one_for_any_short_sound():
    e = SpeechEmbedder()
    assert e(np.zeros(RATE, np.float32)).shape == (9, 96)
    assert e(np.zeros(RATE // 10, np.float32)).shape == (1, 96)  # a click still fills one window (padding)
    assert e(np.zeros(3 * RATE, np.float32)).shape == (34, 96)
    assert e(np.zeros(0, np.float32)).shape == (1, 96)


@pytest.mark.parametrize(("over", "says"), [
    ({"labels": ["lights_on"]}, "'labels' must be a list of distinct names with 'other'"),
    ({"labels": ["a", "a", "other"]}, "'labels' must be"),
    ({"min_probability": 1.5, "min_other": "high"}, "'min_probability' must be a number from 0 to 1; 'min_other'"),
    ({"min_sensitive": True}, "'min_sensitive' must be a number"),
    ({"task": 3}, "'task' must be a string"),
])
def test_a_bad_info_file_is_one_line_naming_each_problem(tmp_path, over, says):
    with pytest.raises(ConfigError) as e:
        IntentModelInfo.read(_info(tmp_path, **over))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_an_unreadable_info_file_or_model_is_one_line(tmp_path):
    bad = tmp_path / "x.intents.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot read x\.intents\.json"):
        IntentModelInfo.read(bad)
    bad.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        IntentModelInfo.read(bad)
    model = tmp_path / "x.intents.onnx"
    model.write_bytes(b"not an onnx model")
    with pytest.raises(ConfigError, match=r"ONNX Runtime cannot load x\.intents\.onnx") as e:
        IntentClassifier(model, _info(tmp_path))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="is missing"):
        IntentClassifier(tmp_path / "absent.onnx", _info(tmp_path))


def test_labels_that_disagree_with_the_model_or_the_grammar_are_refused(tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(FILES / "driving.intents.onnx", model)
    with pytest.raises(ConfigError, match=r"gives 4 probabilities but x\.intents\.json names 2 labels"):
        IntentClassifier(model, _info(tmp_path))
    pytest.importorskip("pocketsphinx", reason="the recognizer needs the 'speech' extra")
    from edgefusion.sources.speech_asr import Recognizer

    with pytest.raises(ConfigError, match="retrain it"):
        Recognizer(task_phrases("smart_home"), intents=IntentClassifier.for_task("driving"))


# -- who decides ----------------------------------------------------------------------------


class _Classifier:
    """Stands for an IntentClassifier: the thresholds of the shipped smart_home one."""

    def __init__(self) -> None:
        self.info = IntentModelInfo("smart_home", ("lights_on", "lights_off", "lock_door", "let_in", OTHER),
                                    0.7, 0.8, 0.7, {})
        self.intents = self.info.labels[:-1]


class _Recognizer:
    def __init__(self) -> None:
        self.grammar, self.active, self.intents = CommandGrammar(task_phrases("smart_home")), False, _Classifier()
        self.said = Decoded(None, 0.0, 0.0)

    def finish(self) -> Decoded:
        return self.said


def _judge(text, confidence, **probs):
    rec = _Recognizer()
    listener = Listener(rec, SpeechConfig(), sensitive=sensitive_intents("smart_home"))  # type: ignore[arg-type]
    listener.trace = []
    full = dict.fromkeys(rec.intents.info.labels, 0.0)
    full.update(probs)
    rec.said = Decoded(text, confidence, 1.0, full)
    listener._speech_samples = RATE
    heard = listener._close(RATE)
    return heard, listener.trace[-1]


def test_a_sure_classifier_decides_and_the_command_says_its_intent():
    heard, u = _judge("turn on the lights", 0.9, lights_off=0.85, other=0.15)
    assert (heard.intent, heard.by, heard.text, heard.decoded) == ("lights_off", "classifier", "turn off the lights",
                                                                   "turn on the lights")
    assert (u.outcome, u.command, u.grammar, u.classified) == ("commands", "lights_off", "commands",
                                                               ("lights_off", 0.85))
    heard, _ = _judge("lock the door please", 0.9, lock_door=0.95)
    assert (heard.intent, heard.by, heard.text, heard.confidence) == ("lock_door", "both", "lock the door please", 0.95)
    heard, u = _judge(None, 0.0, lights_on=0.72)  # the grammar ended outside itself
    assert heard.intent == "lights_on" and u.grammar == "out_of_grammar"


def test_a_sure_other_overrules_the_grammar_and_an_unsure_classifier_leaves_it_to_the_grammar():
    heard, u = _judge("turn on the lights", 0.9, lights_on=0.2, other=0.8)
    assert heard is None and u.outcome == "classifier_other"
    heard, u = _judge("turn on the lights", 0.9, lights_on=0.4, other=0.6)
    assert heard.intent == "lights_on" and heard.by == "grammar" and heard.confidence == 0.9
    heard, u = _judge("turn on the lights", 0.05, lights_on=0.4, other=0.6)
    assert heard is None and u.outcome == "low_confidence"


def test_a_security_sensitive_intent_needs_both_recognizers():
    heard, u = _judge("let them in", 0.9, let_in=0.95)
    assert heard.intent == "let_in" and heard.by == "both"
    # the grammar decoded it (with a filler, which alone it refuses), the classifier is sure: taken
    heard, u = _judge("please let them in", 0.3, let_in=0.85)
    assert heard.intent == "let_in" and heard.by == "classifier" and u.grammar == "sensitive_unsure"
    # the classifier alone, or below min_sensitive: not taken
    for text, p in (("lock the door", 0.99), (None, 0.99), ("let them in", 0.75)):
        heard, u = _judge(text, 0.9, let_in=p)
        assert heard is None and u.outcome == "sensitive_unconfirmed", (text, p)


# -- on speech ------------------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize("task", TASKS)
def test_the_classifier_hears_commands_and_not_unrelated_sentences_or_noise(task):
    """A voice of the test's conditions (never in its training): each phrasing's intent, and no command for
    unrelated sentences, white noise and a tone."""
    clf = IntentClassifier.for_task(task)
    assert clf is not None
    phrases, _ = task_phrases(task)
    said = [(i, t) for i, ts in phrases.items() for t in ts]
    right = 0
    for intent, text in said:
        p = clf.probabilities(say(text, "en-us", 160))
        right += max(p, key=p.__getitem__) == intent and p[intent] >= clf.info.min_probability
    assert right / len(said) >= 0.9, f"{right} of {len(said)}"
    others = [say(t, "en-us", 160) for t in (unrelated_sentences(task)[:10] + list(UNRELATED[:10]))]
    rng = np.random.default_rng(0)
    others += [rng.normal(0, 0.3, RATE).astype(np.float32),
               0.5 * np.sin(2 * np.pi * 440 * np.arange(RATE) / RATE).astype(np.float32)]
    made = [max(p, key=p.__getitem__) for p in map(clf.probabilities, others)
            if max(p.values()) >= clf.info.min_probability and max(p, key=p.__getitem__) != OTHER]
    assert len(made) <= 1, made
    assert not set(made) & sensitive_intents(task)


@needs_espeak
def test_training_keeps_evaluation_voices_and_sentences_out_and_makes_loadable_files(tmp_path):
    pytest.importorskip("torch", reason="training needs the 'train' extra")
    from export.speech_intents import evaluation_conditions, main, negatives, training_voices

    voices, variants, sentences = evaluation_conditions()
    picked = training_voices(30, seed=0)
    assert len(picked) == 30 and not set(picked) & voices
    assert not {v.split("+")[1] for v in picked if "+" in v} & variants
    assert training_voices(30, seed=0) == picked
    negs = negatives("smart_home", 0, 100)
    assert negs and not {" ".join(n.lower().split()) for n in negs} & sentences
    assert main(["--tasks", "driving", "--voices", "2", "--val-voices", "1", "--negatives", "2", "--sounds", "1",
                 "--epochs", "1", "--workers", "1", "--out", str(tmp_path)]) == 0
    clf = IntentClassifier(tmp_path / "driving.intents.onnx", tmp_path / "driving.intents.json")
    assert set(clf.intents) == set(task_phrases("driving")[0]) and clf.info.training["clips"] > 0
    assert abs(sum(clf.probabilities(np.zeros(RATE, np.float32)).values()) - 1) < 1e-4


def test_a_negated_command_is_none_whatever_the_classifier_heard():
    heard, u = _judge("don't turn on the lights", 0.9, lights_on=0.97)
    assert heard is None and u.outcome == "negated" and u.grammar == "negated" and u.intent == "lights_on"
    heard, u = _judge("please do not let them in", 0.9, let_in=0.99)
    assert heard is None and u.outcome == "negated"


@needs_espeak
@pytest.mark.parametrize("task", TASKS)
def test_spoken_negations_make_no_command(task):
    """"don't turn left" holds "turn left": the classifier hears it, the grammar hears the negation. Measured
    here: with the classifier alone deciding, 17 of 24 driving negations made their command."""
    from speech_clips import CONDITIONS, heard_per_clip, unrelated_clips

    said = {"smart_home": ["don't lock the door", "don't turn on the lights", "don't turn off the lights",
                           "don't let them in", "do not open the door for them", "never let him in"],
            "driving": ["don't turn left", "do not turn left", "don't pull over", "don't keep going",
                        "don't continue", "never turn left here"]}[task]
    clips = unrelated_clips(said * 2, seed=9, conditions=CONDITIONS)
    got = heard_per_clip(task, clips)
    made = [(c.text, c.condition, g) for c, g in zip(clips, got) if g != "-"]
    assert len(made) <= 1, made
    assert not {g for _, _, g in made} & sensitive_intents(task)
