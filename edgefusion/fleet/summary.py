"""Pooling scored recordings: per label, overall, per scenario; A against B; the worst recordings.

Counts add up over recordings (segments, detections, emissions, true positives, reaction
times, latency histograms) and the ratios are taken at the end, so a fleet's recall is the
share of all its segments that were detected, not a mean of per-recording recalls. A ratio
with nothing to count (recall of a label that never occurs) is ``None``, shown as ``–``.

Per recording, the numbers are ``replay --check``'s own (its action accuracy, precision and
recall), so a row of the report can be reproduced with ``edgefusion replay LOG --check``.

Example:
    >>> e = {"frames": 10, "scenario": "s", "check": {"truth": {"frames": 10, "action_accuracy": 0.9}},
    ...      "labels": {"go": {"kind": "action", "segments": 2, "detected": 1, "emitted": 1,
    ...                        "true_positives": 1, "reaction_ns": [5_000_000]}}, "latency": {}}
    >>> s = pool([e, e])
    >>> s["labels"]["go"]["recall"], s["overall"]["precision"], s["overall"]["accuracy"]
    (0.5, 1.0, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgefusion.fleet.latency import summary_ms

__all__ = ["COUNTS", "deltas", "pool", "recording_rows"]

COUNTS = ("segments", "detected", "emitted", "true_positives")
#: the metrics compared between A and B, per label and overall
COMPARED = ("precision", "recall", "reaction_ms")


def _ratios(c: dict[str, Any]) -> dict[str, Any]:
    r = c.pop("reaction_ns")
    return {**c, "precision": c["true_positives"] / c["emitted"] if c["emitted"] else None,
            "recall": c["detected"] / c["segments"] if c["segments"] else None,
            "reaction_ms": round(float(np.median(r)) / 1e6, 3) if r else None}


def pool(entries: Sequence[dict[str, Any]], by_scenario: bool = True) -> dict[str, Any]:
    """``labels`` (per label: counts and ratios), ``overall`` (the actions together, accuracy,
    latency) and ``scenarios`` (overall per scenario) of successfully scored entries."""
    labels: dict[str, dict[str, Any]] = {}
    for e in entries:
        for name, c in e["labels"].items():
            acc = labels.setdefault(name, {"kind": c["kind"], **dict.fromkeys(COUNTS, 0), "reaction_ns": []})
            for k in COUNTS:
                acc[k] += c[k]
            acc["reaction_ns"] += c["reaction_ns"]
    overall = {**dict.fromkeys(COUNTS, 0), "reaction_ns": []}
    for c in labels.values():
        if c["kind"] == "action":
            for k in COUNTS:
                overall[k] += c[k]
            overall["reaction_ns"] = overall["reaction_ns"] + c["reaction_ns"]
    truths = [e["check"]["truth"] for e in entries if e["check"].get("truth")]
    truth_frames = sum(t["frames"] for t in truths)
    correct = sum(round(t["action_accuracy"] * t["frames"]) for t in truths)
    out = _ratios(overall)
    out.update(recordings=len(entries), frames=sum(e["frames"] for e in entries), truth_frames=truth_frames,
               accuracy=correct / truth_frames if truth_frames else None,
               latency_ms={k: summary_ms([e["latency"][k] for e in entries if k in e["latency"]])
                           for k in ("end_to_end", "inference")})
    scenarios = sorted({str(e.get("scenario")) for e in entries}) if by_scenario else []
    return {"labels": {k: _ratios(v) for k, v in labels.items()}, "overall": out,
            "scenarios": {s: pool([e for e in entries if str(e.get("scenario")) == s], False)["overall"]
                          for s in scenarios}}


def _sub(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else round(a - b, 6)


def deltas(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """A minus B: per label and overall, precision, recall and reaction time; overall accuracy and latency."""
    labels = {}
    for name in [*a["labels"], *(k for k in b["labels"] if k not in a["labels"])]:
        la, lb = a["labels"].get(name, {}), b["labels"].get(name, {})
        labels[name] = {"kind": la.get("kind") or lb.get("kind"),
                        **{m: _sub(la.get(m), lb.get(m)) for m in COMPARED}}
    oa, ob = a["overall"], b["overall"]
    overall = {m: _sub(oa.get(m), ob.get(m)) for m in (*COMPARED, "accuracy")}
    for stage in ("end_to_end", "inference"):
        for q in ("p50", "p99"):
            overall[f"{stage}_{q}_ms"] = _sub(oa["latency_ms"][stage].get(q), ob["latency_ms"][stage].get(q))
    return {"labels": labels, "overall": overall}


def _row(e: dict[str, Any]) -> dict[str, Any]:
    t = e["check"].get("truth") or {}
    return {"accuracy": t.get("action_accuracy"), "precision": t.get("precision"), "recall": t.get("recall")}


def recording_rows(by_recording: dict[str, dict[str, dict[str, Any]]], sides: Sequence[str]) -> list[dict[str, Any]]:
    """One row per recording scored on every side, worst first: by A's recall, precision, accuracy; with
    two sides by the change A minus B of the same (the recordings where A lost most first)."""
    rows = []
    for rec, per_side in by_recording.items():
        if not all(s in per_side and "error" not in per_side[s] for s in sides):
            continue
        row: dict[str, Any] = {"recording": rec, "scenario": per_side[sides[0]].get("scenario"),
                               "frames": per_side[sides[0]]["frames"]}
        for s in sides:
            row[s] = _row(per_side[s])
        if len(sides) == 2:
            row["delta"] = {m: _sub(row["A"][m], row["B"][m]) for m in ("accuracy", "precision", "recall")}
        rows.append(row)
    base = "delta" if len(sides) == 2 else "A"
    fill = 0.0 if base == "delta" else 1.0  # nothing to score: nothing lost

    def key(r: dict[str, Any]) -> tuple[float, ...]:
        v = r[base]
        return tuple(fill if v[m] is None else v[m] for m in ("recall", "precision", "accuracy"))

    return sorted(rows, key=lambda r: (key(r), r["recording"]))
