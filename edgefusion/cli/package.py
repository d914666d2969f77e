"""``edgefusion package``: make a model package from an ONNX model someone else trained.

``package silero-vad DEST`` packages the Silero VAD that ships inside the ``silero-vad`` PyPI
package (the stage that confirms ``speech`` on real microphones); ``package onnx MODEL.onnx DEST
--io SPEC.json`` packages any ONNX model whose inputs and outputs a JSON file describes
(:func:`edgefusion.anymodel.package_onnx`, docs/bring-your-model.md).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from edgefusion.cli._common import add_command
from edgefusion.errors import PackageError

#: the largest --io file read: a manifest's inputs and outputs are a few kilobytes
MAX_IO_BYTES = 1 << 20

EPILOG = """examples:
  pip install --no-deps silero-vad                 # the ONNX model is inside; its deps would pull in torch
  edgefusion package silero-vad ./silero_vad
  edgefusion run --camera 0 --audio default --model smart_home \\
      --stage vad=./silero_vad,scan=32,share=0.5,confirm=speech

  edgefusion package onnx detector.onnx ./detector --io detector_io.json --name my-detector
  edgefusion info ./detector                       # opens it and runs one step on generated inputs

--io SPEC.json holds the manifest's "inputs" and "outputs" lists (what each input is made from,
what each output means), as in docs/bring-your-model.md:
  {"inputs": [{"name": "input", "modality": "audio", "dtype": "float32", "shape": ["batch", 576],
               "preprocess": {"kind": "waveform", "sample_rate": 16000, "samples": 576}}, ...],
   "outputs": [{"name": "output", "kind": "multilabel_probs", "labels": ["speech"], "threshold": 0.5}]}
"""


def _dest(path: str, force: bool) -> Path:
    dest = Path(path)
    if dest.exists() and not dest.is_dir():
        raise PackageError(f"{dest} is a file; give a directory for the package")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise PackageError(f"{dest} exists and is not empty; choose another directory or pass --force to replace it")
    return dest


def _io_spec(path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The inputs and outputs lists of an --io file (checked for shape here; their meaning when the package loads)."""
    p = Path(path)
    if not p.is_file():
        raise PackageError(f"--io {p}: no such file")
    if p.stat().st_size > MAX_IO_BYTES:
        raise PackageError(f"--io {p}: {p.stat().st_size} bytes; a spec of inputs and outputs is a few kilobytes")
    try:
        spec = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"--io {p}: not JSON ({exc})") from exc
    if not isinstance(spec, dict) or set(spec) - {"inputs", "outputs"}:
        raise PackageError(f"--io {p}: expected an object with the keys 'inputs' and 'outputs'"
                           + (f", not {sorted(set(spec) - {'inputs', 'outputs'})}" if isinstance(spec, dict) else ""))
    lists = []
    for key in ("inputs", "outputs"):
        value = spec.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(x, dict) for x in value):
            raise PackageError(f"--io {p}: '{key}' must be a non-empty list of objects")
        lists.append(value)
    return lists[0], lists[1]


def _theirs(message: str, tmp: str, a: argparse.Namespace) -> str:
    """``message`` about the trial package in ``tmp``, with the user's paths in place of the trial's files."""
    message = re.sub(re.escape(tmp) + r"[^\s:'\"]*/manifest\.json", f"--io {a.io}", message)
    message = re.sub(re.escape(tmp) + r"[^\s:'\"]*/model\.onnx", str(a.model), message)
    return re.sub(re.escape(tmp) + r"[^\s:'\"]*", str(a.dest), message)


def _report(pkg: Any) -> None:
    print(f"packaged {pkg.name} at {pkg.path}: inputs {', '.join(i.name for i in pkg.inputs)}; outputs "
          f"{', '.join(o.name for o in pkg.outputs)}")
    print(f"check it with: edgefusion info {pkg.path}")


def cmd_silero_vad(a: argparse.Namespace) -> None:
    from edgefusion.anymodel import silero_vad_package

    _report(silero_vad_package(_dest(a.dest, a.force)))


def cmd_onnx(a: argparse.Namespace) -> None:
    import tempfile

    from edgefusion.anymodel import package_onnx
    from edgefusion.backends import availability

    inputs, outputs = _io_spec(a.io)
    dest = _dest(a.dest, a.force)
    name = a.name or dest.name
    provenance = {"command": f"edgefusion package onnx {Path(a.model).name}", "source": Path(a.model).name}
    with tempfile.TemporaryDirectory() as tmp:  # tried first: a spec the model does not run with writes nothing
        try:
            trial = package_onnx(a.model, Path(tmp) / "package", inputs, outputs, name=name, provenance=provenance)
            cpu = next(((ok, why) for variant, backend, ok, why in availability(trial)
                        if backend == "onnxruntime" and variant == "fp32"), (False, "no ONNX Runtime CPU check ran"))
        except PackageError as exc:  # said of the trial's files: name the user's instead
            raise PackageError(_theirs(str(exc), tmp, a) + "; nothing written") from exc
        if not cpu[0]:
            raise PackageError(f"{Path(a.model).name} with --io {a.io}: {_theirs(cpu[1], tmp, a)}; nothing written")
    _report(package_onnx(a.model, dest, inputs, outputs, name=name, provenance=provenance))


def register(sub: Any) -> None:
    sp = add_command(sub, "package", "Make a model package from an ONNX model trained elsewhere: Silero VAD from "
                                     "its PyPI package, or any ONNX model with a spec of its inputs and outputs.",
                     lambda a: sp.print_help())
    sp.formatter_class = argparse.RawDescriptionHelpFormatter
    sp.epilog = EPILOG
    kinds = sp.add_subparsers(dest="kind", required=True, metavar="KIND")
    v = add_command(kinds, "silero-vad", "Package the Silero VAD inside the installed silero-vad PyPI package "
                                         "(pip install --no-deps silero-vad): a stage that confirms 'speech'.",
                    cmd_silero_vad)
    v.add_argument("dest", help="the package directory to write")
    v.add_argument("--force", action="store_true", help="replace an existing package directory")
    o = add_command(kinds, "onnx", "Package any ONNX model: --io names what each input is made from and what each "
                                   "output means (docs/bring-your-model.md).", cmd_onnx)
    o.formatter_class = argparse.RawDescriptionHelpFormatter
    o.epilog = EPILOG
    o.add_argument("model", help="the ONNX file")
    o.add_argument("dest", help="the package directory to write")
    o.add_argument("--io", required=True, metavar="SPEC.json", help="a JSON object with the manifest's 'inputs' "
                                                                    "and 'outputs' lists")
    o.add_argument("--name", help="the package's name (default: the directory's)")
    o.add_argument("--force", action="store_true", help="replace an existing package directory")
