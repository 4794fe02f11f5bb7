"""Offsets are committed again while idle, so Kafka never expires them (defect 12)."""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

from client.config import Config
from client.kafka import OFFSET_REFRESH, offsets_due
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
