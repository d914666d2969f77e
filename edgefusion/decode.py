"""Reading a model's outputs: one decoder per output kind, from a table.

Kinds (a manifest output's ``kind``):

- ``class_logits`` / ``class_probs``: one class out of ``labels`` (softmax for logits; probabilities
  are taken as they are);
- ``multilabel_logits`` / ``multilabel_probs``: independent scores per label, thresholded (a
  sigmoid for logits only: a model that outputs probabilities is not squashed twice);
- ``detections``: boxes with scores (and classes), thresholded, non-maximum suppressed
  (OpenCV's ``NMSBoxesBatched``, per class), mapped back to frame pixels through the
  image's letterbox or stretch;
- ``tensor``: passed through as it is.

Which class output is the action and which multilabel output holds the events is the
output's ``role``, or by default the first of each. Detected labels count as events with
their best score. :func:`register_output_kind` adds a kind without touching the runtime.

Example:
    >>> from edgefusion.manifest import OutputSpec
    >>> vad = OutputSpec("p", "multilabel_probs", ("speech",), threshold=0.5)
    >>> d = decode([vad], {"p": np.array([[0.9]], np.float32)})
    >>> round(d.scores["speech"], 3), d.events      # a probability: no second sigmoid
    (0.9, ('speech',))
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edgefusion.errors import ConfigError, PackageError
from edgefusion.manifest import OutputSpec
from edgefusion.metrics import sigmoid
from edgefusion.preprocess import FeedInfo, Geometry

__all__ = ["OUTPUT_KINDS", "Decoded", "Detection", "check_outputs", "decode", "register_output_kind"]

#: a passed-through tensor with more elements than this is reported by shape only (and counted)
MAX_TENSOR_ELEMENTS = 4096


@dataclass(frozen=True)
class Detection:
    """One detected object: label, score and box ``(x1, y1, x2, y2)`` in frame pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": round(self.score, 5), "box": [round(v, 2) for v in self.box]}


@dataclass
class Decoded:
    """What one step's outputs say: the action's probabilities, event scores, anything else (JSON-ready)."""

    action_scores: dict[str, float] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    events: tuple[str, ...] = ()
    #: output name -> JSON-ready value (detections, passed-through tensors)
    extras: dict[str, Any] = field(default_factory=dict)
    #: the command's intent by the output with role ``intent`` (None: no such output) and its probability
    intent: str | None = None
    intent_score: float = 0.0


Reader = Callable[[OutputSpec, Mapping[str, np.ndarray], FeedInfo | None, Decoded], None]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def _scores(spec: OutputSpec, outs: Mapping[str, np.ndarray]) -> np.ndarray:
    x = np.asarray(outs[spec.name][0], np.float64).reshape(-1)
    if x.size != len(spec.labels):
        raise PackageError(f"output '{spec.name}': the model gives {x.size} values per item, the manifest names "
                           f"{len(spec.labels)} labels; declare one label per value")
    return x


def _classes(spec: OutputSpec, outs: Mapping[str, np.ndarray], info: FeedInfo | None, d: Decoded) -> None:
    x = _scores(spec, outs)
    probs = _softmax(x) if spec.kind == "class_logits" else x
    scores = {a: float(p) for a, p in zip(spec.labels, probs)}
    if spec.role == "action" or (spec.role is None and not d.action_scores):
        d.action_scores = scores
    elif spec.role == "intent":
        d.intent, d.intent_score = max(scores.items(), key=lambda kv: kv[1])
    else:
        d.extras[spec.name] = {k: round(v, 5) for k, v in scores.items()}


def _multilabel(spec: OutputSpec, outs: Mapping[str, np.ndarray], info: FeedInfo | None, d: Decoded) -> None:
    x = _scores(spec, outs)
    probs = sigmoid(x) if spec.kind == "multilabel_logits" else x
    scores = {a: float(p) for a, p in zip(spec.labels, probs)}
    d.scores.update(scores)
    d.events += tuple(n for n in spec.labels if scores[n] >= spec.threshold and n not in d.events)


def _xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "xyxy":
        return b
    if fmt == "xywh":
        return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    if fmt == "cxcywh":
        return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
    raise ConfigError(f"box_format {fmt!r}: expected xyxy, xywh or cxcywh")


