"""Spoken commands: a source that listens to another source's audio and adds the commands it hears.

:class:`SpeechSource` wraps the run's audio stream (a microphone, audio files, a
synthesized timeline or a replayed log). It passes every sample through unchanged, gates
the audio with voice activity detection, recognizes each utterance with PocketSphinx
constrained by a grammar generated from the task's intents (see
:mod:`edgefusion.sources.speech_asr`), and yields a
:class:`~edgefusion.samples.SpokenCommand` (text, intent, confidence) for every utterance
that is one of the task's commands. The command takes the same path as a typed one (the
model's text input); the recorder writes it to its own channel, ``/speech``.

Determinism: a command is yielded on the audio's thread *before* the chunk in which its
utterance was closed, so in a lossless run from files (where a frame waits for the audio
up to its time) every frame sees the same commands on every run. A replayed log that holds
a ``/speech`` channel replays those commands as they were recorded, and is not listened
to again: the replay needs no recognizer and gives the recorded run's results.

Example::

    speech = SpeechSource(AudioFileSource("commands.wav", pace=False), task="smart_home")
    with speech:
        for sample in speech:          # AudioChunk ... SpokenCommand, AudioChunk ...
            ...
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from edgefusion.errors import ConfigError, InputError
from edgefusion.package import ModelPackage
from edgefusion.samples import AudioChunk, SpokenCommand
from edgefusion.sources.base import Sample, Source
from edgefusion.sources.speech_asr import Listener, SpeechConfig

__all__ = ["SpeechConfig", "SpeechSource", "check_speech_available", "speech_summary", "speech_task"]

log = logging.getLogger("edgefusion.speech")


def check_speech_available() -> None:
    """Raise :class:`~edgefusion.errors.MissingDependencyError` (naming the extra) without PocketSphinx."""
    from edgefusion.sources.speech_asr import _pocketsphinx

    _pocketsphinx()


def speech_task(package: ModelPackage) -> str:
    """The task whose commands a package's speech grammar is made of.

    Raises:
        ConfigError: the package names no built-in task (its intents' phrases are unknown).
    """
    from edgefusion.policy import task_of

    task = task_of(package)
    if task is None or not task.intents:
        raise ConfigError(f"spoken commands: package {package.name!r} names no built-in task with command intents, "
                          "so there is no grammar to listen for")
    return task.name


def speech_summary(sources: dict[str, dict[str, Any]]) -> str | None:
    """One line on what the speech source heard (from a run's ``stats.sources``), or None without one.

    Example:
        >>> speech_summary({"audio": {"speech": {"mode": "listening", "utterances": 3, "commands": 2,
        ...                                      "out_of_grammar": 1}}})
        'speech (listening): 3 utterances, 2 commands; not commands: out_of_grammar 1'
    """
    for info in sources.values():
        sp = info.get("speech") if isinstance(info, dict) else None
        if isinstance(sp, dict):
            rest = {k: v for k, v in sp.items() if k not in ("mode", "task", "utterances", "commands")}
            heard = f"{sp['utterances']} utterances, " if "utterances" in sp else ""
            line = f"speech ({sp.get('mode')}): {heard}{sp.get('commands', 0)} commands"
            return line + ("; not commands: " + ", ".join(f"{k} {v}" for k, v in sorted(rest.items())) if rest else "")
    return None


class SpeechSource(Source):
    """``inner``'s samples, with the commands spoken in its audio.

    Args:
        inner: the source whose audio is listened to (it keeps its name and its role).
        task: the task whose intents and phrases make the grammar (e.g. ``smart_home``).
        config: voice activity and confidence settings.

    ``info["speech"]`` counts what became of the utterances (see
    :class:`~edgefusion.sources.speech_asr.Listener`) and ``latency_ms`` holds, per command,
    the time from the chunk that closed its utterance arriving to the command leaving.
    """

    delivers_commands = True

    def __init__(self, inner: Source, task: str, config: SpeechConfig | None = None) -> None:
        super().__init__(inner.clock)
        self.inner, self.task, self.config = inner, task, config or SpeechConfig()
        self.name, self.drives_run = inner.name, inner.drives_run
        self.inner.stop = self.stop  # one stop event for both
        self.rejected = inner.rejected  # the inner source's rejections are this stream's
        self.listener: Listener | None = None
        self.replayed = False
        self._replayed_commands = 0
        self.latency_ms: list[float] = []

    def open(self) -> None:
        self.inner.stop = self.stop  # again: a RetryingSource hands its own stop event to the source it built
        self.inner.open()
        try:
            present = getattr(self.inner, "present", {})
            self.replayed = "speech" in present
            if self.replayed:
                log.info("speech: %s holds its recognized speech (%s); replaying it, not listening again",
                         getattr(self.inner, "path", self.inner.name), present["speech"])
            else:
                self.listener = Listener.for_task(self.task, self.config)
                log.info("speech: listening for %s commands (%s)", self.task,
                         "the grammar and the intent classifier" if self.listener.rec.intents else "the grammar alone")
        except BaseException:
            self.inner.close()
            raise
        self._info()

    def _info(self) -> None:
        counts = {"utterances": 0, "commands": 0, **self.listener.counts} if self.listener else \
            {"commands": self._replayed_commands}
        mode = "replayed" if self.replayed else "listening"
        self.info = {**self.inner.info, "speech": {"mode": mode, "task": self.task, **counts}}

    def close(self) -> None:
        self.inner.close()

    def __iter__(self) -> Iterator[Sample]:
        if self.listener is None and not self.replayed:
            raise InputError("speech: iterate inside 'with source:' (it is not open)")
        listener = self.listener
        for sample in self.inner:
            if listener is not None and isinstance(sample, AudioChunk):
                t0 = time.perf_counter_ns()
                heard = listener.feed(sample)
                for h in heard:
                    yield self._command(h, sample.end_ns)
                    self.latency_ms.append((time.perf_counter_ns() - t0) / 1e6)
                if heard:
                    self._info()
            elif isinstance(sample, SpokenCommand):
                self._replayed_commands += 1
            yield sample
        if listener is not None and not self.stop.is_set():
            for h in listener.end():
                yield self._command(h, h.end_ns)
        self._info()

    def _command(self, h: Any, issued_ns: int) -> SpokenCommand:
        """The command of ``h``, issued at the end of the audio that closed its utterance."""
        log.info("speech: heard %r -> %s (confidence %.2f, %s)", h.text, h.intent, h.confidence,
                 {"both": "grammar and classifier", "classifier": f"classifier; grammar decoded {h.decoded!r}"}
                 .get(h.by, h.by))
        return SpokenCommand(t_ns=max(issued_ns, h.end_ns), text=h.text, intent=h.intent, confidence=h.confidence,
                             start_ns=h.start_ns, end_ns=h.end_ns)
