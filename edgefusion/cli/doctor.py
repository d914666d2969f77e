"""``edgefusion doctor``: what this device can run, and what to install for what it cannot."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edgefusion.cli._common import add_command

EPILOG = """checks: Python and its environment, numpy, the OpenCV build (GStreamer, V4L2, FFmpeg) and any
OpenCV it hides, ONNX Runtime (builds installed, providers; a GPU provider is tried on a real
session), the GPU and its compute capability, TensorRT, CUDA and its Python bindings, the Jetson
model, L4T, JetPack and power mode, cameras and microphones, the installed extras, and which
backend and variant of each built-in package runs here.

Each line is 'ok', 'no' (this device lacks it; the line after says how to add it) or 'problem'
(the install works against itself, e.g. two ONNX Runtime builds, or pip's OpenCV hiding JetPack's).
Exit status 1 when there is a problem, else 0.

examples:
  edgefusion doctor
  edgefusion doctor --json > doctor.json        # for a bug report
  edgefusion doctor --packages smart_home,/opt/models/my_package
"""


def cmd_doctor(a: argparse.Namespace) -> None:
    from edgefusion.doctor import Host, diagnose

    packages = tuple(p.strip() for p in a.packages.split(",") if p.strip())
    report = diagnose(Host(), packages)
    if a.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print("\n".join(report.lines()))
    if report.problems:
        sys.exit(1)


def register(sub: Any) -> None:
    sp = add_command(sub, "doctor", "Report what this device can run (CPU, GPU, TensorRT, ONNX Runtime providers, "
                                    "OpenCV build, cameras, audio, Jetson details) and what to install for the rest.",
                     cmd_doctor)
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EPILOG
    sp.add_argument("--json", action="store_true", help="print the report as JSON")
    sp.add_argument("--packages", default="smart_home,driving",
                    help="packages to say the runnable backends and variants of (default smart_home,driving)")
