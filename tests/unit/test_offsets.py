"""Offsets are committed again while idle, so Kafka never expires them (defect 12)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.future import Future

from client.config import Config
from client.kafka import COMMIT_GAP, OFFSET_REFRESH, Committer, offsets_due
from supervisor.scheduler import Scheduler
from worker_pool.worker import Worker

TP = TopicPartition("TASKS", 0)
TP2 = TopicPartition("TASKS", 1)


def test_a_moved_offset_is_due_at_once() -> None:
    assert offsets_due({TP: 5}, {TP: (4, 100.0)}, 100.5) == {TP: 5}
    assert offsets_due({TP: 5}, {}, 100.5) == {TP: 5}


def test_an_unchanged_offset_is_committed_again_after_the_refresh_interval() -> None:
    committed = {TP: (5, 100.0), TP2: (9, 150.0)}
    assert offsets_due({TP: 5, TP2: 9}, committed, 100.0 + OFFSET_REFRESH - 1) == {}
    assert offsets_due({TP: 5, TP2: 9}, committed, 100.0 + OFFSET_REFRESH) == {TP: 5}
    assert offsets_due({TP: 5, TP2: 9}, committed, 150.0 + OFFSET_REFRESH) == {TP: 5, TP2: 9}


class IdleConsumer:
    """A consumer with nothing to read, at offset 7 of its one partition."""

    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Any]]:
        return {}

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def position(self, tp: TopicPartition) -> int:
        return 7

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)

    def commit_async(self, offsets: Any) -> Future:
        """As a broker that answers at once: the commit is done when it returns."""
        self.commit(offsets)
        return Future().success(None)


def test_an_idle_worker_commits_its_position_again_now_and_then() -> None:
    w = Worker(Config(), "W1")
    consumer = IdleConsumer()
    w._consumer = consumer  # type: ignore[assignment]
    w.loop()
    assert consumer.commits == []  # just started: nothing to refresh yet
    w._last_commit -= OFFSET_REFRESH
    w.loop()
    assert [{tp: o.offset for tp, o in c.items()} for c in consumer.commits] == [{TP: 7}]
    w.loop()
    assert len(consumer.commits) == 1  # and not again until the next interval
    w.stop()
    w._last_commit -= OFFSET_REFRESH
    w.loop()
    assert len(consumer.commits) == 1  # stopping: a batch may be half done, the position is not committed


def test_an_idle_scheduler_commits_its_tasks_offset_again_now_and_then() -> None:
    # Defect 12: it committed TASKS only when the offset changed.
    s = Scheduler(Config())
    tasks, status = IdleConsumer(), IdleConsumer()
    s._tasks_in, s._status_in = tasks, status  # type: ignore[assignment]
    s._next_offset[TP] = 7
    s._commit(1000.0)
    s._commit(1000.0 + OFFSET_REFRESH - 1)
    assert len(tasks.commits) == 1  # unchanged: not again yet
    s._commit(1000.0 + OFFSET_REFRESH)
    assert [{tp: o.offset for tp, o in c.items()} for c in tasks.commits] == [{TP: 7}, {TP: 7}]


class Answerable:
    """A consumer whose async commits the test answers (``answer``, ``refuse``); sync ones are noted."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[TopicPartition, int]]] = []
        self.futures: list[Future] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.sent.append(("sync", {tp: m.offset for tp, m in offsets.items()}))

    def commit_async(self, offsets: dict[TopicPartition, Any]) -> Future:
        self.sent.append(("async", {tp: m.offset for tp, m in offsets.items()}))
        self.futures.append(Future())
        return self.futures[-1]

    def answer(self) -> None:
        self.futures[-1].success(None)

    def refuse(self) -> None:
        self.futures[-1].failure(KafkaError("the coordinator moved"))


def test_a_commit_in_flight_holds_the_next_back_and_the_newest_goes_once_it_is_answered() -> None:
    consumer = Answerable()
    c = Committer(consumer)  # type: ignore[arg-type]
    assert c.commit({TP: 5}, 1.0) == {TP: 5}
    assert c.busy and c.commit({TP: 6}, 1.1) == {} and c.commit({TP: 7}, 1.2) == {}
    consumer.answer()
    assert not c.busy and c.committed == {TP: (5, 1.0)}
    assert c.commit({TP: 7}, 1.3) == {TP: 7}
    assert consumer.sent == [("async", {TP: 5}), ("async", {TP: 7})]


def test_a_refused_commit_is_logged_and_its_offsets_stay_due(caplog: pytest.LogCaptureFixture) -> None:
    consumer = Answerable()
    c = Committer(consumer)  # type: ignore[arg-type]
    c.commit({TP: 5}, 1.0)
    consumer.refuse()
    with caplog.at_level(logging.WARNING, logger="yadtq.kafka"):
        assert c.commit({TP: 5}, 1.0 + 2 * COMMIT_GAP) == {TP: 5}  # sent again, after the gap
    assert "committing offsets {'TASKS:0': 5} failed (sent again later): " in caplog.text
    assert c.committed == {}


