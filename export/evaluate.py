"""Evaluating a fusion model: predictions, held-out metrics, per-label precision/recall, a confusion matrix.

:func:`evaluate` is what every training reports on its held-out synthetic set (action
accuracy, event F1, accuracy with each modality masked); :func:`label_report` is the
evaluation report of a run on a recorded dataset's validation split (per-label precision
and recall, the action confusion matrix, a per-recording breakdown);
:func:`confusion_png` draws the matrix when matplotlib (the ``bench`` extra) is installed.

Example:
    >>> import numpy as np
    >>> ev = np.array([[3.0, -3.0], [-3.0, -3.0]]); y_ev = np.array([[1, 0], [1, 0]], np.float32)
    >>> act = np.array([[2.0, 0.0], [0.0, 2.0]]); y_act = np.array([0, 0])
    >>> r = label_report(ev, act, y_ev, y_act, ("a", "b"), ("go", "stop"))
    >>> r["events"]["a"], r["action_accuracy"], r["confusion"]["matrix"]
    ({'precision': 1.0, 'recall': 0.5, 'f1': 0.6667, 'support': 2}, 0.5, [[1, 1], [0, 0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgefusion.dataset import INPUT_ORDER, Dataset
from edgefusion.metrics import action_accuracy, event_f1, sigmoid

__all__ = ["confusion_png", "evaluate", "label_report", "masked", "predict", "predict_all", "robust_metrics"]


def predict_all(model: nn.Module, feeds: dict[str, np.ndarray], batch: int = 256) -> list[np.ndarray]:
    """Every output of the model (event, action and, with an intent head, intent logits) for stacked feeds."""
    model.eval()
    parts: list[list[np.ndarray]] = []
    with torch.inference_mode():
        for i in range(0, len(feeds["image"]), batch):
            outs = model(*(torch.from_numpy(feeds[k][i : i + batch]) for k in INPUT_ORDER))
            parts = parts or [[] for _ in outs]
            for p, o in zip(parts, outs):
                p.append(o.numpy())
    return [np.concatenate(p) for p in parts]


def predict(model: nn.Module, feeds: dict[str, np.ndarray], batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Event and action logits for stacked feeds."""
    outs = predict_all(model, feeds, batch)
    return outs[0], outs[1]


def masked(feeds: dict[str, np.ndarray], modality: int) -> dict[str, np.ndarray]:
    """``feeds`` with modality ``modality`` (0 image, 1 audio, 2 text) marked missing."""
    out = dict(feeds)
    present = feeds["present"].copy()
    present[:, modality] = 0.0
    out["present"] = present
    return out


def evaluate(model: nn.Module, ds: Dataset, events: tuple[str, ...], ablate: bool = True) -> dict[str, Any]:
    """Action accuracy, event F1 (per label and macro), and accuracy with each modality masked."""
    ev, act, *rest = predict_all(model, ds.feeds)
    out: dict[str, Any] = {
        "samples": len(ds),
        "action_accuracy": action_accuracy(act, ds.y_action),
        "event_f1": event_f1(ev, ds.y_events, events),
    }
    if rest and ds.y_intent is not None:
        out["intent_accuracy"] = action_accuracy(rest[0], ds.y_intent)
    if ablate:
        out["ablation_action_accuracy"] = {
            name: action_accuracy(predict(model, masked(ds.feeds, i))[1], ds.y_action)
            for i, name in enumerate(("image", "audio", "text"))
        }
        out["ablation_drop_points"] = {
            k: round(100 * (out["action_accuracy"] - v), 2) for k, v in out["ablation_action_accuracy"].items()
        }
    return out


def robust_metrics(model: nn.Module, feeds: dict[str, np.ndarray], ds: Dataset, which: np.ndarray,
                   rows: Sequence[str], events: tuple[str, ...], clean_accuracy: float) -> dict[str, Any]:
    """Accuracy on the perturbed held-out samples (``which[i]``: the row sample ``i`` went through)."""
    ev, act = predict(model, feeds)
    acc = action_accuracy(act, ds.y_action)
    per_row = {name: round(action_accuracy(act[which == r], ds.y_action[which == r]), 4)
               for r, name in enumerate(rows) if np.any(which == r)}
    return {
        "samples": len(ds), "action_accuracy": acc, "event_f1_macro": event_f1(ev, ds.y_events, events)["macro"],
        "drop_points": round(100 * (clean_accuracy - acc), 2),
        "worst_row": min(per_row, key=lambda k: per_row[k]) if per_row else None,
        "action_accuracy_per_row": per_row,
    }


def _pr(pred: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Precision and recall (None where undefined: nothing predicted, nothing to find), F1, support."""
    tp, fp, fn = int(np.sum(pred & truth)), int(np.sum(pred & ~truth)), int(np.sum(~pred & truth))
    p = None if tp + fp == 0 else round(tp / (tp + fp), 4)
    r = None if tp + fn == 0 else round(tp / (tp + fn), 4)
    f = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)  # as event_f1 counts it
    return {"precision": p, "recall": r, "f1": round(f, 4), "support": int(truth.sum())}


def label_report(event_logits: np.ndarray, action_logits: np.ndarray, y_events: np.ndarray, y_action: np.ndarray,
                 events: Sequence[str], actions: Sequence[str], recordings: np.ndarray | None = None,
                 threshold: float = 0.5) -> dict[str, Any]:
    """Per-label precision/recall/F1, action accuracy and confusion matrix (rows truth, columns predicted).

    Precision is None for a label never predicted, recall None for one never present.

    With ``recordings`` (one name per sample) it adds the action accuracy of each recording.
    """
    pred = sigmoid(event_logits) >= threshold
    truth = y_events >= 0.5
    act = action_logits.argmax(1)
    cm = np.zeros((len(actions), len(actions)), np.int64)
    np.add.at(cm, (y_action, act), 1)
    out: dict[str, Any] = {
        "samples": len(y_action),
        "action_accuracy": round(float(np.mean(act == y_action)), 4) if len(y_action) else float("nan"),
        "events": {e: _pr(pred[:, i], truth[:, i]) for i, e in enumerate(events)},
        "actions": {a: _pr(act == i, y_action == i) for i, a in enumerate(actions)},
        "confusion": {"labels": list(actions), "matrix": cm.tolist()},
    }
    if recordings is not None:
        out["per_recording"] = {
            str(r): {"samples": int(np.sum(recordings == r)),
                     "action_accuracy": round(float(np.mean(act[recordings == r] == y_action[recordings == r])), 4)}
            for r in sorted(set(recordings.tolist()))}
    return out


def confusion_png(report: dict[str, Any], path: Path, title: str) -> Path | None:
    """The action confusion matrix of ``report`` as a PNG; None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, cm = report["confusion"]["labels"], np.array(report["confusion"]["matrix"])
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(labels), 1.0 + 0.6 * len(labels)))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > cm.max() / 2 else "black")
    ax.set(xlabel="predicted action", ylabel="true action", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
