"""Scenario timelines and MCAP logs, both ways.

:func:`write_synth` writes a synthesized scenario timeline as a log (``edgefusion synth``):
camera, audio and commands on their channels, the per-frame ground truth on ``/truth``
(what ``replay --check`` compares with) and the same truth as label spans on ``/labels``
(the format of human labels, so datasets treat synthesized and recorded logs alike).
:func:`read_timeline` reads a recorded log back as a timeline, so a benchmark
feeds every configuration the same input whether it was synthesized or recorded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefusion.errors import ConfigError
from edgefusion.labels import Span, truth_spans
from edgefusion.logs.reader import LogReader, decode
from edgefusion.logs.writer import LogWriter
from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.scenarios import (
    AUDIO_WINDOW_S,
    COMMAND_HORIZON_S,
    Timeline,
    TimelineCommand,
    generate_timeline,
    get_scenario,
)
from edgefusion.scenarios.base import MIN_OVERLAP_S
from edgefusion.sources.timeline import TimelineSource
from edgefusion.task import load_task

__all__ = ["read_timeline", "write_synth"]


def write_synth(scenario: str, duration: float, seed: int, out: str | Path, hard: bool = False,
                image_format: str = "raw") -> tuple[Path, int]:
    """A scenario timeline as MCAP: camera, audio, commands, per-frame truth and label spans on their channels.

    Args:
        scenario: ``smart_home`` or ``driving``.
        duration: seconds to synthesize.
        seed: the timeline's seed (the same seed writes the same samples).
        out: the ``.mcap`` file to write.
        hard: more clutter, noise and distractors.
        image_format: ``raw`` (lossless) or ``jpeg``.

    Returns:
        The path written and the number of messages in it.
    """
    tl = generate_timeline(get_scenario(scenario), duration, seed, hard=hard)
    truth = dict(zip(tl.frame_t_ns.tolist(), zip(tl.truth_action, tl.truth_events)))
    spans = iter(synth_spans(tl, duration))
    span: Span | None = next(spans, None)
    with LogWriter(out, image_format=image_format) as w:
        w.metadata("scenario", {"scenario": scenario, "seed": str(seed), "duration_s": str(duration),
                                "hard": str(hard), "package": scenario})
        for s in TimelineSource(tl):
            while span is not None and span.start_ns <= s.t_ns:  # in time order with the samples
                w.label(span)
                span = next(spans, None)
            if isinstance(s, Frame):
                w.frame(s, s.t_ns)
                action, events = truth[s.t_ns]
                w.truth(s.t_ns, action, sorted(events), s.t_ns)
            elif isinstance(s, AudioChunk):
                w.audio(s, s.t_ns)
            else:
                w.command(s, s.t_ns)
        while span is not None:  # spans starting after the last sample
            w.label(span)
            span = next(spans, None)
        n = w.messages
    return Path(out), n


def synth_spans(tl: Timeline, duration: float) -> list[Span]:
    """The timeline's truth as label spans (source ``synth``), sorted by start; coverage is the whole log.

    The generator's own window, overlap and horizon invert its per-frame truth exactly
    (:func:`edgefusion.labels.truth_spans`).
    """
    task = load_task(tl.scenario)
    modality = {e.name: e.modality for e in task.events}
    end_ns = max(round(duration * 1e9), int(tl.frame_t_ns[-1]) + 1 if len(tl.frame_t_ns) else 0)
    spans = truth_spans(tl.frame_t_ns.tolist(), tl.truth_events, tl.commands, modality, end_ns,
                        round(AUDIO_WINDOW_S * 1e9), round(MIN_OVERLAP_S * 1e9), round(COMMAND_HORIZON_S * 1e9))
    return sorted(spans, key=lambda s: (s.start_ns, s.end_ns, s.kind, s.label))


def read_timeline(path: str | Path) -> Timeline:
    """A recorded log as a :class:`~edgefusion.scenarios.Timeline`: frames, audio and commands, time from 0.

    The log's truth is not read: the timeline's truth is empty.

    Raises:
        ConfigError: the log has no ``/camera`` frames, or frames of several sizes.
    """
    frames, times, audio, cmds, rate = [], [], [], [], 16000
    with LogReader(path) as r:
        for m in r.messages(topics=["/camera", "/audio", "/text"]):
            s = decode(m)
            if isinstance(s, Frame):
                frames.append(s.image)
                times.append(s.t_ns)
            elif isinstance(s, AudioChunk):
                audio.append(s.samples)
                rate = s.sample_rate
            elif isinstance(s, Command):
                cmds.append(TimelineCommand(s.t_ns, s.text, ""))
    if not frames:
        raise ConfigError(f"{path} has no /camera frames to benchmark with")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ConfigError(f"{path}: frames of several sizes {sorted(shapes)}; benchmark one camera at a time")
    t0 = times[0]
    return Timeline("log", 0, np.asarray(times, np.int64) - t0, np.stack(frames),
                    np.concatenate(audio) if audio else np.zeros(0, np.float32), rate,
                    [TimelineCommand(c.t_ns - t0, c.text, c.intent) for c in cmds], [frozenset()] * len(frames),
                    [""] * len(frames))
