"""``edgefusion label``: span files onto logs, everything else kept; ``log info`` label coverage; bad input."""

from __future__ import annotations

import json
import os
import stat

import pytest
from labelled_logs import S, messages, plain_log
from mcap.reader import SeekingReader

from edgefusion.cli import main
from edgefusion.logs import LogReader, LogWriter
from edgefusion.logs.edit import label_log
from edgefusion.logs.recorder import Recorder
from edgefusion.logs.timeline import write_synth
from edgefusion.sources.replay import ReplaySource

HEADER = "start_s,end_s,kind,label\n"


@pytest.fixture
def log(tmp_path):
    return plain_log(tmp_path / "kitchen.mcap")


def _spans(tmp_path, rows, name="spans.csv"):
    p = tmp_path / name
    p.write_text(HEADER + "".join(r + "\n" for r in rows))
    return p


def _attachments(path):
    with open(path, "rb") as f:
        r = SeekingReader(f)
        return [(a.name, a.media_type, a.log_time, a.data) for a in r.iter_attachments()], \
            [(m.name, dict(m.metadata)) for m in r.iter_metadata()]


def _one_error(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_label_writes_a_copy_with_the_spans_and_keeps_every_other_record(log, tmp_path, capsys):
    spans = _spans(tmp_path, ["0.1,0.6,event,person", "0.2,0.9,intent,lights_on", "# a comment",
                              "0.5,0.7,action,lights_on"])
    before = log.read_bytes()
    assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home"]) == 0
    out = tmp_path / "kitchen.labelled.mcap"
    printed = capsys.readouterr().out
    assert f"wrote {out}: 4 label spans (event 1, intent 1, action 1, coverage 1) on /labels" in printed
    assert log.read_bytes() == before  # the input is never rewritten without --in-place
    assert messages(out) == messages(log)
    assert _attachments(out) == _attachments(log)
    with LogReader(out) as r:
        track = r.labels()
        info = r.info()
    assert track is not None
    # span-file times count from the log's first message; the track is on the log's own clock
    person = track.of("event", "person")[0]
    assert (person.start_ns, person.end_ns, person.source) == (5 * S + S // 10, 5 * S + 6 * S // 10, "human")
    cov = track.of("coverage")[0]
    assert (cov.start_ns, cov.end_ns) == (info.start_ns, info.end_ns + 1)  # --coverage all: the whole log
    assert {c["topic"]: c["schema"] for c in info.channels}["/labels"] == "edgefusion.Label"


def test_label_in_place_replaces_the_track_and_out_must_differ_from_the_input(log, tmp_path, capsys):
    first = _spans(tmp_path, ["0.1,0.6,event,person"], "a.csv")
    second = _spans(tmp_path, ["0,0.5,coverage,", "0.2,0.3,event,dark"], "b.csv")
    original = messages(log)
    assert main(["label", str(log), "--spans", str(first), "--task", "smart_home", "--in-place"]) == 0
    assert main(["label", str(log), "--spans", str(second), "--task", "smart_home", "--in-place"]) == 0
    assert "2 earlier label spans replaced" in capsys.readouterr().out
    with LogReader(log) as r:
        track = r.labels()
    assert track is not None and [(s.kind, s.label) for s in track] == [("coverage", ""), ("event", "dark")]
    assert messages(log) == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv", "kitchen.mcap"]  # no temp files
    assert main(["label", str(log), "--spans", str(first), "--task", "smart_home", "--out", str(log)]) == 2
    assert "is the input log; pass --in-place to replace it" in _one_error(capsys)
    assert main(["label", str(log), "--spans", str(first), "--task", "smart_home", "--out", "x.mcap",
                 "--in-place"]) == 2
    assert "either --in-place or --out" in _one_error(capsys)
    assert main(["label", str(log), "--spans", str(first), "--task", "smart_home", "--out",
                 str(tmp_path / "missing" / "x.mcap")]) == 2
    assert f"the folder {tmp_path / 'missing'} does not exist" in _one_error(capsys)


def test_a_labelled_copy_is_readable_as_other_outputs_are(log, tmp_path):
    spans = _spans(tmp_path, ["0.1,0.2,event,dark"])
    old = os.umask(0o022)
    try:
        out = tmp_path / "copy.mcap"
        label_log(log, spans, "smart_home", out=out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # not tempfile's 0600
        log.chmod(0o640)
        label_log(log, spans, "smart_home", in_place=True)
        assert stat.S_IMODE(log.stat().st_mode) == 0o640  # --in-place keeps the log's own mode
    finally:
        os.umask(old)


def test_coverage_modes(log, tmp_path):
    partial = _spans(tmp_path, ["0,0.4,coverage,", "0.1,0.2,event,dark"])
    _, auto = label_log(log, partial, "smart_home", out=tmp_path / "a.mcap")
    assert auto.intervals("coverage").tolist() == [[5 * S, 5 * S + 4 * S // 10]]
    _, whole = label_log(log, partial, "smart_home", out=tmp_path / "b.mcap", coverage="all")
    assert whole.seconds("coverage") > 0.9
    none = _spans(tmp_path, ["0.1,0.2,event,dark"], "none.csv")
    with pytest.raises(Exception, match="--coverage spans but the file has no coverage row"):
        label_log(log, none, "smart_home", out=tmp_path / "c.mcap", coverage="spans")


def test_log_info_shows_label_coverage(log, tmp_path, capsys):
    spans = _spans(tmp_path, ["0,0.5,coverage,", "0.1,0.3,event,person", "0.2,0.4,event,person",
                              "0.25,0.35,event,doorbell"])
    out = tmp_path / "l.mcap"
    label_log(log, spans, "smart_home", out=out)
    assert main(["log", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "labels: 4 spans by human; coverage 0.500 s = 51.7% of the log" in text  # 0.5 of 29 frame periods
    assert "  event     person                      2      0.300\n" in text
    assert "  event     doorbell                    1      0.100\n" in text
    assert main(["log", "info", str(out), "--json"]) == 0
    labels = json.loads(capsys.readouterr().out)["labels"]
    assert labels["spans"] == 4 and labels["per_label"][0] == {"kind": "event", "label": "doorbell", "spans": 1,
                                                                "seconds": 0.1}
    assert main(["log", "info", str(log)]) == 0
    assert "labels: none (no /labels track" in capsys.readouterr().out


def test_spans_outside_the_log_are_named_by_row(log, tmp_path, capsys):
    spans = _spans(tmp_path, ["0.1,0.5,event,person", "12,13,event,dark", "0.5,2.5,event,person"])
    assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {spans}: 2 of 3 spans are bad:",
        "  row 3: span 12.000–13.000 s starts after the log ends (0.967 s)",
        "  row 4: span 0.500–2.500 s ends after the log (0.967 s long; a span may end at most 1 s past its last "
        "message)"]
    assert not (tmp_path / "kitchen.labelled.mcap").exists()


def test_unknown_label_names_get_the_tasks_names_and_a_suggestion(log, tmp_path, capsys):
    spans = _spans(tmp_path, ["0.1,0.5,event,persn"])
    assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home"]) == 2
    err = capsys.readouterr().err
    assert "row 2: task 'smart_home': unknown event 'persn'; did you mean 'person'? (known: dark, door_open, " \
           "doorbell, glass_break, person, smoke_alarm, speech)" in err
    spans = _spans(tmp_path, ["0.1,0.5,event,siren"])
    assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home"]) == 2
    assert "unknown event 'siren'" in capsys.readouterr().err


def test_a_csv_with_bad_rows_is_refused_whole(log, tmp_path, capsys):
    spans = _spans(tmp_path, ["0.1,0.5,event,person", "oops", "0.4,0.2,event,dark", "0.1,0.2,evnt,dark"])
    assert main(["label", str(log), "--spans", str(spans), "--task", "smart_home"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: {spans}: 3 of 4 rows are bad:"
    assert [ln.split(":")[0] for ln in lines[1:]] == ["  row 3", "  row 4", "  row 5"]


def test_a_file_that_is_not_mcap(tmp_path, capsys):
    bad = tmp_path / "notes.mcap"
    bad.write_text("these are my notes, not a log\n")
    spans = _spans(tmp_path, ["0,1,event,dark"])
    assert main(["label", str(bad), "--spans", str(spans), "--task", "smart_home"]) == 2
    assert f"{bad} is not an MCAP file" in _one_error(capsys)


def test_a_truncated_log_is_refused(log, tmp_path, capsys):
    torn = tmp_path / "torn.mcap"
    torn.write_bytes(log.read_bytes()[: log.stat().st_size // 2])
    spans = _spans(tmp_path, ["0,0.1,event,dark"])
    assert main(["label", str(torn), "--spans", str(spans), "--task", "smart_home"]) == 2
    assert "is truncated" in _one_error(capsys)


def test_a_recorder_copies_label_spans_from_a_replay(tmp_path):
    # what `replay --record` does with /truth; wiring /labels the same way keeps a labelled log's labels
    synth, _ = write_synth("smart_home", 2.0, 3, tmp_path / "s.mcap")
    rec = Recorder(LogWriter(tmp_path / "copy.mcap"), lossless=True)
    src = ReplaySource(synth)
    src.passthrough["/labels"] = rec.label
    with src:
        for _ in src:
            pass
    rec.close()
    with LogReader(synth) as a, LogReader(tmp_path / "copy.mcap") as b:
        assert b.labels() == a.labels() and len(a.labels() or ()) > 3
    rec = Recorder(LogWriter(tmp_path / "shifted.mcap"))
    rec.label(10 * S, {"start_ns": 2 * S, "end_ns": 3 * S, "kind": "event", "label": "dark", "source": "synth"})
    rec.close()
    with LogReader(tmp_path / "shifted.mcap") as r:
        (span,) = r.labels() or ()
    assert (span.start_ns, span.end_ns) == (10 * S, 11 * S)  # a looping replay moves spans with its time


def test_the_span_file_in_the_help_parses(tmp_path):
    from edgefusion.cli.data import LABEL_EPILOG
    from edgefusion.labels import parse_spans_csv

    block = LABEL_EPILOG.split("comment:\n\n", 1)[1].split("\n\n", 1)[0]
    track = parse_spans_csv(_spans(tmp_path, [line.strip() for line in block.splitlines()[1:]]), "smart_home")
    assert [(s.kind, s.label) for s in track] == [("coverage", ""), ("event", "doorbell"), ("intent", "lights_on"),
                                                  ("action", "lock_door")]
