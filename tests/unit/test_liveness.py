"""Liveness from arrival times on the judge's monotonic clock (supervisor/liveness.py).

A heartbeat's ``ts`` is the sender's wall clock: a step of that clock larger
than heartbeat_timeout (NTP, a resumed VM) must neither kill a worker nor keep
a silent one alive, for the supervisor and the scheduler alike.
"""

from __future__ import annotations

import time

import pytest

from client.config import Config
from client.protocol import Heartbeat, encode_event
from supervisor.liveness import Liveness
from supervisor.scheduler import Scheduler
from supervisor.supervisor import Supervisor

WALL = time.time()
JUMPS = [-3600.0, -7.0, 7.0, 3600.0]  # the sender's clock stepped back or forward, by more than the timeout


def test_a_sender_is_live_while_its_heartbeats_arrive_and_lapses_when_they_stop() -> None:
    judge = Liveness(timeout=6.0, startup_timeout=30.0)
    judge.watch("W1", 42, at=100.0)
    assert judge.lapsed("W1", 129.0) is None
    assert judge.lapsed("W1", 131.0) == "no heartbeat within 30s of starting"
    for at in (131.0, 132.0, 133.0):
        assert judge.beat("W1", 42, at)
        assert judge.is_live("W1", at + 5.9) and judge.lapsed("W1", at + 5.9) is None
    assert not judge.is_live("W1", 139.0)
    assert judge.lapsed("W1", 139.5) == "no heartbeat for 6.5s"


def test_a_replaced_process_beats_in_vain() -> None:
    judge = Liveness(timeout=6.0, startup_timeout=30.0)
    judge.watch("W1", 42, at=100.0)
    judge.watch("W1", 43, at=101.0)  # restarted
    assert not judge.beat("W1", 42, 102.0)
    assert not judge.has_beaten("W1")
    assert judge.beat("W1", 43, 102.0) and judge.has_beaten("W1")


def test_arrivals_out_of_order_do_not_move_the_last_one_back() -> None:
    judge = Liveness(timeout=6.0)
    judge.beat("W1", None, 100.0)
    judge.beat("W1", None, 50.0)
    assert judge.is_live("W1", 105.0)


def test_forgetting_a_sender_never_seen_is_harmless() -> None:
    judge = Liveness(timeout=6.0)
    judge.forget("W9")  # a worker orphaned twice, or never heard of
    assert judge.lapsed("W9", 100.0) is None


def test_after_an_outage_without_startup_timeout_silence_is_judged_from_the_resume() -> None:
    """The scheduler's judge (no startup timeout): once Kafka is back, a worker that never
    beats again lapses ``timeout`` after the resume, not never."""
    judge = Liveness(timeout=6.0)
    judge.beat("W1", None, 0.0)
    judge.pause()
    assert judge.lapsed("W1", 50.0) is None  # silence during the outage says nothing
    judge.resume(100.0)
    assert judge.is_live("W1", 105.0) and judge.lapsed("W1", 105.0) is None
    assert judge.lapsed("W1", 107.0) == "no heartbeat for 7.0s"


def test_after_an_outage_the_judgement_starts_at_the_latest_startup_timeout_later() -> None:
    """With a startup timeout, judging resumes at the first heartbeat, or ``startup_timeout``
    after the resume: then a sender silent since the resume lapses, including one first heard
    of through a heartbeat (never watched) and one never heard at all."""
    judge = Liveness(timeout=5.0, startup_timeout=10.0)
    judge.beat("A", None, 0.0)  # not watched: first seen through its heartbeat
    judge.beat("B", None, 0.0)
    judge.watch("C", 7, 0.0)  # started, never beat
    judge.pause()
    judge.resume(100.0)
    assert judge.lapsed("B", 109.0) is None  # judged from 110 at the latest
    assert judge.beat("A", None, 110.0)  # exactly at that bound: not "the first since the outage"
    assert judge.lapsed("B", 110.0) == "no heartbeat for 10.0s"
    assert judge.lapsed("C", 111.0) == "no heartbeat within 10s of starting"
    assert judge.lapsed("A", 111.0) is None


@pytest.mark.parametrize("jump", JUMPS)
def test_the_scheduler_judges_arrivals_not_the_senders_clock(jump: float) -> None:
    s = Scheduler(Config())  # heartbeat_timeout 6; no service is touched before initialize()
    for i in range(10):  # one heartbeat a second, each stamped by a clock that stepped by ``jump``
        raw = encode_event(Heartbeat("W1", "worker", 42, WALL + jump + i))
        s._on_event(raw, WALL + i, arrived=500.0 + i)
        assert s.state.is_live("W1", 500.5 + i)
        assert s.state.choose(500.5 + i) is not None
    assert not s.state.is_live("W1", 509.0 + 6.0)  # silent for the timeout: lapsed, whatever ts said


@pytest.mark.parametrize("jump", JUMPS)
def test_the_supervisor_judges_arrivals_not_the_senders_clock(jump: float) -> None:
    sup = Supervisor(Config(), say=lambda line: None)

    class Alive:
        pid, exitcode = 42, None

        def is_alive(self) -> bool:
            return True

    w1 = sup.children["W1"]
    w1.process = Alive()  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 490.0)
    for i in range(10):
        sup._on_heartbeat(Heartbeat("W1", "worker", 42, WALL + jump + i), 500.0 + i)
        assert sup._death(w1, 500.5 + i) is None
    assert sup._death(w1, 509.0 + 6.5) == "no heartbeat for 6.5s"
