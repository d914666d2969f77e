"""Wide-band espeak-ng speech for training (export/spoken.py) and where the augmentation puts it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgefusion.augment import power_db
from edgefusion.scenarios import get_scenario
from export.augmented import load_event_recordings
from export.spoken import RATE, SENTENCES, VOICES, spoken_clip_specs, spoken_clips

REPO = Path(__file__).resolve().parents[1]
HELD_OUT_VOICES = ("en-gb-scotland", "en-029", "es")  # the corpus' held-out espeak-ng speech


def test_specs_are_seeded_and_cover_voices_and_sentences_in_turn() -> None:
    a, b, c = spoken_clip_specs(40, seed=1), spoken_clip_specs(40, seed=1), spoken_clip_specs(40, seed=2)
    assert a == b != c
    assert {s["voice"] for s in a} == set(VOICES) and len({s["text"] for s in a}) == len(SENTENCES)
    assert all(120 <= s["speed"] <= 230 and 20 <= s["pitch"] <= 80 for s in a)
    assert not any(v.split("+")[0] in HELD_OUT_VOICES for v in VOICES)


def test_clips_are_wide_band_speech_at_16_khz() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    clips = spoken_clips(3, seed=0)
    assert len(clips) == 3  # rendered, none silent
    for x in clips:
        assert x.dtype == np.float32 and len(x) > RATE and power_db(x) > -35.0
        spec = np.abs(np.fft.rfft(x)) ** 2
        hz = np.fft.rfftfreq(len(x), 1 / RATE)
        # wide band: fricatives and bursts put energy above 4 kHz, where an 8 kHz telephone prompt has none
        assert spec[hz > 4000].sum() / spec.sum() > 1e-3
    again = spoken_clips(3, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(clips, again))


def test_band_limited_recordings_are_never_inserted_as_events(local_corpus: Path, tmp_path: Path) -> None:
    events = get_scenario("smart_home").audio_events
    assert list(load_event_recordings(local_corpus, events)) == ["speech"]  # the 16 kHz spoken 'yes'
    phone = tmp_path / "corpus"
    shutil.copytree(local_corpus, phone)
    prov = json.loads((phone / "provenance.json").read_text())
    for e in prov["files"]:
        e["source_rate"] = 8000  # as if 'yes' came from a telephone prompt
    (phone / "provenance.json").write_text(json.dumps(prov))
    assert load_event_recordings(phone, events) == {}
    assert list(load_event_recordings(phone, events, min_source_rate=8000)) == ["speech"]


def test_the_augmenter_puts_the_clips_where_the_task_says(local_corpus: Path) -> None:
    pytest.importorskip("torch")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    from edgefusion.errors import ConfigError
    from export.train import TrainConfig, augmenter

    home, info = augmenter(TrainConfig(scenario="smart_home", corpus=str(local_corpus), music=0, spoken=2,
                                       real_events=0.1), get_scenario("smart_home"))
    assert home is not None and len(home.events["speech"]) == 1 + 2 and len(home.backgrounds) == 1
    assert info["spoken"]["role"] == "speech" and info["policy"]["p_real_event"] == 0.1
    drive, info = augmenter(TrainConfig(scenario="driving", corpus=str(local_corpus), music=0, spoken=2),
                            get_scenario("driving"))
    assert drive is not None and not drive.events and info["spoken"]["role"] == "background"
    assert len(drive.backgrounds) == 2 + 2  # bell and 'yes' (speech is no driving event), and the clips
    with pytest.raises(ConfigError, match=r"--spoken 2: 'smart_home' has a 'speech' event.*--real-events"):
        augmenter(TrainConfig(scenario="smart_home", corpus=str(local_corpus), spoken=2), get_scenario("smart_home"))
    # the local corpus holds no horn or siren: asking to insert real ones is one clear line, not a silent no-op
    with pytest.raises(ConfigError, match=r"--real-events 0.1: nothing to insert: .* of siren, horn of 'driving'$"):
        augmenter(TrainConfig(scenario="driving", corpus=str(local_corpus), real_events=0.1), get_scenario("driving"))


@pytest.mark.parametrize(("flag", "value", "line"), [
    ("--spoken", "-1", "error: --spoken is a number of clips, 0 or more; got -1"),
    ("--real-events", "1.5", "error: --real-events is a chance per window, in [0, 1]; got 1.5"),
])
def test_bad_spoken_options_are_one_clear_line(flag: str, value: str, line: str) -> None:
    pytest.importorskip("torch")
    p = subprocess.run([sys.executable, "-m", "edgefusion", "train", "--scenario", "driving", flag, value],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == line


def test_the_recorded_command_repeats_the_options() -> None:
    pytest.importorskip("torch")
    from export.finetune import TaskTrainConfig, train_command

    cmd = train_command(TaskTrainConfig(task="smart_home", init="smart_home", spoken=48, real_events=0.1), 5e-4)
    assert cmd.endswith("--spoken 48 --real-events 0.1")
    assert "--spoken" not in train_command(TaskTrainConfig(task="smart_home"), 5e-4)


def test_the_scenario_path_records_the_augmentation_options_too() -> None:
    pytest.importorskip("torch")
    from export.onnx_export import train_command as scenario_command

    cfg = {"scenario": "driving", "arch": "attention", "seed": 0, "epochs": 6, "n_train": 16000, "threads": 1,
           "augment": True, "corpus": "runs/corpus", "music": 24}
    assert scenario_command(cfg).endswith("--threads 1")  # the defaults say nothing
    assert scenario_command({**cfg, "spoken": 8, "real_events": 0.1}).endswith("--spoken 8 --real-events 0.1")
    old = {k: v for k, v in cfg.items() if k != "music"}  # a checkpoint from before --music trained without it
    assert scenario_command(old).endswith("--music 0")
