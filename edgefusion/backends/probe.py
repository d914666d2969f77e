"""Does a variant run here? Open a session and run one step on generated inputs, then say.

``edgefusion info`` and ``edgefusion doctor`` say "runs" only after :func:`probe` has
opened the backend's session on the variant, checked the manifest's inputs and outputs
against the model's own (names, ranks, fixed dimensions, element types), built feeds from a
generated window (a seeded random 640x480 frame, two seconds of noise, a short command) with
the package's own preprocessing and decoded the outputs as the manifest declares. Anything
that fails becomes one line: the reason, and the fix where one is known. When ONNX Runtime
cannot load a model, the line adds the model's opset and IR version (read from the file's
protobuf header without the ``onnx`` package) and the ``onnx.version_converter`` command that
converts it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.errors import EdgeFusionError
from edgefusion.package import ModelPackage
from edgefusion.samples import FusionWindow

__all__ = ["TARGET_OPSET", "generated_window", "model_versions", "opset_hint", "probe"]

#: the opset the fix converts to: ONNX Runtime runs it everywhere, and the converter supports it
TARGET_OPSET = 17
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
              "tensor(bool)": "bool"}


def generated_window(seed: int = 0) -> FusionWindow:
    """A window with every modality present: random frame, noise, a command (seeded)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    audio = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    return FusionWindow(t_ns=0, image=frame, audio=audio, command="turn on the lights")


def probe(package: ModelPackage, backend: str = "onnxruntime", variant: str = "fp32",
          **options: Any) -> tuple[bool, str]:
    """(runs?, why): open ``backend`` on ``variant`` and run one step on generated inputs."""
    from edgefusion.backends import open_backend
    from edgefusion.engine import FusionStep

    try:
        with open_backend(backend, package, variant=variant, threads=1, **options) as be:
            mismatch = _io_mismatch(package, be)
            if mismatch:
                return False, mismatch
            step = FusionStep(package, be)
            t0 = time.perf_counter_ns()
            step(generated_window())
            ms = (time.perf_counter_ns() - t0) / 1e6
            return True, f"ran one step on generated inputs ({ms:.1f} ms, {be.info.provider})"
    except EdgeFusionError as exc:
        msg = str(exc).splitlines()[0]
        if "could not open" in msg:
            msg += opset_hint(package.artifact(variant))
        return False, msg
    except Exception as exc:  # a backend or a custom processor may raise anything: say it, do not crash info
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _io_mismatch(package: ModelPackage, be: Any) -> str:
    """The first disagreement between the manifest and the ONNX Runtime session's inputs and outputs."""
    session = getattr(be, "session", None)
    if session is None:
        return ""
    model = {i.name: i for i in session.get_inputs()}
    declared = {i.name: i for i in package.inputs}
    if set(model) != set(declared):
        return (f"the manifest declares inputs {sorted(declared)}, the model has {sorted(model)}; declare the "
                "model's inputs")
    for name, spec in declared.items():
        m = model[name]
        dims = list(m.shape)
        if len(dims) != len(spec.shape) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                               for a, b in zip(spec.shape, dims)):
            return (f"input '{name}': the manifest declares {list(spec.shape)}, the model expects {dims}; declare "
                    "the model's shape (and a preprocess that makes it)")
        if _ORT_TYPES.get(m.type, m.type) != spec.dtype:
            return (f"input '{name}': the manifest declares {spec.dtype}, the model expects "
                    f"{_ORT_TYPES.get(m.type, m.type)}")
    outs = {o.name for o in session.get_outputs()}
    for o in package.outputs:
        for ref in (o.name, o.params.get("scores"), o.params.get("classes")):
            if ref and ref not in outs:
                return f"output '{ref}' is declared but the model has only {sorted(outs)}; declare the model's outputs"
    for i in package.inputs:
        src = i.preprocess.get("from")
        if i.preprocess.get("kind") == "state" and src not in outs:
            return (f"input '{i.name}': its state comes from output {src!r}, which the model does not have "
                    f"({sorted(outs)})")
    return ""


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def model_versions(path: str | Path) -> tuple[int | None, dict[str, int]]:
    """(IR version, {opset domain: version}) of an ONNX file, from ModelProto fields 1 and 8.

    Hand-written (twenty lines of protobuf wire format) because the runtime does not depend
    on ``onnx``; a file that does not parse gives ``(None, {})``.
    """
    try:
        b = Path(path).read_bytes()
        ir: int | None = None
        opsets: dict[str, int] = {}
        i = 0
        while i < len(b):
            key, i = _varint(b, i)
            field, wire = key >> 3, key & 7
            if wire == 0:
                v, i = _varint(b, i)
                if field == 1:
                    ir = v
            elif wire == 2:
                n, i = _varint(b, i)
                if field == 8:
                    opsets.update([_opset(b[i:i + n])])
                i += n
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                return None, {}
        return ir, opsets
    except (OSError, IndexError):
        return None, {}


def _opset(b: bytes) -> tuple[str, int]:
    domain, version, i = "", 0, 0
    while i < len(b):
        key, i = _varint(b, i)
        if key & 7 == 2:
            n, i = _varint(b, i)
            domain = b[i:i + n].decode("utf-8", "replace") if key >> 3 == 1 else domain
            i += n
        else:
            version, i = _varint(b, i)
    return domain, version


def opset_hint(path: str | Path) -> str:
    """The model's opset and IR version and the command that converts it, as a sentence to append."""
    import onnxruntime as ort

    ir, opsets = model_versions(path)
    if ir is None:
        return "; the file is not a readable ONNX model"
    opset = opsets.get("", opsets.get("ai.onnx"))
    convert = (f"python -c \"import onnx, onnx.version_converter as vc; onnx.save(vc.convert_version("
               f"onnx.load('{path}'), {TARGET_OPSET}), '{path}')\"")
    return (f" (the model is opset {opset}, IR version {ir}; onnxruntime {ort.__version__} supports opset 7 and "
            f"later, and every operator at opset {TARGET_OPSET}). Convert it: {convert}; then update the artifact's "
            f"sha256 in manifest.json (sha256sum {Path(path).name})")
