import threading
import time

import pytest

from edgefusion.postprocess import PostConfig, PostProcessor
from edgefusion.queues import BoundedQueue, DropCounter, Overflow, QueueClosed


def test_latest_wins_drops_oldest_and_counts():
    d = DropCounter()
    q: BoundedQueue[int] = BoundedQueue("f", 2, Overflow.LATEST, d)
    for i in range(5):
        assert q.put(i)
    assert [q.get(0), q.get(0), q.get(0)] == [3, 4, None]
    assert d.snapshot() == {"f/queue_full": 3}


def test_freshness_budget_drops_stale_items_on_get():
    d = DropCounter()
    now = [0]
    q: BoundedQueue[int] = BoundedQueue("f", 4, Overflow.LATEST, d, max_age_ns=10, age_of=lambda x: x,
                                        now_ns=lambda: now[0])
    q.put(0)
    q.put(15)
    now[0] = 20
    assert q.get(0) == 15
    assert d.snapshot() == {"f/too_old": 1}


def test_reject_refuses_new_items():
    d = DropCounter()
    q: BoundedQueue[int] = BoundedQueue("t", 1, Overflow.REJECT, d)
    assert q.put(1) and not q.put(2)
    assert q.get(0) == 1 and d.total() == 1


def test_block_back_pressures_until_room_and_honours_stop():
    d = DropCounter()
    q: BoundedQueue[int] = BoundedQueue("r", 1, Overflow.BLOCK, d)
    q.put(1)
    threading.Timer(0.2, lambda: q.get(0)).start()
    t0 = time.monotonic()
    assert q.put(2)
    assert time.monotonic() - t0 >= 0.15 and d.total() == 0
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert not q.put(3, stop)


def test_closed_queue_drains_then_raises():
    q: BoundedQueue[int] = BoundedQueue("c", 2, Overflow.BLOCK, DropCounter())
    q.put(1)
    q.close()
    assert not q.put(2)
    assert q.get(0) == 1
    with pytest.raises(QueueClosed):
        q.get(0)


def test_events_have_hysteresis_and_minimum_duration():
    pp = PostProcessor(PostConfig(on=0.6, off=0.4, event_min_steps=2, action_min_steps=1), ("smoke",))
    seq = [0.7, 0.3, 0.7, 0.7, 0.5, 0.45, 0.3, 0.3]
    states = [pp.update({"smoke": p}, "none", None).events for p in seq]
    # one spike is ignored; two in a row switch on; 0.5/0.45 stay on (above off); two lows switch off
    assert [bool(s) for s in states] == [False, False, False, True, True, True, True, False]


def test_actions_emit_once_per_change_or_new_command():
    pp = PostProcessor(PostConfig(action_min_steps=2), ())
    out = [pp.update({}, a, c) for a, c in [("none", None), ("none", None), ("lights_on", 1), ("none", 1),
                                            ("lights_on", 1), ("lights_on", 1), ("lights_on", 1), ("lights_on", 2)]]
    assert [o.emitted for o in out] == [False, True, False, False, False, True, False, True]
    assert [o.action for o in out][-1] == "lights_on"
