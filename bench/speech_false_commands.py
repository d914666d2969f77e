"""Spoken commands made from real recordings that hold none: the corpus' speech and sounds through the listener.

The accuracy bench (bench/speech_accuracy.py) speaks commands and unrelated sentences with espeak-ng. This one
plays real recordings: the prepared corpus (``python -m export.corpus prepare``, ``runs/corpus``): people
speaking (a woman's English telephone prompts at 8 kHz, "please press one...", and Czech and Dutch voice
actors), household, street and vehicle sounds and music, and the Speech Commands ``yes``/``no`` clips. Its
synthetic speech (espeak-ng) is left out. None of it is a command of either task, so every command the listener
makes is a false one.

Each recording is played once, at its own level, through one :class:`~edgefusion.sources.speech_asr.Listener`
per task (0.6 s of faint noise between recordings), with the task's spoken-intent classifier (the runtime's
default) and without it (the grammar alone). Reports per task and listener: the utterances the endpointer
opened, the commands made (per hour of audio, per recording, who made them) and the security-sensitive ones.

    python bench/speech_false_commands.py [--corpus runs/corpus] [--tasks smart_home driving]

Writes bench/results/speech_false_commands.json.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the clip helpers
from speech_clips import chunks, stream

from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.sources.speech_asr import RATE, Listener, SpeechConfig, sensitive_intents


def listen(task: str, recordings: list[Any], classifier: bool) -> dict[str, Any]:
    audio, spans = stream([r.audio for r in recordings], seed=7)
    sensitive = sensitive_intents(task)
    listener = Listener.for_task(task, SpeechConfig(intent_classifier=classifier))
    listener.trace = []
    for c in chunks(audio):
        listener.feed(c)
    listener.end()
    made = []
    for u in listener.trace:
        if u.outcome != "commands":
            continue
        s = u.start_ns * RATE // 10**9
        k = int(np.argmin([0 if a <= s < b else min(abs(s - a), abs(s - b)) for a, b in spans]))
        made.append({"recording": recordings[k].id, "role": recordings[k].role, "heard": u.command, "by": u.by,
                     "decoded": u.text, "classified": u.classified})
    hours = len(audio) / RATE / 3600
    return {"audio_min": round(len(audio) / RATE / 60, 1), "utterances": listener.counts["utterances"],
            "outcomes": dict(listener.counts), "commands": len(made),
            "commands_per_hour": round(len(made) / hours, 1),
            "by": dict(collections.Counter(m["by"] for m in made)),
            "security_sensitive": sum(m["heard"] in sensitive for m in made),
            "recordings_with_a_command": len({m["recording"] for m in made}), "made": made}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("runs/corpus"), help="the prepared corpus (runs/corpus)")
    ap.add_argument("--tasks", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--out", default="bench/results/speech_false_commands.json")
    a = ap.parse_args()
    from export.corpus import load_prepared

    recordings = [r for r in load_prepared(a.corpus) if not r.id.startswith("espeak_")]
    roles = collections.Counter(r.role for r in recordings)
    print(f"{len(recordings)} recordings ({dict(roles)}), {sum(len(r.audio) for r in recordings) / RATE / 60:.1f} min")
    report: dict[str, Any] = {"machine": machine_facts(), "corpus": str(a.corpus), "recordings": len(recordings),
                              "roles": dict(roles), "tasks": {}}
    t0 = time.perf_counter()
    for task in a.tasks:
        for name, on in (("with_classifier", True), ("grammar_only", False)):
            r = report["tasks"].setdefault(task, {})[name] = listen(task, recordings, on)
            print(f"{task} {name}: {r['commands']} commands from {r['utterances']} utterances in {r['audio_min']} min "
                  f"({r['commands_per_hour']}/h; by {r['by']}), security-sensitive {r['security_sensitive']}")
            for m in r["made"]:
                print(f"    {m['recording']} ({m['role']}): {m['heard']} by {m['by']} ({m['decoded']!r}, "
                      f"{m['classified']})")
    report["seconds"] = round(time.perf_counter() - t0, 1)
    save_json(report, a.out)


if __name__ == "__main__":
    main()