def test_a_waited_commit_is_synchronous_after_the_one_in_flight() -> None:
    consumer = Answerable()
    c = Committer(consumer)  # type: ignore[arg-type]
    c.commit({TP: 5}, 1.0)
    threading.Timer(0.05, consumer.answer).start()  # the broker answers on kafka-python's IO thread
    assert c.commit({TP: 6}, 1.1, wait=True) == {TP: 6}
    assert consumer.sent == [("async", {TP: 5}), ("sync", {TP: 6})]
    assert c.committed == {TP: (6, 1.1)} and not c.busy


def test_an_idle_committer_sends_an_unchanged_offset_again_only_after_the_refresh_interval() -> None:
    consumer = Answerable()
    c = Committer(consumer)  # type: ignore[arg-type]
    c.commit({TP: 5}, 100.0)
    consumer.answer()
    assert c.commit({TP: 5}, 100.0 + OFFSET_REFRESH - 1) == {}
    assert c.commit({TP: 5}, 100.0 + OFFSET_REFRESH) == {TP: 5}


def test_a_worker_commits_a_batch_held_back_by_a_commit_in_flight_at_its_next_empty_poll() -> None:
    w = Worker(Config(), "W1")
    consumer = Answerable()
    w._consumer = consumer  # type: ignore[assignment]
    w._committer.gap = 0.0  # here only the commit in flight holds back (the gap: its own tests)
    w._owed = {TP: 5}
    w._pay(careful=False)
    w._owed = {TP: 9}
    w._pay(careful=False)  # the first is in flight: owed still
    assert consumer.sent == [("async", {TP: 5})] and w._owed == {TP: 9}
    consumer.answer()
    w._pay(careful=False)
    assert consumer.sent[-1] == ("async", {TP: 9}) and w._owed == {}
    consumer.answer()
    w._owed = {TP: 10}
    w._pay(careful=True)  # careful mode: its quarantine needs the commit done
    assert consumer.sent[-1] == ("sync", {TP: 10})


def test_a_stopping_worker_sends_what_it_still_owes_once_the_commit_in_flight_is_answered() -> None:
    w = Worker(Config(), "W1")
    consumer = Answerable()
    closed: list[bool] = []
    consumer.close = lambda autocommit=True: closed.append(autocommit)  # type: ignore[attr-defined]
    w._consumer = consumer  # type: ignore[assignment]
    w._owed = {TP: 5}
    w._pay(careful=False)
    w._owed = {TP: 9}  # the last batch, held back by the commit in flight
    threading.Timer(0.05, consumer.answer).start()
    answer_next = threading.Timer(0.2, lambda: consumer.futures[-1].success(None))
    answer_next.start()
    w.shutdown()
    assert consumer.sent == [("async", {TP: 5}), ("async", {TP: 9})] and w._owed == {}
    assert consumer.futures[-1].is_done and closed == [False]  # waited for, then closed


def test_within_the_gap_nothing_is_sent_and_the_newest_offsets_go_after_it_or_when_forced() -> None:
    consumer = Answerable()
    c = Committer(consumer, gap=0.2)  # type: ignore[arg-type]
    assert c.commit({TP: 5}, 10.0) == {TP: 5}
    consumer.answer()
    assert not c.ready(10.1) and c.commit({TP: 6}, 10.1) == {} and c.commit({TP: 7}, 10.19) == {}
    assert c.ready(10.21) and c.commit({TP: 8}, 10.21) == {TP: 8}  # the newest, once the gap is over
    consumer.answer()
    assert c.commit({TP: 9}, 10.26, force=True) == {TP: 9}  # a clean stop does not wait for the gap
    consumer.answer()
    assert c.commit({TP: 10}, 10.31, wait=True) == {TP: 10}  # nor does careful mode
    assert consumer.sent == [("async", {TP: 5}), ("async", {TP: 8}), ("async", {TP: 9}), ("sync", {TP: 10})]


def test_a_worker_commits_at_most_once_a_gap_and_pays_the_rest_when_it_stops() -> None:
    w = Worker(Config(), "W1")
    consumer = Answerable()
    consumer.close = lambda autocommit=True: None  # type: ignore[attr-defined]
    w._consumer = consumer  # type: ignore[assignment]
    w._committer.gap = 60.0  # no second commit during this test but the one shutdown forces
    for offset in (5, 9, 12):  # three batches in a row
        w._owed = {TP: offset}
        w._pay(careful=False)
        if not consumer.futures[-1].is_done:
            consumer.answer()
    assert consumer.sent == [("async", {TP: 5})] and w._owed == {TP: 12}
    threading.Timer(0.05, lambda: consumer.futures[-1].success(None)).start()
    w.shutdown()
    assert consumer.sent == [("async", {TP: 5}), ("async", {TP: 12})] and w._owed == {}


def test_a_scheduler_that_stops_cleanly_commits_what_the_gap_held_back() -> None:
    s = Scheduler(Config())
    tasks, status = IdleConsumer(), IdleConsumer()
    s._tasks_in, s._status_in = tasks, status  # type: ignore[assignment]
    s._next_offset[TP] = 7
    s._commit(1000.0)
    s._next_offset[TP] = 9
    s._commit(1000.0 + COMMIT_GAP / 2)  # within the gap: held back
    assert [{tp: o.offset for tp, o in c.items()} for c in tasks.commits] == [{TP: 7}]
    s.stop()
    s.run()  # stopped already: no round, only the last commit
    assert [{tp: o.offset for tp, o in c.items()} for c in tasks.commits] == [{TP: 7}, {TP: 9}]
