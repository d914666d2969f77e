from pathlib import Path

import numpy as np
import pytest

from edgefusion.errors import ConfigError
from edgefusion.scenarios import FPS, generate_samples, generate_timeline, get_scenario


@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_samples_are_deterministic(name):
    s = get_scenario(name)
    a = list(generate_samples(s, 8, seed=5))
    b = list(generate_samples(s, 8, seed=5))
    c = list(generate_samples(s, 8, seed=6))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.audio, y.audio) for x, y in zip(a, b))
    assert [x.command for x in a] == [x.command for x in b]
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c))


@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_sample_labels_follow_the_rules(name):
    s = get_scenario(name)
    for x in generate_samples(s, 50, seed=1):
        assert x.image.shape == (120, 160, 3) and x.image.dtype == np.uint8
        assert x.audio.shape == (16000,) and x.audio.dtype == np.float32
        assert x.action == s.decide(x.events, x.intent)
        assert x.events <= set(s.events)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_training_windows_cover_both_sides_of_the_overlap_rule(name):
    # a stream passes through every overlap at each sound's onset and end; training must see
    # labelled sounds that lie partly in the window but too little to count, and just enough
    from edgefusion.scenarios.base import AUDIO_WINDOW_S, MIN_OVERLAP_S, active_sound_labels

    s = get_scenario(name)
    rng = np.random.default_rng(0)
    below = just_enough = 0
    for _ in range(2000):
        for ev in s.random_sounds(rng, hard=False):
            if not ev.label:
                continue
            start, end = ev.audible_s
            overlap = min(end, AUDIO_WINDOW_S) - max(start, 0.0)
            counted = ev.kind in active_sound_labels([ev], AUDIO_WINDOW_S)
            assert counted == (overlap >= MIN_OVERLAP_S)
            below += 0 < overlap < MIN_OVERLAP_S
            just_enough += MIN_OVERLAP_S <= overlap < MIN_OVERLAP_S + 0.1
    assert below >= 100 and just_enough >= 40, (below, just_enough)  # of 2000 windows; 0 and 0 before


def test_labels_count_only_the_audible_part_of_a_sound():
    from edgefusion.scenarios.base import SoundEvent, active_sound_labels, audible_span

    s = get_scenario("smart_home")
    alarm = s.labelled_sound("smoke_alarm", onset_s=0.0, dur_s=2.0, gain=0.5, seed=1)
    start, end = alarm.audible_s
    assert start == 0.0 and 1.2 < end <= 1.5  # the T3 pattern's last 0.5 s is a pause: silence
    assert "smoke_alarm" in active_sound_labels([alarm], end + 0.65)
    assert "smoke_alarm" not in active_sound_labels([alarm], end + 0.75)  # only silence after `end`
    x = np.zeros(16000, np.float32)
    x[3200:8000] = 1.0
    x[8000:12000] = 0.05  # -26 dB: below the audible threshold
    assert audible_span(x) == (0.2, 0.5)
    assert SoundEvent("speech", 1.0, 0.5, 1.0, 0).audible_s == (1.0, 1.5)  # unmeasured: the nominal span


def test_smart_home_rules_need_every_modality():
    s = get_scenario("smart_home")
    # image decides: same command, light level differs
    assert s.decide(frozenset({"dark"}), "lights_on") == "lights_on"
    assert s.decide(frozenset(), "lights_on") == "none"
    assert s.decide(frozenset({"door_open"}), "lock_door") == "notify_door_open"
    # audio decides: same image and command
    assert s.decide(frozenset({"smoke_alarm"}), "lock_door") == "emergency"
    assert s.decide(frozenset({"glass_break"}), None) == "intrusion_alert"
    assert s.decide(frozenset({"glass_break", "person"}), None) == "none"
    # text decides: same scene
    assert s.decide(frozenset({"person", "doorbell"}), "let_in") == "unlock_door"
    assert s.decide(frozenset({"person", "doorbell"}), None) == "notify_visitor"


def test_driving_rules_need_every_modality():
    s = get_scenario("driving")
    assert s.decide(frozenset({"pedestrian", "siren"}), "turn_left") == "brake"
    assert s.decide(frozenset({"red_light"}), "continue") == "stop"
    assert s.decide(frozenset({"siren"}), "turn_left") == "pull_over"
    assert s.decide(frozenset({"horn"}), "turn_left") == "slow_down"
    assert s.decide(frozenset(), "turn_left") == "turn_left"
    assert s.decide(frozenset({"vehicle_close"}), "turn_left") == "slow_down"
    assert s.decide(frozenset(), None) == "proceed"
    assert s.decide(frozenset(), "pull_over") == "pull_over"


def test_timeline_streams_and_truth():
    s = get_scenario("smart_home")
    tl = generate_timeline(s, 4.0, seed=2)
    assert tl.frames.shape == (4 * FPS, 120, 160, 3)
    assert np.all(np.diff(tl.frame_t_ns) > 0) and tl.frame_t_ns.dtype == np.int64
    assert len(tl.audio) == 4 * 16000
    assert len(tl.truth_action) == len(tl.frames) and set(tl.truth_action) <= set(s.actions)
    again = generate_timeline(s, 4.0, seed=2)
    assert np.array_equal(tl.frames, again.frames) and np.array_equal(tl.audio, again.audio)


@pytest.mark.parametrize("name", ["smart_home", "driving"])
def test_background_fills_any_length(name):
    """n / SR * SR comes back as n - 1 for these n in floating point; the mix needs exactly n samples
    (synth --scenario driving --duration 64.1 failed on it)."""
    s = get_scenario(name)
    for n in (1001, int(64.1 * 16000)):
        assert len(s.background(n, np.random.default_rng(0), False)) == n
    assert len(generate_timeline(s, 0.0626, seed=1).audio) == int(0.0626 * 16000)


@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="the check reads /proc/meminfo")
def test_a_timeline_larger_than_memory_is_refused_before_it_is_built():
    with pytest.raises(ConfigError, match=r"--duration 1e\+09 s would need .* GiB .* make several shorter logs"):
        generate_timeline(get_scenario("driving"), 1e9, seed=0)


def test_unknown_scenario_has_a_hint():
    with pytest.raises(ConfigError, match="unknown scenario 'drivng'; did you mean 'driving'"):
        get_scenario("drivng")
