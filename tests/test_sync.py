"""Sync policies with skewed clocks, missing and stale modalities; every outcome counted."""

import numpy as np

from edgefusion.samples import AudioChunk, Command, Frame
from edgefusion.sync import MissingPolicy, SyncConfig, Synchronizer

S = 1_000_000_000
IMG = np.zeros((4, 4, 3), np.uint8)


def _audio(t0_ns, seconds=2.0, value=0.5):
    return AudioChunk(t_ns=t0_ns, samples=np.full(int(16000 * seconds), value, np.float32), sample_rate=16000)


def test_window_is_the_last_second_before_the_frame():
    s = Synchronizer(SyncConfig())
    x = np.arange(32000, dtype=np.float32)
    s.add_audio(AudioChunk(t_ns=0, samples=x, sample_rate=16000))
    w, info = s.on_frame(Frame(t_ns=int(1.5 * S), image=IMG))
    assert w is not None and len(w.audio) == 16000
    assert w.audio[0] == 8000 and w.audio[-1] == 23999  # [0.5 s, 1.5 s)
    assert info.audio_skew_ns == -S // 2 and s.outcomes["ok"] == 1


def test_windows_over_a_long_stream_in_uneven_chunks_are_exact():
    # 20 s through a 4 s buffer in chunks of 1..9000 samples: each window is the signal's slice
    rng = np.random.default_rng(7)
    x = rng.standard_normal(16000 * 20).astype(np.float32)
    s = Synchronizer(SyncConfig())
    pos = 0
    while pos < len(x):
        n = int(rng.integers(1, 9000))
        s.add_audio(AudioChunk(t_ns=pos * S // 16000, samples=x[pos : pos + n], sample_rate=16000))
        pos += n
        end = min(pos, len(x))
        if end >= 16000:
            w, _ = s.on_frame(Frame(t_ns=end * S // 16000, image=IMG))
            assert w is not None and np.array_equal(w.audio, x[end - 16000 : end]), end


def test_audio_offset_is_corrected_by_configuration():
    late = _audio(-3 * S, seconds=2.0)  # the mic clock runs 2 s behind: its audio seems to end at -1 s
    plain = Synchronizer(SyncConfig())
    plain.add_audio(late)
    w, info = plain.on_frame(Frame(t_ns=S, image=IMG))
    assert w is not None and "audio" in w.missing and info.outcome == "masked_audio_stale"
    fixed = Synchronizer(SyncConfig(offsets_ns={"audio": 2 * S}))
    fixed.add_audio(late)
    w, info = fixed.on_frame(Frame(t_ns=S, image=IMG))
    assert w is not None and w.missing == ("text",) and info.audio_skew_ns == 0


def test_audio_missing_masks_or_skips_by_policy():
    mask = Synchronizer(SyncConfig(audio_policy=MissingPolicy.MASK))
    w, _ = mask.on_frame(Frame(t_ns=S, image=IMG))
    assert w is not None and w.missing == ("audio", "text")
    assert mask.outcomes["masked_audio_missing"] == 1
    skip = Synchronizer(SyncConfig(audio_policy="skip"))
    w, info = skip.on_frame(Frame(t_ns=S, image=IMG))
    assert w is None and info.outcome == "skipped_audio_missing" and skip.outcomes["skipped_audio_missing"] == 1


def test_command_valid_for_its_horizon_then_stale():
    s = Synchronizer(SyncConfig(command_horizon_ns=3 * S))
    s.add_audio(_audio(0, seconds=10))
    s.add_command(Command(t_ns=S, text="lock the door"))
    assert s.on_frame(Frame(t_ns=int(0.5 * S), image=IMG))[0].command is None  # not issued yet
    w, info = s.on_frame(Frame(t_ns=2 * S, image=IMG))
    assert w.command_text == "lock the door" and info.command_age_ns == S
    w, _ = s.on_frame(Frame(t_ns=5 * S, image=IMG))
    assert w.command is None and "text" in w.missing
    assert s.outcomes["command_expired"] == 1


def test_spent_commands_are_not_reused_when_consumed():
    s = Synchronizer(SyncConfig(consume_commands=True))
    s.add_command(Command(t_ns=0, text="lights on"))
    w, _ = s.on_frame(Frame(t_ns=S // 10, image=IMG))
    assert w.command_text == "lights on"
    s.spend(w.command_t_ns)
    assert s.on_frame(Frame(t_ns=S // 5, image=IMG))[0].command is None


def test_gaps_are_filled_and_overlaps_trimmed():
    s = Synchronizer(SyncConfig())
    s.add_audio(_audio(0, seconds=1.2, value=1.0))
    s.add_audio(_audio(int(1.3 * S), seconds=0.7, value=2.0))  # 0.1 s gap: filled, the window stays whole
    s.add_audio(_audio(int(1.9 * S), seconds=0.2, value=3.0))  # 0.1 s overlap
    w, _ = s.on_frame(Frame(t_ns=int(2.1 * S), image=IMG))
    assert s.outcomes["audio_gap_filled"] == 1
    a = w.audio
    assert len(a) == 16000
    # [1.1, 1.2) first, [1.2, 1.3) gap, [1.3, 2.0) second, [2.0, 2.1) third
    assert set(np.unique(a)) == {0.0, 1.0, 2.0, 3.0}
    assert np.count_nonzero(a == 0.0) == int(0.1 * 16000) and np.count_nonzero(a == 1.0) == int(0.1 * 16000)
    assert a[-1] == 3.0 and np.count_nonzero(a == 3.0) == int(0.1 * 16000)


def test_a_window_not_yet_whole_is_partial_audio_by_policy():
    """A window reaching before the stream's first sample, or across a hole longer than the
    allowed skew, would be padded with digital silence: its audio is missing until it is whole."""
    for policy in ("mask", "skip"):
        s = Synchronizer(SyncConfig(audio_policy=policy))
        s.add_audio(_audio(0, seconds=0.5))
        w, info = s.on_frame(Frame(t_ns=S // 2, image=IMG))  # half a window heard so far
        assert info.outcome == f"{policy}ed_audio_partial".replace("skiped", "skipped")
        assert (w is None) == (policy == "skip") and (w is None or w.missing == ("audio", "text"))
        s.add_audio(_audio(S // 2, seconds=0.5))
        w, info = s.on_frame(Frame(t_ns=S, image=IMG))  # whole now
        assert w is not None and info.outcome == "ok"
        s.add_audio(_audio(int(1.2 * S), seconds=1.0, value=2.0))  # a 0.2-s hole (more than the 0.15-s skew)
        assert s.on_frame(Frame(t_ns=int(2.1 * S), image=IMG))[1].outcome.endswith("_audio_partial")
        w, info = s.on_frame(Frame(t_ns=int(2.2 * S), image=IMG))  # a whole second after the hole
        assert w is not None and info.outcome == "ok" and set(np.unique(w.audio)) == {2.0}
        partial = sum(v for k, v in s.outcomes.items() if k.endswith("_audio_partial"))
        assert partial == 2, s.outcomes


def test_band_limited_audio_is_counted_and_wideband_is_not(caplog):
    from edgefusion.preprocess import resample

    rng = np.random.default_rng(3)
    wide = rng.normal(0, 0.1, 16000 * 12).astype(np.float32)
    narrow = resample(resample(wide, 16000, 8000), 8000, 16000).astype(np.float32)
    outcomes = {}
    for name, x in (("wide", wide), ("narrow", narrow)):
        s = Synchronizer(SyncConfig())
        for i in range(0, len(x), 1600):  # 100 ms chunks, as a microphone delivers them
            s.add_audio(AudioChunk(t_ns=i * S // 16000, samples=x[i:i + 1600], sample_rate=16000))
        outcomes[name] = s.outcomes["audio_band_limited"]
    assert outcomes == {"wide": 0, "narrow": 2}  # two full 5 s periods in 12 s
    assert sum("almost no energy above 4000 Hz" in r.message for r in caplog.records) == 1


def test_a_synthesized_driving_scene_is_not_taken_for_an_8_khz_source():
    """Engine, siren and horn carry little above 4 kHz, but not nothing (the demo warned on them once)."""
    from edgefusion.preprocess.audio import BandLimitDetector
    from edgefusion.scenarios import generate_timeline, get_scenario

    tl = generate_timeline(get_scenario("driving"), 30.0, seed=12)
    det = BandLimitDetector(16000, log=False)
    for i in range(0, len(tl.audio), 800):
        det.update(tl.audio[i:i + 800])
    assert det.band_limited_periods == 0


def test_a_stream_start_fires_no_audio_event():
    """smart_home fired ``speech`` on steps 7-20 of every event-free stream: the first windows were
    padded with digital silence. Now their audio is missing (and the steps say so) until it is whole."""
    import copy

    from edgefusion.demo import run_timeline
    from edgefusion.scenarios import generate_timeline, get_scenario

    quiet = copy.copy(get_scenario("smart_home"))
    quiet.audio_event_prob = {}  # no labelled sound: distractors, visual states and commands only
    for seed in (1, 2):
        results = run_timeline(generate_timeline(quiet, 2.0, seed=seed), "smart_home", out=None).results
        assert all("audio" in r.missing for r in results[:29]) and "audio" not in results[30].missing
        fired = [(i, e) for i, r in enumerate(results) for e in r.events if e in quiet.audio_events]
        assert fired == [], fired
