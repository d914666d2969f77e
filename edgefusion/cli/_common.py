"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgefusion.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)


def add_command(sub: Any, name: str, help_: str, fn: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    sp: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    sp.set_defaults(fn=fn)
    return sp


def force_option(sp: argparse.ArgumentParser, what: str) -> None:
    """``--force``: replace ``what`` when it exists (without it, an existing output is refused, not overwritten)."""
    sp.add_argument("--force", action="store_true", help=f"replace {what} if it exists (refused otherwise)")


def check_log_output(path: str | Path, force: bool, flag: str) -> None:
    """A log to write: its path ends in ``.mcap`` (Foxglove and the ``mcap`` tools go by it), and one that
    exists is kept unless ``--force`` (a recording is not lost by a rerun)."""
    if not str(path).endswith(".mcap"):
        raise ConfigError(f"{flag} must end in .mcap, got {str(path)!r}")
    if not force and Path(path).exists():
        raise ConfigError(f"{flag} {path} exists; choose another path or pass --force to replace it")


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A report folder, made (with its parents) and checked writable before any work goes into it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{flag} {out} is a file; give a folder for the reports")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".edgefusion-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{flag} {out}: cannot write there ({exc.strerror or exc})") from exc
    return out


def listen_with_speech(builder: Any, package: Any) -> None:
    """``--speech``: listen for the package's task's commands, and show what each utterance became on stderr
    (a command, or why none: too unsure, outside the grammar), so a user can tell what was heard."""
    from edgefusion.sources.speech import speech_task

    builder.speech(speech_task(package))
    logging.getLogger("edgefusion.speech").setLevel(logging.INFO)


@contextlib.contextmanager
def stopping_on_signals(pipe: Any) -> Iterator[None]:
    """SIGINT and SIGTERM stop ``pipe`` cleanly (sources closed, sinks and recording finished, the summary
    printed), as ``serve`` does; the previous handlers come back after."""
    import signal

    previous = {s: signal.signal(s, lambda *_: pipe.request_stop("signal")) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def replacing(path: str | Path | None) -> Iterator[None]:
    """Set an existing recording at ``path`` aside while a run records over it (``--force``).

    The old file is deleted once the run ends with a new one in its place; when the run fails
    before it recorded anything (its empty log removed, see :class:`edgefusion.runbuild.Run`),
    the old file is put back: a typo in a source does not cost the recording it was to replace.
    """
    target = Path(path) if path is not None else None
    if target is None or not target.is_file():
        yield
        return
    aside = target.with_name(f".{target.name}.replaced")
    os.replace(target, aside)
    try:
        yield
    finally:
        if target.exists():
            aside.unlink()
        else:
            os.replace(aside, target)
            log.warning("kept the earlier %s: nothing was recorded to replace it", target)


def stage_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--stage", action="append", default=[], metavar="NAME=PACKAGE[,OPTION...]",
                    help="another model that runs on each window before the main one, repeatable, in order; "
                         "options: backend=, variant=, threads=, gate=LABEL<T:MODALITY (mask that modality of the "
                         "main model's window when the stage's LABEL score is below T, e.g. "
                         "vad=./silero_vad,gate=speech<0.5:audio), events (add the stage's events to the "
                         "results'), confirm=LABEL (the main model's LABEL event stands only where the stage finds "
                         "it too), scan=MS (run over the audio in MS-ms steps, each step once with its state carried "
                         "from the last; a label is found when it fires on share=S of the window's steps, default "
                         "0.1), e.g. "
                         "vad=./silero_vad,scan=32,share=0.5,confirm=speech. Its results are in each result's "
                         "'stages', its latency is 'stage:NAME'")


def stage_specs(a: argparse.Namespace) -> list[Any]:
    from edgefusion.stages import StageSpec

    return [StageSpec.parse(s) for s in getattr(a, "stage", None) or []]


def runtime_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--backend", default="onnxruntime",
                    help="onnxruntime (default; the CPU), onnxruntime-cuda or onnxruntime-trt (ONNX Runtime's CUDA "
                         "or TensorRT provider; needs onnxruntime-gpu), tensorrt (engines from build-engine) or null")
    sp.add_argument("--variant", default="fp32", help="artifact of the package to run (default fp32)")
    sp.add_argument("--threads", type=threads_arg, default=2,
                    help="inference threads (default 2); auto: time 1 to 4 threads at start-up (ONNX Runtime "
                         "backends) and keep the fastest")


def threads_arg(text: str) -> int | str:
    """``--threads``: a positive count, or ``auto`` (the ONNX Runtime backends measure and choose)."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of threads or 'auto', got {text!r}")
    return int(text)


def foxglove_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--foxglove", metavar="[HOST:]PORT",
                    help="serve a live view to Foxglove (WebSocket; needs the 'foxglove' extra): camera, audio level, "
                         "results and logs; HOST defaults to 127.0.0.1 (this machine only), e.g. --foxglove 8765. "
                         "A slow viewer costs dropped view messages (counted as liveview drops), never the run's "
                         "latency")


def live_view_line(run: Any) -> None:
    """Say where the live view is (stderr), when the run serves one."""
    import sys

    if getattr(run, "live_view", None) is not None:
        print(f"live view on {run.live_view.url}: in Foxglove, Open connection, Foxglove WebSocket", file=sys.stderr)


def require_toolchain(purpose: str) -> None:
    """Raise MissingDependencyError naming the 'train' extra when torch is absent."""
    try:
        importlib.import_module("torch")  # the toolchain's own imports would fail later, less clearly
    except ImportError as exc:
        raise MissingDependencyError("torch", "train", purpose) from exc
