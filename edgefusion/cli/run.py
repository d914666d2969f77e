"""``edgefusion run``: live (or file) sources through a model into sinks, until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command, runtime_options
from edgefusion.errors import ConfigError

EPILOG = """examples:
  edgefusion run --camera 0 --audio default --text stdin
  edgefusion run --camera clip.mp4 --audio clip.wav --text tcp://127.0.0.1:7000 --out jsonl:results.jsonl
  edgefusion run --camera 'nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! \\
      video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1' --audio default
  echo "turn on the lights" | nc 127.0.0.1 7000       # send a command while it runs

Stop with Ctrl-C or SIGTERM: in-flight steps finish, sinks are flushed, a summary goes to stderr.
"""


def cmd_run(a: argparse.Namespace) -> None:
    from edgefusion.backends import open_backend
    from edgefusion.package import load_package
    from edgefusion.pipeline import Pipeline, PipelineConfig
    from edgefusion.sinks import open_sink
    from edgefusion.sources import AudioFileSource, CameraSource, MicrophoneSource, Source, open_text_source
    from edgefusion.sync import MissingPolicy, SyncConfig

    _validate(a)
    pkg = load_package(a.model)
    sources: list[Source] = [CameraSource(a.camera, pace=not a.no_pace, max_frames=a.max_frames, loop=a.loop)]
    if a.audio == "default" or a.audio.startswith("device:"):
        dev = a.audio.partition(":")[2] or None
        sources.append(MicrophoneSource(int(dev) if dev and dev.isdigit() else dev))
    elif a.audio != "none":
        files: list[str | Path] = [p for p in a.audio.split(",") if p]
        sources.append(AudioFileSource(files, pace=not a.no_pace, loop=a.loop))
    if a.text != "none":
        sources.append(open_text_source(a.text))
    offsets = {"audio": int(a.audio_offset_ms * 1e6)} if a.audio_offset_ms else {}
    cfg = PipelineConfig(lossless=a.lossless, sync=SyncConfig(audio_policy=MissingPolicy(a.audio_policy),
                                                              offsets_ns=offsets))
    sinks: list[Any] = [open_sink(s) for s in (a.out or (["jsonl:-"] if not a.record else []))]
    with open_backend(a.backend, pkg, variant=a.variant, threads=a.threads) as be:
        pipe = Pipeline(pkg, be, sources, sinks, cfg)
        recorder = None
        if a.record:
            from edgefusion.logs import LogWriter
            from edgefusion.logs.recorder import Recorder
            from edgefusion.package import sha256_file

            recorder = Recorder(LogWriter(a.record, image_format=a.image_format), lossless=a.lossless,
                                drops=pipe.drops)
            recorder.describe_run(pkg.manifest, {"command": sys.argv, "pipeline": cfg.__dict__},
                                  sha256_file(pkg.path / "manifest.json"), a.model)
            pipe.sinks.append(recorder)
            pipe.taps.append(recorder.tap)
        previous = {s: signal.signal(s, lambda *_: pipe.request_stop("signal"))
                    for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            print(f"running {pkg.name} on {be.info}; stop with Ctrl-C", file=sys.stderr)
            stats = pipe.run(timeout_s=a.duration)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            for sink in pipe.sinks:
                sink.close()
    summary: dict[str, Any] = {
        "stopped_by": stats.stopped_by, "steps": stats.steps, "results": stats.results, "emitted": stats.emitted,
        "wall_s": round(stats.wall_s, 3), "drops": stats.drops, "sync": stats.sync, "rejected": stats.rejected,
        "sources": stats.sources, "latency_ms": stats.latency_ms,
    }
    if a.stats:
        Path(a.stats).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    e2e = stats.latency_ms.get("end_to_end", {})
    if recorder is not None:
        lost = stats.drops.get("recorder/queue_full", 0)
        print(f"recorded {recorder.written} messages to {recorder.path}; {lost} dropped (disk too slow)",
              file=sys.stderr)
    print(f"stopped ({stats.stopped_by}) after {stats.wall_s:.1f} s: {stats.steps} steps, {stats.emitted} actions "
          f"emitted, drops {stats.drops or 'none'}, end-to-end p50 {e2e.get('p50', float('nan')):.2f} ms "
          f"p99 {e2e.get('p99', float('nan')):.2f} ms", file=sys.stderr)


def register(sub: Any) -> None:
    sp = add_command(sub, "run", "Run live or file sources (camera, audio, text commands) through a model "
                                 "and stream results to sinks until stopped.", cmd_run)
    _options(sp, record_required=False)
    sp = add_command(sub, "record", "'run' plus a recorder: every raw input and every result into an MCAP log "
                                    "(needs the 'mcap' extra).", cmd_run)
    _options(sp, record_required=True)


def _options(sp: argparse.ArgumentParser, record_required: bool) -> None:
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EPILOG
    sp.add_argument("--model", default="smart_home", help="model package directory or built-in name "
                                                          "(default smart_home)")
    sp.add_argument("--camera", required=True, help="device index (0), video file, rtsp:// URL, or a GStreamer "
                                                    "pipeline ending in appsink")
    sp.add_argument("--audio", default="none", help="'default' (microphone; needs the 'audio' extra), "
                                                    "'device:N', audio file(s) separated by commas (played back "
                                                    "to back), or 'none' (default)")
    sp.add_argument("--text", default="none", help="'stdin', 'tcp://127.0.0.1:PORT', 'unix:///PATH' or 'none'")
    sp.add_argument("--out", action="append", help="sink, repeatable: jsonl:- (default), jsonl:PATH, "
                                                   "jsonl-actions:PATH (emitted actions only)")
    sp.add_argument("--lossless", action="store_true", help="back-pressure instead of dropping stale frames "
                                                            "(offline processing)")
    sp.add_argument("--no-pace", action="store_true", help="read files as fast as possible, not in real time")
    sp.add_argument("--loop", action="store_true", help="restart video and audio files at their end")
    sp.add_argument("--audio-offset-ms", type=float, default=0.0, help="constant offset added to audio timestamps")
    sp.add_argument("--audio-policy", default="mask", choices=["mask", "skip"],
                    help="when audio is missing or stale: run with it masked (default) or skip the step")
    sp.add_argument("--duration", type=float, help="stop after this many seconds")
    sp.add_argument("--max-frames", type=int, help="stop after this many camera frames")
    sp.add_argument("--stats", metavar="FILE", help="write the run summary (drops, sync outcomes, latency) as JSON")
    sp.add_argument("--record", metavar="OUT.mcap", required=record_required,
                    help="record inputs and results to an MCAP log" + (" (required)" if record_required else ""))
    sp.add_argument("--image-format", default="jpeg", choices=["raw", "jpeg"],
                    help="how --record stores frames: jpeg (default, small) or raw (lossless)")
    runtime_options(sp)


def _validate(a: argparse.Namespace) -> None:
    if a.duration is not None and a.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {a.duration}")
