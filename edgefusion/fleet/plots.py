"""The report's plots (matplotlib, headless): per-label results and the worst recordings.

With a B, ``labels.png`` shows per label the change A minus B of precision and recall (the
labels that lost most recall on top) and ``recordings.png`` the recordings where A lost most
accuracy; with A alone, per-label precision and recall and the recordings of lowest recall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["MAX_BARS", "write_plots"]

#: bars per plot (the JSON has every label and recording)
MAX_BARS = 30


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the plots into ``out_dir``; nothing (and no error) when there is nothing scored."""
    import matplotlib

    matplotlib.use("Agg")
    sides = list(report["summary"])
    if not report["summary"][sides[0]]["labels"]:
        return []
    return [_labels(report, sides, out_dir / "labels.png"), _recordings(report, sides, out_dir / "recordings.png")]


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _order(v: Any) -> float:
    return float("inf") if v is None else float(v)  # nothing measured: at the bottom


def _labels(report: dict[str, Any], sides: list[str], path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    if len(sides) == 2:
        rows = sorted(report["delta"]["labels"].items(),
                      key=lambda kv: (_order(kv[1]["recall"]), _order(kv[1]["precision"]), kv[0]))[:MAX_BARS]
        values = [("Δ precision", [_num(d["precision"]) for _, d in rows]),
                  ("Δ recall", [_num(d["recall"]) for _, d in rows])]
        title, xlabel = "Per label: A minus B (lost recall on top)", "A minus B"
    else:
        labels = report["summary"]["A"]["labels"]
        rows = sorted(labels.items(), key=lambda kv: (_order(kv[1]["recall"]), _order(kv[1]["precision"]),
                                                      kv[0]))[:MAX_BARS]
        values = [("precision", [_num(d["precision"]) for _, d in rows]),
                  ("recall", [_num(d["recall"]) for _, d in rows])]
        title, xlabel = "Per label (lowest recall on top)", "event-level score"
    names = [name for name, _ in rows][::-1]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(names)))
    for i, (label, vals) in enumerate(values):
        ax.barh(y + (i - 0.5) * 0.4, vals[::-1], height=0.4, label=label)
    ax.set_yticks(y, names, fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def _recordings(report: dict[str, Any], sides: list[str], path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["worst"][:MAX_BARS]
    names = [Path(r["recording"]).name for r in rows][::-1]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * max(1, len(names))))
    if len(sides) == 2:
        for i, m in enumerate(("accuracy", "recall")):
            ax.barh(y + (i - 0.5) * 0.4, [_num(r["delta"][m]) for r in rows][::-1], height=0.4, label=f"Δ {m}")
        ax.axvline(0, color="black", lw=0.8)
        ax.set(xlabel="A minus B", title="Recordings where A lost most first")
    else:
        for i, m in enumerate(("accuracy", "recall")):
            ax.barh(y + (i - 0.5) * 0.4, [_num(r["A"][m]) for r in rows][::-1], height=0.4, label=m)
        ax.set(xlabel="replay --check score", title="Recordings, worst first")
    ax.set_yticks(y, names, fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
