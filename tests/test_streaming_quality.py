"""Streaming quality of the built-in packages on 60 s synthesized timelines, at event level."""

import pytest

from edgefusion.demo import run_timeline
from edgefusion.scenarios import FPS, generate_timeline, get_scenario

KNOWN_GAP = pytest.mark.xfail(strict=True, reason=(
    "smart_home: event precision 0.92 < 0.95; its 3 false emissions come 50-100 ms outside the 250 ms tolerance "
    "at audio-event edges, where the model's boundary differs from the 0.3 s overlap rule of the labels"))


@pytest.mark.parametrize("scenario", [pytest.param("smart_home", marks=KNOWN_GAP), "driving"])
def test_actions_match_ground_truth_at_event_level(scenario):
    tl = generate_timeline(get_scenario(scenario), 60.0, seed=2024)
    rep = run_timeline(tl, scenario, threads=2, out=None)
    lv = rep.event_level
    summary = (f"{scenario}: precision {lv['precision']:.3f}, recall {lv['recall']:.3f} "
               f"({lv['detected']}/{lv['segments']}), reaction {lv['median_reaction_ns'] / 1e6:.0f} ms, "
               f"frame accuracy {rep.action_accuracy:.3f}")
    print(summary)
    assert lv["segments"] >= 20, summary
    assert lv["precision"] >= 0.95, summary
    assert lv["recall"] >= 0.95, summary
    assert lv["median_reaction_ns"] <= 3 * 1e9 / FPS, summary
    assert rep.drops == {}, rep.drops
