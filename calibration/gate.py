"""The accuracy gate: FP32 and INT8 side by side on held-out data, and a drift report.

Both models run on ONNX Runtime's CPU provider (the TensorRT-oriented INT8 artifact too:
its Q/DQ graph runs there, slowly, with the same arithmetic up to kernel rounding). The
gate compares action accuracy; the report adds, per output, how far the logits moved and
how often the decision changed, so a failure says *where* the model drifted.

Example:
    >>> import numpy as np
    >>> from edgefusion.package import load_package
    >>> pkg = load_package("smart_home")
    >>> ev = EvalSet(feeds={}, y_action=np.array([0, 1]), y_events=np.zeros((2, 7)), seed=0, sha256="", hard=False)
    >>> ref = {"action_logits": np.array([[2.0, 0.0] + [0.0] * 7, [0.0, 2.0] + [0.0] * 7]),
    ...        "event_logits": np.zeros((2, 7)), "intent_logits": np.zeros((2, 6))}
    >>> res = judge(pkg, "int8", ev, ref, ref, max_drop_points=1.0)
    >>> res.passed, res.drop_points
    (True, 0.0)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefusion.dataset import build_dataset, data_hash
from edgefusion.errors import BackendError, ConfigError
from edgefusion.metrics import action_accuracy, event_f1, sigmoid
from edgefusion.package import ModelPackage
from edgefusion.scenarios import get_scenario

__all__ = ["EvalSet", "GateResult", "OutputDrift", "dataset_eval_set", "held_out_set", "judge", "run_onnx"]


@dataclass
class EvalSet:
    """Held-out feeds and labels (from :func:`held_out_set`)."""

    feeds: dict[str, np.ndarray]
    y_action: np.ndarray
    y_events: np.ndarray
    seed: int | None
    sha256: str
    hard: bool
    source: str = ""  # a recorded dataset's split, e.g. "dataset data/home (val)"; "" for synthesized data

    def __len__(self) -> int:
        return len(self.y_action)


@dataclass(frozen=True)
class OutputDrift:
    """How one output moved from FP32 to INT8 on the held-out set."""

    name: str
    kind: str
    max_abs_diff: float
    mean_abs_diff: float
    decision_agreement: float  # argmax (class_logits) or thresholded labels (multilabel_logits)
    metric: str
    fp32: float
    int8: float


@dataclass
class GateResult:
    """The gate's verdict for one variant."""

    variant: str
    samples: int
    seed: int | None
    max_drop_points: float
    fp32_accuracy: float
    int8_accuracy: float
    drop_points: float
    passed: bool
    outputs: list[OutputDrift] = field(default_factory=list)
    data: str = ""  # where the held-out windows came from, when not synthesized from ``seed``

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = {o["name"]: {k: v for k, v in o.items() if k != "name"} for o in d["outputs"]}
        return d

    def report(self) -> str:
        """A few lines: the verdict, then one line per output."""
        verdict = "passed" if self.passed else "FAILED"
        where = f"windows of {self.data}" if self.data else f"held-out samples, seed {self.seed}"
        lines = [
            f"accuracy gate for '{self.variant}' (ONNX Runtime CPU, {self.samples} {where}): {verdict}",
            f"  action accuracy FP32 {100 * self.fp32_accuracy:.2f}% -> INT8 {100 * self.int8_accuracy:.2f}%: "
            f"drop {self.drop_points:.2f} points (limit {self.max_drop_points:.2f})",
            f"  {'output':<16} {'kind':<18} {'max|Δ|':>8} {'mean|Δ|':>8} {'agree':>7}  {'metric':<15} "
            f"{'FP32':>7} {'INT8':>7}",
        ]
        for o in self.outputs:
            lines.append(f"  {o.name:<16} {o.kind:<18} {o.max_abs_diff:>8.3f} {o.mean_abs_diff:>8.4f} "
                         f"{100 * o.decision_agreement:>6.2f}%  {o.metric:<15} {o.fp32:>7.4f} {o.int8:>7.4f}")
        return "\n".join(lines)


