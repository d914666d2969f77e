"""The typed model-package manifest: parsed and checked once, then read as attributes.

``manifest.json`` is untrusted input: it may come with a package someone handed you. It is
checked as a whole and every problem is reported, one line each, in a single
:class:`~edgefusion.errors.PackageError`: wrong types, missing keys, file paths that leave
the package directory (absolute, ``..``), declared sizes beyond reason. The raw dict stays
available as :attr:`Manifest.raw` for ``edgefusion info --json`` and for writers, which
edit a copy and write it back (:mod:`edgefusion.packaging`).

Example:
    >>> m = Manifest.parse({"format_version": 1, "name": "m",
    ...     "inputs": [{"name": "x", "modality": "image", "dtype": "float32", "shape": ["batch", 3, 8, 8]}],
    ...     "outputs": [{"name": "y", "kind": "class_logits", "labels": ["a", "b"]}],
    ...     "artifacts": {"fp32": {"path": "m.onnx", "sha256": 64 * "0"}}}, "demo/manifest.json")
    >>> m.name, m.artifacts["fp32"].path, m.inputs[0].shape
    ('m', 'm.onnx', ('batch', 3, 8, 8))
    >>> Manifest.parse({"format_version": 1, "name": "m", "inputs": [], "outputs": [],
    ...     "artifacts": {"fp32": {"path": "../x.onnx", "sha256": "?"}}}, "bad.json")
    Traceback (most recent call last):
    ...
    edgefusion.errors.PackageError: bad.json is not a valid manifest (3 problems):
      artifacts.fp32.path: '../x.onnx' leaves the package directory; give a path inside it
      artifacts.fp32.sha256: expected 64 hex digits, got '?'
      inputs: expected at least one input
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from edgefusion.errors import PackageError

__all__ = ["FORMAT_VERSION", "ROLES", "SUPPORTED_VERSIONS", "FileRecord", "InputSpec", "Manifest", "OutputSpec"]

#: what writers write; readers take every version in SUPPORTED_VERSIONS
FORMAT_VERSION = 1
#: v2 adds input kinds (any W x H image, waveform, state, constant), output kinds (probabilities,
#: detections, tensors) and output roles; every v1 manifest is a valid v2 one
SUPPORTED_VERSIONS = (1, 2)
#: what an output is for in a fusion step (by default: the first class output is the action, the
#: first multilabel output the events)
ROLES = ("action", "events", "intent")
#: output keys other than the common ones, kept in OutputSpec.params (detections' settings)
_DETECTION_KEYS = {"scores": str, "classes": str, "box_format": str, "coords": str, "iou": float,
                   "max_detections": int, "input": str}
#: a declared dimension beyond this is a mistake or an attack (allocations follow the shapes)
MAX_DIM = 1 << 16
#: elements of one sample of one input (a 4096x4096 RGB image is 50M): more is a mistake or an attack
MAX_ELEMENTS = 1 << 26
# Preprocessing sizes a manifest declares, each (least, most): the runtime allocates by them.
_PRE_LIMITS = {
    "image": {"size": (1, 4096), "width": (1, 4096), "height": (1, 4096)},
    "waveform": {"sample_rate": (1000, 192_000), "samples": (1, 1 << 22)},
    "tokens": {"max_tokens": (1, 4096)},
    "hashed_ngrams": {"max_tokens": (1, 4096), "max_ngrams": (1, 4096), "buckets": (2, 1 << 24)},
    "logmel": {"sample_rate": (1000, 192_000), "window_ms": (10, 60_000), "n_fft": (16, 1 << 16),
               "hop": (1, 1 << 16), "n_mels": (1, 1024)},
}
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class InputSpec:
    """One model input. ``shape`` holds ints and symbolic names such as ``"batch"``."""

    name: str
    modality: str
    dtype: str
    shape: tuple[int | str, ...]
    preprocess: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputSpec:
    """One model output: its ``kind`` (see :mod:`edgefusion.decode`), labels and threshold.

    ``role`` says what a fusion step uses it for (``action``, ``events``, ``intent``); ``params``
    holds the kind's other settings (a detections output's ``scores`` tensor, ``iou``, ...).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    threshold: float = 0.5
    role: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class FileRecord:
    """A file of the package: its path relative to the package directory and its sha256.

    ``meta`` holds the rest of the record (format, precision, quantization report, ...).
    """

    path: str
    sha256: str
    bytes: int = 0
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated ``manifest.json`` (DESIGN.md contract 4)."""

    format_version: int
    name: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    artifacts: dict[str, FileRecord]
    sources: dict[str, FileRecord]
    engines: dict[str, FileRecord]
    scenario: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def build_command(self) -> str:
        """The command that rebuilds the package (for error messages)."""
        return str(self.provenance.get("command", "edgefusion export"))

    @classmethod
    def parse(cls, data: Any, where: str) -> Manifest:
        """Check ``data`` (the decoded JSON) and build the manifest; ``where`` names it in errors."""
        p = _Problems()
        if not isinstance(data, dict):
            raise PackageError(f"{where} is not a valid manifest: expected a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
            raise PackageError(f"{where}: format_version {version!r} is not supported; expected "
                               f"{' or '.join(map(str, SUPPORTED_VERSIONS))}")
        name = data.get("name", "")
        if not isinstance(name, str):
            p.add("name", f"expected a string, got {type(name).__name__}")
            name = ""
        inputs = tuple(x for i, d in enumerate(p.items(data, "inputs")) if (x := _input(d, f"inputs[{i}]", p)))
        outputs = tuple(o for i, d in enumerate(p.items(data, "outputs")) if (o := _output(d, f"outputs[{i}]", p)))
        if "inputs" in data and not inputs and not p.about("inputs"):
            p.add("inputs", "expected at least one input")
        for what, names in (("inputs", [i.name for i in inputs]), ("outputs", [o.name for o in outputs]),
                            ("outputs (roles)", [o.role for o in outputs if o.role])):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                p.add(what, f"duplicate names {dup}")
        files = {k: _records(data, k, p, required=k == "artifacts") for k in ("artifacts", "sources", "engines")}
        scenario = data.get("scenario")
        if scenario is not None and not isinstance(scenario, str):
            p.add("scenario", f"expected a string, got {type(scenario).__name__}")
            scenario = None
        objs = {k: data.get(k) for k in ("model", "parity", "provenance")}
        for k, v in objs.items():
            if v is not None and not isinstance(v, dict):
                p.add(k, f"expected an object, got {type(v).__name__}")
                objs[k] = None
        p.raise_if_any(where)
        return cls(int(version), name, inputs, outputs, files["artifacts"], files["sources"], files["engines"],
                   scenario, objs["model"] or {}, objs["parity"], objs["provenance"] or {}, data)


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, key: str, msg: str) -> None:
        self.lines.append(f"{key}: {msg}")

    def about(self, key: str) -> bool:
        return any(line.startswith(key) for line in self.lines)

    def items(self, data: dict[str, Any], key: str) -> list[Any]:
        v = data.get(key)
        if not isinstance(v, list):
            self.add(key, "missing; expected a list" if v is None else f"expected a list, got {type(v).__name__}")
            return []
        return v

    def raise_if_any(self, where: str) -> None:
        if self.lines:
            n = len(self.lines)
            body = "\n".join(f"  {line}" for line in sorted(self.lines))
            raise PackageError(f"{where} is not a valid manifest ({n} problem{'s' * (n > 1)}):\n{body}")


def _str(d: dict[str, Any], key: str, where: str, p: _Problems) -> str | None:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        p.add(f"{where}.{key}", "missing" if v is None else f"expected a non-empty string, got {v!r:.40}")
        return None
    return v


def _input(d: Any, where: str, p: _Problems) -> InputSpec | None:
    if not isinstance(d, dict):
        p.add(where, f"expected an object, got {type(d).__name__}")
        return None
    name, modality, dtype = (_str(d, k, where, p) for k in ("name", "modality", "dtype"))
    shape = d.get("shape")
    ok_shape = isinstance(shape, list) and all(
        (isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_DIM) or (isinstance(s, str) and s)
        for s in shape)
    if not ok_shape:
        p.add(f"{where}.shape", f"expected a list of positive ints (<= {MAX_DIM}) and symbolic names, "
                                f"got {shape!r:.60}")
    pre = d.get("preprocess", {})
    if not isinstance(pre, dict):
        p.add(f"{where}.preprocess", f"expected an object, got {type(pre).__name__}")
        pre = None
    if name is None or modality is None or dtype is None or not ok_shape or pre is None:
        return None
    if not _sizes_ok(tuple(shape), pre, where, p):  # type: ignore[arg-type]
        return None
    return InputSpec(name, modality, dtype, tuple(shape), pre)  # type: ignore[arg-type]


def _sizes_ok(shape: tuple[int | str, ...], pre: dict[str, Any], where: str, p: _Problems) -> bool:
    """Declared sizes within limits and agreeing with the shape (allocations follow them)."""
    n = len(p.lines)
    elements = 1
    for s in shape:
        elements *= s if isinstance(s, int) else 1
    if elements > MAX_ELEMENTS:
        p.add(f"{where}.shape", f"{elements} elements per sample; at most {MAX_ELEMENTS}")
    for key, (lo, hi) in _PRE_LIMITS.get(str(pre.get("kind")), {}).items():
        v = pre.get(key)
        if key in pre and (not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi):
            p.add(f"{where}.preprocess.{key}", f"expected an int from {lo} to {hi}, got {v!r:.40}")
    ints = [s for s in shape if isinstance(s, int)]
    kind = pre.get("kind")
    if kind == "image" and len(p.lines) == n:
        _image_ok(shape, pre, where, p)
    if kind == "hashed_ngrams" and len(p.lines) == n and ints[-2:] != [pre.get("max_tokens"), pre.get("max_ngrams")]:
        p.add(f"{where}.preprocess.max_ngrams", f"max_tokens {pre.get('max_tokens')!r:.20} and max_ngrams "
                                                f"{pre.get('max_ngrams')!r:.20} disagree with the shape {list(shape)}")
    if kind == "tokens" and len(p.lines) == n and ints[-1:] != [pre.get("max_tokens")]:
        p.add(f"{where}.preprocess.max_tokens", f"{pre.get('max_tokens')!r:.20} disagrees with the shape "
                                                f"{list(shape)}")
    return len(p.lines) == n


def _image_ok(shape: tuple[int | str, ...], pre: dict[str, Any], where: str, p: _Problems) -> None:
    """The declared height and width (``size`` for both) sit where the layout puts them in the shape."""
    hwc = pre.get("layout", "CHW") == "HWC"
    if len(shape) != 4:
        p.add(f"{where}.shape", f"an image input has 4 dimensions (batch and {'H, W, 3' if hwc else '3, H, W'}), "
                                f"got {list(shape)}")
        return
    h, w = (shape[1], shape[2]) if hwc else (shape[2], shape[3])
    if "width" in pre or "height" in pre:
        want, key = (pre.get("height"), pre.get("width")), "width/height"
    else:
        want, key = (pre.get("size"), pre.get("size")), "size"
    if (h, w) != want:
        p.add(f"{where}.preprocess.{key}", f"{want[0]!r:.12} x {want[1]!r:.12} (height x width) disagrees with the "
                                           f"shape {list(shape)} ({'NHWC' if hwc else 'NCHW'}: height {h!r}, width "
                                           f"{w!r}); declare the input's real height and width")


def _output(d: Any, where: str, p: _Problems) -> OutputSpec | None:
    if not isinstance(d, dict):
        p.add(where, f"expected an object, got {type(d).__name__}")
        return None
    name, kind = _str(d, "name", where, p), _str(d, "kind", where, p)
    labels = d.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        p.add(f"{where}.labels", f"expected a list of strings, got {labels!r:.60}")
        labels = None
    threshold = d.get("threshold", 0.5)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0.0 <= threshold <= 1.0:
        p.add(f"{where}.threshold", f"expected a number in [0, 1], got {threshold!r:.40}")
        threshold = None
    role = d.get("role")
    if role is not None and role not in ROLES:
        p.add(f"{where}.role", f"expected one of {list(ROLES)}, got {role!r:.40}")
        role = False
    params: dict[str, Any] = {}
    for key, typ in _DETECTION_KEYS.items():
        if key in d:
            v = d[key]
            if not isinstance(v, (int, float) if typ is float else typ) or isinstance(v, bool):
                p.add(f"{where}.{key}", f"expected {'a number' if typ is float else typ.__name__}, got {v!r:.40}")
                role = False
            params[key] = v
    if name is None or kind is None or labels is None or threshold is None or role is False:
        return None
    return OutputSpec(name, kind, tuple(labels), float(threshold), role, params)


def _records(data: dict[str, Any], key: str, p: _Problems, required: bool) -> dict[str, FileRecord]:
    v = data.get(key)
    if v is None:
        if required:
            p.add(key, "missing; expected an object of variant -> {path, sha256}")
        return {}
    if not isinstance(v, dict):
        p.add(key, f"expected an object, got {type(v).__name__}")
        return {}
    out = {}
    for name, rec in v.items():
        r = _record(rec, f"{key}.{name}", p)
        if r is not None:
            out[name] = r
    return out


def _record(rec: Any, where: str, p: _Problems) -> FileRecord | None:
    if not isinstance(rec, dict):
        p.add(where, f"expected an object with path and sha256, got {type(rec).__name__}")
        return None
    path, digest = _str(rec, "path", where, p), _str(rec, "sha256", where, p)
    if path is not None and not _inside(path):
        p.add(f"{where}.path", f"{path!r} leaves the package directory; give a path inside it")
        path = None
    if digest is not None and not _HEX64.fullmatch(digest):
        p.add(f"{where}.sha256", f"expected 64 hex digits, got {digest!r:.70}")
        digest = None
    size = rec.get("bytes", 0)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        p.add(f"{where}.bytes", f"expected a non-negative int, got {size!r:.40}")
        size = None
    if path is None or digest is None or size is None:
        return None
    meta = {k: v for k, v in rec.items() if k not in ("path", "sha256", "bytes")}
    return FileRecord(path, digest, size, meta)


def _inside(path: str) -> bool:
    """True for a relative path that stays inside its directory (no absolute path, no '..', no drive)."""
    pp = PurePosixPath(path.replace("\\", "/"))
    return bool(path) and not pp.is_absolute() and ".." not in pp.parts and ":" not in pp.parts[0] \
        and "\x00" not in path
