"""``edgefusion run``: live (or file) sources through a model into sinks, until stopped."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgefusion.cli._common import (
    add_command,
    check_log_output,
    force_option,
    foxglove_option,
    listen_with_speech,
    live_view_line,
    replacing,
    runtime_options,
    stage_option,
    stage_specs,
    stopping_on_signals,
)
from edgefusion.errors import ConfigError

EPILOG = """examples:
  edgefusion run --camera 0 --audio default --text stdin
  edgefusion run --camera clip.mp4 --audio clip.wav --text tcp://127.0.0.1:7000 --out jsonl:results.jsonl
  edgefusion run --camera 'nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! \\
      video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1' --audio default
  echo "turn on the lights" | nc 127.0.0.1 7000       # send a command while it runs
  edgefusion run --camera 0 --audio default --speech   # say "turn on the lights" (needs edgefusion[speech])

Stop with Ctrl-C or SIGTERM: in-flight steps finish, sinks are flushed, a summary goes to stderr.
"""


def cmd_run(a: argparse.Namespace) -> None:
    from edgefusion.backends import open_backend
    from edgefusion.package import load_package
    from edgefusion.pipeline import PipelineConfig
    from edgefusion.runbuild import Recording, RunBuilder
    from edgefusion.stages import open_stages
    from edgefusion.sync import MissingPolicy, SyncConfig

    _validate(a)
    if a.record:
        check_log_output(a.record, a.force, "--record")
    pkg = load_package(a.model)
    offsets = {"audio": int(a.audio_offset_ms * 1e6)} if a.audio_offset_ms else {}
    cfg = PipelineConfig(lossless=a.lossless, sync=SyncConfig(audio_policy=MissingPolicy(a.audio_policy),
                                                              offsets_ns=offsets))
    builder = RunBuilder(cfg)
    builder.camera(a.camera, pace=not a.no_pace, loop=a.loop, max_frames=a.max_frames)
    builder.audio(a.audio, pace=not a.no_pace, loop=a.loop)
    builder.text(a.text)
    if a.speech:
        listen_with_speech(builder, pkg)
    for spec in a.out or (["jsonl:-"] if not a.record else []):
        builder.add_sink(spec)
    if a.foxglove:
        builder.live_view(a.foxglove)
    if a.record:
        # files as fast as possible, nothing dropped: the same results each time, so the log leaves out what
        # differs from run to run (stage timings, the clock offset, argv naming the output file)
        offline = a.no_pace and a.lossless
        options = {k: v for k, v in sorted(vars(a).items()) if k not in ("fn", "record", "command", "stats",
                                                                         "foxglove", "force")}
        command = {"command": a.command, "options": options} if offline else {"command": sys.argv}
        builder.record(Recording(a.record, image_format=a.image_format, package_ref=a.model,
                                 run_config={**command, "pipeline": cfg.__dict__}, repeatable=offline,
                                 compression=a.compression))
    with replacing(a.record), open_stages(stage_specs(a)) as stages, \
            open_backend(a.backend, pkg, variant=a.variant, threads=a.threads) as be, \
            builder.build(pkg, be, stages=stages) as run:
        pipe = run.pipeline
        live_view_line(run)
        with stopping_on_signals(pipe):
            print(f"running {pkg.name} on {be.info}; stop with Ctrl-C", file=sys.stderr)
            stats = pipe.run(timeout_s=a.duration)
    summary: dict[str, Any] = {
        "stopped_by": stats.stopped_by, "steps": stats.steps, "results": stats.results, "emitted": stats.emitted,
        "wall_s": round(stats.wall_s, 3), "drops": stats.drops, "sync": stats.sync, "rejected": stats.rejected,
        "sources": stats.sources, "latency_ms": stats.latency_ms,
    }
    if a.stats:
        Path(a.stats).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    e2e = stats.latency_ms.get("end_to_end", {})
    _print_speech(stats.sources)
    if run.recorder is not None:
        lost = stats.drops.get("recorder/queue_full", 0)
        print(f"recorded {run.recorder.writer.messages} messages to {run.recorder.path}"
              + (f"; {lost} dropped (the recorder fell behind: a slow disk, or --no-pace without --lossless)"
                 if lost else ""), file=sys.stderr)
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


RECORD_EPILOG = """examples:
  edgefusion record --camera 0 --audio default --record kitchen.mcap            # until Ctrl-C; JPEG frames
  edgefusion record --camera clip.mp4 --audio clip.wav --no-pace --lossless --record clip.mcap   # a file, whole
  edgefusion record --camera clip.mp4 --audio talk.wav --speech --record talk.mcap --image-format raw
  edgefusion replay kitchen.mcap --check                 # the same results again, from the log
  edgefusion label kitchen.mcap --spans kitchen.csv --task smart_home   # then: edgefusion dataset build

An existing --record file is refused unless --force; with --force it is kept if the run records nothing.
From files, --no-pace without --lossless drops what the pipeline cannot keep up with (counted); add
--lossless to record every frame. Stop with Ctrl-C or SIGTERM: the log is finished and readable.
"""


def _options(sp: argparse.ArgumentParser, record_required: bool) -> None:
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = RECORD_EPILOG if record_required else EPILOG
    sp.add_argument("--model", default="smart_home", help="model package directory or built-in name "
                                                          "(default smart_home)")
    sp.add_argument("--camera", required=True, help="device index (0), video file, rtsp:// URL, a GStreamer "
                                                    "pipeline ending in appsink, or synth:SCENARIO (a synthesized "
                                                    "scenario with its own audio and commands)")
    sp.add_argument("--audio", default="none", help="'default' (microphone; needs the 'audio' extra), "
                                                    "'device:N', audio file(s) separated by commas (played back "
                                                    "to back), or 'none' (default)")
    sp.add_argument("--text", default="none", help="'stdin', 'tcp://127.0.0.1:PORT', 'unix:///PATH' or 'none'")
    sp.add_argument("--speech", action="store_true",
                    help="listen for spoken commands in the audio (--audio, or a synth: camera's): voice activity "
                         "gating and offline recognition (PocketSphinx, the 'speech' extra) of the task's command "
                         "phrases; what is heard is a command like a typed one, and --record keeps it on /speech")
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
                    help="how --record stores frames: jpeg (default, small: foxglove.CompressedImage) or raw "
                         "(lossless: foxglove.RawImage)")
    sp.add_argument("--jpeg", dest="image_format", action="store_const", const="jpeg",
                    help="same as --image-format jpeg")
    sp.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "none"],
                    help="chunk compression of --record: zstd (default, smaller) or lz4 (about half the CPU: raw "
                         "high-resolution frames on a busy CPU)")
    force_option(sp, "the --record log")
    foxglove_option(sp)
    stage_option(sp)
    runtime_options(sp)


def _print_speech(sources: dict[str, Any]) -> None:
    from edgefusion.sources.speech import speech_summary

    line = speech_summary(sources)
    if line:
        print(line, file=sys.stderr)


def _validate(a: argparse.Namespace) -> None:
    if a.duration is not None and a.duration <= 0:
        raise ConfigError(f"--duration must be positive, got {a.duration}")
