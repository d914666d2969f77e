"""Log commands (need the 'mcap' extra): synth, replay, log info. ``record`` lives with ``run``."""

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
from edgefusion.errors import CheckFailed, ConfigError, PackageError

REPLAY_EPILOG = """examples:
  edgefusion synth --scenario driving --duration 30 --out drive.mcap
  edgefusion replay drive.mcap --record run1.mcap          # as fast as possible, lossless
  edgefusion replay run1.mcap --check                       # regression test: same results as recorded?
  edgefusion replay run1.mcap --rate 1 --start 5 --end 15   # real time, seconds 5 to 15
  edgefusion replay other.mcap --map camera=/cam/image,audio=/mic,text=/cmd
  edgefusion replay my_rosbag2/ --map camera=/image_raw,text=/command --model smart_home   # a ROS 2 bag folder
  edgefusion replay damaged.mcap --allow-gaps               # replay what survived a damaged chunk
  edgefusion replay talk.mcap --speech                      # recognize the commands spoken in its audio

Two replays of one log at --rate max write byte-identical --record files (cmp them).
exit status: 0 ok, 1 --check found a mismatch, 2 usage or input error (a damaged log without
--allow-gaps, a message that cannot be decoded), 3 runtime failure.
"""


def cmd_synth(a: argparse.Namespace) -> None:
    from edgefusion.logs.timeline import write_synth
    from edgefusion.scenarios import get_scenario

    get_scenario(a.scenario)
    check_log_output(a.out, a.force, "--out")
    path, n = write_synth(a.scenario, a.duration, a.seed, a.out, a.hard, a.image_format)
    print(f"wrote {path}: {n} messages ({a.duration:g} s of {a.scenario} at 30 fps, 16 kHz audio, commands, "
          f"ground truth per frame on /truth and as label spans on /labels), {path.stat().st_size / 1e6:.1f} MB")


def _parse_map(spec: str | None) -> dict[str, str]:
    out = {}
    for part in (spec or "").split(","):
        if not part:
            continue
        k, sep, v = part.partition("=")
        if not sep or not v.startswith("/"):
            raise ConfigError(f"--map: expected STREAM=/topic[,STREAM=/topic], got {part!r}")
        out[k] = v
    return out


def _rate(text: str) -> float | None:
    if text == "max":
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigError(f"--rate must be a number or 'max', got {text!r}") from exc


def _is_input(out: Path, log: Path) -> bool:
    """Whether ``out`` is the log, or one of the files of a rosbag2 folder ``log`` (by path, or as the same
    file under another name: a hard link)."""
    inputs = sorted(log.iterdir()) if log.is_dir() else [log]
    return any(out.resolve() == f.resolve() or (out.exists() and f.exists() and out.samefile(f)) for f in inputs)


