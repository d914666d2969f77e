"""Label spans, span files, the window labelling rule, and synthesized truth as spans."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

from edgefusion.errors import InputError
from edgefusion.labels import LabelTrack, Span, label_windows, parse_spans_csv
from edgefusion.logs import LogReader, decode
from edgefusion.logs.schemas import SCHEMAS
from edgefusion.logs.timeline import write_synth
from edgefusion.task import load_task

S = 1_000_000_000
MS = 1_000_000
HOME = load_task("smart_home")


def test_span_validation_says_what_is_wrong():
    with pytest.raises(InputError, match=r"end \(5 ns\) must be after start \(5 ns\)"):
        Span(5, 5, "event", "dark")
    with pytest.raises(InputError, match="unknown kind 'evnt'; did you mean 'event'"):
        Span(0, 5, "evnt", "dark")
    with pytest.raises(InputError, match="lower-case name"):
        Span(0, 5, "event", "Door Open")
    with pytest.raises(InputError, match="source must be"):
        Span(0, 5, "event", "dark", source="a person")
    with pytest.raises(InputError, match="integer number of nanoseconds"):
        Span(0.5, 5, "event", "dark")  # type: ignore[arg-type]
    assert Span(0, 5, "coverage", "").label == ""


def test_span_from_a_log_message_is_checked():
    with pytest.raises(InputError, match="missing field"):
        Span.from_dict({"start_ns": 0, "end_ns": 5, "kind": "event"})
    with pytest.raises(InputError, match="integer number"):
        Span.from_dict({"start_ns": "0", "end_ns": 5, "kind": "event", "label": "dark", "source": "human"})
    with pytest.raises(InputError, match="integer number"):
        Span.from_dict({"start_ns": 1 << 70, "end_ns": 1 << 71, "kind": "event", "label": "dark", "source": "x"})


def test_the_label_schema_is_complete_and_matches_what_is_written():
    schema = json.loads(SCHEMAS["edgefusion.Label"])
    assert set(schema["required"]) == set(schema["properties"]) == {"start_ns", "end_ns", "kind", "label", "source"}
    assert schema["additionalProperties"] is False
    for span in (Span(0, 5, "event", "dark"), Span(1, 2, "coverage", "", "synth")):
        jsonschema.validate(span.to_dict(), schema)
        assert Span.from_dict(span.to_dict()) == span
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**Span(0, 5, "event", "dark").to_dict(), "extra": 1}, schema)


def test_track_merges_touching_spans_and_answers_coverage_questions():
    track = LabelTrack([Span(0, 10 * S, "coverage", ""), Span(1 * S, 2 * S, "event", "doorbell"),
                        Span(2 * S, 3 * S, "event", "doorbell"), Span(5 * S, 6 * S, "event", "doorbell")])
    assert track.intervals("event", "doorbell").tolist() == [[1 * S, 3 * S], [5 * S, 6 * S]]
    assert track.covers("event", "doorbell", [999_999_999, 1 * S, 3 * S - 1, 3 * S]).tolist() == \
        [False, True, True, False]
    assert track.seconds("event", "doorbell") == 3.0
    assert track.summary()[0] == {"kind": "event", "label": "doorbell", "spans": 3, "seconds": 3.0}
    assert track.shifted(S).intervals("coverage").tolist() == [[S, 11 * S]]


def test_track_check_names_unknown_labels_with_a_suggestion():
    track = LabelTrack([Span(0, 5, "event", "door_opn"), Span(0, 5, "intent", "lights_on"),
                        Span(0, 5, "action", "alarm")])
    problems = track.check(HOME)
    assert len(problems) == 2  # in time order, then by kind
    assert problems[0].startswith("action span 'alarm' at 0.000–0.000 s: task 'smart_home': unknown action 'alarm'")
    assert "(known: emergency, intrusion_alert, lights_off, lights_on" in problems[0]
    assert "unknown event 'door_opn'; did you mean 'door_open'?" in problems[1]


def _csv(tmp_path, text, name="spans.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_span_file_with_comments_blank_lines_bom_and_a_short_coverage_row(tmp_path):
    p = tmp_path / "s.csv"
    p.write_bytes("\ufeff# my labels\nstart_s, end_s, kind, label\n\n1.5,3,event,doorbell  # the first ring\n"
                  "0,10,coverage\n  # indented comment\n4,7.25,intent,lights_on\n".encode())
    track = parse_spans_csv(p, HOME)
    assert [(s.kind, s.label, s.start_ns, s.end_ns, s.row) for s in track] == [
        ("coverage", "", 0, 10 * S, 5), ("event", "doorbell", 1500 * MS, 3 * S, 4),
        ("intent", "lights_on", 4 * S, 7250 * MS, 7)]
    assert {s.source for s in track} == {"human"}


def test_a_bad_span_file_reports_every_bad_row_by_line(tmp_path):
    p = _csv(tmp_path, "start_s,end_s,kind,label\n"
                       "1,2,event,doorbell\n"
                       "# fine\n"
                       "x,2,event,doorbell\n"
                       "3,2,event,doorbell\n"
                       "1,2,evnt,doorbell\n"
                       "1,2,event,door_opn\n"
                       "1,2,event\n"
                       "-1,2,event,dark\n"
                       "nan,2,event,dark\n"
                       "1,2,intent,Lights On\n"
                       "0,5,coverage,doorbell\n"
                       "1.0,2.0,event,doorbell\n")
    with pytest.raises(InputError) as e:
        parse_spans_csv(p, HOME)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{p}: 10 of 11 rows are bad:"
    assert [ln.split(":")[0].strip() for ln in lines[1:]] == [f"row {n}" for n in (4, 5, 6, 7, 8, 9, 10, 11, 12, 13)]
    text = str(e.value)
    assert "row 4: start_s must be a number of seconds, got 'x'" in text
    assert "row 5: end_s (2) must be after start_s (3)" in text
    assert "row 6: unknown kind 'evnt'; did you mean 'event'?" in text
    assert "row 7: task 'smart_home': unknown event 'door_opn'; did you mean 'door_open'?" in text
    assert "row 8: expected 4 columns" in text
    assert "row 9: start_s must be a finite number of seconds from the log's start (>= 0), got -1" in text
    assert "row 11: intent label must be a lower-case name" in text
    assert "row 12: a coverage row takes no label, got 'doorbell'" in text
    assert "row 13: repeats row 2 (a span counts once; delete one of them)" in text


def test_span_file_without_header_or_not_text(tmp_path):
    with pytest.raises(InputError, match=r"row 1: expected the header start_s,end_s,kind,label"):
        parse_spans_csv(_csv(tmp_path, "1,2,event,dark\n"))
    with pytest.raises(InputError, match="no header"):
        parse_spans_csv(_csv(tmp_path, "# nothing\n\n"))
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="expected UTF-8 CSV text"):
        parse_spans_csv(tmp_path / "bin.csv")
    with pytest.raises(InputError, match="does not exist"):
        parse_spans_csv(tmp_path / "missing.csv")


def test_audio_events_follow_the_generators_overlap_rule_to_the_nanosecond():
    m = round(HOME.timing.min_event_overlap_s * S)  # 0.3 s
    track = LabelTrack([Span(0, 20 * S, "coverage", ""), Span(5 * S, 7 * S, "event", "doorbell"),
                        Span(10 * S, 10 * S + m - 1, "event", "glass_break")])
    t = np.array([5 * S + m - 1, 5 * S + m, 8 * S - m, 8 * S - m + 1, 10 * S + 500 * MS], np.int64)
    truth = label_windows(track, HOME, t, audio_window_ns=S)
    assert truth.event_sets() == [set(), {"doorbell"}, {"doorbell"}, set(), set()]  # shorter than m: never


def test_image_events_intents_and_explicit_actions():
    track = LabelTrack([Span(0, 20 * S, "coverage", ""), Span(0, 10 * S, "event", "person"),
                        Span(1 * S, 4 * S, "intent", "lights_on"), Span(2 * S, 5 * S, "intent", "let_in"),
                        Span(6 * S, 7 * S, "action", "lock_door")])
    truth = label_windows(track, HOME, [1 * S, 3 * S, 4500 * MS, 6 * S, 10 * S, 21 * S], audio_window_ns=S)
    names = [HOME.intents[i] if i >= 0 else None for i in truth.intent]
    assert names == ["lights_on", "let_in", "let_in", None, None, None]  # the latest-starting intent wins
    assert [HOME.actions[a] for a in truth.action] == ["none", "unlock_door", "unlock_door", "lock_door", "none",
                                                       "none"]
    assert truth.covered.tolist() == [True, True, True, True, True, False]


def test_windows_of_a_track_that_names_other_labels_are_refused():
    with pytest.raises(InputError, match="unknown event 'siren'"):
        label_windows(LabelTrack([Span(0, 5, "event", "siren")]), HOME, [1], audio_window_ns=S)


@pytest.mark.parametrize("scenario,seed,hard", [("smart_home", 11, False), ("driving", 4, True)])
def test_synth_labels_give_back_the_per_frame_truth_exactly(tmp_path, scenario, seed, hard):
    path, _ = write_synth(scenario, 8.0, seed, tmp_path / "s.mcap", hard=hard)
    with LogReader(path) as r:
        track = r.labels()
        truth = [(m.publish_time_ns, decode(m)) for m in r.messages(topics=["/truth"])]
        labels_in_order = [m.log_time_ns for m in r.messages(topics=["/labels"])]
    assert track is not None and track.sources() == ("synth",)
    assert labels_in_order == sorted(labels_in_order)
    assert track.of("coverage")[0].start_ns == 0 and track.of("coverage")[0].end_ns == 8 * S
    task = load_task(scenario)
    got = label_windows(track, task, [t for t, _ in truth], audio_window_ns=S)
    assert got.covered.all()
    assert got.event_sets() == [set(d["events"]) for _, d in truth]
    assert [task.actions[a] for a in got.action] == [d["action"] for _, d in truth]
    assert {s.kind for s in track} == {"coverage", "event", "intent"}
