import subprocess
import sys

import pytest

from edgefusion.cli import build_parser, main

COMMANDS = sorted(next(a for a in build_parser()._actions if a.dest == "command").choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: edgefusion {cmd}" in out and len(out) > 200


def test_top_level_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in COMMANDS:
        assert cmd in out
    assert "examples:" in out


@pytest.mark.parametrize("args, message", [
    (["demo", "--senario", "driving"],
     "error: unrecognized arguments: --senario driving; did you mean --scenario? (see 'edgefusion demo --help')"),
    (["replay"], "error: the following arguments are required: log (see 'edgefusion replay --help')"),
    (["demo", "--duration", "x"],
     "error: argument --duration: invalid float value: 'x' (see 'edgefusion demo --help')"),
    (["dem"], "error: argument COMMAND: invalid choice: 'dem'"),
])
def test_usage_errors_are_one_line_naming_the_commands_help(args, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message), err


def test_parser_has_the_documented_commands():
    assert {"info", "demo", "synth", "run", "record", "replay", "log", "train", "export"} <= set(COMMANDS)


def test_errors_are_one_line_not_a_traceback(pkg_copy):
    (pkg_copy / "model.fp32.onnx").write_bytes(b"tampered")
    for args, expect in [
        (["demo", "--scenario", "kitchen"], "error: unknown scenario 'kitchen'"),
        (["info", str(pkg_copy)], "error: package 'smart_home-attention': model.fp32.onnx has sha256"),
        (["info", str(pkg_copy / "nope")], "does not exist"),
        (["demo", "--backend", "tpu"], "error: unknown backend 'tpu'"),
    ]:
        p = subprocess.run([sys.executable, "-m", "edgefusion", *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, (args, p.stderr)
        assert expect in p.stderr, (args, p.stderr)
        assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args, message", [
    (["demo", "--duration", "-5"], "--duration must be a positive number of seconds, got -5"),
    (["demo", "--duration", "nan"], "--duration must be a positive number of seconds, got nan"),
    (["demo", "--seed", "-1"], "--seed must be 0 or more, got -1"),
    (["demo", "--json", "/nonexistent/dir/x.json"], "--json /nonexistent/dir/x.json: the folder"),
    (["train", "--scenario", "driving", "--eval-samples", "0"], "--eval-samples 0 (no held-out evaluation) is for"),
    (["train", "--scenario", "driving", "--samples", "0"], "--samples 0: training on a scenario needs"),
    (["train", "--task", "driving", "--samples", "-3"], "--samples is a number of samples, 0 or more; got -3"),
])
def test_bad_numbers_are_refused_before_any_work(args, message, capsys):
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_info_prints_inputs_and_parity(capsys):
    assert main(["info", "driving"]) == 0
    out = capsys.readouterr().out
    assert "input     image" in out and "parity    max |Δlogit|" in out and "artifact  fp32" in out
    assert "runs here:" in out and "yes  onnxruntime:fp32" in out
    assert "no   tensorrt:fp16" in out and "TensorRT is not installed" in out


def test_synth_writes_an_mcap_that_replays(tmp_path, capsys):
    out = tmp_path / "t.mcap"
    assert main(["synth", "--scenario", "driving", "--duration", "2", "--seed", "4", "--out", str(out)]) == 0
    assert "(2 s of driving at 30 fps" in capsys.readouterr().out
    assert main(["replay", str(out), "--check", "--threads", "1"]) == 0
    assert "the log holds no recorded results" in capsys.readouterr().out
    assert main(["synth", "--scenario", "driving", "--out", str(tmp_path / "t.npz")]) == 2


def test_an_existing_output_is_refused_without_force(tmp_path, capsys):
    log = tmp_path / "t.mcap"
    assert main(["synth", "--scenario", "driving", "--duration", "1", "--out", str(log)]) == 0
    spans = tmp_path / "s.csv"
    spans.write_text("start_s,end_s,kind,label\n0,1,event,siren\n")
    taken = tmp_path / "taken.mcap"
    taken.write_bytes(b"an earlier recording")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"an earlier checkpoint")
    capsys.readouterr()
    for args, flag in [
        (["synth", "--scenario", "driving", "--duration", "1", "--out", str(taken)], "--out"),
        (["record", "--camera", "synth:driving", "--audio", "none", "--record", str(taken), "--duration", "1"],
         "--record"),
        (["replay", str(log), "--record", str(taken)], "--record"),
        (["label", str(log), "--spans", str(spans), "--task", "driving", "--out", str(taken)], "--out"),
    ]:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert f"error: {flag} {taken} exists; choose another path or pass --force to replace it" in err, (args, err)
        assert taken.read_bytes() == b"an earlier recording"
    assert main(["train", "--scenario", "driving", "--samples", "8", "--out", str(tmp_path / "run")]) == 2
    assert "holds the checkpoint of an earlier run; choose another --out or pass --force" in capsys.readouterr().err
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == b"an earlier checkpoint"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.json").write_text("{}")
    assert main(["train", "--scenario", "driving", "--samples", "8", "--out", str(tmp_path / "data"), "--force"]) == 2
    assert "is a dataset (dataset.json); give training a folder of its own" in capsys.readouterr().err
    assert main(["synth", "--scenario", "driving", "--duration", "1", "--out", str(taken), "--force"]) == 0
    assert main(["replay", str(log), "--record", str(taken), "--force", "--threads", "1"]) == 0
    assert main(["label", str(log), "--spans", str(spans), "--task", "driving", "--out", str(taken), "--force"]) == 0