def cmd_replay(a: argparse.Namespace) -> None:
    from edgefusion.backends import open_backend
    from edgefusion.logs.bag import open_log
    from edgefusion.logs.check import check_against_log
    from edgefusion.package import load_package
    from edgefusion.pipeline import PipelineConfig
    from edgefusion.runbuild import Recording, RunBuilder
    from edgefusion.samples import Result
    from edgefusion.stages import open_stages

    if a.record and _is_input(Path(a.record), Path(a.log)):
        raise ConfigError(f"--record {a.record} is the log being replayed; recording over it would destroy it "
                          "(record to another file)")
    if a.record:
        check_log_output(a.record, a.force, "--record")
    cfg = PipelineConfig(lossless=not a.live)
    builder = RunBuilder(cfg)
    rate = _rate(a.rate)
    # --check of a range runs the steps before it too: its first steps then have the audio window, the
    # command and the smoothing state they had in the whole log, and compare equal
    source = builder.replay(a.log, rate=rate, start_s=a.start, end_s=a.end, loop=a.loop,
                            mapping=_parse_map(a.map), allow_gaps=a.allow_gaps, history=a.check)
    with open_log(a.log) as r:
        meta = r.metadata()
        if a.check and not a.live and not a.loop:
            # a live recording's run dropped frames (a full queue): replaying them would shift the smoothing
            # and every step after; the check replays the frames that have a recorded result
            recorded = frozenset(m.publish_time_ns for m in r.messages(topics=["/results"]))
            source.only_frames = recorded or None
    model = a.model or meta.get("edgefusion", {}).get("package_ref") or meta.get("scenario", {}).get("package")
    if not model:
        raise ConfigError(f"{a.log} does not say which model produced it; pass --model PACKAGE")
    try:
        pkg = load_package(model)
    except PackageError as exc:
        if a.model:
            raise
        raise PackageError(f"{exc} (the package {a.log} names as its model; a relative path is from where it was "
                           "recorded); pass --model PACKAGE") from exc
    if a.speech:
        listen_with_speech(builder, pkg)
    for spec in a.out or []:
        builder.add_sink(spec)
    if a.foxglove:
        builder.live_view(a.foxglove)
    if a.record:
        # the options, not argv: argv names the output file, and two replays of one log must write the same bytes
        options = {k: v for k, v in sorted(vars(a).items())
                   if k not in ("fn", "record", "command", "foxglove", "force")}
        builder.record(Recording(a.record, image_format=a.image_format, package_ref=model,
                                 run_config={"command": "replay", "options": options, "pipeline": cfg.__dict__},
                                 repeatable=rate is None and not a.live))
    results: list[Result] = []
    with replacing(a.record), open_stages(stage_specs(a)) as stages, \
            open_backend(a.backend, pkg, variant=a.variant, threads=a.threads) as be, \
            builder.build(pkg, be, on_result=results.append, stages=stages) as run:
        live_view_line(run)
        with stopping_on_signals(run.pipeline):
            stats = run.pipeline.run()
    e2e = stats.latency_ms.get("end_to_end", {})
    stopped = " (stopped by a signal before the end)" if stats.stopped_by == "signal" else ""
    print(f"replayed {a.log}{stopped}: {stats.steps} steps in {stats.wall_s:.2f} s on {pkg.name}, "
          f"{stats.emitted} actions emitted, drops {stats.drops or 'none'}, "
          f"end-to-end p50 {e2e.get('p50', float('nan')):.2f} ms",
          file=sys.stderr)
    from edgefusion.sources.speech import speech_summary

    if (line := speech_summary(stats.sources)) is not None:
        print(line, file=sys.stderr)
    rejected = {k: v for k, v in stats.rejected.get("replay", {}).items() if v}
    if rejected:
        print(f"skipped from {a.log}: {rejected}", file=sys.stderr)
    if run.recorder is not None:
        print(f"recorded {run.recorder.writer.messages} messages to {run.recorder.path}", file=sys.stderr)
    if source.frames_skipped:
        print(f"note: {source.frames_skipped} frames of {a.log} have no recorded result (its run dropped them): "
              "not replayed, so the steps after them compare as they ran")
    if a.check and stopped:
        raise CheckFailed(f"the replay of {a.log} was stopped before the end: not checked")
    if a.check:
        from edgefusion.logs.check import other_task_truth
        from edgefusion.policy import task_of

        task = task_of(pkg)
        span = None
        if a.start is not None or a.end is not None:
            span = (source.range_start_ns, None if a.end is None else source.first_ns + int(a.end * 1e9))
            results = [r for r in results if r.t_ns >= span[0]]
        report = check_against_log(a.log, results, task=task, audio_window_ns=cfg.sync.audio_window_ns,
                                   span_ns=span)
        if report.recorded and (note := _package_note(meta.get("edgefusion", {}), pkg)) is not None:
            print(note)
        if (why := other_task_truth(meta, task, pkg.name)) is not None:
            print(f"note: {why}: the accuracy below compares two tasks' actions")
        for line in report.lines():
            print(line)
        if not report.ok:
            raise CheckFailed(f"replay of {a.log} differs from the results recorded in it (see above)")