def held_out_set(package: ModelPackage, samples: int, seed: int, hard: bool = False, progress: Any = None) -> EvalSet:
    """``samples`` labelled windows of the package's scenario from ``seed`` (the held-out seed)."""
    scen_name = package.manifest.scenario
    if not scen_name:
        raise ConfigError(f"package '{package.name}' names no scenario, so there is no synthetic held-out set to gate "
                          "INT8 accuracy on; gate on a recorded dataset's val split: --gate-data DIR (edgefusion "
                          "dataset build)")
    if samples < 1:
        raise ConfigError(f"--eval-samples must be at least 1, got {samples}")
    scen = get_scenario(str(scen_name))
    ds = build_dataset(scen, package.feed_builder(), samples, seed, hard=hard, progress=progress)
    if set(ds.feeds) != {i.name for i in package.inputs}:
        raise ConfigError(f"the scenario's feeds {sorted(ds.feeds)} do not match package '{package.name}' "
                          f"inputs {sorted(i.name for i in package.inputs)}")
    return EvalSet(ds.feeds, ds.y_action, ds.y_events, seed, data_hash(ds), hard)


def run_onnx(path: Path, feeds: Mapping[str, np.ndarray], threads: int = 2, batch: int = 256,
             progress: Any = None) -> dict[str, np.ndarray]:
    """Every output of the ONNX model at ``path`` on ``feeds``, with ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the runtime backend runs it
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        n = len(next(iter(feeds.values())))
        parts: dict[str, list[np.ndarray]] = {k: [] for k in names}
        for i in range(0, n, batch):
            vals = sess.run(names, {k: v[i : i + batch] for k, v in feeds.items()})
            for k, v in zip(names, vals):
                parts[k].append(v)
            if progress is not None:
                progress.update(min(batch, n - i))
    except Exception as exc:  # onnxruntime raises several untyped errors
        raise BackendError(f"ONNX Runtime could not run {path.name} for the accuracy gate: {exc}") from exc
    return {k: np.concatenate(v) for k, v in parts.items()}


def judge(package: ModelPackage, variant: str, ev: EvalSet, fp32: Mapping[str, np.ndarray],
          int8: Mapping[str, np.ndarray], max_drop_points: float) -> GateResult:
    """Compare FP32 and INT8 outputs on ``ev``; the gate passes when the action accuracy drop is within limit."""
    drifts = []
    acc32 = acc8 = float("nan")
    for out in package.outputs:
        a, b = np.asarray(fp32[out.name], np.float64), np.asarray(int8[out.name], np.float64)
        diff = np.abs(a - b)
        if out.kind == "class_logits" and out.role == "intent":  # no intent labels here: how often INT8 agrees
            agree = float(np.mean(a.argmax(1) == b.argmax(1)))
            metric, m32, m8 = "intent_agreement", 1.0, agree
        elif out.kind == "class_logits":
            agree = float(np.mean(a.argmax(1) == b.argmax(1)))
            acc32, acc8 = action_accuracy(a, ev.y_action), action_accuracy(b, ev.y_action)
            metric, m32, m8 = "action_accuracy", acc32, acc8
        elif out.kind == "multilabel_logits":
            agree = float(np.mean((sigmoid(a) >= out.threshold) == (sigmoid(b) >= out.threshold)))
            metric = "event_macro_f1"
            m32 = event_f1(a, ev.y_events, out.labels, out.threshold)["macro"]
            m8 = event_f1(b, ev.y_events, out.labels, out.threshold)["macro"]
        else:
            raise ConfigError(f"output '{out.name}' has kind '{out.kind}'; the gate knows class_logits and "
                              "multilabel_logits")
        drifts.append(OutputDrift(out.name, out.kind, float(diff.max()), float(diff.mean()), agree, metric,
                                  round(float(m32), 6), round(float(m8), 6)))
    if np.isnan(acc32):
        raise ConfigError(f"package '{package.name}' has no class_logits output; the gate judges action accuracy")
    drop = round(100.0 * (acc32 - acc8), 4)
    return GateResult(variant, len(ev), ev.seed, max_drop_points, acc32, acc8, drop, drop <= max_drop_points, drifts,
                      ev.source)


def dataset_eval_set(package: ModelPackage, root: str | Path, samples: int) -> EvalSet:
    """The ``val`` split of the recorded dataset at ``root`` (up to ``samples`` windows) as held-out set."""
    from calibration.datasets import dataset_feeds

    if samples < 1:
        raise ConfigError(f"--eval-samples must be at least 1, got {samples}")
    feeds, labels, desc = dataset_feeds(package, root, "val", limit=samples)
    h = hashlib.sha256(desc["dataset_sha256"].encode())
    for k in sorted(feeds):
        h.update(np.ascontiguousarray(feeds[k]).tobytes())
    return EvalSet(feeds, labels["action"].astype(np.int64), labels["events"], None, h.hexdigest(), False,
                   f"dataset {root} (val)")
