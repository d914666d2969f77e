"""Accuracy metrics computed from logits in numpy (used by training, export and the demo)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["action_accuracy", "event_f1", "percentiles_ms", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def action_accuracy(action_logits: np.ndarray, y_action: np.ndarray) -> float:
    return float(np.mean(np.argmax(action_logits, axis=1) == y_action))


def event_f1(event_logits: np.ndarray, y_events: np.ndarray, labels: Sequence[str],
             threshold: float = 0.5) -> dict[str, float]:
    """Per-label F1 and their macro mean (key ``macro``); a label never present nor predicted scores 1."""
    pred = sigmoid(event_logits) >= threshold
    truth = y_events >= 0.5
    out = {}
    for i, name in enumerate(labels):
        tp = float(np.sum(pred[:, i] & truth[:, i]))
        fp = float(np.sum(pred[:, i] & ~truth[:, i]))
        fn = float(np.sum(~pred[:, i] & truth[:, i]))
        out[name] = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
    out["macro"] = float(np.mean([out[n] for n in labels]))
    return out


def percentiles_ms(values_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean in milliseconds."""
    v = np.asarray(values_ns, dtype=np.float64) / 1e6
    if v.size == 0:
        return dict.fromkeys(("p50", "p90", "p99", "max", "mean"), float("nan"))
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(v.max()), "mean": float(v.mean())}
