"""Helpers shared by the CLI command modules."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from edgefusion.errors import MissingDependencyError


def add_command(sub: Any, name: str, help_: str, fn: Callable[[argparse.Namespace], None]) -> argparse.ArgumentParser:
    sp: argparse.ArgumentParser = sub.add_parser(name, help=help_, description=help_)
    sp.set_defaults(fn=fn)
    return sp


def stage_option(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--stage", action="append", default=[], metavar="NAME=PACKAGE[,OPTION...]",
                    help="another model that runs on each window before the main one, repeatable, in order; "
                         "options: backend=, variant=, threads=, gate=LABEL<T:MODALITY (mask that modality of the "
                         "main model's window when the stage's LABEL score is below T, e.g. "
                         "vad=./silero_vad,gate=speech<0.5:audio), events (add the stage's events to the "
                         "results'). Its results are in each result's 'stages', its latency is 'stage:NAME'")


def stage_specs(a: argparse.Namespace) -> list[Any]:
    from edgefusion.stages import StageSpec

    return [StageSpec.parse(s) for s in getattr(a, "stage", None) or []]


def runtime_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--backend", default="onnxruntime",
                    help="onnxruntime (default; the CPU), onnxruntime-cuda or onnxruntime-trt (ONNX Runtime's CUDA "
                         "or TensorRT provider; needs onnxruntime-gpu), tensorrt (engines from build-engine) or null")
    sp.add_argument("--variant", default="fp32", help="artifact of the package to run (default fp32)")
    sp.add_argument("--threads", type=int, default=2, help="inference threads (default 2)")


def require_toolchain(purpose: str) -> None:
    """Raise MissingDependencyError naming the 'train' extra when torch is absent."""
    try:
        importlib.import_module("torch")  # the toolchain's own imports would fail later, less clearly
    except ImportError as exc:
        raise MissingDependencyError("torch", "train", purpose) from exc
