"""The worker's handling of its assignments, on a real Redis with stand-ins for Kafka.

Cheaper than a cluster, and visible to mutmut (the cluster tests run the
worker in child processes it cannot see). The worker's code is the real one:
assignments go in as its consumer would hand them over (encoded with
client/protocol.py), the task's record lives in Redis and goes through the
real CLAIM, FINISH, RETRY and RELEASE scripts, and the status events and
offset commits it makes are read back from the stand-ins.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.future import Future
from kafka.structs import OffsetAndMetadata

from client import kafka as kafka_io
from client.config import Config
from client.errors import Fenced
from client.protocol import (
    Assignment,
    Heartbeat,
    Task,
    TaskOptions,
    TasksFinished,
    encode_assignment,
    encode_task,
    parse_event,
)
from client.store import Claim, Keys, Status, TaskStore, connect
from tests.integration.conftest import REDIS
from tests.integration.test_scheduler_store import FakeProducer
from tests.support.harness import wait_until
from worker_pool import quarantine
from worker_pool import worker as worker_module
from worker_pool.context import current_task
from worker_pool.process import EXIT_FENCED, EXIT_HARD_LIMIT
from worker_pool.registry import Registry
from worker_pool.worker import HARD_LIMIT_GRACE, Worker, _Running

pytestmark = pytest.mark.integration

TOPIC = "yadtq-test-worker-W1"
TP = TopicPartition(TOPIC, 0)


@dataclass
class Rec:
    """A consumer record as kafka-python hands it over (the fields the worker reads)."""

    topic: str
    partition: int
    offset: int
    value: bytes


class FakeConsumer:
    """Hands over the batches queued in ``batches``, one per poll; keeps the commits."""

    def __init__(self) -> None:
        self.batches: list[dict[TopicPartition, list[Rec]]] = []
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.closed = False

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.commits.append(offsets)

    def commit_async(self, offsets: Any) -> Future:
        """As a broker that answers at once: the commit is done when it returns."""
        self.commit(offsets)
        return Future().success(None)

    def close(self, autocommit: bool = True) -> None:
        self.closed = autocommit is False  # a close that commits would commit past unrecorded work


class _Exit(Exception):
    """Stands for the process's end (os._exit): a real one would end the test run with code 0."""


class Hooks:
    """What the test tasks do to the world while they run (set by each test)."""

    worker: Worker
    seen: list[Any] = []


def _add(a: int, b: int) -> int:
    return a + b


def _boom() -> None:
    raise ValueError("bad value")


def _unstorable() -> object:
    return object()


def _slow(seconds: float) -> None:
    Hooks.seen.append(Hooks.worker.running)  # what the watchdog sees while the task runs
    time.sleep(seconds)


def _ends_elsewhere_then_raises() -> None:
    """Another attempt ends the record while this one runs; then this one raises."""
    w = Hooks.worker
    pipe = w.store.pipeline()
    w.store.finish(pipe, "t1", 1, Status.SUCCESS, 5.0, {"result": "99"})
    w.store.execute(pipe)
    raise ValueError("late")


def _newer_epoch_then_raises() -> None:
    Hooks.worker.redis.set(Hooks.worker.store.keys.epoch, "5")
    raise ValueError("fenced")


def _context(n: int, *, m: int = 0) -> list[Any]:
    ctx = current_task()
    return [ctx.task_id, ctx.name, ctx.attempt, ctx.worker, ctx.config.redis.key_prefix, n, m]


def _stops(n: int) -> int:
    Hooks.worker._stop.set()  # SIGTERM while this task runs
    return n


def _registry() -> Registry:
    r = Registry()
    for fn, name in ((_add, "add"), (_boom, "boom"), (_unstorable, "unstorable"), (_slow, "slow"),
                     (_ends_elsewhere_then_raises, "ends_elsewhere"), (_newer_epoch_then_raises, "new_epoch"),
                     (_context, "context"), (_stops, "stops")):
        r.register(fn, name)
    return r