def detections(spec: OutputSpec, outs: Mapping[str, np.ndarray], geometry: Geometry | None) -> list[Detection]:
    """The detections of one image (batch item 0), best first, boxes in frame pixels.

    ``outs[spec.name]`` holds (N, 4) boxes; ``params["scores"]`` names (N,) or (N, classes)
    scores, ``params["classes"]`` (N,) class indices. Without ``scores`` the boxes tensor is
    YOLO-style, (N, 4 + classes) or (4 + classes, N).
    """
    pr = spec.params
    raw = np.asarray(outs[spec.name][0], np.float64)
    if "scores" in pr:
        boxes, sc = raw.reshape(-1, 4), np.asarray(outs[pr["scores"]][0], np.float64)
    else:
        width = 4 + max(1, len(spec.labels))
        if raw.ndim == 2 and raw.shape[0] == width and raw.shape[1] != width:
            raw = raw.T  # YOLOv8 writes (4 + classes, N)
        if raw.ndim != 2 or raw.shape[1] != width:
            raise PackageError(f"output '{spec.name}': expected (N, {width}) or ({width}, N) rows of box and "
                               f"{len(spec.labels)} class scores, got {list(raw.shape)}; or name the scores tensor")
        boxes, sc = raw[:, :4], raw[:, 4:]
    if "classes" in pr:
        cls = np.asarray(outs[pr["classes"]][0]).reshape(-1).astype(np.int64)
        score = sc.reshape(-1)
    elif sc.ndim == 2 and sc.shape[1] > 1:
        cls, score = sc.argmax(axis=1), sc.max(axis=1)
    else:
        cls, score = np.zeros(len(boxes), np.int64), sc.reshape(-1)
    if not len(boxes) == len(score) == len(cls):
        raise PackageError(f"output '{spec.name}': {len(boxes)} boxes but {len(score)} scores and {len(cls)} classes")
    boxes = _xyxy(boxes, str(pr.get("box_format", "xyxy")))
    if pr.get("coords", "pixels") == "normalized":
        if geometry is None or not geometry.input_w:
            raise ConfigError(f"output '{spec.name}': normalized boxes need an image input to scale them by")
        boxes = boxes * [geometry.input_w, geometry.input_h, geometry.input_w, geometry.input_h]
    keep = score >= spec.threshold
    boxes, score, cls = boxes[keep], score[keep], cls[keep]
    if not len(boxes):
        return []
    xywh = [(float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])) for b in boxes]
    idx = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, score.astype(np.float32).tolist(), cls.tolist(),
                                             spec.threshold, float(pr.get("iou", 0.45)))).reshape(-1)
    idx = idx[np.argsort(-score[idx], kind="stable")][: int(pr.get("max_detections", 100))]
    framed = geometry.to_frame(boxes[idx]) if geometry is not None else boxes[idx]
    labels = spec.labels
    return [Detection(labels[c] if 0 <= c < len(labels) else str(int(c)), float(s), tuple(map(float, b)))  # type: ignore[arg-type]
            for c, s, b in zip(cls[idx], score[idx], framed)]


def _detections(spec: OutputSpec, outs: Mapping[str, np.ndarray], info: FeedInfo | None, d: Decoded) -> None:
    geo = info.geometry if info is not None else {}
    image = spec.params.get("input")
    g = geo.get(image) if image else next(iter(geo.values()), None)
    found = detections(spec, outs, g)
    d.extras[spec.name] = [x.to_dict() for x in found]
    for x in found:  # a detected label is an event, with its best score
        if x.score > d.scores.get(x.label, -1.0):
            d.scores[x.label] = x.score
        if x.label not in d.events:
            d.events += (x.label,)


def _tensor(spec: OutputSpec, outs: Mapping[str, np.ndarray], info: FeedInfo | None, d: Decoded) -> None:
    x = np.asarray(outs[spec.name])
    if x.size > MAX_TENSOR_ELEMENTS:
        d.extras[spec.name] = {"shape": list(x.shape), "elements_left_out": int(x.size)}
    else:
        d.extras[spec.name] = np.round(x.astype(np.float64), 5).tolist() if x.dtype.kind == "f" else x.tolist()


#: output kind -> reader; :func:`register_output_kind` adds more
OUTPUT_KINDS: dict[str, Reader] = {
    "class_logits": _classes, "class_probs": _classes,
    "multilabel_logits": _multilabel, "multilabel_probs": _multilabel,
    "detections": _detections, "tensor": _tensor,
}


def register_output_kind(kind: str, fn: Callable[[np.ndarray, OutputSpec], Any]) -> None:
    """Add an output kind: ``fn(array, spec)`` returns a JSON-ready value, kept under the output's name.

    Example:
        >>> register_output_kind("mean", lambda x, spec: float(x.mean()))
        >>> decode([OutputSpec("m", "mean", ())], {"m": np.ones((1, 3))}).extras
        {'m': 1.0}
    """
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"output kind: expected a non-empty string, got {kind!r}")

    def reader(spec: OutputSpec, outs: Mapping[str, np.ndarray], info: FeedInfo | None, d: Decoded) -> None:
        d.extras[spec.name] = fn(outs[spec.name], spec)
    OUTPUT_KINDS[kind] = reader


def check_outputs(outputs: Sequence[OutputSpec]) -> list[str]:
    """Problems of a manifest's outputs that the kinds table knows about, one line each."""
    problems = []
    for o in outputs:
        if o.kind not in OUTPUT_KINDS:
            close = difflib.get_close_matches(str(o.kind), list(OUTPUT_KINDS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"output '{o.name}': unknown kind {o.kind!r}{hint} (kinds: {', '.join(OUTPUT_KINDS)})")
        if o.kind in ("class_logits", "class_probs", "multilabel_logits", "multilabel_probs") and not o.labels:
            problems.append(f"output '{o.name}': a {o.kind} output needs its labels")
    return problems


def decode(outputs: Sequence[OutputSpec], outs: Mapping[str, np.ndarray], info: FeedInfo | None = None) -> Decoded:
    """Read every declared output of one step (batch item 0)."""
    d = Decoded()
    for o in sorted(outputs, key=lambda o: o.role != "action"):  # a declared action first: it is not an extra
        missing = [n for n in (o.name, o.params.get("scores"), o.params.get("classes")) if n and n not in outs]
        if missing:
            raise PackageError(f"the model has no output {missing[0]!r}, which the manifest declares; the model's "
                               f"outputs are {sorted(outs)}")
        OUTPUT_KINDS[o.kind](o, outs, info, d)
    return d