def _package_note(recorded: dict[str, Any], pkg: Any) -> str | None:
    """One line when the log's results come from another package than this replay's (by manifest hash).

    Results from another model differ for that reason alone (a retrained package, say), so the
    check says so before its verdict; None when they match or the log does not say.
    """
    from edgefusion.package import sha256_file

    was = str(recorded.get("package_sha256") or "")
    now = sha256_file(pkg.path / "manifest.json")
    if not was or was == now:
        return None
    name = recorded.get("package") or recorded.get("package_ref") or "?"
    return (f"note: the results in this log were recorded with package '{name}' (manifest sha256 {was[:12]}), "
            f"this replay ran '{pkg.name}' ({now[:12]}): differences below may be the model's, not the runtime's; "
            "replay with the recording's package (--model) to check the runtime")


def cmd_log_info(a: argparse.Namespace) -> None:
    from edgefusion.logs.bag import open_log

    with open_log(a.file) as r:
        info = r.info()
        track = r.labels() if any(c["topic"] == "/labels" for c in info.channels) else None
    labels = _label_coverage(track, info.start_ns, info.end_ns)
    if a.json:
        print(json.dumps({**info.__dict__, "labels": labels}, indent=2))
        return
    dur = ((info.end_ns or 0) - (info.start_ns or 0)) / 1e9
    lost = sum(g["messages"] or 0 for g in info.gaps)
    count = f"{info.messages - lost} readable messages of {info.messages} written" if lost else \
        f"{info.messages} messages"
    if info.gaps:
        state = f"DAMAGED ({len(info.gaps)} damaged chunk(s) or region(s), {lost} messages lost; see below)"
    elif info.recovered_messages is not None:
        state = f"TRUNCATED (recovered {info.recovered_messages} messages from complete chunks; the torn chunk is lost)"
    else:
        state = "complete" if info.complete else "readable, with damage outside the messages (see below)"
    print(f"{info.path}: {state}, profile '{info.profile}', written by '{info.library}'")
    print(f"{count} over {dur:.3f} s ({info.start_ns} .. {info.end_ns} ns log time)"
          if info.start_ns is not None else f"{count} (no log time)")
    print(f"{'topic':<22} {'schema':<34} {'encoding':<13} {'messages':>8}")
    for c in info.channels:
        print(f"{c['topic']:<22} {c['schema']:<34} {c['message_encoding']:<13} {c['messages']:>8}")
    for name, md in info.metadata.items():
        print(f"metadata {name}: {md}")
    if info.attachments:
        print(f"attachments: {', '.join(info.attachments)}")
    for g in info.gaps:
        when = "" if g["start_ns"] is None else f", log time {g['start_ns']} .. {g['end_ns']} ns"
        n = "an unknown number of" if g["messages"] is None else g["messages"]
        print(f"LOST at byte {g['offset']}: {n} messages{when}: {g['reason']}")
    for line in info.problems:
        print(f"damage: {line}")
    if labels is None:
        print("labels: none (no /labels track; add one with: edgefusion label LOG --spans SPANS.csv --task TASK)")
        return
    print(f"labels: {labels['spans']} spans by {', '.join(labels['sources'])}; coverage {labels['covered_s']:.3f} s "
          f"= {100 * labels['covered_fraction']:.1f}% of the log")
    print(f"  {'kind':<9} {'label':<22} {'spans':>6} {'seconds':>10}")
    for row in labels["per_label"]:
        if row["kind"] != "coverage":
            print(f"  {row['kind']:<9} {row['label']:<22} {row['spans']:>6} {row['seconds']:>10.3f}")


def _label_coverage(track: Any, start_ns: int | None, end_ns: int | None) -> dict[str, Any] | None:
    """Per kind and label: spans and labelled seconds; the share of the log inside coverage."""
    if track is None:
        return None
    covered = track.seconds("coverage")
    if start_ns is not None and end_ns is not None and end_ns > start_ns:
        # only the part of the coverage inside the log counts towards the share
        inside = track.intervals("coverage").clip(start_ns, end_ns)
        fraction = float((inside[:, 1] - inside[:, 0]).sum()) / (end_ns - start_ns)
    else:
        fraction = 0.0
    return {"spans": len(track), "sources": list(track.sources()), "covered_s": covered,
            "covered_fraction": round(min(fraction, 1.0), 6), "per_label": track.summary()}


