"""The ``edgefusion`` command: a thin layer over the Python API.

Each module in COMMAND_MODULES adds its subcommands through ``register(sub)``. Every
EdgeFusionError is printed as ``error: <message>`` with exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edgefusion import __version__
from edgefusion.errors import EdgeFusionError

__all__ = ["build_parser", "main"]

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
    "edgefusion.task.tool",
)

EPILOG = """examples:
  edgefusion demo                                   # 20 s of smart_home through the built-in model
  edgefusion demo --scenario driving --seed 3
  edgefusion info smart_home                        # what a package holds and expects
  edgefusion doctor                                 # what this device can run, and what to install
  edgefusion synth --scenario driving --duration 30 --out drive.npz
  edgefusion train --scenario smart_home --out runs/sh      # needs the 'train' extra (torch)
  edgefusion export runs/sh/checkpoint.pt --out packages/sh
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgefusion", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="EdgeFusion: multimodal (camera + audio + text) fusion at the edge. "
                    "Runs on ONNX Runtime on any CPU; models are built with PyTorch (the 'train' extra).")
    p.add_argument("--version", action="version", version=f"edgefusion {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except EdgeFusionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
