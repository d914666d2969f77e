"""The ``edgefusion`` command: a thin layer over the Python API.

Each module in COMMAND_MODULES adds its subcommands through ``register(sub)``. Every error is
one line, ``error: <message>``, never a traceback, and the exit status says what kind it was
(:func:`exit_status`): 0 ok, 1 a check found a mismatch, 2 a usage or input error, 3 a
runtime failure (130 interrupted; 141 the reader of our output went away, as after
``| head``, which is not an error and prints nothing). ``EDGEFUSION_DEBUG=1`` adds the
traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from edgefusion import __version__
from edgefusion.errors import (
    BackendError,
    CheckFailed,
    EdgeFusionError,
    PipelineError,
)

__all__ = ["EXIT_INPUT", "EXIT_MISMATCH", "EXIT_OK", "EXIT_PIPE", "EXIT_RUNTIME", "build_parser", "exit_status",
           "main"]

EXIT_OK = 0
EXIT_MISMATCH = 1  #: ``replay --check`` (and other checks) found results that differ
EXIT_INPUT = 2  #: a usage error, or input that cannot be used (a config, a log, a package, a missing extra,
#: training or export data)
EXIT_RUNTIME = 3  #: the run itself failed (a backend, a pipeline stage, the disk, a bug)
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  #: 128 + SIGPIPE: our output's reader went away (``| head``); quiet, as for any Unix tool

COMMAND_MODULES = (
    "edgefusion.cli.core",
    "edgefusion.cli.toolchain",
    "edgefusion.cli.run",
    "edgefusion.cli.logs",
    "edgefusion.cli.data",
    "edgefusion.cli.bench",
    "edgefusion.cli.serve",
    "edgefusion.cli.int8",
    "edgefusion.cli.doctor",
    "edgefusion.cli.eval",
    "edgefusion.cli.package",
    "edgefusion.task.tool",
)

EPILOG = """examples:
  edgefusion demo                                   # 20 s of smart_home through the built-in model
  edgefusion demo --scenario driving --seed 3
  edgefusion info smart_home                        # what a package holds and expects
  edgefusion doctor                                 # what this device can run, and what to install
  edgefusion synth --scenario driving --duration 30 --out drive.mcap
  edgefusion train --scenario smart_home --out runs/sh      # needs the 'train' extra (torch)
  edgefusion export runs/sh/checkpoint.pt --out packages/sh

exit status:
  0  ok
  1  a check found a mismatch (replay --check)
  2  usage or input error: a bad option, config, log, package or missing extra (one 'error:' line)
  3  runtime failure: a backend, a pipeline stage, the disk, or a bug (one 'error:' line;
     EDGEFUSION_DEBUG=1 adds the traceback)
  130 interrupted (Ctrl-C); 141 the output pipe was closed (| head): nothing is printed
"""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, as every other error (``error: ...``), naming the command's
    ``--help``; an unknown option is reported by the command it was given to, with the nearest known one."""

    commands: argparse._SubParsersAction | None = None

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"error: {message} (see '{self.prog} --help')\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.choices.get(str(getattr(ns, "command", ""))) if self.commands else None
            where = command if isinstance(command, _Parser) else self
            known = [o for a in where._actions for o in a.option_strings]
            near = difflib.get_close_matches(extras[0].split("=", 1)[0], known, n=1)
            where.error(f"unrecognized arguments: {' '.join(extras)}"
                        + (f"; did you mean {near[0]}?" if near and extras[0].startswith("-") else ""))
        return ns


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="edgefusion", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="EdgeFusion: multimodal (camera + audio + text) fusion at the edge. "
                    "Runs on ONNX Runtime on any CPU; models are built with PyTorch (the 'train' extra).")
    p.add_argument("--version", action="version", version=f"edgefusion {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p.commands = sub
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def exit_status(exc: BaseException) -> int:
    """The exit status for an error: a pipeline error takes its cause's (the pipeline sets ``__cause__``).

    Example:
        >>> from edgefusion.errors import ExportError, InputError
        >>> failed = PipelineError("source read", InputError("bad log"))
        >>> failed.__cause__ = InputError("bad log")
        >>> exit_status(CheckFailed("differs")), exit_status(failed), exit_status(BackendError("gpu lost"))
        (1, 2, 3)
        >>> exit_status(OSError("disk full")), exit_status(ExportError("no data"))
        (3, 2)
    """
    if isinstance(exc, PipelineError) and exc.__cause__ is not None:
        return exit_status(exc.__cause__)
    if isinstance(exc, CheckFailed):
        return EXIT_MISMATCH
    # ExportError (training, export, an INT8 gate) stays a refusal of what was given, as before
    if isinstance(exc, (BackendError, PipelineError)) or not isinstance(exc, EdgeFusionError):
        return EXIT_RUNTIME
    return EXIT_INPUT


def _broken_pipe(exc: BaseException) -> bool:
    return isinstance(exc, BrokenPipeError) or isinstance(exc.__cause__, BrokenPipeError)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover - stdout without a descriptor (captured)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        if not sys.stderr.isatty():  # a log file, not a terminal: a progress line every 30 s, not ten a second
            os.environ.setdefault("TQDM_MININTERVAL", "30")
        args.fn(args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if _broken_pipe(exc):
            _silence_stdout()
            return EXIT_PIPE
        status = exit_status(exc)
        if isinstance(exc, EdgeFusionError):
            print(f"error: {exc}", file=sys.stderr)
        else:
            if os.environ.get("EDGEFUSION_DEBUG"):
                raise
            what = "out of memory" if isinstance(exc, MemoryError) else f"{type(exc).__name__}: {exc}"
            hint = "" if isinstance(exc, OSError) else " (a bug: EDGEFUSION_DEBUG=1 shows the traceback)"
            print(f"error: {what}{hint}", file=sys.stderr)
        return status
    return EXIT_OK