def register(sub: Any) -> None:
    sp = add_command(sub, "synth", "Write a synthesized scenario timeline as MCAP: camera, audio, commands and "
                                   "the ground truth, per frame (/truth) and as label spans (/labels) (opens in "
                                   "Foxglove).", cmd_synth)
    sp.add_argument("--scenario", required=True, help="smart_home or driving")
    sp.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    sp.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    sp.add_argument("--hard", action="store_true", help="more clutter, noise and distractors")
    sp.add_argument("--image-format", default="raw", choices=["raw", "jpeg"],
                    help="raw (lossless, default) or jpeg (smaller; replays see JPEG artefacts)")
    sp.add_argument("--out", required=True, help="output .mcap path")
    force_option(sp, "the --out log")

    sp = add_command(sub, "replay", "Replay an MCAP log through a model on the log's clock; optionally check the "
                                    "results against those recorded in it, and record the replay.", cmd_replay)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = REPLAY_EPILOG
    sp.add_argument("log", help="an MCAP file (from synth, record or replay --record, or another tool's mapped with "
                                "--map) or a rosbag2 folder (metadata.yaml and its split .mcap files, read in order)")
    sp.add_argument("--model", help="model package (default: the one named in the log)")
    sp.add_argument("--rate", "--speed", default="max",
                    help="1 = real time, 2 = twice as fast, max = as fast as possible (default)")
    sp.add_argument("--start", type=float, help="start this many seconds into the log")
    sp.add_argument("--end", type=float, help="end this many seconds into the log")
    sp.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    sp.add_argument("--check", action="store_true", help="compare with the results and the truth in the log (its "
                                                         "/truth, else its /labels read with the package's task); "
                                                         "exit non-zero on a mismatch with the results. With "
                                                         "--start, the steps before it run too (not compared; "
                                                         "--out gets them), so the range's first steps have the "
                                                         "state they had")
    sp.add_argument("--record", metavar="OUT.mcap", help="record the replayed run (inputs and results)")
    force_option(sp, "the --record log")
    sp.add_argument("--image-format", default="raw", choices=["raw", "jpeg"], help="images in --record (raw)")
    sp.add_argument("--jpeg", dest="image_format", action="store_const", const="jpeg",
                    help="same as --image-format jpeg (foxglove.CompressedImage; replays of it see JPEG artefacts)")
    sp.add_argument("--map", help="topics of a foreign log: camera=/topic,audio=/topic,text=/topic,speech=/topic; "
                                  "ROS 2 sensor_msgs/Image and CompressedImage, std_msgs/String and audio_common_msgs "
                                  "AudioData (read as 16 kHz mono PCM16) and AudioStamped are decoded")
    sp.add_argument("--speech", action="store_true",
                    help="spoken commands: a log recorded with --speech replays its /speech channel (always, with "
                         "or without this flag); a log without one is listened to: its audio is recognized "
                         "(PocketSphinx, the 'speech' extra)")
    sp.add_argument("--live", action="store_true", help="drop stale frames like a live run instead of lossless")
    sp.add_argument("--allow-gaps", action="store_true",
                    help="replay a damaged log (a chunk fails its CRC, a message cannot be decoded): skip what is "
                         "lost, counted and reported, instead of refusing with exit status 2")
    sp.add_argument("--out", action="append", help="result sink, repeatable: jsonl:-, jsonl:PATH, "
                                                   "jsonl-actions:PATH")
    stage_option(sp)
    foxglove_option(sp)
    runtime_options(sp)

    lg = add_command(sub, "log", "Inspect MCAP logs (any tool's).", lambda a: lg.print_help())
    lsub = lg.add_subparsers(dest="log_command", required=True, metavar="SUBCOMMAND")
    sp = add_command(lsub, "info", "List channels, schemas, encodings, message counts, time range, metadata "
                                   "and attachments of an MCAP file; a truncated file is read up to its last "
                                   "complete chunk.", cmd_log_info)
    sp.add_argument("file", help="an .mcap file or a rosbag2 folder (metadata.yaml and its split .mcap files)")
    sp.add_argument("--json", action="store_true", help="print as JSON")
