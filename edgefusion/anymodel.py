"""Bring any ONNX model: package it with a manifest, and add pre/post-processing kinds.

A model package is a directory with the ONNX file and a ``manifest.json`` that says what
each input is made from (:mod:`edgefusion.preprocess`) and what each output means
(:mod:`edgefusion.decode`). :func:`package_onnx` writes one (sha256 and all, atomically);
:func:`register_input_kind` and :func:`register_output_kind` add kinds of your own without
touching the runtime. docs/bring-your-model.md walks through a voice-activity detector, an
object detector and a two-model pipeline.

:func:`silero_vad_package` packages the Silero VAD model that ships inside the ``silero-vad``
PyPI package (install it with ``pip install --no-deps silero-vad``: its dependencies would
pull in torch, which the ONNX model does not need).

Example:
    >>> import tempfile
    >>> pkg = silero_vad_package(Path(tempfile.mkdtemp()) / "vad")    # doctest: +SKIP
    >>> [(i.name, i.preprocess["kind"]) for i in pkg.inputs]            # doctest: +SKIP
    [('input', 'waveform'), ('state', 'state'), ('sr', 'constant')]
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from edgefusion.decode import register_output_kind
from edgefusion.errors import PackageError
from edgefusion.package import ModelPackage, load_package
from edgefusion.preprocess import register_input_kind

__all__ = ["SILERO_VAD", "package_onnx", "register_input_kind", "register_output_kind", "silero_vad_package"]

#: inputs and outputs of Silero VAD v5+ (``silero_vad.onnx``): 512 new samples at 16 kHz plus 64 of
#: context per step, a (2, batch, 128) recurrent state carried from ``stateN``, the sample rate as a
#: constant; one output, already a probability (no sigmoid on top)
SILERO_VAD: dict[str, Any] = {
    "inputs": [
        {"name": "input", "modality": "audio", "dtype": "float32", "shape": ["batch", 576],
         "preprocess": {"kind": "waveform", "sample_rate": 16000, "samples": 576}},
        {"name": "state", "modality": "audio", "dtype": "float32", "shape": [2, "batch", 128],
         "preprocess": {"kind": "state", "from": "stateN", "reset_gap_ms": 500}},
        {"name": "sr", "modality": "audio", "dtype": "int64", "shape": [],
         "preprocess": {"kind": "constant", "value": 16000}},
    ],
    "outputs": [{"name": "output", "kind": "multilabel_probs", "labels": ["speech"], "threshold": 0.5,
                 "role": "events"}],
}


def package_onnx(onnx_file: str | Path, dest: str | Path, inputs: list[dict[str, Any]],
                 outputs: list[dict[str, Any]], name: str = "", **manifest: Any) -> ModelPackage:
    """Copy ``onnx_file`` into a new package at ``dest`` with a v2 manifest; returns it, loaded and verified.

    ``inputs`` and ``outputs`` are the manifest's lists; ``manifest`` adds other keys (``scenario``,
    ``provenance``). ``dest`` is replaced only once the new package verifies.
    """
    from edgefusion.packaging import file_record, staged_package

    src = Path(onnx_file)
    if not src.is_file():
        raise PackageError(f"{src} does not exist; give the path of an ONNX model")
    with staged_package(dest, new=True) as st:
        shutil.copyfile(src, st.path / "model.onnx")
        st.manifest.update({"format_version": 2, "name": name or Path(dest).name,
                            "inputs": copy.deepcopy(inputs), "outputs": copy.deepcopy(outputs),
                            "artifacts": {"fp32": file_record(st.path, "model.onnx", format="onnx")},
                            "provenance": {"command": f"package_onnx({src.name!r})", "source": src.name},
                            **copy.deepcopy(manifest)})
        st.commit()
    return load_package(Path(dest))


def silero_onnx(variant: str = "silero_vad.onnx") -> Path:
    """The ONNX file inside the installed ``silero-vad`` package."""
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("silero_vad") / "data" / variant))
    except ModuleNotFoundError as exc:
        raise PackageError("Silero VAD's model comes from the silero-vad package, which is not installed: "
                           "pip install --no-deps silero-vad (its dependencies would pull in torch; the ONNX model "
                           "needs only onnxruntime)") from exc


def silero_vad_package(dest: str | Path) -> ModelPackage:
    """A package of Silero VAD at ``dest``, from the installed ``silero-vad`` PyPI package."""
    return package_onnx(silero_onnx(), dest, SILERO_VAD["inputs"], SILERO_VAD["outputs"], name="silero_vad",
                        provenance={"command": "edgefusion.anymodel.silero_vad_package", "source": "silero-vad (PyPI)"})
