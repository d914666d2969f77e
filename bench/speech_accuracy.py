"""Spoken commands: how often each task's spoken phrasings are heard as their intent, and how often
unrelated sentences make a command, on espeak-ng speech (needs the Debian package).

Each phrasing of each intent is spoken in every condition of ``tests/speech_clips.CONDITIONS``
(6 voices, 140-190 words/min, clean to 10 dB SNR, seeded noise), the same matrix as the slow
test ``test_spoken_phrasings_in_every_condition``; the ``unrelated`` sentences of the paraphrase
set (``tests/data/paraphrases/<task>.tsv``, written apart from the grammar) and the short list
``speech_clips.UNRELATED`` are spoken once each, the conditions taken in turn. Everything is
played through the same :class:`~edgefusion.sources.speech_asr.Listener` as ``run --speech``
(endpointer, grammar, confidence), one clip after another with 0.6 s pauses.

Reports per task: accuracy (correct intent / phrasings), per voice, per noise level, per intent
with what it was heard as, each phrasing said once with fillers around it ("please X", "could you
X", "X please"), the lights_on/lights_off confusion (smart_home), unrelated sentences
that made no command, and the security-sensitive commands (let_in) they made.

Every miss says why (``misheard[].why``, counted per voice in ``miss_causes_by_voice``): the endpointer
opened no utterance in it (``no_speech``), split it (``split``), the decoder ended outside the grammar
(``out_of_grammar``), the confidence rule rejected it (``low_confidence``, ``sensitive_unsure``), or another
intent came out (``wrong_intent``); ``decoded`` holds what each of its utterances was decoded as.

Five condition sets (``--conditions``): ``tuned``, the test's six; ``dev``, eight other voices and variants
used beside them to choose every setting; ``held-out``, six more, first measured only to report how the choices
carried to voices never used in choosing (its numbers are published, so it is now a choosing set too);
``held-out-2``, six others, measured at most twice (before and after a round of changes), its misses never
looked at while choosing; ``held-out-3``, six more voice variants, the same way for the grammar's "turn the lights
on/off" (``tests/speech_clips.py``).

Every command is heard by the runtime's default listener: the PocketSphinx grammar and the task's spoken-intent
classifier (``edgefusion/models/speech/<task>.intents.onnx``, see ``Listener._judge``); ``heard_by`` counts who
decided each command ("grammar", "classifier", "both"). ``--grammar-only`` measures the grammar alone (the listener
before the classifier, and with ``[sources.speech] intent_classifier = false``), written with a ``_grammar`` suffix.

Writes JSON (default bench/results/speech_accuracy.json, speech_accuracy_dev.json, speech_accuracy_heldout.json,
speech_accuracy_heldout2.json, speech_accuracy_heldout3.json).

    python bench/speech_accuracy.py [--tasks smart_home driving] [--conditions tuned|dev|held-out|held-out-2|held-out-3]
                                    [--grammar-only]
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the espeak-ng clip helpers
from speech_clips import (
    CONDITIONS,
    DEV_CONDITIONS,
    HELD_OUT_2_CONDITIONS,
    HELD_OUT_3_CONDITIONS,
    HELD_OUT_CONDITIONS,
    UNRELATED,
    command_clips,
    filler_clips,
    listen_per_clip,
    unrelated_clips,
    unrelated_sentences,
)

from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.sources.speech_asr import SpeechConfig, sensitive_intents, task_phrases

CONDITION_SETS = {"tuned": (CONDITIONS, "bench/results/speech_accuracy.json"),
                  "dev": (DEV_CONDITIONS, "bench/results/speech_accuracy_dev.json"),
                  "held-out": (HELD_OUT_CONDITIONS, "bench/results/speech_accuracy_heldout.json"),
                  "held-out-2": (HELD_OUT_2_CONDITIONS, "bench/results/speech_accuracy_heldout2.json"),
                  "held-out-3": (HELD_OUT_3_CONDITIONS, "bench/results/speech_accuracy_heldout3.json")}


def _rate(good: int, total: int) -> dict[str, Any]:
    return {"correct": good, "total": total, "accuracy": round(good / total, 4) if total else None}


def miss_cause(heard: str, said: list[Any]) -> str:
    """Why a command clip was not heard as its intent: ``wrong_intent`` (another command came out), ``no_speech``
    (the endpointer opened no utterance in it), ``split`` (several utterances, none a command), or what became
    of its one utterance (``out_of_grammar``: the decoder ended outside the grammar; ``low_confidence``; ...)."""
    if heard != "-":
        return "wrong_intent"
    if not said:
        return "no_speech"
    if len(said) > 1:
        return "split"
    return str(said[0].outcome)


def run_task(task: str, config: SpeechConfig, conditions: tuple[Any, ...] = CONDITIONS) -> dict[str, Any]:
    phrases, _ = task_phrases(task)
    commands = command_clips(phrases, per_phrase=len(conditions), seed=1, conditions=conditions)
    fillers = filler_clips(phrases, conditions=conditions)
    unrelated = {"paraphrases": unrelated_clips(unrelated_sentences(task), seed=2, conditions=conditions),
                 "speech_clips.UNRELATED": unrelated_clips(UNRELATED, seed=3, conditions=conditions)}
    clips = commands + fillers + [c for cs in unrelated.values() for c in cs]
    got, said = listen_per_clip(task, clips, config)
    heard_cmd, heard_fill = got[: len(commands)], got[len(commands): len(commands) + len(fillers)]
    heard_un = got[len(commands) + len(fillers):]

    by_voice: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    by_snr: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    confusion: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    misheard = []
    causes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for c, g, us in zip(commands, heard_cmd, said):
        voice, wpm, snr = c.condition.split("/")
        for table, key in ((by_voice, f"{voice}/{wpm}"), (by_snr, snr)):
            table[key][0] += g == c.label
            table[key][1] += 1
        confusion[c.label][g] += 1
        if g != c.label:
            why = miss_cause(g, us)
            causes[voice][why] += 1
            misheard.append({"intent": c.label, "text": c.text, "condition": c.condition, "heard": g, "why": why,
                             "decoded": [[u.outcome, u.text, round(u.confidence, 3), u.classified] for u in us]})
    right = sum(g == c.label for c, g in zip(commands, heard_cmd))
    heard_by = collections.Counter(u.by for us in said for u in us if u.outcome == "commands")
    out: dict[str, Any] = {
        **_rate(right, len(commands)),
        "heard_by": dict(heard_by),
        "by_voice": {k: _rate(*v) for k, v in by_voice.items()},
        "by_snr_db": {k: _rate(*v) for k, v in by_snr.items()},
        "by_intent": {k: {**_rate(row[k], sum(row.values())), "heard_as": dict(row)} for k, row in confusion.items()},
        "miss_causes_by_voice": {k: dict(v) for k, v in causes.items()},
        "misheard": misheard,
        "with_fillers": {**_rate(sum(g == c.label for c, g in zip(fillers, heard_fill)), len(fillers)),
                         "misheard": [{"intent": c.label, "text": c.text, "condition": c.condition, "heard": g}
                                      for c, g in zip(fillers, heard_fill) if g != c.label]},
    }
    if {"lights_on", "lights_off"} <= set(phrases):
        out["on_off_confusion"] = {a: {b: confusion[a][b] for b in ("lights_on", "lights_off", "-")}
                                   for a in ("lights_on", "lights_off")}
    un: dict[str, Any] = {}
    at = 0
    for name, cs in unrelated.items():
        heard = heard_un[at: at + len(cs)]
        at += len(cs)
        made = [{"text": c.text, "condition": c.condition, "heard": g} for c, g in zip(cs, heard) if g != "-"]
        un[name] = {"sentences": len(cs), "no_command": len(cs) - len(made),
                    "rejected": round((len(cs) - len(made)) / len(cs), 4),
                    "security_sensitive": sum(m["heard"] in sensitive_intents(task) for m in made), "made": made}
    out["unrelated"] = un
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--conditions", choices=tuple(CONDITION_SETS), default="tuned",
                    help="tuned: the test's voices, speeds and noise levels; dev: eight others, also used to choose "
                         "changes; held-out: six others (published, now used to choose too); held-out-2: six others, "
                         "never used in choosing anything (measure it at most twice, the last time at the end)")
    ap.add_argument("--grammar-only", action="store_true",
                    help="the PocketSphinx grammar alone, without the task's spoken-intent classifier")
    ap.add_argument("--out", default=None, help="JSON to write (default bench/results/speech_accuracy.json, "
                                                "speech_accuracy_dev.json, speech_accuracy_heldout.json or "
                                                "speech_accuracy_heldout2.json)")
    a = ap.parse_args()
    conditions, default_out = CONDITION_SETS[a.conditions]
    out = a.out or (default_out.replace(".json", "_grammar.json") if a.grammar_only else default_out)
    config = SpeechConfig(intent_classifier=not a.grammar_only)
    report: dict[str, Any] = {"machine": machine_facts(), "goal": {"accuracy": 0.9, "unrelated_rejected": 0.95,
                                                                    "security_sensitive_from_unrelated": 0},
                              "config": config.__dict__, "condition_set": a.conditions,
                              "conditions": [list(c) for c in conditions], "tasks": {}}
    t0 = time.perf_counter()
    for task in a.tasks:
        r = report["tasks"][task] = run_task(task, config, conditions)
        print(f"{task}: {r['correct']} of {r['total']} phrasings heard as their intent ({r['accuracy']:.1%})")
        print(f"  commands heard by: {r['heard_by']}")
        print(f"  said with fillers: {r['with_fillers']['correct']} of {r['with_fillers']['total']} "
              f"({r['with_fillers']['accuracy']:.1%})")
        print("  by voice: " + ", ".join(f"{k} {v['accuracy']:.0%}" for k, v in r["by_voice"].items()))
        print("  misses by cause: " + "; ".join(f"{k} {v}" for k, v in r["miss_causes_by_voice"].items()))
        print("  by SNR dB: " + ", ".join(f"{k} {v['accuracy']:.0%}" for k, v in r["by_snr_db"].items()))
        for k, v in r["by_intent"].items():
            print(f"  {k:10s} {v['correct']:3d} / {v['total']:3d}  {v['heard_as']}")
        if "on_off_confusion" in r:
            print(f"  on/off confusion (true -> heard): {r['on_off_confusion']}")
        for name, u in r["unrelated"].items():
            print(f"  unrelated ({name}): {u['no_command']} of {u['sentences']} made no command "
                  f"({u['rejected']:.1%}), security-sensitive commands: {u['security_sensitive']}")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save_json(report, out)


if __name__ == "__main__":
    main()
