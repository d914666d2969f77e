"""``edgefusion eval``'s parts, fast: rules, per-label scoring, pooling, the cache, shipping, the CLI's refusals.

The end-to-end runs (local processes and Ray on synthesized logs) are in test_eval_fleet.py.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from edgefusion.cli import main
from edgefusion.errors import ConfigError, MissingDependencyError, PackageError
from edgefusion.fleet import ship
from edgefusion.fleet.cache import ResultsCache
from edgefusion.fleet.labels import label_scores, score_label
from edgefusion.fleet.latency import histogram_json, merge
from edgefusion.fleet.recordings import find_recordings
from edgefusion.fleet.rules import check_labels, evaluate_rules, load_rules, parse_rule
from edgefusion.fleet.summary import deltas, pool, recording_rows
from edgefusion.samples import Result
from edgefusion.scoring import score_events

# -- rules -------------------------------------------------------------------------------


def test_rules_parse_and_refuse_with_one_line():
    r = parse_rule("  delta.recall.event:smoke_alarm >= -1e-2 ")
    assert (r.metric, r.label, r.delta, r.op, r.value) == ("recall", "event:smoke_alarm", True, ">=", -0.01)
    assert parse_rule("latency_p99_ms > 40").label is None
    with pytest.raises(ConfigError, match=r"expected \[delta.\]METRIC"):
        parse_rule("recall.smoke_alarm is low")
    with pytest.raises(ConfigError, match="did you mean 'recall'"):
        parse_rule("recal.smoke_alarm < 0.9")
    with pytest.raises(ConfigError, match="metric of a label"):
        parse_rule("accuracy.smoke_alarm < 0.9")  # accuracy is per frame, for the actions together
    with pytest.raises(ConfigError, match="no delta"):
        parse_rule("delta.failed > 0")


def test_thresholds_file(tmp_path):
    f = tmp_path / "t.toml"
    f.write_text('fail_if = ["recall.smoke_alarm < 0.98", "failed > 0"]\n')
    assert [r.text for r in load_rules(f)] == ["recall.smoke_alarm < 0.98", "failed > 0"]
    f.write_text('fail_if = ["recall < 1"]\nwarn_if = []\n')
    with pytest.raises(ConfigError, match="unknown keys: warn_if"):
        load_rules(f)
    f.write_text("fail_if = [")
    with pytest.raises(ConfigError, match="--thresholds"):
        load_rules(f)


def test_rules_read_a_the_delta_and_fail_without_evidence():
    summary = {"labels": {"smoke_alarm": {"recall": 0.5, "precision": None}},
               "overall": {"accuracy": 0.9, "latency_ms": {"end_to_end": {"p99": 30.0}, "inference": {}}}}
    delta = {"labels": {"smoke_alarm": {"recall": -0.25}}, "overall": {"end_to_end_p99_ms": 5.0}}
    rules = [parse_rule(t) for t in ("recall.smoke_alarm < 0.98", "precision.smoke_alarm < 0.9", "accuracy < 0.8",
                                     "latency_p99_ms > 40", "delta.recall.smoke_alarm < -0.2",
                                     "delta.latency_p99_ms > 10", "failed > 0")]
    got = {r["rule"]: r for r in evaluate_rules(rules, summary, delta, failed=1)}
    assert [k for k, r in got.items() if r["failed"]] == ["recall.smoke_alarm < 0.98", "precision.smoke_alarm < 0.9",
                                                          "delta.recall.smoke_alarm < -0.2", "failed > 0"]
    assert "cannot be measured" in got["precision.smoke_alarm < 0.9"]["verdict"]
    assert got["delta.latency_p99_ms > 10"]["value"] == 5.0
    check_labels(rules[:1], ["smoke_alarm"], compared=True)
    with pytest.raises(ConfigError, match="did you mean 'smoke_alarm'"):
        check_labels([parse_rule("recall.smoke_alarn < 1")], ["smoke_alarm", "doorbell"], compared=True)
    with pytest.raises(ConfigError, match="a delta needs a B"):
        check_labels(rules[4:5], ["smoke_alarm"], compared=False)


# -- per-label scoring -------------------------------------------------------------------


def _stream(seed: int, n: int = 400) -> tuple[list[Result], list[str], list[set[str]]]:
    """A random but blocky truth and a prediction that follows it with delays, misses and false alarms."""
    rng = np.random.default_rng(seed)
    actions, events = ["none", "go", "stop"], ["bell", "smoke"]
    truth_a, truth_e, a, e = [], [], "none", set()
    for _ in range(n):
        if rng.random() < 0.06:
            a = str(rng.choice(actions))
        if rng.random() < 0.05:
            e = {str(x) for x in events if rng.random() < 0.4}
        truth_a.append(a)
        truth_e.append(set(e))
    results, last = [], None
    for i in range(n):
        j = max(0, i - int(rng.integers(0, 4)))
        act = truth_a[j] if rng.random() > 0.05 else str(rng.choice(actions))
        ev = tuple(sorted(truth_e[j] ^ ({"bell"} if rng.random() < 0.03 else set())))
        results.append(Result(t_ns=i * 33_333_333, seq=i, action=act, action_score=1.0, scores={}, events=ev,
                              emitted=act != last))
        last = act
    return results, truth_a, truth_e


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_action_labels_partition_replay_checks_score(seed):
    """Summed over the actions, the per-label counts are score_events' (what replay --check reports)."""
    results, truth_a, truth_e = _stream(seed)
    per = label_scores(results, truth_a, truth_e, ["none", "go", "stop"], ["bell", "smoke"])
    t = [r.t_ns for r in results]
    whole = score_events(truth_a, t, [r.action for r in results], [(r.t_ns, r.action) for r in results if r.emitted])
    acts = [v for v in per.values() if v["kind"] == "action"]
    for k in ("segments", "detected", "emitted", "true_positives"):
        assert sum(v[k] for v in acts) == whole[k], k
    reactions = sorted(x for v in acts for x in v["reaction_ns"])
    assert float(np.median(reactions)) == whole["median_reaction_ns"]
    assert whole["precision"] < 1 and whole["segments"] > 5  # the stream is not trivial
    assert per["bell"]["kind"] == "event" and per["bell"]["segments"] > 0


