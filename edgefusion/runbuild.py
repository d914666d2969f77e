"""One run builder for ``run``, ``record``, ``replay`` and ``serve``.

A :class:`RunBuilder` collects what a run reads (camera, audio and text from URIs, or a
replayed log), where its results go (sinks, from specs such as ``jsonl:-``), what watches
the raw inputs (taps) and whether the run is recorded; :meth:`RunBuilder.build` then makes
the :class:`~edgefusion.pipeline.Pipeline` for a package and an open backend. The recorder
is an ordinary sink for the results plus a tap for the raw inputs, so a recorded run is
the same run with one more sink.

With a :class:`~edgefusion.sources.retry.RetryPolicy` every stream is wrapped in a
:class:`~edgefusion.sources.retry.RetryingSource` (the service); without one a failing
source stops the run (the CLI).

Example::

    builder = RunBuilder(PipelineConfig(lossless=True))
    builder.camera("clip.mp4", pace=False)
    builder.audio("clip.wav", pace=False)
    builder.add_sink("jsonl:results.jsonl")
    builder.record(Recording("run.mcap", image_format="raw", package_ref="smart_home"))
    with open_backend("onnxruntime", pkg) as backend, builder.build(pkg, backend) as run:
        stats = run.pipeline.run()
    print(run.recorder.written)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from edgefusion.backends import Backend
from edgefusion.clock import ManualClock
from edgefusion.errors import ConfigError, EdgeFusionError
from edgefusion.package import ModelPackage, sha256_file
from edgefusion.pipeline import Pipeline, PipelineConfig
from edgefusion.queues import DropCounter
from edgefusion.samples import Result
from edgefusion.sinks import Sink, open_sink
from edgefusion.sources import RetryingSource, RetryPolicy, Source, SourceFactory
from edgefusion.sources.speech_asr import SpeechConfig
from edgefusion.sources.uri import audio_factory, camera_factory, text_factory
from edgefusion.stages import Stage

if TYPE_CHECKING:
    from edgefusion.logs.recorder import Recorder
    from edgefusion.sources.replay import ReplaySource

__all__ = ["Recording", "Run", "RunBuilder", "SinkFactory"]

log = logging.getLogger(__name__)

#: a sink that needs the pipeline's drop counter (so its drops are reported with the rest)
SinkFactory = Callable[[DropCounter], Sink]


@dataclass(frozen=True)
class Recording:
    """Record a run (every raw input and every result) to an MCAP log.

    Args:
        path: the ``.mcap`` file to write.
        image_format: ``jpeg`` (small) or ``raw`` (lossless: a replay of it is bit-identical).
        run_config: stored in the log as ``config.json`` (the command line, the resolved config).
        package_ref: how the model was named (path or built-in name), so a replay finds it again.
        repeatable: an offline run (a lossless replay or files not paced): the log leaves out the
            host's measurements (stage timings, the clock's epoch offset), so two runs over one
            input write byte-identical files.
        compression: chunk compression, ``zstd`` (smaller), ``lz4`` (about half the CPU: raw
            high-resolution frames on a busy CPU) or ``none``.

    Example:
        >>> Recording("run.mcap", package_ref="smart_home").image_format
        'jpeg'
    """

    path: str | Path
    image_format: str = "jpeg"
    run_config: dict[str, Any] = field(default_factory=dict)
    package_ref: str = ""
    repeatable: bool = False
    compression: str = "zstd"


class RunBuilder:
    """Collects the sources, sinks, taps and recording of one run, then builds its pipeline.

    Args:
        config: the pipeline's queues, sync and post-processing (lossless also makes the
            recorder lossless).
        retry: reopen failed streams with this policy (a service) instead of ending the run.

    Example:
        >>> from edgefusion.sources import CallTextSource
        >>> builder = RunBuilder()
        >>> builder.text("none") is None
        True
        >>> builder.add_source(CallTextSource()).name
        'text'
    """

    def __init__(self, config: PipelineConfig | None = None, retry: RetryPolicy | None = None) -> None:
        self.config = config or PipelineConfig()
        self.retry = retry
        self.sources: list[Source] = []
        #: the streams wrapped for retrying, by name (their ``failing`` feeds readiness)
        self.retrying: dict[str, RetryingSource] = {}
        self.taps: list[Callable[[Any], None]] = []
        self.recording: Recording | None = None
        #: ``[HOST:]PORT`` of the live view (:mod:`edgefusion.liveview`), or None
        self.foxglove: str | None = None
        self._sinks: list[Sink | SinkFactory] = []
        self._replays: list[ReplaySource] = []
        # Unpaced files share one clock that stays at 0: their samples are stamped with their
        # position in the file, so which audio meets which frame (and the recording's log times)
        # do not depend on when each source thread happened to start.
        self._file_clock = ManualClock(0)

    # -- sources ----------------------------------------------------------------------

    def camera(self, uri: str, pace: bool = True, loop: bool = False, max_frames: int | None = None) -> Source:
        """Add the camera stream (it triggers the fusion steps); see :func:`~edgefusion.sources.camera_factory`."""
        clock = self._file_clock if not pace and Path(uri).is_file() else None
        return self._stream("camera", camera_factory(uri, pace=pace, loop=loop, max_frames=max_frames, clock=clock),
                            True)

    def audio(self, uri: str, pace: bool = True, loop: bool = False) -> Source | None:
        """Add the audio stream unless ``uri`` is ``none``; see :func:`~edgefusion.sources.audio_factory`."""
        files = not pace and all(Path(p).is_file() for p in uri.split(",") if p)
        factory = audio_factory(uri, pace=pace, loop=loop, clock=self._file_clock if files else None)
        if factory is not None:
            self._replace_timeline("own_audio", "--audio replaces the synthesized camera's own audio")
        return None if factory is None else self._stream("audio", factory, False)

    def text(self, uri: str) -> Source | None:
        """Add the command stream unless ``uri`` is ``none``; see :func:`~edgefusion.sources.text_factory`."""
        factory = text_factory(uri)
        if factory is not None:
            self._replace_timeline("own_commands", "--text replaces the synthesized camera's typed commands")
        return None if factory is None else self._stream("text", factory, False)

    def _replace_timeline(self, stream: str, why: str) -> None:
        """Turn off a synthesized camera's own audio or commands (``stream``: the TimelineSource attribute):
        another source delivers them, and one stream fed twice has two clocks and two kinds of command."""
        from edgefusion.sources.timeline import TimelineSource

        for s in self.sources:
            if isinstance(s, TimelineSource) and getattr(s, stream):
                setattr(s, stream, False)
                log.info("%s", why)

    def replay(self, path: str | Path, rate: float | None = None, start_s: float | None = None,
               end_s: float | None = None, loop: bool = False, mapping: dict[str, str] | None = None,
               allow_gaps: bool = False, history: bool = False) -> ReplaySource:
        """Add a recorded log as the source of every stream (needs the 'mcap' extra).

        When the run is recorded too, the log's ground truth is copied into the recording.
        A damaged log is refused unless ``allow_gaps`` (see :class:`~edgefusion.sources.replay.ReplaySource`).
        """
        from edgefusion.sources.replay import ReplaySource

        src = ReplaySource(path, rate=rate, start_s=start_s, end_s=end_s, loop=loop, mapping=mapping,
                           allow_gaps=allow_gaps, history=history)
        self._replays.append(src)
        self.sources.append(src)
        return src

    def speech(self, task: str, config: SpeechConfig | None = None) -> Source:
        """Listen for spoken commands in the run's audio (needs the 'speech' extra).

        The stream that carries the audio is wrapped in a
        :class:`~edgefusion.sources.speech.SpeechSource`: the audio source if there is one, else
        a replayed log (its recorded ``/speech``, when it has one, is replayed instead), else a
        synthesized timeline. Add the sources first.

        Raises:
            ConfigError: no stream carries audio.
            MissingDependencyError: PocketSphinx is not installed (names the extra).
        """
        from edgefusion.sources.speech import SpeechSource, check_speech_available

        check_speech_available()
        carriers = [s for s in self.sources if s.name == "audio"] or \
            [s for s in self.sources if s.name in ("replay", "timeline")]
        if not carriers:
            raise ConfigError("--speech listens to the run's audio, and this run has none: add --audio (default "
                              "for the microphone, or audio files), or replay a log that holds audio")
        inner = carriers[0]
        if inner.name == "audio":
            self._replace_timeline("own_commands", "--speech replaces the synthesized camera's typed commands")
        i = self.sources.index(inner)
        if isinstance(inner, RetryingSource):
            factory = inner.factory

            def spoken() -> Source:
                return SpeechSource(factory(), task, config)

            inner.factory = spoken
            inner.delivers_commands = True
            return inner
        self.sources[i] = SpeechSource(inner, task, config)
        return self.sources[i]

    def add_source(self, source: Source) -> Source:
        """Add a source as it is (never wrapped for retrying)."""
        self.sources.append(source)
        return source

    def _stream(self, name: str, factory: SourceFactory, drives: bool) -> Source:
        if self.retry is None:
            return self.add_source(factory())
        r = self.retry
        src = RetryingSource(factory, name, drives, r.initial_s, r.max_s, r.on_restart)
        self.retrying[name] = src
        return self.add_source(src)

    # -- sinks, taps, recording -------------------------------------------------------

    def add_sink(self, sink: Sink | str | SinkFactory) -> None:
        """Add a sink, a sink spec (opened now, see :func:`~edgefusion.sinks.open_sink`), or a
        factory called with the pipeline's drop counter when the pipeline is built."""
        self._sinks.append(open_sink(sink) if isinstance(sink, str) else sink)

    def add_tap(self, tap: Callable[[Any], None]) -> None:
        """Call ``tap(sample)`` on the source threads with every raw input (keep it quick)."""
        self.taps.append(tap)

    def live_view(self, address: str) -> None:
        """Serve the run to Foxglove on ``[HOST:]PORT`` (a sink and a tap, like the recorder; never slows the run)."""
        self.foxglove = address

    def record(self, recording: Recording) -> None:
        """Record the run: the recorder becomes the last sink and the last tap."""
        self.recording = recording

    # -- build ------------------------------------------------------------------------

    def build(self, package: ModelPackage, backend: Backend,
              on_result: Callable[[Result], None] | None = None, stages: Sequence[Stage] = ()) -> Run:
        """The pipeline of this run on ``package`` and ``backend`` (both owned by the caller), after ``stages``.

        Sinks are made in the order they were added, then the recorder; if one cannot be
        made, those already made are closed before the error is raised.
        """
        pipe = Pipeline(package, backend, self.sources, [], self.config, on_result=on_result, taps=self.taps,
                        stages=stages)
        run = Run(pipe)
        try:
            for sink in self._sinks:
                pipe.sinks.append(sink if isinstance(sink, Sink) else sink(pipe.drops))
            if self.foxglove is not None:
                run.live_view = self._live_view(self.foxglove, package, pipe)
            if self.recording is not None:
                run.recorder = self._recorder(self.recording, package, pipe)
        except BaseException:
            run.close()
            raise
        return run

    def _live_view(self, address: str, package: ModelPackage, pipe: Pipeline) -> Any:
        from edgefusion.liveview import LiveView

        labels = {o.kind: list(o.labels) for o in package.manifest.outputs}
        view = LiveView(address, drops=pipe.drops, wall_clock=not self._replays,
                        scores=labels.get("multilabel_logits"), action_scores=labels.get("class_logits"))
        pipe.sinks.append(view)
        pipe.taps.append(view.tap)
        return view

    def _recorder(self, rec: Recording, package: ModelPackage, pipe: Pipeline) -> Recorder:
        from edgefusion.logs import LogWriter
        from edgefusion.logs.recorder import Recorder

        # a live run is put on the wall clock; a replay keeps its log's clock (and copies its clock record)
        recorder = Recorder(LogWriter(rec.path, image_format=rec.image_format, compression=rec.compression),
                            lossless=self.config.lossless,
                            drops=pipe.drops, repeatable=rec.repeatable, wall_clock=not self._replays)
        recorder.describe_run(package.manifest.raw, rec.run_config, sha256_file(package.path / "manifest.json"),
                              rec.package_ref)
        pipe.sinks.append(recorder)
        pipe.taps.append(recorder.tap)
        for src in self._replays:
            # on the replay's own thread, in log order with its inputs: the recorder orders them with the results
            src.passthrough["/truth"] = recorder.truth
            src.passthrough["/labels"] = recorder.label
            recorder.inherit_clock = lambda src=src: dict(getattr(src, "info", {}).get("clock", {}))
        return recorder