def test_replay_refuses_a_range_with_nothing_in_it(tmp_path, capsys):
    log = tmp_path / "t.mcap"
    assert main(["synth", "--scenario", "driving", "--duration", "1", "--out", str(log)]) == 0
    for args, message in [(["--start", "10", "--check"], "--start 10 s is past the end of the log (0.967 s long)"),
                          (["--start", "0.5", "--end", "0.2"], "--end must be later than --start (0.5 s), got 0.2"),
                          (["--start", "-3"], "--start must be 0 or more seconds into the log, got -3")]:
        capsys.readouterr()
        assert main(["replay", str(log), "--backend", "null", *args]) == 2, args
        assert message in capsys.readouterr().err, args
    assert main(["replay", str(log), "--backend", "null", "--start", "0.5"]) == 0
    capsys.readouterr()
    assert main(["replay", str(log), "--model", "smart_home", "--backend", "null", "--check"]) == 0
    assert ("note: its ground truth is of scenario 'driving', and smart_home-attention runs task 'smart_home'"
            in capsys.readouterr().out)
    # eval scores no recording against another task's truth (it printed accuracy 0.000 and PASS)
    assert main(["eval", "smart_home", str(log), "--backend", "null", "--quiet", "--no-plots",
                 "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr()
    assert "ground truth is of scenario 'driving'" in err.out + err.err, err


def test_replay_check_of_a_range_compares_the_range_with_its_history(tmp_path, capsys):
    """--check --start/--end counted every result outside the range as missing, and started the range
    without the audio, command and smoothing the steps before it gave: MISMATCH on a faithful replay."""
    log, rec = tmp_path / "s.mcap", tmp_path / "r.mcap"
    assert main(["synth", "--scenario", "smart_home", "--duration", "4", "--out", str(log)]) == 0
    assert main(["replay", str(log), "--threads", "1", "--record", str(rec)]) == 0
    capsys.readouterr()
    assert main(["replay", str(rec), "--threads", "1", "--check", "--start", "1.5", "--end", "3"]) == 0
    out = capsys.readouterr().out
    assert "MATCH: 45 of 45 compared, 0 missing, 0 action, 0 event and 0 emission mismatches" in out, out
    assert "of 45 frames" in out  # the truth of the range alone


def test_log_info_on_a_log_without_messages(tmp_path, capsys):
    from edgefusion.logs import LogWriter

    LogWriter(tmp_path / "empty.mcap").close()
    assert main(["log", "info", str(tmp_path / "empty.mcap")]) == 0
    out = capsys.readouterr().out
    assert "0 messages (no log time)" in out and "None" not in out


def test_threads_takes_a_positive_count_or_auto():
    import argparse

    from edgefusion.cli._common import threads_arg

    assert threads_arg("2") == 2 and threads_arg("auto") == "auto"
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="positive number of threads or 'auto'"):
            threads_arg(bad)