def test_score_label_counts_short_segments_for_precision_not_recall():
    t = list(range(0, 10))
    truth = [False, True, True, False, False, True, True, True, True, False]
    pred = [False, False, False, False, False, False, False, True, True, False]
    s = score_label(truth, pred, [1, 7, 9], t, min_frames=3, tolerance_ns=0)
    assert (s["segments"], s["detected"], s["emitted"], s["true_positives"], s["reaction_ns"]) == (1, 1, 3, 2, [2])


def test_an_event_named_like_an_action_is_kept_apart():
    r = [Result(t_ns=i, seq=i, action="alarm", action_score=1.0, scores={}, events=("alarm",)) for i in range(5)]
    per = label_scores(r, ["alarm"] * 5, [{"alarm"}] * 5, ["alarm"], ["alarm"])
    assert per["alarm"]["kind"] == "action" and per["event:alarm"]["kind"] == "event"


# -- pooling, deltas, worst first --------------------------------------------------------


def _entry(scenario: str, det: int, seg: int, acc: float, e2e_ms: float) -> dict:
    lat = histogram_json([int(e2e_ms * 1e6)] * 10)
    return {"scenario": scenario, "frames": 10, "latency": {"end_to_end": lat, "inference": lat},
            "check": {"truth": {"frames": 10, "action_accuracy": acc, "precision": 1.0, "recall": det / seg}},
            "labels": {"go": {"kind": "action", "segments": seg, "detected": det, "emitted": det, "true_positives": det,
                              "reaction_ns": [1_000_000] * det},
                       "bell": {"kind": "event", "segments": 0, "detected": 0, "emitted": 0, "true_positives": 0,
                                "reaction_ns": []}}}


def test_pool_adds_counts_not_ratios():
    s = pool([_entry("x", 1, 1, 1.0, 2.0), _entry("y", 1, 3, 0.5, 4.0)])
    assert s["labels"]["go"]["recall"] == 0.5  # 2 of 4 segments, not the mean of 1 and 1/3
    assert s["labels"]["bell"]["recall"] is None and s["labels"]["bell"]["precision"] is None
    assert s["overall"]["accuracy"] == 0.75 and s["overall"]["recordings"] == 2
    assert s["overall"]["latency_ms"]["end_to_end"]["count"] == 20
    assert set(s["scenarios"]) == {"x", "y"} and s["scenarios"]["y"]["recall"] == pytest.approx(1 / 3)


def test_deltas_and_worst_recordings_first():
    a = {"r1": _entry("x", 3, 3, 0.9, 2.0), "r2": _entry("x", 1, 3, 0.9, 2.0)}
    b = {"r1": _entry("x", 2, 3, 0.9, 1.0), "r2": _entry("x", 3, 3, 0.9, 1.0)}
    d = deltas(pool(list(a.values())), pool(list(b.values())))
    assert d["labels"]["go"]["recall"] == pytest.approx(-1 / 6, abs=1e-6) and d["labels"]["bell"]["recall"] is None
    assert d["overall"]["end_to_end_p50_ms"] == pytest.approx(1.0, rel=0.02)
    rows = recording_rows({k: {"A": a[k], "B": b[k]} for k in a}, ["A", "B"])
    assert [r["recording"] for r in rows] == ["r2", "r1"]  # r2 lost recall under A
    assert rows[0]["delta"]["recall"] == pytest.approx(-2 / 3, abs=1e-6)
    single = recording_rows({k: {"A": a[k]} for k in a}, ["A"])
    assert [r["recording"] for r in single] == ["r2", "r1"] and "delta" not in single[0]


