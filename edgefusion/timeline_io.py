"""The interim timeline file format (``.npz``), until MCAP recording lands.

One compressed NumPy archive with: ``frames`` (N, H, W, 3) uint8 BGR, ``frame_t_ns``
(N,) int64, ``audio`` float32 mono, ``audio_rate``, and JSON strings ``commands``
(``[{"t_ns", "text", "intent"}]``), ``truth`` (``[{"events": [...], "action": ...}]`` per
frame) and ``meta`` (scenario, seed, duration, format).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgefusion.errors import InputError
from edgefusion.scenarios import Timeline, TimelineCommand

__all__ = ["FORMAT", "read_timeline", "write_timeline"]

FORMAT = "edgefusion-timeline-npz/1"


def write_timeline(tl: Timeline, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**tl.meta, "scenario": tl.scenario, "seed": tl.seed, "format": FORMAT}
    cmds = [{"t_ns": c.t_ns, "text": c.text, "intent": c.intent} for c in tl.commands]
    truth = [{"events": sorted(e), "action": a} for e, a in zip(tl.truth_events, tl.truth_action)]
    with open(path, "wb") as f:
        np.savez_compressed(f, frames=tl.frames, frame_t_ns=tl.frame_t_ns, audio=tl.audio,
                            audio_rate=np.int64(tl.audio_rate), commands=json.dumps(cmds),
                            truth=json.dumps(truth), meta=json.dumps(meta))
    return path


def read_timeline(path: str | Path) -> Timeline:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise InputError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
            truth = json.loads(str(z["truth"]))
            return Timeline(
                scenario=meta["scenario"], seed=int(meta["seed"]), frame_t_ns=z["frame_t_ns"], frames=z["frames"],
                audio=z["audio"], audio_rate=int(z["audio_rate"]),
                commands=[TimelineCommand(**c) for c in json.loads(str(z["commands"]))],
                truth_events=[frozenset(t["events"]) for t in truth], truth_action=[t["action"] for t in truth],
                meta=meta,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read timeline {path}: {exc}; expected a file written by 'edgefusion synth'") from exc
