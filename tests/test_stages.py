"""Two models in one pipeline: Silero VAD gates the smart-home fusion model's audio, in run, record and replay."""

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("silero_vad")
pytest.importorskip("mcap")

from edgefusion.anymodel import silero_vad_package
from edgefusion.cli import main
from edgefusion.errors import ConfigError
from edgefusion.logs import LogReader, LogWriter
from edgefusion.samples import AudioChunk, Frame
from edgefusion.stages import StageSpec

DATA = Path(__file__).parent / "data" / "audio" / "speech_commands"
FPS_NS = 33_333_333


def _wav(name):
    with wave.open(str(DATA / f"{name}_1000ms.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def vad_dir(tmp_path_factory):
    return silero_vad_package(tmp_path_factory.mktemp("stages") / "vad").path


@pytest.fixture(scope="module")
def speech_log(tmp_path_factory):
    """2 s: frames at 30 fps; audio: silence, then the word 'yes' (second 1 to 2), in 20 ms chunks."""
    path = tmp_path_factory.mktemp("log") / "speech.mcap"
    audio = np.concatenate([_wav("silence"), _wav("yes")])
    frame = np.full((48, 64, 3), 90, np.uint8)
    items = [(k * 320 * 62_500, AudioChunk(t_ns=k * 320 * 62_500, samples=audio[k * 320:(k + 1) * 320],
                                           sample_rate=16000)) for k in range(len(audio) // 320)]
    items += [(k * FPS_NS, Frame(t_ns=k * FPS_NS, image=frame)) for k in range(1, 60)]
    with LogWriter(path) as w:
        for t, s in sorted(items, key=lambda x: (x[0], isinstance(x[1], Frame))):
            (w.frame if isinstance(s, Frame) else w.audio)(s, t)
    return path


def _results(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_replay_with_a_vad_stage_gates_the_audio_and_records_each_stage(vad_dir, speech_log, tmp_path):
    out, rec = tmp_path / "r.jsonl", tmp_path / "rec.mcap"
    assert main(["replay", str(speech_log), "--model", "smart_home", "--threads", "1", "--out", f"jsonl:{out}",
                 "--record", str(rec), "--stage", f"vad={vad_dir},gate=speech<0.5:audio"]) == 0
    rs = _results(out)
    assert len(rs) == 59
    speech = [r["stages"]["vad"]["scores"]["speech"] for r in rs]
    gated = [r["stages"]["vad"]["gated"] for r in rs]
    assert all(g == (p < 0.5) for g, p in zip(gated, speech))
    assert all(("audio" in r["missing"]) == g for r, g in zip(rs, gated))  # the fusion model saw no audio when gated
    first, second = speech[:25], speech[33:]  # the silent second, the second with the word (window edges left out)
    assert max(first) < 0.1 and max(second) > 0.9
    assert all(gated[:25]) and not all(gated[33:])
    assert all(r["model"] == "smart_home-attention" and r["stages"]["vad"]["model"] == "silero_vad" for r in rs)
    with LogReader(rec) as log:
        stage_msgs = [json.loads(m.data) for m in log.messages(topics=["/stages/vad"])]
        results = [json.loads(m.data) for m in log.messages(topics=["/results"])]
    assert len(stage_msgs) == len(results) == 59
    assert [m["scores"]["speech"] for m in stage_msgs] == speech and [m["seq"] for m in stage_msgs] == list(range(59))


def test_record_and_replay_without_timings_repeat_byte_for_byte_with_a_stage(vad_dir, speech_log, tmp_path):
    """Lossless replays of one log with the same stages write the same bytes (the VAD's state is deterministic)."""
    outs = []
    for i in range(2):
        rec = tmp_path / f"r{i}.mcap"
        assert main(["replay", str(speech_log), "--model", "smart_home", "--threads", "1", "--record", str(rec),
                     "--stage", f"vad={vad_dir},gate=speech<0.5:audio"]) == 0
        outs.append(rec.read_bytes())
    assert outs[0] == outs[1]


def test_run_times_each_stage_in_the_stats(vad_dir, tmp_path):
    video = Path(__file__).parent / "data" / "video" / "opencv_Megamind.avi"
    stats, out = tmp_path / "s.json", tmp_path / "r.jsonl"
    audio = ",".join(str(DATA / f"{n}_1000ms.wav") for n in ("silence", "yes"))
    p = subprocess.run([sys.executable, "-m", "edgefusion", "run", "--camera", str(video), "--audio", audio,
                        "--no-pace", "--lossless", "--max-frames", "30", "--threads", "1", "--out", f"jsonl:{out}",
                        "--stats", str(stats), "--stage", f"vad={vad_dir},gate=speech<0.5:text"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lat = json.loads(stats.read_text())["latency_ms"]
    assert lat["stage:vad"]["count"] == lat["end_to_end"]["count"] > 0
    rs = _results(out)
    assert all("stage:vad" in r["timings_ns"] and "vad" in r["stages"] for r in rs)


@pytest.mark.parametrize("spec, msg", [
    ("vad", "needs a package"), ("Vad=x", "stage name 'Vad'"), ("vad=x,gate=speech>0.5:audio", "expected LABEL<"),
    ("vad=x,gate=speech<2:audio", "a score in [0, 1]"), ("vad=x,colour=red", "unknown stage option 'colour'"),
    ("vad=x,threads=two", "threads 'two' is not a number")])
def test_stage_specs_are_checked(spec, msg):
    with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        StageSpec.parse(spec)


def test_a_gate_on_a_label_the_stage_does_not_have_is_refused(vad_dir, speech_log, capsys):
    assert main(["replay", str(speech_log), "--model", "smart_home", "--stage",
                 f"vad={vad_dir},gate=music<0.5:audio"]) == 2
    assert "gate label 'music' is not a label of silero_vad (speech)" in capsys.readouterr().err


def test_serve_runs_the_stages_of_its_config(vad_dir, tmp_path):
    from serve_kit import Served, free_port, wait_for

    port, results = free_port(), tmp_path / "results.jsonl"
    config = f"""
[model]
package = "smart_home"
threads = 1
[sources.camera]
uri = "synth:smart_home"
loop = true
[sinks]
jsonl = "{results}"
[http]
port = {port}
[[stages]]
name = "vad"
package = "{vad_dir}"
gate = "speech<0.5:audio"
"""
    svc = Served(tmp_path, config)
    try:
        svc.wait_ready(port)
        wait_for(lambda: results.exists() and len(results.read_text().splitlines()) >= 5, 30, "results")
        code, metrics = svc.http("/metrics")
        rc, _ = svc.stop()
    finally:
        svc.close()
    assert rc == 0, svc.log()[-2000:]
    rows = [json.loads(x) for x in results.read_text().splitlines() if x.endswith("}")]
    assert rows and all(r["stages"]["vad"]["model"] == "silero_vad" and "stage:vad" in r["timings_ns"] for r in rows)
    assert all(("audio" in r["missing"]) == r["stages"]["vad"]["gated"] for r in rows)
    assert code == 200 and 'edgefusion_stage_latency_seconds_count{stage="stage:vad"}' in metrics


def test_config_check_reports_stage_problems(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[sources.camera]\nuri = "synth:smart_home"\n[[stages]]\nname = "vad"\npackage = "/nope"\n'
                   '[[stages]]\nname = "det"\npackage = "smart_home"\nvariant = "int4"\ngate = "x<0.5:smell"\n')
    p = subprocess.run([sys.executable, "-m", "edgefusion", "config", "check", str(cfg)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    assert "stages[1]: stage 'det': gate 'x<0.5:smell'" in p.stderr
    assert "stages.vad.package: model package /nope does not exist" in p.stderr


def test_bench_times_each_stage(vad_dir, tmp_path, capsys):
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "bench"
    assert main(["bench", "smart_home", "--duration", "2", "--warmup", "0", "--rate", "max", "--configs",
                 "onnxruntime:fp32", "--threads", "1", "--no-plots", "--out", str(out),
                 "--stage", f"vad={vad_dir},gate=speech<0.5:audio"]) == 0
    report = json.loads((out / "bench.json").read_text())
    schema = json.loads((Path(__file__).parents[1] / "docs" / "bench.schema.json").read_text())
    jsonschema.validate(report, schema)
    run = report["runs"][0]
    assert run["stages_ms"]["stage:vad"]["count"] == run["stages_ms"]["end_to_end"]["count"] == run["results"] > 0
    assert "| onnxruntime:fp32/1t | vad |" in capsys.readouterr().out


def test_a_detector_stage_adds_its_detections_to_the_events(tmp_path):
    pytest.importorskip("onnx")
    from model_kit import write_package
    from test_detector import BOXES, DETS, SCORES, _detector, _image

    from edgefusion.backends import open_backend
    from edgefusion.core import FusionCore
    from edgefusion.package import load_package
    from edgefusion.stages import open_stages

    det = write_package(tmp_path / "det", _detector(BOXES, SCORES), _image(), [DETS], name="detector")
    pkg = load_package("smart_home")
    with open_stages([StageSpec.parse(f"det={det},events")]) as stages, open_backend("onnxruntime", pkg) as be:
        core = FusionCore(pkg, be, stages=stages)
        r = core.push(Frame(t_ns=10, image=np.zeros((360, 640, 3), np.uint8)))
    assert r is not None and r.model == "smart_home-attention"
    assert r.stages["det"]["events"] == ["person", "car"]
    first = r.stages["det"]["outputs"]["boxes"][0]
    assert first == {"label": "person", "score": 0.9, "box": [200.0, 60.0, 400.0, 220.0]}
    assert r.events[-2:] == ("person", "car") and "stage:det" in r.timings_ns