def test_latency_histograms_merge():
    h = merge([histogram_json(range(1_000_000, 2_000_000, 10_000)), histogram_json([50_000_000]), {"count": 0}])
    assert h.count == 101 and h.max == 50_000_000 and abs(h.percentile(50) - 1.5e6) < 0.02 * 1.5e6


# -- cache, recordings, shipping ---------------------------------------------------------


def test_cache_keys_entries_and_survives_garbage(tmp_path):
    c = ResultsCache(tmp_path)
    k1 = c.key("a" * 64, "b" * 64, "fp32", "onnxruntime")
    assert k1 != c.key("a" * 64, "b" * 64, "int8", "onnxruntime") != c.key("a" * 64, "c" * 64, "fp32", "onnxruntime")
    c.put(k1, {"frames": 3})
    assert c.get(k1) == {"frames": 3, "cache_key": k1}
    (tmp_path / f"{k1}.json").write_text("{torn")
    assert c.get(k1) is None and c.unreadable == 1
    (tmp_path / f"{k1}.json").write_text(json.dumps({"cache_key": "other"}))
    assert c.get(k1) is None and c.unreadable == 2
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_find_recordings(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for p in ("a/2.mcap", "a/b/1.mcap", "a/notes.txt"):
        (tmp_path / p).write_bytes(b"x")
    got = find_recordings([str(tmp_path / "a"), str(tmp_path / "a" / "b" / "1.mcap")])
    assert got == [str(tmp_path / "a/2.mcap"), str(tmp_path / "a/b/1.mcap")]  # sorted, once each
    with pytest.raises(ConfigError, match="object-store URLs are not supported yet"):
        find_recordings(["s3://bucket/x.mcap"])
    with pytest.raises(ConfigError, match="no such file"):
        find_recordings([str(tmp_path / "missing.mcap")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"without \.mcap logs"):
        find_recordings([str(tmp_path / "empty")])


def test_packages_ship_as_bytes_unpack_once_and_are_verified(tmp_path, monkeypatch, pkg_copy):
    monkeypatch.setattr(ship.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    monkeypatch.setattr(ship, "_LOADED", {})
    monkeypatch.setattr(ship, "_INSTALLED", {})
    sha = ship.package_sha256(pkg_copy)
    ship.install({sha: ship.pack(pkg_copy)})
    pkg = ship.materialize(ship.Shipment(sha, "sh"))
    assert pkg.path == tmp_path / "tmp" / "edgefusion-fleet" / sha
    assert ship.materialize(ship.Shipment(sha, "sh")) is pkg  # once per process
    with pytest.raises(PackageError, match="was not shipped"):
        ship.materialize(ship.Shipment("0" * 64, "other"))
    files = ship.pack(pkg_copy)
    files["../evil"] = b"x"
    ship.install({"1" * 64: files})
    with pytest.raises(PackageError, match="leaves the package"):
        ship.materialize(ship.Shipment("1" * 64, "evil"))
    assert not [p for p in (tmp_path / "tmp" / "edgefusion-fleet").iterdir() if p.name.startswith(".")]


def test_ray_missing_names_the_extra(monkeypatch):
    from edgefusion.fleet.runners import RayRunner

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'edgefusion\[fleet\]'"):
        RayRunner("auto")


# -- the command's refusals (before any work) --------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--variant", "fp32,int8,x"], "--variant: expected VARIANT or A_VARIANT,B_VARIANT"),
    (["--variant", "fp16"], "unknown variant of package"),
    (["--against", "smart_home"], "A and B are both smart_home fp32"),
    (["--fail-if", "recall.smoke < 0.9"], "did you mean 'smoke_alarm'"),
    (["--fail-if", "delta.recall < 0"], "a delta needs a B"),
    (["--workers", "0"], "--workers must be at least 1"),
])
def test_eval_refuses_bad_options_with_one_line(tmp_path, capsys, args, message):
    log = tmp_path / "x.mcap"
    log.write_bytes(b"not yet read")
    assert main(["eval", "smart_home", str(log), "--out", str(tmp_path / "o"), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "report.json").exists()


def test_eval_refuses_an_out_it_cannot_write_before_any_work(tmp_path, capsys):
    (tmp_path / "f").write_text("a file")
    for out, message in ((tmp_path / "f", "is a file; give a folder for the reports"),
                         ("/proc/edgefusion-eval", "cannot write there")):
        assert main(["eval", "smart_home", str(tmp_path), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {out}") and message in err and err.count("\n") == 1


def test_eval_auto_against_a_package_is_refused(tmp_path, capsys):
    assert main(["eval", "auto", str(tmp_path), "--against", "smart_home", "--quiet"]) == 2
    assert "--against PACKAGE needs a named PACKAGE" in capsys.readouterr().err


def test_eval_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    for text in ("exit status:", "3  partial", "--ray auto", "--variant fp32,int8", "recall.smoke_alarm < 0.98"):
        assert text in out
