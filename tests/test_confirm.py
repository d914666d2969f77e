"""A stage that confirms an event: Silero VAD scanning the window, so the fusion model's ``speech`` stands
only where the VAD hears speech too (the generator's babble, which the model calls speech, is not)."""

import dataclasses
import json
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("silero_vad")

from edgefusion.anymodel import silero_vad_package
from edgefusion.backends import open_backend
from edgefusion.core import FusionCore
from edgefusion.errors import ConfigError
from edgefusion.package import load_package
from edgefusion.samples import AudioChunk, Frame, FusionWindow
from edgefusion.scenarios import sounds
from edgefusion.stages import StageSpec, open_stages

CLIPS = Path(__file__).parent / "data" / "audio" / "speech_commands"
REPO = Path(__file__).resolve().parents[1]


def _clip(name: str) -> np.ndarray:
    with wave.open(str(CLIPS / f"{name}_1000ms.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def vad_dir(tmp_path_factory):
    return silero_vad_package(tmp_path_factory.mktemp("confirm") / "vad").path


def _results(audio: np.ndarray, stage: str | None, steps: int = 5):
    """The smart_home model's results on ``steps`` frames over ``audio`` (from t = 0), with ``stage`` or none."""
    fusion = load_package("smart_home")
    with open_stages([StageSpec.parse(stage)] if stage else []) as stages, \
            open_backend("onnxruntime", fusion, threads=1) as backend:
        core = FusionCore(fusion, backend, stages=stages, policy=False)
        core.add(AudioChunk(t_ns=0, samples=audio, sample_rate=16000))
        return [core.push(Frame(t_ns=1_000_000_000 + k * 33_333_333, image=np.full((96, 96, 3), 90, np.uint8)))
                for k in range(steps)]


def _babble(seed: int) -> np.ndarray:
    return np.concatenate([np.zeros(8000, np.float32), sounds.babble(1.5, np.random.default_rng(seed)) * 0.3])


@pytest.mark.parametrize("name, speech", [("yes", True), ("no", True), ("noise", False), ("silence", False)])
def test_a_scanning_vad_finds_speech_in_words_and_not_in_noise_or_silence(vad_dir, name, speech):
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as (stage,):
        w = FusionWindow(t_ns=10**9, image=None, audio=_clip(name), command=None)
        rec, _ = stage.run(w)
        again, _ = stage.run(w)  # the clock stood still: a fresh state, so the same window reads the same
    assert rec["steps"] == 16000 // 512 and rec == {**again, "timings_ns": rec["timings_ns"]}
    assert ("speech" in rec["events"]) == speech
    assert (rec["scores"]["speech"] >= 0.1) == speech


def test_a_window_without_audio_scans_no_steps(vad_dir):
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as (stage,):
        rec, _ = stage.run(FusionWindow(t_ns=0, image=None, audio=None, command=None))
    assert rec["steps"] == 0 and rec["events"] == [] and rec["scores"] == {"speech": 0.0}


def test_speech_the_vad_does_not_hear_is_not_an_event(vad_dir):
    """Babble (seed 0) is speech to the model (p > 0.9) and no speech to the VAD: with the stage confirming,
    the event is gone, the model's score is still reported, and the record says the stage did not confirm."""
    plain = _results(_babble(0), None)
    assert all("speech" in r.events for r in plain[1:])
    confirmed = _results(_babble(0), f"vad={vad_dir},scan=32,confirm=speech")
    assert not any("speech" in r.events for r in confirmed)
    assert [r.scores["speech"] for r in confirmed] == [r.scores["speech"] for r in plain]
    assert all(r.stages["vad"]["confirmed"] is False for r in confirmed)


def _yes_no() -> np.ndarray:
    """Half a second of silence, then the spoken "yes" and "no" clips: real words the VAD hears."""
    return np.concatenate([np.zeros(8000, np.float32), _clip("yes"), _clip("no")])


def test_speech_the_vad_hears_stays_an_event(vad_dir):
    confirmed = _results(_yes_no(), f"vad={vad_dir},scan=32,confirm=speech", steps=12)
    assert confirmed[-1].events == _results(_yes_no(), None, steps=12)[-1].events
    assert "speech" in confirmed[-1].events and confirmed[-1].stages["vad"]["confirmed"] is True


def test_a_higher_share_asks_for_more_speech(vad_dir):
    last = _results(_yes_no(), f"vad={vad_dir},scan=32,confirm=speech", steps=12)[-1]
    assert 0.1 <= last.stages["vad"]["scores"]["speech"] < 0.5  # the words fill under half of the window
    assert "speech" in last.events
    assert "speech" not in _results(_yes_no(), f"vad={vad_dir},scan=32,share=0.5,confirm=speech", steps=12)[-1].events


def _scan_records(vad_dir, audio: np.ndarray, times: list[int]) -> dict[int, dict]:
    """The scanning stage's record per window time, the windows cut from ``audio`` (starting at t = 0) by sync."""
    fusion = load_package("smart_home")
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as stages, \
            open_backend("onnxruntime", fusion, threads=1) as backend:
        core = FusionCore(fusion, backend, stages=stages, policy=False)
        core.add(AudioChunk(t_ns=0, samples=audio, sample_rate=16000))
        image = np.full((96, 96, 3), 90, np.uint8)
        return {t: r.stages["vad"] for t in times if (r := core.push(Frame(t_ns=t, image=image))) is not None}


def test_a_scan_runs_each_step_once_and_does_not_depend_on_the_hop(vad_dir):
    """Windows 33.3 ms apart and 50 ms apart read the same at the times they share (every 100 ms), though each
    window runs only the steps it adds (one or two, not 31)."""
    audio = np.concatenate([_yes_no(), _babble(3)])
    fine = _scan_records(vad_dir, audio, [10**9 + k * 100_000_000 // 3 for k in range(60)])
    coarse = _scan_records(vad_dir, audio, [10**9 + k * 50_000_000 for k in range(40)])
    shared = sorted(set(fine) & set(coarse))
    assert len(shared) == 20
    for t in shared:
        assert fine[t]["scores"] == coarse[t]["scores"] and fine[t]["steps"] == coarse[t]["steps"]
    assert max(r["new_steps"] for r in list(fine.values())[1:]) <= 2
    assert max(r["new_steps"] for r in list(coarse.values())[1:]) <= 2
    assert 0.0 < fine[shared[-1]]["scores"]["speech"] < 1.0  # words and silence: a result that can differ


def test_a_scan_starts_afresh_after_a_gap_or_when_the_clock_goes_back(vad_dir):
    audio = np.concatenate([_yes_no(), _babble(3), _yes_no()])
    late = 3_900_000_000  # more than a window after 1.2 s: no step links up
    joined = _scan_records(vad_dir, audio, [10**9 + k * 33_333_333 for k in range(7)] + [late])
    alone = _scan_records(vad_dir, audio, [late])
    assert joined[late]["new_steps"] == joined[late]["steps"] == alone[late]["steps"]
    assert joined[late]["scores"] == alone[late]["scores"]
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as (stage,):
        w = FusionWindow(t_ns=10**9, image=None, audio=_yes_no()[:16000], command=None)
        first, _ = stage.run(w)
        stage.run(dataclasses.replace(w, t_ns=2 * 10**9, audio=_babble(3)[:16000]))
        again, _ = stage.run(w)  # the clock went back: a new sequence, read as the first time
    assert again["scores"] == first["scores"] and again["new_steps"] == first["steps"] == 31


@pytest.mark.parametrize("spec, msg", [
    ("vad=x,scan=0", "scan '0': expected 1 to 10000"), ("vad=x,scan=fast", "scan 'fast': expected a whole number"),
    ("vad=x,scan=32,share=2", "share '2': expected 0 to 1"), ("vad=x,share=0.2", "add scan=MS"),
    ("vad=x,confirm=spe ech", "confirm 'spe ech': expected one event label")])
def test_confirm_and_scan_options_are_checked(spec, msg):
    with pytest.raises(ConfigError, match=msg):
        StageSpec.parse(spec)


def test_config_tables_take_numbers_and_round_trip():
    s = StageSpec.from_dict({"name": "vad", "package": "p", "scan": 32, "share": 0.25, "confirm": "speech"}, "cfg")
    assert (s.scan, s.share, s.confirm) == (32, 0.25, "speech")
    with pytest.raises(ConfigError, match=r"scan 32\.5: expected a whole number"):
        StageSpec.from_dict({"name": "vad", "package": "p", "scan": 32.5}, "cfg")
    import tomllib

    table = tomllib.loads(s.to_toml())["stages"][0]
    assert StageSpec.from_dict(table, "cfg") == StageSpec("vad", "p", scan=32, share=0.25, confirm="speech")


def test_confirming_a_label_the_stage_or_the_model_lacks_is_refused(vad_dir):
    with pytest.raises(ConfigError, match="confirm label 'music' is not an event label of silero_vad"), \
            open_stages([StageSpec.parse(f"vad={vad_dir},confirm=music")]):
        pass
    driving = load_package("driving")
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32,confirm=speech")]) as stages, \
            open_backend("onnxruntime", driving, threads=1) as backend, \
            pytest.raises(ConfigError, match="confirms 'speech', which is not an event label of driving"):
        FusionCore(driving, backend, stages=stages)


def test_scanning_a_model_without_a_waveform_input_is_refused():
    with pytest.raises(ConfigError, match="takes no waveform input"), \
            open_stages([StageSpec.parse("sh=smart_home,scan=32")]):
        pass


def test_config_check_reports_a_confirmed_label_the_model_lacks(vad_dir, tmp_path, capsys):
    from edgefusion.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npackage = "driving"\n[sources.camera]\nuri = "synth:driving"\n'
                   f'[[stages]]\nname = "vad"\npackage = "{vad_dir}"\nscan = 32\nconfirm = "speech"\n')
    assert main(["config", "check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "stages.vad.confirm: 'speech' is not an event label of the model, driving-attention" in err
    assert "of the stage" not in err
    cfg.write_text(cfg.read_text().replace("driving", "smart_home"))  # the model and its scenes
    assert main(["config", "check", str(cfg)]) == 0


def test_the_robustness_bench_measures_with_a_confirming_stage(vad_dir, local_corpus, tmp_path, capsys):
    from test_realworld import load_bench

    bench = load_bench()
    args = ["--quick", "--packages", "smart_home", "--samples", "40", "--corpus", str(local_corpus),
            "--levels-dbfs", "-20"]
    assert bench.main([*args, "--out", str(tmp_path / "plain.json")]) == 0
    assert bench.main([*args, "--out", str(tmp_path / "vad.json"),
                       "--stage", f"vad={vad_dir},scan=32,confirm=speech"]) == 0
    plain, vad = ((json.loads((tmp_path / f"{n}.json").read_text())["packages"][0]) for n in ("plain", "vad"))
    assert "stage" not in plain and vad["stage"]["confirms"] == "speech" and vad["stage"]["synthetic_windows"] > 0
    assert 0.0 <= vad["stage"]["synthetic_confirmed"] < 1.0  # the generator's babble is not all speech to the VAD
    assert vad["rows"] == plain["rows"]  # the rows are the model's own
    for kind, key in (("detections", "recall"), ("false_alarms", "fires")):  # a veto never adds an event
        assert vad[kind]["levels"][0][key]["speech"] <= plain[kind]["levels"][0][key]["speech"]
    assert "with stage `vad=" in (tmp_path / "vad.md").read_text()
    assert bench.main([*args, "--out", str(tmp_path / "x.json"), "--stage", f"vad={vad_dir}"]) == 2
    assert "add confirm=LABEL" in capsys.readouterr().err


def test_a_window_without_audio_ends_the_scans_sequence(vad_dir):
    """Audio missing for a window (masked by sync) mid-stream: that window scans nothing, and the next one
    starts afresh, reading as a stage that never saw the earlier windows would."""
    audio = _yes_no()

    def window(t: int, with_audio: bool = True) -> FusionWindow:
        i = (t - 10**9) * 16000 // 10**9
        return FusionWindow(t_ns=t, image=None, audio=audio[i: i + 16000] if with_audio else None, command=None)

    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as (stage,):
        for t in (10**9, 1_033_333_333):
            stage.run(window(t))
        gap, _ = stage.run(window(1_066_666_666, with_audio=False))
        after, _ = stage.run(window(1_100_000_000))
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32")]) as (stage,):
        alone, _ = stage.run(window(1_100_000_000))
    assert gap["steps"] == 0 and gap["scores"] == {"speech": 0.0}
    assert after["new_steps"] == after["steps"] == alone["steps"] and after["scores"] == alone["scores"]


def test_the_stage_latency_bench_reads_every_result_of_a_replay(vad_dir, tmp_path):
    """bench/vad_stage_latency.py through the real CLI: a 2-s log is 60 windows, each running a step or two."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("vad_stage_latency", REPO / "bench" / "vad_stage_latency.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    r = bench.measure(vad_dir, 2.0, tmp_path)
    assert r["windows"] == 60 and r["vad_steps_read_per_window"]["max"] == 31
    ran = r["vad_steps_run_per_window"]
    assert ran["mean"] < 2 and ran["windows_running_more_than_2"] <= 1
    assert r["stage_vad_ms"]["p50"] > 0 and r["main_inference_ms"]["p50"] > 0


def test_a_swap_to_a_model_without_the_confirmed_label_is_refused_before_it_is_queued(vad_dir):
    """A reload must not hand the pipeline a model it cannot run with its stages (that would stop it mid-run)."""
    from conftest import Ticker

    from edgefusion.pipeline import Pipeline, PipelineConfig

    home, driving = load_package("smart_home"), load_package("driving")
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32,confirm=speech")]) as stages, \
            open_backend("null", home) as be, open_backend("null", driving) as new:
        pipe = Pipeline(home, be, [Ticker(n=3, pace=False)], [], PipelineConfig(lossless=True), stages=stages)
        with pytest.raises(ConfigError, match="confirms 'speech', which is not an event label of driving"):
            pipe.swap_model(driving, new, timeout_s=0.01)
        assert pipe.cancel_swap(new) is False  # nothing was queued
        assert pipe.run().steps == 3 and pipe.backend is be


def test_a_swap_with_stages_checks_the_new_pair_and_applies_both_between_two_steps(vad_dir):
    """The model and the stages change together: a model without `speech` goes in with stages that do not
    confirm it (refused beside the old confirming stage), and the steps after the swap run the new stages."""
    from conftest import Ticker

    from edgefusion.pipeline import Pipeline, PipelineConfig

    home, driving = load_package("smart_home"), load_package("driving")
    seen: list[tuple[str, tuple[str, ...]]] = []
    with open_stages([StageSpec.parse(f"vad={vad_dir},scan=32,confirm=speech")]) as old, \
            open_stages([StageSpec.parse(f"gate={vad_dir},gate=speech<0.5:audio")]) as new_stages, \
            open_backend("null", home) as be, open_backend("null", driving) as new:
        pipe = Pipeline(home, be, [Ticker(n=40, fps=100.0)], [], PipelineConfig(lossless=True), stages=old,
                        on_result=lambda r: seen.append((r.model, tuple(r.stages))))
        with pytest.raises(ConfigError, match="confirms 'speech'"):  # the old stage with the new model: refused
            pipe.swap_model(driving, new, timeout_s=0.01)
        t = threading.Thread(target=pipe.run)
        t.start()
        while len(seen) < 5:
            time.sleep(0.002)
        assert pipe.swap_model(driving, new, timeout_s=5.0, stages=new_stages) is True
        t.join(10)
    models = [m for m, _ in seen]
    k = models.index(driving.name)
    assert len(seen) == 40 and set(models[:k]) == {home.name} and set(models[k:]) == {driving.name}
    stages = [st for _, st in seen]
    j = stages.index(("gate",))  # one switch of stages, from the windows prepared after the swap on
    assert set(stages[:j]) == {("vad",)} and set(stages[j:]) == {("gate",)}
    assert 0 <= j - k <= 3  # windows already prepared (the queue holds 2, one in hand) keep what the old found
    assert "stage:gate" in pipe.hist and pipe.hist["stage:gate"].count > 0


@pytest.fixture(scope="module")
def babble_log(tmp_path_factory):
    """2 s of the generator's babble (seed 0: speech to the model, not to the VAD) in 20 ms chunks, frames at 30 fps."""
    pytest.importorskip("mcap")
    from edgefusion.logs import LogWriter

    path = tmp_path_factory.mktemp("confirm_log") / "babble.mcap"
    audio = np.concatenate([_babble(0), _babble(0)])[:32000]
    frame = np.full((48, 64, 3), 90, np.uint8)
    items = [(k * 20_000_000, AudioChunk(t_ns=k * 20_000_000, samples=audio[k * 320:(k + 1) * 320], sample_rate=16000))
             for k in range(len(audio) // 320)]
    items += [(k * 33_333_333, Frame(t_ns=k * 33_333_333, image=frame)) for k in range(31, 60)]
    with LogWriter(path) as w:
        for t, s in sorted(items, key=lambda x: (x[0], isinstance(x[1], Frame))):
            (w.frame if isinstance(s, Frame) else w.audio)(s, t)
    return path


def test_replay_with_a_confirming_stage_drops_unheard_speech_and_repeats_byte_for_byte(vad_dir, babble_log, tmp_path):
    from edgefusion.cli import main

    stage = f"vad={vad_dir},scan=32,confirm=speech"
    plain, confirmed = tmp_path / "plain.jsonl", tmp_path / "confirmed.jsonl"
    assert main(["replay", str(babble_log), "--model", "smart_home", "--threads", "1", "--out", f"jsonl:{plain}"]) == 0
    recs = []
    for i in range(2):
        rec = tmp_path / f"r{i}.mcap"
        assert main(["replay", str(babble_log), "--model", "smart_home", "--threads", "1", "--record", str(rec),
                     "--out", f"jsonl:{confirmed}", "--stage", stage]) == 0
        recs.append(rec.read_bytes())
    assert recs[0] == recs[1]  # the scan's steps lie on the log's clock: replays repeat
    before = [json.loads(x) for x in plain.read_text().splitlines()]
    after = [json.loads(x) for x in confirmed.read_text().splitlines()]
    assert len(before) == len(after) == 29
    assert sum("speech" in r["events"] for r in before) > 20  # the model alone calls the babble speech
    assert not any("speech" in r["events"] for r in after)
    assert all(r["stages"]["vad"]["confirmed"] is False and r["stages"]["vad"]["steps"] > 0 for r in after)


def test_config_check_reports_a_confirming_vad_with_no_audio_source(vad_dir, tmp_path, capsys):
    from edgefusion.cli import main

    cfg = tmp_path / "c.toml"
    stage = f'[[stages]]\nname = "vad"\npackage = "{vad_dir}"\nscan = 32\nconfirm = "speech"\n'
    cfg.write_text(f'[model]\npackage = "smart_home"\n[sources.camera]\nuri = "0"\n{stage}')
    assert main(["config", "check", str(cfg)]) == 2
    assert "stages.vad.confirm: the stage hears audio and sources.audio.uri is 'none'" in capsys.readouterr().err
    cfg.write_text(f'[model]\npackage = "smart_home"\n[sources.camera]\nuri = "0"\n[sources.audio]\nuri = "default"\n'
                   f'{stage}')
    main(["config", "check", str(cfg)])  # the machine may lack a camera or microphone: only the stage line matters
    assert "stages.vad.confirm" not in capsys.readouterr().err


def _vad_share_bench():
    import importlib.util
    import sys

    path = REPO / "bench" / "vad_share.py"
    spec = importlib.util.spec_from_file_location("bench_vad_share", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_the_share_is_the_smallest_whose_val_false_alarms_stay_under_the_bound_at_every_level():
    bench = _vad_share_bench()
    def level(fas):
        return {"by_share": [{"share": s, "false_alarms": fa} for s, fa in zip(bench.SHARES, fas)]}
    val = {"levels": [level([0.03, 0.02, 0.01, 0.005, 0.0, 0.0]), level([0.05, 0.03, 0.02, 0.012, 0.009, 0.004])]}
    assert bench.choose(val, 0.01) == 0.3  # 0.2 meets the bound at one level only
    assert bench.choose(val, 0.05) == 0.05
    assert bench.choose(val, 0.001) is None


def test_the_vad_share_bench_needs_val_recordings(vad_dir, local_corpus, tmp_path, capsys):
    bench = _vad_share_bench()
    assert bench.main(["--vad", str(vad_dir), "--corpus", str(local_corpus), "--out", str(tmp_path / "x.json")]) == 2
    assert "the corpus' val split needs recordings of 'speech' and of no event" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_replay_check_says_when_the_log_was_made_with_other_stages(vad_dir, babble_log, tmp_path, capsys):
    from edgefusion.cli import main

    stage = f"vad={vad_dir},scan=32,confirm=speech"
    rec = tmp_path / "r.mcap"
    assert main(["replay", str(babble_log), "--model", "smart_home", "--threads", "1", "--record", str(rec),
                 "--stage", stage]) == 0
    capsys.readouterr()
    assert main(["replay", str(rec), "--threads", "1", "--check"]) == 1  # the VAD's vetoes are missing
    out = capsys.readouterr().out
    assert "made with the stages vad (its /stages channels), this replay ran none" in out and "MISMATCH" in out
    assert main(["replay", str(rec), "--threads", "1", "--check", "--stage", stage]) == 0
    out = capsys.readouterr().out
    assert "made with the stages" not in out and "MATCH" in out


def test_replay_of_a_log_whose_package_is_not_here_says_to_pass_model(babble_log, tmp_path, capsys):
    import shutil

    from edgefusion.cli import main

    pkg = tmp_path / "mine"
    shutil.copytree(load_package("smart_home").path, pkg)
    rec = tmp_path / "r.mcap"
    assert main(["replay", str(babble_log), "--model", str(pkg), "--threads", "1", "--record", str(rec)]) == 0
    shutil.rmtree(pkg)
    capsys.readouterr()
    assert main(["replay", str(rec), "--check"]) == 2
    err = capsys.readouterr().err
    assert "names as its model" in err and err.strip().endswith("pass --model PACKAGE")
    assert main(["replay", str(rec), "--check", "--model", "smart_home", "--threads", "1"]) == 0