class Run:
    """A built run: its :class:`~edgefusion.pipeline.Pipeline` and, when recorded, its recorder.

    Closing it closes every sink (the recorder finishes its file). As a context manager it
    raises the first sink's error on exit, unless an error is already on its way out.
    """

    def __init__(self, pipeline: Pipeline, recorder: Recorder | None = None) -> None:
        self.pipeline = pipeline
        self.recorder = recorder
        self.live_view: Any = None  #: the :class:`~edgefusion.liveview.LiveView`, when serving one

    def close(self) -> list[tuple[str, EdgeFusionError]]:
        """Close every sink, also after one fails; return the failures as (sink name, error)."""
        failures = []
        for sink in self.pipeline.sinks:
            try:
                sink.close()
            except EdgeFusionError as exc:
                failures.append((sink.name, exc))
        return failures

    def __enter__(self) -> Run:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        failures = self.close()
        for name, exc in failures[1:] if et is None else failures:
            log.error("closing sink %s: %s", name, exc)
        if et is not None:
            self._drop_empty_log()
        if failures and et is None:
            raise failures[0][1]

    def _drop_empty_log(self) -> None:
        """A run that failed before it recorded a message (a camera file that does not exist) leaves no log:
        one with only the run's description would pass for a recording."""
        rec = self.recorder
        if rec is not None and rec.writer.messages == 0 and rec.path.is_file():
            rec.path.unlink()
            log.warning("removed the empty log %s: the run failed before it recorded anything", rec.path)
