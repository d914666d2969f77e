"""Streaming quality of the built-in packages on 60 s synthesized timelines, at event level."""

import pytest

from edgefusion.demo import run_timeline
from edgefusion.scenarios import FPS, generate_timeline, get_scenario

pytestmark = pytest.mark.slow  # 60 s timelines through the real models


@pytest.mark.parametrize("scenario", ["smart_home", "driving"])
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
