"""Spoken commands: how long after an utterance ends its command comes out (goal: <= 500 ms).

Each task's command phrases are spoken by espeak-ng (needs the Debian package), one after
another with a pause, and played in real time (50 ms chunks, each delivered when it would
have been complete live) into :class:`~edgefusion.sources.speech.SpeechSource`, the same
source ``run --speech`` uses. For every command: the time from the last voiced sample of
its utterance (the last 10 ms whose level is within 40 dB of the utterance's peak) to the
command leaving the source. That includes waiting for the chunk, the endpointer's decision
window (``window_ms``) and the decoding; beside it, in audio time after the voice's end:
where the endpointer put the utterance's end and where the audio that closed it ends (the
command's ``t_ns``), and the decoding time alone. The machine's other load counts too:
on a shared machine the numbers are inflated, and the JSON keeps the load average.

Writes JSON (default bench/results/speech_latency.json).

    python bench/speech_latency.py [--tasks smart_home driving] [--per-task 12] [--window-ms 300] [--vad-mode 0]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf

from edgefusion.benchmark.report import machine_facts, save_json
from edgefusion.metrics import percentiles_ms
from edgefusion.preprocess.audio import resample
from edgefusion.samples import AudioChunk, SpokenCommand
from edgefusion.sources.base import Source, pace_until
from edgefusion.sources.speech import SpeechSource
from edgefusion.sources.speech_asr import RATE, SpeechConfig, task_phrases

SECOND = 1_000_000_000


def say(text: str) -> np.ndarray:
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text], capture_output=True,
                         check=True, timeout=30).stdout
    x, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return resample(x, rate, RATE).astype(np.float32)


def voiced_end(x: np.ndarray) -> int:
    """Sample index just after the last 10 ms frame within 40 dB of the clip's loudest."""
    n = RATE // 100
    frames = x[: len(x) // n * n].reshape(-1, n)
    level = np.sqrt(np.mean(frames**2, axis=1)) + 1e-12
    loud = np.nonzero(level >= level.max() * 0.01)[0]
    return int((loud[-1] + 1) * n)


class PacedAudio(Source):
    """An array played in real time, 50 ms chunks; ``wall0_ns`` is when its first sample was "heard"."""

    name = "audio"

    def __init__(self, audio: np.ndarray) -> None:
        super().__init__()
        self.audio = audio
        self.wall0_ns = 0

    def __iter__(self) -> Iterator[AudioChunk]:
        n = RATE // 20
        self.wall0_ns = time.monotonic_ns()
        for i in range(0, len(self.audio), n):
            x = self.audio[i: i + n]
            if not pace_until(self.stop, self.wall0_ns + (i + len(x)) * SECOND // RATE):
                return
            yield AudioChunk(t_ns=i * SECOND // RATE, samples=x, sample_rate=RATE)


def run_task(task: str, per_task: int, config: SpeechConfig, gap_s: float) -> dict[str, Any]:
    phrases, _ = task_phrases(task)
    texts = [(intent, t) for intent, ts in phrases.items() for t in ts][:per_task]
    rng = np.random.default_rng(0)
    parts, ends, at = [], [], 0
    gap = int(gap_s * RATE)
    for _, text in texts:
        x = say(text)
        parts += [np.zeros(gap, np.float32), x]
        at += gap
        ends.append(at + voiced_end(x))
        at += len(x)
    parts.append(np.zeros(gap, np.float32))
    audio = np.concatenate(parts)
    audio = (audio + rng.normal(0, 1e-3, len(audio))).astype(np.float32)
    paced = PacedAudio(audio)
    src = SpeechSource(paced, task, config)
    latencies, heard, ended, issued = [], [], [], []
    with src:
        for sample in src:
            if isinstance(sample, SpokenCommand):
                out_ns = time.monotonic_ns()
                heard.append(sample)
                # the utterance this command closed: the last true end at or before the command's end time
                k = max((i for i, e in enumerate(ends) if e * SECOND // RATE <= sample.end_ns + SECOND // 2), default=0)
                true_end = ends[k] * SECOND // RATE
                latencies.append(out_ns - (paced.wall0_ns + true_end))
                ended.append(sample.end_ns - true_end)
                issued.append(sample.t_ns - true_end)
    correct = sum(1 for h in heard if any(h.intent == i for i, _ in texts))
    return {"utterances": len(texts), "commands": len(heard), "commands_of_the_task": correct,
            "speech_counts": src.info.get("speech", {}), "end_to_command_ms": percentiles_ms(latencies),
            "p95_ms": float(np.percentile(np.array(latencies) / 1e6, 95)) if latencies else float("nan"),
            "decode_ms": percentiles_ms(np.array(src.latency_ms) * 1e6),
            "utterance_end_after_voice_ms": percentiles_ms(ended), "issued_after_voice_ms": percentiles_ms(issued),
            "audio_s": round(len(audio) / RATE, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", nargs="+", default=["smart_home", "driving"])
    ap.add_argument("--per-task", type=int, default=12, help="phrases per task (default 12)")
    ap.add_argument("--window-ms", type=int, default=SpeechConfig.window_ms, help="the endpointer's window")
    ap.add_argument("--vad-mode", type=int, default=SpeechConfig.vad_mode, help="voice activity aggressiveness 0-3")
    ap.add_argument("--gap-s", type=float, default=1.0, help="pause between utterances")
    ap.add_argument("--out", default="bench/results/speech_latency.json")
    a = ap.parse_args()
    config = SpeechConfig(window_ms=a.window_ms, vad_mode=a.vad_mode)
    report: dict[str, Any] = {"machine": machine_facts(), "load_average": os.getloadavg(), "goal_ms": 500,
                              "config": config.__dict__, "tasks": {}}
    for task in a.tasks:
        r = report["tasks"][task] = run_task(task, a.per_task, config, a.gap_s)
        e2c = r["end_to_command_ms"]
        issued, decode = r["issued_after_voice_ms"]["p50"], r["decode_ms"]["p50"]
        print(f"{task}: {r['commands']} commands from {r['utterances']} utterances; utterance end -> command "
              f"p50 {e2c['p50']:.0f} ms, p95 {r['p95_ms']:.0f} ms (the audio that closes it ends p50 {issued:.0f} ms "
              f"after the voice; decoding p50 {decode:.0f} ms)")
    save_json(report, a.out)


if __name__ == "__main__":
    main()
