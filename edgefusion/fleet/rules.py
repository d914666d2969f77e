"""The regression verdict: ``--fail-if`` rules, on the command line or in a TOML file.

A rule is ``[delta.]METRIC[.LABEL] OP NUMBER`` and *fails the evaluation* when it holds:

- ``recall.smoke_alarm < 0.98``: the fleet's recall of ``smoke_alarm`` below 0.98;
- ``delta.recall < -0.02``: A's recall of the actions 0.02 or more below B's;
- ``latency_p99_ms > 40``: A's 99th-percentile end-to-end latency above 40 ms;
- ``failed > 0``: a recording could not be scored (normally the "partial" exit status).

METRIC with a LABEL: ``precision``, ``recall``, ``reaction_ms`` (median). Without one (the
actions together): those, ``accuracy`` (per frame), ``latency_p50_ms``, ``latency_p99_ms``,
``inference_p50_ms``, ``inference_p99_ms`` and ``failed``. Rules read A, the package
evaluated; ``delta.`` reads A minus B (needs ``--against`` or a second variant). A metric that
cannot be measured (no ``smoke_alarm`` in the recordings) fails its rule: no evidence is not a pass.

A thresholds file holds the same rules as a list::

    # thresholds.toml
    fail_if = ["recall.smoke_alarm < 0.98", "delta.recall < -0.02"]

Example:
    >>> r = parse_rule("recall.smoke_alarm < 0.98")
    >>> r.metric, r.label, r.op, r.value, r.holds(0.9)
    ('recall', 'smoke_alarm', '<', 0.98, True)
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefusion.errors import ConfigError, unknown_name

__all__ = ["LABEL_METRICS", "OVERALL_METRICS", "Rule", "check_labels", "evaluate_rules", "load_rules", "parse_rule"]

LABEL_METRICS = ("precision", "recall", "reaction_ms")
OVERALL_METRICS = (*LABEL_METRICS, "accuracy", "latency_p50_ms", "latency_p99_ms", "inference_p50_ms",
                   "inference_p99_ms", "failed")
OPS: dict[str, Callable[[float, float], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt,
                                                  ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_RULE = re.compile(r"^\s*(delta\.)?([a-z0-9_]+)(?:\.([A-Za-z0-9_:-]+))?\s*(<=|>=|==|!=|<|>)\s*"
                   r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Rule:
    """One ``--fail-if`` rule; it fails the evaluation when ``holds(value)``."""

    text: str
    metric: str
    label: str | None
    delta: bool
    op: str
    value: float

    def holds(self, measured: float) -> bool:
        return OPS[self.op](measured, self.value)


def parse_rule(text: str) -> Rule:
    """Parse ``[delta.]METRIC[.LABEL] OP NUMBER``.

    Raises:
        ConfigError: not that form, or an unknown metric.
    """
    m = _RULE.match(text)
    if m is None:
        raise ConfigError(f"--fail-if {text!r}: expected [delta.]METRIC[.LABEL] OP NUMBER with OP one of "
                          f"{' '.join(OPS)}, e.g. \"recall.smoke_alarm < 0.98\"")
    delta, metric, label, op, value = m.groups()
    known = LABEL_METRICS if label else OVERALL_METRICS
    if metric not in known:
        raise unknown_name("metric" + (" of a label" if label else ""), metric, known)
    if delta and metric == "failed":
        raise ConfigError(f"--fail-if {text!r}: 'failed' counts recordings of A; it has no delta")
    return Rule(text.strip(), metric, label, bool(delta), op, float(value))


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of a thresholds file (``fail_if = [...]``).

    Raises:
        ConfigError: the file cannot be read, is not TOML, or holds something else.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--thresholds {path}: {exc}") from exc
    extra = sorted(set(data) - {"fail_if"})
    rules = data.get("fail_if")
    if extra or not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise ConfigError(f"--thresholds {path}: expected only fail_if = [\"METRIC.LABEL < NUMBER\", ...]"
                          + (f"; unknown keys: {', '.join(extra)}" if extra else ""))
    return [parse_rule(r) for r in rules]


def check_labels(rules: Sequence[Rule], labels: Sequence[str], compared: bool) -> None:
    """Refuse, before any work, a rule on a label no package knows or a delta without a B.

    Raises:
        ConfigError: naming the rule.
    """
    for r in rules:
        if r.label is not None and r.label not in labels:
            raise ConfigError(f"--fail-if {r.text!r}: {unknown_name('label', r.label, labels)}")
        if r.delta and not compared:
            raise ConfigError(f"--fail-if {r.text!r}: a delta needs a B (--against PACKAGE or --variant A,B)")


def _measure(rule: Rule, summary: dict[str, Any], failed: int) -> float | None:
    if rule.metric == "failed":
        return float(failed)
    if rule.label is not None:
        value = summary["labels"].get(rule.label, {}).get(rule.metric)
        return None if value is None else float(value)
    name = rule.metric
    if name.endswith("_ms") and name.split("_")[0] in ("latency", "inference"):
        stage = "end_to_end" if name.startswith("latency") else "inference"
        q = name.split("_")[1]
        if rule.delta:
            value = summary["overall"].get(f"{stage}_{q}_ms")
        else:
            value = summary["overall"]["latency_ms"][stage].get(q)
    else:
        value = summary["overall"].get(name)
    return None if value is None else float(value)


def evaluate_rules(rules: Sequence[Rule], summary_a: dict[str, Any], delta: dict[str, Any] | None,
                   failed: int) -> list[dict[str, Any]]:
    """Each rule with ``value`` (measured), ``failed`` and a one-line ``verdict``."""
    out = []
    for r in rules:
        value = _measure(r, delta if r.delta and delta is not None else summary_a, failed)
        if value is None:
            verdict = f"FAIL {r.text}: cannot be measured (nothing to count in the scored recordings)"
            failing = True
        else:
            failing = r.holds(value)
            verdict = f"{'FAIL' if failing else 'pass'} {r.text}: measured {value:.6g}"
        out.append({"rule": r.text, "value": value, "failed": failing, "verdict": verdict})
    return out
