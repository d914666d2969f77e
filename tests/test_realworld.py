"""The real-recording corpus (export/corpus*) and the robustness bench (bench/robustness.py)."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import struct
import sys
import time
import wave
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from edgefusion.errors import ConfigError, ExportError
from export import corpus, corpus_sources

REPO = Path(__file__).resolve().parents[1]


def write_list(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "corpus.toml"
    p.write_text(body)
    return p


LOCAL = '''
[[file]]
id = "{id}"
kind = "local"
path = "{path}"
sound = "x"
role = "{role}"
split = "{split}"
licence = "CC-BY-4.0"
'''


def local(id: str, name: str, split: str, role: str = "background") -> str:
    return LOCAL.format(id=id, path=f"tests/data/audio/speech_commands/{name}", split=split, role=role)


# -- the list ------------------------------------------------------------------------------------


def test_shipped_list_is_valid_and_split_by_file() -> None:
    c = corpus.load_corpus()
    assert {f.split for f in c.files} == {"train", "val", "heldout"}
    val = [f for f in c.files if f.split == "val"]  # bench/vad_share.py chooses on both kinds
    assert any(f.role == "speech" for f in val) and any(f.role == "background" for f in val)
    sources = {}
    for f in c.files:
        key = (f.params.get("package"), f.params.get("path"), f.params.get("member"), f.params.get("text"),
               f.params.get("keys_select"))
        assert key not in sources, f"{f.id} and {sources.get(key)} are the same source"
        sources[key] = f.id
        assert f.licence and f.sound
        if f.kind == "local":
            assert (REPO / f.params["path"]).is_file(), f"{f.id}: {f.params['path']} is not committed"
    sounds = " ".join(f.sound for f in c.files)
    for wanted in ("typing", "engine", "phone", "speech", "train", "wind"):
        assert wanted in sounds
    assert any(f.role == "speech" for f in c.files) and any(f.role == "horn" for f in c.files)
    heldout_bg = corpus.backgrounds_for([f for f in c.files if f.split == "heldout"], ("doorbell", "speech"))
    assert all(f.role != "speech" for f in heldout_bg) and any(f.role == "horn" for f in heldout_bg)


@pytest.mark.parametrize(("body", "message"), [
    (LOCAL.format(id="a", path="p", role="background", split="test"), "split 'test'"),
    (LOCAL.format(id="a", path="p", role="background", split="train").replace('kind = "local"', 'kind = "cd"'),
     "kind 'cd'"),
    (LOCAL.format(id="a", path="p", role="background", split="train").replace('licence = "CC-BY-4.0"\n', ""),
     "missing licence"),
    (LOCAL.format(id="a", path="p", role="background", split="train") + "colour = 1\n", "unknown keys"),
    (LOCAL.format(id="a", path="p", role="background", split="train") * 2, "appears twice"),
    ('[[file]]\nid = "a"\nkind = "deb"\npackage = "nope"\npath = "x"\nsound = "s"\nrole = "background"\n'
     'split = "train"\nlicence = "MIT"\n', "not declared"),
    ("", "names no"),
    ("[[file]\n", "not valid TOML"),
])
def test_bad_lists_fail_with_one_clear_line(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        corpus.load_corpus(write_list(tmp_path, body))


# -- prepare -------------------------------------------------------------------------------------


def test_prepare_writes_16k_float_wavs_with_provenance(local_corpus: Path) -> None:
    import soundfile as sf

    prov = json.loads((local_corpus / "provenance.json").read_text())
    assert prov["sample_rate"] == 16000 and prov["only"] == ["local"] and len(prov["list_sha256"]) == 64
    ids = {e["id"] for e in prov["files"]}
    assert {"speech_commands_noise", "speech_commands_no", "bell_local"} <= ids
    for e in prov["files"]:
        info = sf.info(str(local_corpus / e["wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
        assert e["seconds"] == pytest.approx(info.frames / 16000, abs=1e-3)
        assert e["licence"] and e["source"]["file_sha256"] and e["split"] in ("train", "heldout")
    bell = next(e for e in prov["files"] if e["id"] == "bell_local")
    assert bell["source_rate"] == 44100  # Ogg Vorbis decoded and resampled
    held = corpus.load_prepared(local_corpus, split="heldout")
    assert {r.id for r in held} == {e["id"] for e in prov["files"] if e["split"] == "heldout"}
    assert all(r.audio.dtype == np.float32 for r in held)
    speech = corpus.load_prepared(local_corpus, roles=["speech"], split="train")
    assert [r.id for r in speech] == ["speech_commands_yes"]


def test_prepare_refuses_one_recording_in_both_splits(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    lst = write_list(tmp_path, local("a", "yes_1000ms.wav", "train") + local("b", "yes_1000ms.wav", "heldout"))
    with pytest.raises(ExportError, match="both splits: a \\(train\\), b \\(heldout\\)"):
        corpus.prepare(tmp_path / "c", corpus.load_corpus(lst), progress=False)


def test_prepare_refuses_the_same_audio_from_two_files_in_both_splits(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sf = pytest.importorskip("soundfile")
    write = sf.write

    def a_second_later(*a: object, **k: object) -> None:  # libsndfile stamps the time of writing into the WAV
        time.sleep(1.05)
        write(*a, **k)

    x, rate = sf.read(str(REPO / "tests/data/audio/speech_commands/yes_1000ms.wav"), dtype="int16")
    copy = tmp_path / "yes.flac"  # other bytes, the same samples
    sf.write(str(copy), x, rate, format="FLAC", subtype="PCM_16")
    other = LOCAL.format(id="b", path=copy, role="background", split="heldout")
    lst = write_list(tmp_path, local("a", "yes_1000ms.wav", "train") + other)
    monkeypatch.setattr(sf, "write", a_second_later)
    with pytest.raises(ExportError, match="the same audio is listed in both splits: a \\(train\\), b"):
        corpus.prepare(tmp_path / "c", corpus.load_corpus(lst), progress=False)


def test_an_excerpt_cuts_a_long_file_and_is_recorded(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    body = local("noise_cut", "noise_1000ms.wav", "train").replace(
        'sound = "x"', 'start = 0.25\nseconds = 0.5\nsound = "x"')
    prov = corpus.prepare(tmp_path / "c", corpus.load_corpus(write_list(tmp_path, body)), progress=False)
    (e,) = prov["files"]
    assert e["source"]["excerpt_s"] == [0.25, 0.5] and e["seconds"] <= 0.5
    late = body.replace("start = 0.25", "start = 3.0")
    with pytest.raises(ExportError, match=r"noise_cut: start 3\.0 s is past the end"):
        corpus.prepare(tmp_path / "d", corpus.load_corpus(write_list(tmp_path, late)), progress=False)
    for bad in ("seconds = 0.5", "start = 0.25"):
        wrong = body.replace(bad, bad.split(" = ")[0] + " = -1.0")
        with pytest.raises(ConfigError, match="an excerpt of the file"):
            corpus.load_corpus(write_list(tmp_path, wrong))
    espeak = ('[[file]]\nid = "s"\nkind = "espeak"\ntext = "hi"\nvoice = "en"\nspeed = 150\npitch = 50\n'
              'seconds = 2.0\nsound = "s"\nrole = "speech"\nsplit = "train"\nlicence = "GPL-3.0-or-later"\n')
    with pytest.raises(ConfigError, match="unknown keys \\['seconds'\\]"):
        corpus.load_corpus(write_list(tmp_path, espeak))


def test_load_prepared_without_a_corpus_says_how_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"python -m export\.corpus prepare"):
        corpus.load_prepared(tmp_path)


def test_missing_tools_fail_with_the_install_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(corpus_sources.shutil, "which", lambda name: None)
    with pytest.raises(ExportError, match="'espeak-ng' is not installed; install it with: apt-get install espeak-ng"):
        corpus_sources.render_espeak("hi", "en", 150, 50, tmp_path / "x.wav")
    with pytest.raises(ExportError, match="'apt-get' is not installed"):
        corpus_sources.fetch_deb("sound-theme-freedesktop", tmp_path / "debs", tmp_path / "x")


def test_cli_prints_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert corpus.main(["prepare", "--list", str(write_list(tmp_path, "")), "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "names no [[file]]" in err and "\n" not in err
    assert corpus.main(["list"]) == 0
    assert "typing_heldout" in capsys.readouterr().out


# -- sources -------------------------------------------------------------------------------------


def tiny_wav(n: int = 100, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.arange(n) * 50).astype("<i2").tobytes())
    return buf.getvalue()


def test_read_cat_member(tmp_path: Path) -> None:
    entries = [(b"first", tiny_wav(10)), (b"second one", tiny_wav(20))]
    table, body, offset = b"", b"", 8 * len(entries)
    for title, wav in entries:
        blob = bytes([len(title)]) + title + wav
        table += struct.pack("<II", (offset + len(body)) | 0x80000000, len(blob))
        body += blob
    bank = tmp_path / "sounds.cat"
    bank.write_bytes(table + body)
    data, title = corpus_sources.read_cat_member(bank, 1)
    assert title == "second one" and data == entries[1][1]
    pytest.importorskip("soundfile")
    x, rate = corpus_sources.decode_bytes(data, "test")
    assert rate == 8000 and len(x) == 20
    with pytest.raises(ExportError, match="out of range; the bank has 2 entries"):
        corpus_sources.read_cat_member(bank, 2)


def test_decode_reads_mp3_wrapped_in_a_wav_file() -> None:
    sf = pytest.importorskip("soundfile")
    tone = (0.3 * np.sin(np.arange(22050) * 2 * np.pi * 440 / 22050)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, tone, 22050, format="MP3")
    mp3 = buf.getvalue()
    fmt = struct.pack("<HHIIHH", 0x55, 1, 22050, 4000, 1, 0)  # WAVE_FORMAT_MPEGLAYER3, as qgo's doorbell.wav
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(mp3)) + mp3
    x, rate = corpus_sources.decode_bytes(b"RIFF" + struct.pack("<I", len(body)) + body, "test")
    assert rate == 22050 and abs(len(x) - 22050) < 2400  # the encoder's padding
    assert abs(float(np.sqrt(np.mean(x ** 2))) - 0.3 / np.sqrt(2)) < 0.03
    with pytest.raises(ExportError, match="cannot decode it as audio"):
        corpus_sources.decode_bytes(b"RIFF" + struct.pack("<I", len(body)) + body[:40], "test")


def test_compose_typing_is_seeded() -> None:
    keys = [np.hanning(400).astype(np.float32) * 0.5, np.hanning(300).astype(np.float32) * 0.3]
    a = corpus_sources.compose_typing(keys, 16000, 3.0, seed=4)
    assert np.array_equal(a, corpus_sources.compose_typing(keys, 16000, 3.0, seed=4))
    assert not np.array_equal(a, corpus_sources.compose_typing(keys, 16000, 3.0, seed=5))
    onsets = np.flatnonzero((np.abs(a[1:]) > 1e-4) & (np.abs(a[:-1]) <= 1e-4))
    assert 8 <= len(onsets) <= 25  # a few keystrokes a second


# -- the robustness bench ----------------------------------------------------------------------


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_robustness", REPO / "bench" / "robustness.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_robustness_quick_run(local_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "robustness.json"
    bench = load_bench()
    assert bench.main(["--quick", "--packages", "smart_home", "--samples", "4", "--corpus", str(local_corpus),
                       "--out", str(out), "--levels-dbfs", "-30"]) == 0
    rep = json.loads(out.read_text())
    (pkg,) = rep["packages"]
    names = [r["name"] for r in pkg["rows"]]
    assert names == ["clean", "brightness +40", "brightness -40", "contrast x0.6", "auto-exposure", "16:9 crop",
                     "JPEG q20", "8 kHz source", "gain -20 dB", "real noise SNR 10 dB", "real noise SNR 0 dB"]
    for r in pkg["rows"]:
        assert 0.0 <= r["action_accuracy"] <= 1.0 and 0.0 <= r["event_macro_f1"] <= 1.0
        assert set(r["event_f1"]) == {"dark", "person", "door_open", "doorbell", "glass_break", "smoke_alarm",
                                      "speech"}
    assert pkg["rows"][0]["delta_action_points"] == 0.0 and pkg["samples"] == 4
    assert pkg["noise_backgrounds"] == ["speech_commands_noise"]  # the held-out speech is an event here
    (level,) = pkg["false_alarms"]["levels"]
    assert set(level["fires"]) == {"doorbell", "glass_break", "smoke_alarm", "speech"}
    assert level["windows"] == 1 and pkg["false_alarms"]["enough"] is False
    (det,) = pkg["detections"]["levels"]  # the held-out spoken 'no' is smart_home's speech
    assert pkg["detections"]["recordings"] == ["speech_commands_no"] and det["windows"] == 1
    assert det["by_recording"]["speech_commands_no"]["event"] == "speech" and set(det["recall"]) == {"speech"}
    md = out.with_suffix(".md").read_text()
    assert "| real noise SNR 0 dB |" in md and "| glass_break |" in md and "| speech_commands_no | speech |" in md


def test_event_threshold_bench_puts_false_alarms_beside_detections(local_corpus: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_event_thresholds", REPO / "bench" / "event_thresholds.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "thresholds.json"
    assert bench.main(["--packages", "smart_home", "--corpus", str(local_corpus), "--out", str(out)]) == 0
    (pkg,) = json.loads(out.read_text())["packages"]
    speech = pkg["events"]["speech"]  # the only event with a held-out recording of its own here ('no')
    assert set(pkg["events"]) == {"speech"} and speech["recordings"] == ["speech_commands_no"]
    rows = speech["by_threshold"]
    assert [r["threshold"] for r in rows] == list(bench.THRESHOLDS)
    for a, b in itertools.pairwise(rows):  # a higher threshold never fires more
        assert b["false_alarms"] <= a["false_alarms"] and b["detected"] <= a["detected"]
    assert "| 0.5 |" in out.with_suffix(".md").read_text()


def test_stream_false_alarm_bench_streams_each_recording_with_and_without_it(local_corpus: Path,
                                                                              tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_stream_fa", REPO / "bench" / "stream_false_alarms.py")
    assert spec and spec.loader
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "stream.json"
    assert bench.main(["--packages", "smart_home", "--corpus", str(local_corpus), "--levels-dbfs", "-20",
                       "--threads", "1", "--out", str(out)]) == 0
    (pkg,) = json.loads(out.read_text())["packages"]
    (level,) = pkg["levels"]
    assert pkg["recordings"] == ["speech_commands_noise"] and level["recordings"] == 1
    seconds = bench.LEAD_S + 1.0 + bench.TAIL_S  # a 1-s recording with scene before and after it
    assert level["steps"] == round(seconds * 30) and level["seconds"] == seconds
    for key in ("steps_on", "onsets_per_min", "raw_steps"):
        assert set(level[key]) == {"doorbell", "glass_break", "smoke_alarm", "speech"}
    # the scene alone fires nothing: its first second's audio is missing, not padded with silence
    assert all(v == 0.0 for v in level["without_recording"]["steps_on"].values()), level
    assert "| -20 dBFS | speech |" in out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_fusion_vs_concat_tiny_run(local_corpus: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("bench_fusion_vs_concat", REPO / "bench" / "fusion_vs_concat.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "fvc.json"
    argv = ["--scenarios", "driving", "--samples", "48", "--epochs", "1", "--eval-samples", "16", "--bench-samples",
            "8", "--corpus", str(local_corpus), "--work", str(tmp_path / "runs"), "--out", str(out)]
    assert mod.main(argv) == 0
    res = json.loads(out.read_text())["scenarios"]["driving"]
    a, c = res["attention"], res["concat"]
    assert a["train_data_sha256"] == c["train_data_sha256"]  # same data for both
    assert a["parameters"] > c["parameters"] and a["arch"] == "attention" and c["arch"] == "concat"
    names = [r["name"] for r in a["robustness"]["rows"]]
    assert names[0] == "clean" and "16:9 crop (top-aligned)" in names and a["robustness"]["samples"] == 8
    assert "| 16:9 crop (top-aligned) |" in out.with_suffix(".md").read_text()
    assert mod.main([*argv, "--reuse"]) == 0  # evaluates the runs already there, no training
    assert (tmp_path / "runs" / "driving-concat" / "package" / "manifest.json").is_file()
