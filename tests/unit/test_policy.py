"""The scheduler's tables and its least-loaded-live-worker policy."""

from __future__ import annotations

from client.store import encode_placement, parse_placement
from supervisor.policy import Placement, SchedulerState

NOW = 1000.0


def state(workers: int = 3, max_pending: int = 4) -> SchedulerState:
    s = SchedulerState([f"W{i}" for i in range(1, workers + 1)], max_pending, heartbeat_timeout=5.0)
    for w in s.workers:
        s.heartbeat(w, NOW)
    return s


def test_picks_the_least_loaded_live_worker() -> None:
    s = state()
    s.place("a", Placement("W1", 1, "{}"))
    s.place("b", Placement("W1", 1, "{}"))
    s.place("c", Placement("W3", 1, "{}"))
    assert s.choose(NOW) == "W2"


def test_equal_loads_take_turns() -> None:
    s = state()
    picks = []
    for i in range(6):
        w = s.choose(NOW)
        assert w is not None
        picks.append(w)
        s.place(str(i), Placement(w, 1, "{}"))
    assert sorted(picks) == ["W1", "W1", "W2", "W2", "W3", "W3"]


def test_ties_rotate_in_worker_order_from_the_first() -> None:
    """With equal loads each choice starts one worker further on, so no worker is favoured
    (a rotation that skips or repeats one would pile the ties on it)."""
    s = state()
    assert [s.choose(NOW) for _ in range(7)] == ["W1", "W2", "W3", "W1", "W2", "W3", "W1"]


def test_a_worker_without_a_recent_heartbeat_gets_nothing() -> None:
    s = state()
    s.heartbeat("W2", NOW + 10)
    assert s.live(NOW + 10) == ["W2"]
    assert s.choose(NOW + 10) == "W2"
    assert state().choose(NOW + 5.0) is None  # every heartbeat is exactly the timeout old


def test_old_heartbeats_do_not_move_last_seen_back() -> None:
    s = state()
    s.heartbeat("W1", NOW - 100)
    assert s.is_live("W1", NOW + 1)


def test_no_worker_has_room_past_max_pending() -> None:
    s = state(workers=2, max_pending=1)
    s.place("a", Placement("W1", 1, "{}"))
    s.place("b", Placement("W2", 1, "{}"))
    assert s.choose(NOW) is None
    assert s.finished("a", 1)
    assert s.choose(NOW) == "W1"


def test_a_stale_attempt_does_not_finish_the_task() -> None:
    s = state()
    s.place("a", Placement("W1", 2, "{}"))
    assert not s.finished("a", 1)
    assert s.load["W1"] == 1
    assert s.finished("a", 2)
    assert s.load["W1"] == 0 and "a" not in s.tasks


def test_replacing_a_placement_moves_the_load() -> None:
    s = state()
    s.place("a", Placement("W1", 1, "{}"))
    s.place("a", Placement("W2", 2, "{}"))
    assert s.load == {"W1": 0, "W2": 1, "W3": 0}


def test_orphan_takes_every_task_from_a_dead_worker() -> None:
    s = state()
    s.place("a", Placement("W1", 1, "A"))
    s.place("b", Placement("W2", 1, "B"))
    s.place("c", Placement("W1", 3, "C"))
    moved = s.orphan("W1")
    assert [(t, p.payload) for t, p in moved] == [("a", "A"), ("c", "C")]
    assert s.load == {"W1": 0, "W2": 1, "W3": 0}
    assert not s.is_live("W1", NOW)


def test_placement_text_round_trip() -> None:
    p = Placement("W1", 7, '{"task-id":"x|y","args":["a|b"]}')
    assert parse_placement(encode_placement(p)) == p


def test_an_unreadable_placement_is_none_not_a_crash() -> None:
    for text in ("", "W1", "W1|x|{}", "W1|-1|{}", "W1|٣|{}", None, 7):
        assert parse_placement(text) is None