@pytest.fixture
def worker(services: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    config = Config.from_dict({"redis": {"url": REDIS, "key_prefix": prefix},
                               "tasks": {"max_retries": 2, "retry_backoff": 30.0, "retry_backoff_max": 300.0}})
    w = Worker(config, "W1", _registry())
    w.redis = connect(REDIS)
    w.store = TaskStore(w.redis, Keys(prefix), config.tasks.result_ttl, w.epoch)
    w._producer = FakeProducer()  # type: ignore[assignment]
    w._consumer = FakeConsumer()  # type: ignore[assignment]
    Hooks.worker, Hooks.seen = w, []
    exits: list[int] = []

    def no_exit(code: int) -> None:  # a test that expects the process's end patches os._exit itself
        exits.append(code)
        w._closed.set()  # a heartbeat thread then stops
        raise _Exit(code)
    monkeypatch.setattr(os, "_exit", no_exit)
    yield w
    assert exits == [], f"the worker process would have ended with {exits}"
    keys = list(w.redis.scan_iter(match=f"{prefix}*"))
    if keys:
        w.redis.delete(*keys)
    w.redis.close()


def place(w: Worker, t: Task, retries: int = 2) -> None:
    """Record ``t`` as the scheduler does when it places attempt 1 on W1."""
    pipe = w.store.pipeline()
    w.store.assign(pipe, t.task_id, t.name, "W1", encode_task(t).decode(), 1.0, retries, "new", 0)
    w.store.execute(pipe)


def rec(t: Task, attempt: int = 1, offset: int = 7) -> Rec:
    return Rec(TOPIC, 0, offset, encode_assignment(Assignment(t, attempt, "W1")))


def deliver(w: Worker, *records: Rec) -> list[list[Any]]:
    """One poll returning ``records``; the (task, attempt, status) reports the worker sent."""
    consumer: FakeConsumer = w._consumer  # type: ignore[assignment]
    consumer.batches.append({TP: list(records)})
    w.loop()
    return reports(w)


def reports(w: Worker) -> list[list[Any]]:
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    out = []
    for topic, value, _ in producer.sent:
        event = parse_event(value) if topic == w.config.topics.status else None
        if isinstance(event, TasksFinished):
            assert event.worker == "W1"
            out.extend([list(x) for x in event.tasks])
    return out


def commits(w: Worker) -> list[dict[TopicPartition, OffsetAndMetadata]]:
    consumer: FakeConsumer = w._consumer  # type: ignore[assignment]
    return consumer.commits


# --- a task that runs ---

def test_a_claimed_task_runs_its_result_is_stored_reported_then_committed(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    t0 = time.time()
    assert deliver(w, rec(t, offset=7)) == [["t1", 1, "success"]]
    r = w.store.record("t1")
    assert t0 <= float(r["started_at"]) <= float(r["finished_at"]) <= time.time()  # now, not a default
    assert (r["status"], r["result"], r["attempt"], r["worker"]) == ("success", "3", "1", "W1")
    assert w.redis.ttl(w.store.keys.task("t1")) > 0
    assert commits(w) == [{TP: OffsetAndMetadata(8, "", -1)}]
    assert w._held is None and w.running is None
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # its time limit's timer is off again


def test_a_result_is_written_with_the_next_claim_and_all_before_the_commit(worker: Worker) -> None:
    w = worker
    t1, t2 = Task("t1", "add", [1, 2]), Task("t2", "add", [3, 4])
    place(w, t1)
    place(w, t2)
    t0 = time.time()
    w.handle(rec(t1, offset=3))
    ended = time.time()
    assert w.store.record("t1")["status"] == "processing"  # held: written with the next claim
    time.sleep(0.01)
    w.handle(rec(t2, offset=4))
    assert w.store.record("t1")["status"] == "success"
    assert t0 <= float(w.store.record("t1")["finished_at"]) <= ended < float(w.store.record("t2")["started_at"])
    assert w.store.record("t2")["status"] == "processing"
    w.write_held_result()
    w.send_reports(force=True)
    assert w.store.record("t2")["result"] == "7"
    assert reports(w) == [["t1", 1, "success"], ["t2", 1, "success"]]


def test_a_batch_commits_past_its_last_record_once(worker: Worker) -> None:
    w = worker
    t1, t2 = Task("t1", "add", [1, 2]), Task("t2", "add", [3, 4])
    place(w, t1)
    place(w, t2)
    assert deliver(w, rec(t1, offset=3), rec(t2, offset=4)) == [["t1", 1, "success"], ["t2", 1, "success"]]
    assert commits(w) == [{TP: OffsetAndMetadata(5, "", -1)}]
    w.loop()  # idle just after a commit: nothing to refresh
    assert commits(w) == [{TP: OffsetAndMetadata(5, "", -1)}]


def test_the_claim_records_this_process_and_counts_a_death_against_the_tasks_own_retries(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2], options=TaskOptions(max_retries=0))
    place(w, t, retries=0)
    # An earlier process of W1 claimed it and died: with no retry left, this claim fails it.
    pipe = w.store.pipeline()
    w.store.claim(pipe, "t1", 1, "W1", 2.0, 999999, 0)
    w.store.execute(pipe)
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    assert w.store.record("t1")["status"] == "failed"
    # With the cluster's default of 2 retries, the same death leaves it running here, by this pid.
    t2 = Task("t2", "add", [1, 2])
    place(w, t2)
    pipe = w.store.pipeline()
    w.store.claim(pipe, "t2", 1, "W1", 2.0, 999999, 2)
    w.store.execute(pipe)
    assert deliver(w, rec(t2)) == [["t1", 1, "failed"], ["t2", 1, "success"]]
    assert w.store.record("t2")["pid"] == str(os.getpid())


# --- a task that must not run ---

@pytest.mark.parametrize(("setup", "reported"), [
    ("none", "fenced"),        # no record (or another attempt's): fenced
    ("newer", "fenced"),
    ("ended", "ended"),
    ("foreign", "fenced"),     # the id names a key YADTQ does not own
])
def test_a_task_that_may_not_run_here_is_reported_not_run(worker: Worker, setup: str, reported: str) -> None:
    w = worker
    t = Task("t1", "slow", [5])
    if setup == "newer":
        place(w, t)
        pipe = w.store.pipeline()  # the scheduler moved it: attempt 2 is on W2
        w.store.assign(pipe, "t1", "slow", "W2", encode_task(t).decode(), 2.0, 2, "move", 0)
        w.store.execute(pipe)
    elif setup == "ended":
        place(w, t)
        pipe = w.store.pipeline()
        w.store.claim(pipe, "t1", 1, "W1", 2.0, 111, 2)
        w.store.finish(pipe, "t1", 1, Status.SUCCESS, 3.0, {"result": "1"})
        w.store.execute(pipe)
    elif setup == "foreign":
        w.redis.set(w.store.keys.task("t1"), "another app's value")
    before = w.redis.dump(w.store.keys.task("t1")) if setup != "newer" else None
    assert deliver(w, rec(t)) == [["t1", 1, reported]]
    assert Hooks.seen == []  # never ran
    assert w._held is None
    if setup != "newer":
        assert w.redis.dump(w.store.keys.task("t1")) == before
    assert commits(w) == [{TP: OffsetAndMetadata(8, "", -1)}]


def test_a_claim_of_an_older_generation_stops_the_worker(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    w.redis.set(w.store.keys.epoch, "5")
    with pytest.raises(Fenced, match="worker W1 of epoch 0: a newer generation owns the cluster"):
        deliver(w, rec(t))
    assert commits(w) == []


# --- a result that cannot be written ---

def _moved(w: Worker) -> None:
    pipe = w.store.pipeline()
    w.store.assign(pipe, "t1", "add", "W2", encode_task(Task("t1", "add", [1, 2])).decode(), 2.0, 2, "move", 0)
    w.store.execute(pipe)


def _ended(w: Worker) -> None:
    pipe = w.store.pipeline()
    w.store.finish(pipe, "t1", 1, Status.FAILED, 2.0, {"error": "elsewhere"})
    w.store.execute(pipe)


def _foreign(w: Worker) -> None:
    w.redis.set(w.store.keys.task("t1"), "another app's value")


@pytest.mark.parametrize(("meanwhile", "reported"), [(_moved, []), (_ended, [["t1", 1, "success"]]),
                                                     (_foreign, [["t1", 1, "fenced"]])])
def test_a_result_finish_refuses_is_dropped(worker: Worker, meanwhile: Any, reported: list[Any]) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    w.handle(rec(t))
    before = dict(w.store.record("t1")) if meanwhile is not _foreign else None
    meanwhile(w)
    changed = dict(w.store.record("t1")) if meanwhile is not _foreign else None
    w.write_held_result()
    w.send_reports(force=True)
    assert reports(w) == reported  # a fenced attempt is reported by the attempt that replaced it
    if meanwhile is not _foreign:
        assert w.store.record("t1") == changed != before
        assert w.store.record("t1").get("result") != "3"


def test_a_result_of_an_older_generation_stops_the_worker(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    w.handle(rec(t))
    w.redis.set(w.store.keys.epoch, "5")
    with pytest.raises(Fenced, match="worker W1 of epoch 0"):
        w.write_held_result()
    assert w._held is None and reports(w) == []


def test_a_result_that_cannot_be_stored_fails_the_task_without_a_retry(worker: Worker) -> None:
    w = worker
    t = Task("t1", "unstorable")
    place(w, t)
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    r = w.store.record("t1")
    assert r["status"] == "failed" and r["error"].startswith("InvalidResult: "), r
    assert w.redis.zscore(w.store.keys.retries, "t1") is None


def test_the_soft_time_limit_fails_the_task_without_a_retry(worker: Worker) -> None:
    w = worker
    t = Task("t1", "slow", [10], options=TaskOptions(timeout=0.3))
    place(w, t)
    started = time.monotonic()
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    r = w.store.record("t1")
    assert r["error"] == "TaskTimeLimitExceeded: task ran past its time limit of 0.3s"
    assert w.redis.zscore(w.store.keys.retries, "t1") is None
    # The watchdog saw the task with its own limit and the hard deadline HARD_LIMIT_GRACE after it.
    [running] = Hooks.seen
    assert isinstance(running, _Running) and running.assignment.task.task_id == "t1"
    assert running.limit == 0.3
    assert started + 0.3 + HARD_LIMIT_GRACE <= running.hard_deadline <= time.monotonic() + 0.3 + HARD_LIMIT_GRACE
    assert w.running is None


# --- a task that raised: retry or fail ---

def test_a_task_that_raises_is_retried_after_the_backoff(worker: Worker) -> None:
    w = worker
    t = Task("t1", "boom")
    place(w, t)
    at = time.time()
    assert deliver(w, rec(t)) == [["t1", 1, "retry"]]
    assert w._held is None
    r = w.store.record("t1")
    assert r["status"] == "queued" and r["error"] == "ValueError: bad value" and "Traceback" in r["traceback"]
    due = w.redis.zscore(w.store.keys.retries, "t1")
    assert due is not None and at + 30.0 <= due <= time.time() + 30.0  # retry_backoff after the first failure
    stored = w.redis.hget(w.store.keys.retry_payloads, "t1")
    assert stored == encode_task(t).decode()
    assert commits(w) == [{TP: OffsetAndMetadata(8, "", -1)}]


def test_a_task_with_no_retry_left_fails_with_why(worker: Worker) -> None:
    w = worker
    t = Task("t1", "boom", options=TaskOptions(max_retries=0))  # its own limit, not the cluster's 2
    place(w, t, retries=0)
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    r = w.store.record("t1")
    assert r["status"] == "failed"
    assert r["error"] == "ValueError: bad value (gave up after 1 failed runs; the retry limit is 0)"
    assert "Traceback" in r["traceback"]
    assert w.redis.zscore(w.store.keys.retries, "t1") is None


def test_a_task_that_raises_after_it_ended_elsewhere_is_neither_retried_nor_written(worker: Worker) -> None:
    w = worker
    t = Task("t1", "ends_elsewhere")
    place(w, t)
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    r = w.store.record("t1")
    assert (r["status"], r["result"]) == ("success", "99")
    assert w.redis.zscore(w.store.keys.retries, "t1") is None


def test_a_retry_of_an_older_generation_stops_the_worker(worker: Worker) -> None:
    w = worker
    t = Task("t1", "new_epoch")
    place(w, t)
    with pytest.raises(Fenced, match="worker W1 of epoch 0"):
        w.handle(rec(t))
    assert w.redis.zscore(w.store.keys.retries, "t1") is None and reports(w) == []


# --- an assignment that cannot be read ---

def test_an_unreadable_assignment_placed_here_fails_its_task(worker: Worker) -> None:
    w = worker
    place(w, Task("t1", "add", [1, 2]))
    bad = b'{"v":1,"task":{"task-id":"t1","task":"add","args":"x"},"attempt":1,"worker":"W1"}'
    t0 = time.time()
    assert deliver(w, Rec(TOPIC, 0, 4, bad)) == [["t1", 1, "failed"]]
    r = w.store.record("t1")
    assert t0 <= float(r["finished_at"]) <= time.time()
    assert r["status"] == "failed" and r["error"].startswith(f"InvalidMessage: its assignment on {TOPIC} cannot"), r
    assert commits(w) == [{TP: OffsetAndMetadata(5, "", -1)}]


def test_an_unreadable_assignment_of_a_task_placed_elsewhere_is_left_alone(worker: Worker) -> None:
    w = worker
    place(w, Task("t1", "add", [1, 2]))
    w.id = "W2"  # the record names W1
    bad = b'{"v":1,"task":{"task-id":"t1","task":"add","args":"x"},"attempt":1,"worker":"W2"}'
    consumer: FakeConsumer = w._consumer  # type: ignore[assignment]
    consumer.batches.append({TP: [Rec(TOPIC, 0, 4, bad), Rec(TOPIC, 0, 5, b"not json")]})
    w.loop()
    assert reports(w) == [] and w.store.record("t1")["status"] == "queued"
    assert commits(w) == [{TP: OffsetAndMetadata(6, "", -1)}]


def test_an_unreadable_assignment_of_an_older_generation_stops_the_worker(worker: Worker) -> None:
    w = worker
    place(w, Task("t1", "add", [1, 2]))
    w.redis.set(w.store.keys.epoch, "5")
    bad = b'{"v":1,"task":{"task-id":"t1","task":"add","args":"x"},"attempt":1,"worker":"W1"}'
    with pytest.raises(Fenced, match="worker W1 of epoch 0"):
        deliver(w, Rec(TOPIC, 0, 4, bad))


# --- the watchdog's ends: the hard limit and the hand-back ---

def _claimed(w: Worker, t: Task) -> _Running:
    place(w, t)
    a = Assignment(t, 1, "W1")
    assert w._claim(a) is Claim.RUN
    return _Running(a, 0.5, time.monotonic() - 1)


def test_the_hard_limit_fails_the_task_and_reports_it_alone(worker: Worker) -> None:
    w = worker
    t0 = time.time()
    w._hard_limit(_claimed(w, Task("t1", "slow", [100])))
    r = w.store.record("t1")
    assert t0 <= float(r["finished_at"]) <= time.time()
    assert r["status"] == "failed" and r["error"] == (
        f"TaskTimeLimitExceeded: task ran past its time limit of 0.5s and did not stop within "
        f"{HARD_LIMIT_GRACE:g}s more; its worker process was ended and replaced")
    assert reports(w) == [["t1", 1, "failed"]]
    # Already ended (by another attempt): nothing reported.
    _ended_t = Task("t2", "slow", [100])
    running = _claimed(w, _ended_t)
    pipe = w.store.pipeline()
    w.store.finish(pipe, "t2", 1, Status.SUCCESS, 3.0, {"result": "1"})
    w.store.execute(pipe)
    w._hard_limit(running)
    assert reports(w) == [["t1", 1, "failed"]] and w.store.record("t2")["status"] == "success"


def test_a_hand_back_puts_the_task_back_unclaimed(worker: Worker) -> None:
    w = worker
    running = _claimed(w, Task("t1", "slow", [100]))
    assert w.store.record("t1")["status"] == "processing"
    w._hand_back(running)
    r = w.store.record("t1")
    assert r["status"] == "queued" and r["attempt"] == "1"
    # Of an older generation: left alone, the process still ends.
    running = _claimed(w, Task("t2", "slow", [100]))
    w.redis.set(w.store.keys.epoch, "5")
    w._hand_back(running)
    assert w.store.record("t2")["status"] == "processing"


def test_the_watchdog_leaves_a_task_that_ended_meanwhile_and_one_within_its_limits(worker: Worker) -> None:
    w = worker
    a = Assignment(Task("t1", "slow", [1]), 1, "W1")
    past = _Running(a, 0.5, time.monotonic() - 1)
    w.running = None  # it ended meanwhile: no exit, and the gate is free again
    w._enforce(past)
    assert w._gate.acquire(blocking=False)
    w._gate.release()
    within = _Running(a, 0.5, time.monotonic() + 60)
    w.running = within
    w._enforce(within)  # nothing due: returns without touching the gate
    w._stop_deadline = time.monotonic() + 60
    w._enforce(within)
    assert w._gate.acquire(blocking=False)
    w._gate.release()
    w.running = None


def test_the_watchdog_wakes_at_the_first_deadline_of_the_task_in_hand(worker: Worker) -> None:
    w = worker
    a = Assignment(Task("t1", "slow", [1]), 1, "W1")
    t0 = time.monotonic()
    assert 9.0 < w._until_next_check(t0 + 10, None) <= 10.0
    running = _Running(a, 1.0, t0 + 5)
    assert 4.0 < w._until_next_check(t0 + 10, running) <= 5.0
    w._stop_deadline = t0 + 3
    assert 2.0 < w._until_next_check(t0 + 10, running) <= 3.0
    assert 4.0 < w._until_next_check(t0 + 10, None) + 5 <= 15.0  # with nothing in hand, only the beat
    assert w._until_next_check(t0 - 10, running) == 0.005


def test_stop_sets_the_hand_back_deadline_before_the_grace_period_ends(worker: Worker) -> None:
    w = worker  # shutdown_grace 10 s: hand back 1 s before it ends
    t0 = time.monotonic()
    w.stop()
    assert w._stop_deadline is not None and t0 + 9.0 <= w._stop_deadline <= time.monotonic() + 9.0
    assert w._stop.is_set() and w._wake.is_set()
    w.config = replace(w.config, workers=replace(w.config.workers, shutdown_grace=1.0))  # short: half of it
    t0 = time.monotonic()
    w.stop()
    assert t0 + 0.5 <= w._stop_deadline <= time.monotonic() + 0.5
    w.loop()  # stopping: nothing more is handled, and an idle poll commits nothing
    assert commits(w) == []


def test_a_heartbeat_names_the_task_in_hand(worker: Worker) -> None:
    w = worker
    a = Assignment(Task("t1", "slow", [1]), 1, "W1")
    w._send_heartbeat(_Running(a, 1.0, 0.0))
    w._send_heartbeat(None)
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    beats = [parse_event(v) for _, v, _ in producer.sent]
    assert all(isinstance(b, Heartbeat) and b.sender == "W1" and b.role == "worker" and b.pid == os.getpid()
               for b in beats)
    assert [b.running for b in beats] == ["t1", None]  # type: ignore[union-attr]
    assert {topic for topic, _, _ in producer.sent} == {w.config.topics.status}


def test_shutdown_writes_the_held_result_and_closes_without_committing(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    w.handle(rec(t))
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    closed: list[Any] = []
    producer.close = lambda timeout=None: closed.append(timeout)  # type: ignore[attr-defined]
    w.shutdown()
    assert closed == [5.0]
    assert w.store.record("t1")["status"] == "success" and reports(w) == [["t1", 1, "success"]]
    assert w._closed.is_set() and w._stop.is_set()
    consumer: FakeConsumer = w._consumer  # type: ignore[assignment]
    assert consumer.closed and consumer.commits == []


def test_report_delay_sends_a_slow_batchs_reports_mid_batch(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    w = worker
    w._report(Assignment(Task("t1", "add"), 1, "W1"), "ended")
    w.send_reports()
    assert reports(w) == []  # younger than REPORT_DELAY: waits for others
    monkeypatch.setattr(worker_module, "REPORT_DELAY", 0.0)
    w.send_reports()
    assert reports(w) == [["t1", 1, "ended"]]


@pytest.mark.parametrize("why", ["hard", "stop", "store fails"])
def test_the_watchdog_ends_the_process_past_a_deadline_with_the_right_code(
        worker: Worker, monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    w = worker

    def exit_(code: int) -> None:
        raise _Exit(code)
    monkeypatch.setattr(os, "_exit", exit_)
    running = _claimed(w, Task("t1", "slow", [100]))
    if why == "stop":  # within its hard limit, but the stop deadline passed: handed back, exit 0
        running = _Running(running.assignment, 0.5, time.monotonic() + 60)
        w._stop_deadline = time.monotonic() - 0.01
    if why == "store fails":  # Redis fails while recording why: the process still ends
        monkeypatch.setattr(w, "_finish", lambda *a: (_ for _ in ()).throw(ConnectionError("Redis away")))
    w.running = running
    with pytest.raises(_Exit) as ended:
        w._enforce(running)
    assert ended.value.args == (EXIT_HARD_LIMIT if why != "stop" else 0,)
    assert not w._gate.acquire(blocking=False)  # held for good: no other task starts before the end
    assert w.store.record("t1")["status"] == {"hard": "failed", "stop": "queued", "store fails": "processing"}[why]
    w.running = None


# --- careful mode, after a crash: one by one, and a message that killed too often is dead-lettered ---

class CarefulConsumer(FakeConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.max_records: list[int | None] = []

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        self.max_records.append(max_records)
        return super().poll(timeout_ms, max_records)

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 12 for tp in tps}


def careful(w: Worker, tries: int | None) -> CarefulConsumer:
    """Careful over offsets [7, 9) of TP; the mark says offset 7 was tried ``tries`` times."""
    consumer = CarefulConsumer()
    w._consumer = consumer  # type: ignore[assignment]
    w._guard = quarantine.Guard(w.store, "yadtq-worker.W1", {TP: (7, 9)})
    if tries is not None:
        w.store.set_quarantine_mark(quarantine.field("yadtq-worker.W1", TP), f"7:{tries}")
    return consumer


def test_careful_mode_dead_letters_an_assignment_that_killed_too_often(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    consumer = careful(w, quarantine.TRIES)
    t0 = time.time()
    assert deliver(w, rec(t, offset=7)) == []  # not run, nothing reported: the record's end frees its slot
    assert consumer.max_records == [1]
    r = w.store.record("t1")
    assert r["status"] == "failed" and r["error"] == quarantine.reason(quarantine.TRIES, "worker W1")
    assert t0 <= float(r["finished_at"]) <= time.time()
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    [(topic, body, headers)] = producer.sent
    assert (topic, body) == (w.config.topics.dead_letter, rec(t, offset=7).value)
    assert dict(headers) == {"error": r["error"].encode(), "from": f"{TOPIC}:0@7".encode()}
    assert commits(w) == [{TP: OffsetAndMetadata(8, "", -1)}]
    assert w._guard is not None and w._guard.ranges == {TP: (7, 12)}  # copies of it may follow


def test_careful_mode_runs_a_live_task_and_skips_one_that_ended(worker: Worker) -> None:
    w = worker
    t1, t2 = Task("t1", "add", [1, 2]), Task("t2", "add", [3, 4])
    place(w, t1)
    place(w, t2)
    pipe = w.store.pipeline()  # t2 ended meanwhile (e.g. quarantined from another copy)
    w.store.finish(pipe, "t2", 1, Status.FAILED, 2.0, {"error": "quarantined"})
    w.store.execute(pipe)
    consumer = careful(w, None)
    assert deliver(w, rec(t1, offset=7)) == [["t1", 1, "success"]]  # its first try here
    assert deliver(w, rec(t2, offset=8)) == [["t1", 1, "success"]]  # second try of nothing: skipped unread
    assert w.store.record("t2")["status"] == "failed"
    assert commits(w) == [{TP: OffsetAndMetadata(8, "", -1)}, {TP: OffsetAndMetadata(9, "", -1)}]
    assert w._guard is not None and not w._guard.careful()  # past the range: careful mode left
    assert consumer.max_records == [1, 1]
    t3 = Task("t3", "add", [5, 6])
    place(w, t3)
    assert deliver(w, rec(t3, offset=9))[-1] == ["t3", 1, "success"]
    assert consumer.max_records == [1, 1, None]  # read in batches again


# --- the loops: run until stopped, and the heartbeat thread ---

def test_run_handles_batches_until_stopped_then_leaves_the_rest(worker: Worker) -> None:
    w = worker
    t1, t2, t3 = Task("t1", "add", [1, 2]), Task("t2", "add", [3, 4]), Task("t3", "add", [5, 6])
    for t in (t1, t2, t3):
        place(w, t)
    consumer: FakeConsumer = w._consumer  # type: ignore[assignment]
    consumer.batches = [{TP: [rec(t1, offset=1)]}, {TP: [rec(t2, offset=2), rec(t3, offset=3)]}]
    polls = consumer.poll

    def poll(timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        batch = polls(timeout_ms, max_records)
        if not consumer.batches:
            w._stop.set()  # stopped during the last batch: its first record is handled, not the rest
        return batch
    consumer.poll = poll  # type: ignore[method-assign]
    w.run()
    assert reports(w) == [["t1", 1, "success"]]
    assert w.store.record("t2")["status"] == "queued" and w.store.record("t3")["status"] == "queued"
    assert commits(w) == [{TP: OffsetAndMetadata(2, "", -1)}]  # nothing of the batch it left


def test_the_heartbeat_thread_beats_with_the_task_in_hand_until_closed(worker: Worker) -> None:
    w = worker
    w.config = replace(w.config, workers=replace(w.config.workers, heartbeat_interval=0.05))
    w.running = _Running(Assignment(Task("t1", "slow", [1]), 1, "W1"), 60.0, time.monotonic() + 60)
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    beat = threading.Thread(target=w._heartbeats, daemon=True)
    started = time.monotonic()
    beat.start()
    wait_until(lambda: len(producer.sent) >= 3, "a few intervals' heartbeats", timeout=10, every=0.01)
    w._closed.set()
    w._wake.set()
    beat.join(timeout=10)
    elapsed = time.monotonic() - started
    assert not beat.is_alive()
    beats = [parse_event(v) for _, v, _ in producer.sent]
    assert len(beats) >= 3 and all(isinstance(b, Heartbeat) and b.running == "t1" for b in beats)
    assert len(beats) <= elapsed / 0.05 + 2, (len(beats), elapsed)  # one per interval, not one per wake-up
    w.running = None


def _watch(w: Worker, monkeypatch: pytest.MonkeyPatch, interval: float) -> tuple[list[int], float]:
    """Run the heartbeat thread until it ends the process (os._exit recorded); its exit codes, the time taken."""
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        w._closed.set()  # the thread's loop ends, as the process would
    monkeypatch.setattr(os, "_exit", exit_)
    w.config = replace(w.config, workers=replace(w.config.workers, heartbeat_interval=interval))
    beat = threading.Thread(target=w._heartbeats, daemon=True)
    started = time.monotonic()
    beat.start()
    w._closed.wait(timeout=20)
    took = time.monotonic() - started
    w._closed.set()
    w._wake.set()
    beat.join(timeout=10)
    return codes, took


def test_the_heartbeat_thread_ends_a_process_of_an_older_generation(
        worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    w = worker
    w.epoch = 3
    w.store = TaskStore(w.redis, w.store.keys, 60, 3)
    w.redis.set(w.store.keys.owner, json.dumps({"host": "h", "pid": 1, "since": 1.0, "epoch": 5}), px=60000)
    codes, _ = _watch(w, monkeypatch, 0.05)
    assert codes[:1] == [EXIT_FENCED]


def test_the_heartbeat_thread_wakes_at_the_hard_deadline_not_the_next_beat(
        worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    w = worker
    running = _claimed(w, Task("t1", "slow", [100]))
    w.running = running = _Running(running.assignment, 0.1, time.monotonic() + 0.3)
    codes, took = _watch(w, monkeypatch, 30.0)  # the next beat is 30 s away
    print(f"ended {took:.2f} s after the start (its hard deadline: 0.3 s after the start)")
    assert codes[:1] == [EXIT_HARD_LIMIT] and took < 15.0
    assert w.store.record("t1")["status"] == "failed"
    w.running = None


def test_initialize_reads_its_own_topic_in_its_own_group_and_starts_careful_after_a_crash(
        services: None, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    config = Config.from_dict({"redis": {"url": REDIS, "key_prefix": prefix}, "workers": {"max_pending": 5}})
    made: dict[str, Any] = {}

    class Positioned(CarefulConsumer):
        def position(self, tp: TopicPartition) -> int:
            return 7

    def consumer(cfg: Any, group: str, **overrides: Any) -> Positioned:
        made["consumer"] = (cfg, group, overrides)
        return Positioned()

    def assign_all(c: Any, topics: list[str]) -> list[TopicPartition]:
        made["topics"] = (c, topics)
        return [TP]
    monkeypatch.setattr(kafka_io, "producer", lambda cfg: made.setdefault("producer", (cfg, FakeProducer()))[1])
    monkeypatch.setattr(kafka_io, "consumer", consumer)
    monkeypatch.setattr(kafka_io, "assign_all", assign_all)
    w = Worker(config, "W1", _registry(), epoch=3, careful=True)
    w.initialize()
    try:
        assert made["consumer"] == (config.kafka, "yadtq-worker.W1", {"max_poll_records": 5})
        assert made["topics"] == (w._consumer, ["W1"]) and isinstance(w._consumer, Positioned)
        assert made["producer"] == (config.kafka, w._producer)
        assert w.store.redis is w.redis and w._guard is not None and w._guard.store is w.store
        assert w._guard is not None and w._guard.ranges == {TP: (7, 12)}
        assert w._guard.group == "yadtq-worker.W1"
        assert (w.store.keys.prefix, w.store.ttl, w.store.epoch) == (prefix, config.tasks.result_ttl, 3)
        assert w._beat is not None and w._beat.is_alive() and w._beat.daemon and w._beat.name == "heartbeat"
    finally:
        w._closed.set()
        w._wake.set()
        if w._beat is not None:
            w._beat.join(timeout=10)
        w.redis.close()
    fresh = Worker(config, "W2", _registry())  # not careful, nothing running, nothing connected yet
    assert (fresh.careful, fresh.running, fresh._consumer, fresh._producer, fresh._beat) == (False, None, None, None,
                                                                                              None)


def test_run_worker_sets_up_the_process_and_stops_on_sigterm_or_a_newer_generation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(worker_module, "process_setup",
                        lambda name, log_format: calls.append(("setup", name, log_format)))
    monkeypatch.setattr(signal, "signal", lambda sig, handler: handlers.__setitem__(sig, handler))

    def initialize(self: Worker) -> None:
        calls.append(("initialize", self.id, self.epoch, self.careful))

    def run(self: Worker) -> None:
        handlers[signal.SIGTERM](signal.SIGTERM, None)  # SIGTERM arrives: the worker stops
        calls.append(("stopped", self._stop.is_set()))
        raise Fenced("a newer generation owns the cluster")
    monkeypatch.setattr(Worker, "initialize", initialize)
    monkeypatch.setattr(Worker, "run", run)
    monkeypatch.setattr(Worker, "shutdown", lambda self: calls.append(("shutdown",)))
    with pytest.raises(SystemExit) as ended:
        worker_module.run_worker(Config(), "W3", epoch=7, careful=True)
    assert ended.value.code == EXIT_FENCED
    assert calls == [("setup", "worker W3", "text"), ("initialize", "W3", 7, True), ("stopped", True), ("shutdown",)]


def test_a_task_runs_with_its_kwargs_and_its_context(worker: Worker) -> None:
    w = worker
    t = Task("t1", "context", [1], {"m": 2})
    place(w, t)
    assert deliver(w, rec(t)) == [["t1", 1, "success"]]
    assert json.loads(w.store.record("t1")["result"]) == ["t1", "context", 1, "W1", w.store.keys.prefix, 1, 2]


def test_an_assignment_is_read_with_the_clusters_limits(worker: Worker) -> None:
    w = worker
    w._limits = replace(w._limits, max_timeout=10.0)  # tasks.max_timeout 10 s
    t = Task("t1", "add", [1, 2], options=TaskOptions(timeout=20.0))
    place(w, t)
    assert deliver(w, rec(t)) == [["t1", 1, "failed"]]
    assert "InvalidMessage" in w.store.record("t1")["error"]


def test_the_report_of_an_unreadable_assignment_waits_for_others_like_any(worker: Worker) -> None:
    w = worker
    place(w, Task("t1", "add", [1, 2]))
    bad = b'{"v":1,"task":{"task-id":"t1","task":"add","args":"x"},"attempt":1,"worker":"W1"}'
    w.handle(Rec(TOPIC, 0, 4, bad))
    w.send_reports()
    assert reports(w) == []  # younger than REPORT_DELAY
    w.send_reports(force=True)
    assert reports(w) == [["t1", 1, "failed"]]


def test_a_stop_mid_batch_writes_what_ran_and_commits_past_it_only(worker: Worker) -> None:
    w = worker
    t1, t2 = Task("t1", "stops", [1]), Task("t2", "add", [3, 4])
    place(w, t1)
    place(w, t2)
    assert deliver(w, rec(t1, offset=3), rec(t2, offset=4)) == [["t1", 1, "success"]]
    assert w.store.record("t1")["status"] == "success" and w.store.record("t2")["status"] == "queued"
    assert commits(w) == [{TP: OffsetAndMetadata(4, "", -1)}]


def test_careful_mode_handles_a_record_past_its_range_as_usual(worker: Worker) -> None:
    w = worker
    t = Task("t1", "add", [1, 2])
    place(w, t)
    pipe = w.store.pipeline()
    w.store.finish(pipe, "t1", 1, Status.SUCCESS, 2.0, {"result": "3"})
    w.store.execute(pipe)
    careful(w, None)
    # Offset 10 is past the range [7, 9): not a careful read, so it is claimed (and found ended).
    assert deliver(w, rec(t, offset=10)) == [["t1", 1, "ended"]]
    producer: FakeProducer = w._producer  # type: ignore[assignment]
    assert all(topic == w.config.topics.status for topic, _, _ in producer.sent)  # nothing dead-lettered


def test_an_idle_worker_refreshes_its_offsets_with_no_metadata(worker: Worker) -> None:
    w = worker

    class Positions(FakeConsumer):
        def assignment(self) -> set[TopicPartition]:
            return {TP}

        def position(self, tp: TopicPartition) -> int:
            return 7
    w._consumer = Positions()  # type: ignore[assignment]
    w._last_commit -= kafka_io.OFFSET_REFRESH
    w.loop()
    assert commits(w) == [{TP: OffsetAndMetadata(7, "", -1)}]
