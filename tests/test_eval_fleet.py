"""``edgefusion eval`` end to end on synthesized logs: local processes and a real local Ray (2 CPUs).

Ray tests are skipped without the 'fleet' extra; everything else runs on local processes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgefusion.cli import main
from edgefusion.fleet import EXIT_OK, EXIT_PARTIAL, EXIT_REGRESSION, EvalConfig, evaluate, parse_rule
from edgefusion.logs import LogReader, LogWriter, decode
from edgefusion.logs.timeline import write_synth

SCENARIOS = [("smart_home", 1), ("smart_home", 2), ("smart_home", 3), ("driving", 1), ("driving", 2), ("driving", 3)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """6 synthesized logs, both scenarios, with truth (4 s each, in two folders)."""
    root = tmp_path_factory.mktemp("fleet")
    for scenario, seed in SCENARIOS:
        (root / scenario).mkdir(exist_ok=True)
        write_synth(scenario, 4.0, seed, root / scenario / f"{scenario}_{seed}.mcap")
    return root


def _scores(report: dict) -> dict:
    """What must not depend on where the tasks ran: per recording, the check and the per-label counts."""
    return {Path(r["recording"]).name: {s: {"check": r[s]["check"], "labels": r[s]["labels"]} for s in ("A", "B")
                                        if s in r} for r in report["per_recording"]}


def _replay_check_lines(log: Path, capsys, *extra: str) -> list[str]:
    capsys.readouterr()
    assert main(["replay", str(log), "--check", *extra]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.slow
def test_ray_and_local_processes_score_alike_and_as_replay_check(fleet, tmp_path, capsys):
    pytest.importorskip("ray")
    local = evaluate(EvalConfig("auto", [str(fleet)], workers=2, out=tmp_path / "local", progress=False))
    on_ray = evaluate(EvalConfig("auto", [str(fleet)], ray="auto", workers=2, out=tmp_path / "ray", progress=False))
    assert local.exit_code == on_ray.exit_code == EXIT_OK
    runner = on_ray.report["runner"]
    assert (runner["kind"], runner["workers"], runner["address"]) == ("ray", 2, "auto")
    assert runner["start_s"] > 0 and runner["run_s"] > 0 and runner["stop_s"] >= 0
    assert local.report["recordings"] == on_ray.report["recordings"] == \
        {"total": 6, "scored": 6, "failed": 0, "cached": 0, "ran": 6}
    assert _scores(local.report) == _scores(on_ray.report)
    assert local.report["summary"]["A"]["labels"] == on_ray.report["summary"]["A"]["labels"]
    assert set(local.report["summary"]["A"]["scenarios"]) == {"smart_home", "driving"}
    for rec in local.report["per_recording"]:
        check = rec["A"]["check"]
        assert rec["A"]["truth_source"] == "/truth" and check["truth"]["frames"] == 4 * 30
        assert check["lines"] == _replay_check_lines(Path(rec["recording"]), capsys)
    import ray

    assert not ray.is_initialized()  # the local instance was stopped


@pytest.mark.slow
def test_ab_fp32_against_int8_delta_table_and_a_failing_rule(fleet, tmp_path, capsys):
    out = tmp_path / "ab"
    args = ["eval", "smart_home", str(fleet / "smart_home"), "--variant", "fp32,int8", "--out", str(out), "--quiet",
            "--fail-if", "accuracy < 1.01", "--fail-if", "recall.smoke_alarm < 0"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == EXIT_REGRESSION
    stdout = capsys.readouterr().out
    assert "FAIL accuracy < 1.01: measured" in stdout and "pass recall.smoke_alarm < 0: measured" in stdout
    assert "REGRESSION: accuracy < 1.01 (measured" in stdout and "REGRESSION: recall.smoke_alarm" not in stdout
    report = json.loads((out / "report.json").read_text())
    assert [p["variant"] for s in ("A", "B") for p in report["sides"][s]["packages"]] == ["fp32", "int8"]
    labels = report["delta"]["labels"]
    assert {"smoke_alarm", "emergency", "doorbell", "none"} <= set(labels)
    for name, d in labels.items():
        a, b = report["summary"]["A"]["labels"][name], report["summary"]["B"]["labels"][name]
        for m in ("precision", "recall"):
            assert d[m] == (None if a[m] is None or b[m] is None else pytest.approx(a[m] - b[m], abs=1e-6))
    md = (out / "report.md").read_text()
    assert "| label | kind | segments | A precision | A recall | A reaction ms | B precision" in md
    assert "| smoke_alarm | event |" in md and "Δ recall" in md and "**Verdict: REGRESSION" in md
    assert {p.name for p in out.glob("*.png")} == {"labels.png", "recordings.png"}


@pytest.mark.slow
def test_a_corrupt_recording_is_reported_the_others_scored_and_a_rerun_resumes(fleet, tmp_path, capsys):
    logs = tmp_path / "logs"
    logs.mkdir()
    for name in ("smart_home_1", "driving_2"):
        (logs / f"{name}.mcap").write_bytes((fleet / name.rsplit("_", 1)[0] / f"{name}.mcap").read_bytes())
    (logs / "corrupt.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 40)
    recorded = logs / "recorded.mcap"  # holds results: its check compares with them too
    assert main(["replay", str(fleet / "smart_home" / "smart_home_2.mcap"), "--record", str(recorded)]) == 0
    out = tmp_path / "out"
    args = ["eval", "auto", str(logs), "--out", str(out), "--quiet", "--no-plots"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == EXIT_PARTIAL
    stdout = capsys.readouterr().out
    # the careful reader names the first broken record and its byte offset
    assert f"could not score {logs / 'corrupt.mcap'}: " in stdout and "byte 8: record of" in stdout
    assert "PARTIAL: 1 of 4 recordings could not be scored; no rules on the 3 others" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["recordings"] == {"total": 4, "scored": 3, "failed": 1, "cached": 0, "ran": 3}
    assert report["exit_code"] == EXIT_PARTIAL and "3" in report["exit_codes"]
    by_name = {Path(r["recording"]).name: r for r in report["per_recording"]}
    assert by_name["recorded.mcap"]["A"]["check"]["recorded"] == 4 * 30 and by_name["recorded.mcap"]["A"]["check"]["ok"]
    assert "MATCH: 120 of 120 compared" in by_name["recorded.mcap"]["A"]["check"]["lines"][0]
    assert "Recordings that could not be scored" in (out / "report.md").read_text()

    (logs / "corrupt.mcap").unlink()  # fixed: the rerun takes the others from the cache and passes
    assert main(args) == EXIT_OK
    again = json.loads((out / "report.json").read_text())
    assert again["recordings"] == {"total": 3, "scored": 3, "failed": 0, "cached": 3, "ran": 0}
    first = _scores(report)
    del first["corrupt.mcap"]
    assert _scores(again) == first


def _without_truth(src: Path, dst: Path) -> Path:
    """A copy of a synthesized log without /truth: its /labels are the only truth left."""
    with LogReader(src) as r:
        meta = r.info().metadata
        track = r.labels()
        samples = [decode(m) for m in r.messages(topics=["/camera", "/audio", "/text"])]
    with LogWriter(dst) as w:
        for name, md in meta.items():
            w.metadata(name, md)
        w.labels(track)
        for s in samples:
            {"Frame": w.frame, "AudioChunk": w.audio, "Command": w.command}[type(s).__name__](s, s.t_ns)
    return dst


def test_labels_score_like_the_truth_they_were_written_from(fleet, tmp_path):
    """Without /truth, the per-label scores come from /labels (the task's labelling rule): synth's spans
    invert its truth, so the scores are the same."""
    log = fleet / "smart_home" / "smart_home_3.mcap"
    rules = [parse_rule("recall.doorbell < 0")]
    cfg = EvalConfig("smart_home", [str(log), str(_without_truth(log, tmp_path / "labels_only.mcap"))], workers=1,
                     out=tmp_path / "o", progress=False, plots=False, rules=rules)
    report = evaluate(cfg).report
    with_truth, labels_only = (r["A"] for r in report["per_recording"])
    assert (with_truth["truth_source"], labels_only["truth_source"]) == ("/truth", "/labels")
    assert labels_only["labels"] == with_truth["labels"] and labels_only["truth_frames"] == 4 * 30
