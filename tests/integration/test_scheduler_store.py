"""The scheduler's use of the store, on a real Redis with a stand-in producer.

Cheaper than a cluster, and the scheduler's code is the real one: its
messages go in as a consumer would hand them over, and what it produces is
read back from the stand-in.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import TopicPartition

from client.config import Config
from client.protocol import TasksFinished, WorkerDown, encode_event, parse_assignment
from client.store import Claim, Finish, Keys, Retry, Status, TaskStore, connect
from supervisor.scheduler import Scheduler, _Pending
from tests.integration.conftest import REDIS

pytestmark = pytest.mark.integration

AT = 1000.0


class _Sent:
    exception = None

    def succeeded(self) -> bool:
        return True


class FakeProducer:
    """Keeps what is sent, per topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []

    def send(self, topic: str, value: bytes, headers: Any = None) -> _Sent:
        self.sent.append((topic, value, headers))
        return _Sent()

    def flush(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def scheduler(services: None) -> Iterator[Scheduler]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    config = Config.from_dict({"redis": {"url": REDIS, "key_prefix": prefix}, "workers": {"count": 2},
                               "tasks": {"modules": ["worker_pool.builtin_tasks", "tests.tasks"]}})
    s = Scheduler(config)
    s.registry.load_modules(config.tasks.modules)
    s.redis = connect(REDIS)
    s.keys = Keys(prefix)
    s.store = TaskStore(s.redis, s.keys, 60)
    s._producer = FakeProducer()  # type: ignore[assignment]
    for w in ("W1", "W2"):
        s.state.heartbeat(w, time.monotonic())  # liveness runs on the monotonic clock
    yield s
    keys = list(s.redis.scan_iter(match=f"{prefix}*"))
    if keys:
        s.redis.delete(*keys)
    s.redis.close()


def take(s: Scheduler, *messages: bytes) -> list[tuple[str, bytes, Any]]:
    """Hand the messages to the scheduler as read from TASKS; what it sends."""
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    mark = len(producer.sent)
    tp = TopicPartition(s.topics.tasks, 0)
    s.waiting.extend(_Pending(m, tp, i) for i, m in enumerate(messages))
    s._dispatch(AT, time.monotonic())
    return producer.sent[mark:]


def task(task_id: str, name: str, *args: Any) -> bytes:
    return json.dumps({"task-id": task_id, "task": name, "args": list(args)}).encode()


def test_a_duplicate_never_replaces_the_payload_of_a_placed_task(scheduler: Scheduler) -> None:
    s = scheduler
    [(worker, _, _)] = take(s, task("t1", "add", 1, 2))
    assert take(s, task("t1", "mul", 6, 7)) == []  # placed already: nothing sent
    assert json.loads(s.state.tasks["t1"].payload)["task"] == "add"
    # Its worker dies: the move runs the first message's task, not the duplicate's.
    s._on_event(encode_event(WorkerDown(worker, "test", AT, 0)), AT, time.monotonic())
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    mark = len(producer.sent)
    s._dispatch(AT, time.monotonic())
    [(_, moved, _)] = [m for m in producer.sent[mark:] if m[0] != worker]
    a = parse_assignment(moved)
    assert (a.task.name, a.task.args, a.attempt) == ("add", [1, 2], 2)


def test_a_duplicate_in_the_same_batch_is_placed_with_the_first_payload(scheduler: Scheduler) -> None:
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2), task("t1", "mul", 6, 7))
    assert [parse_assignment(m).task.name for _, m, _ in sent] == ["add"]
    assert json.loads(s.state.tasks["t1"].payload)["task"] == "add"


def test_an_id_naming_a_foreign_key_is_dead_lettered_and_the_next_task_placed(scheduler: Scheduler) -> None:
    s = scheduler
    raw = connect(REDIS)
    raw.set(s.keys.task("cache:1"), "another app's value")
    sent = take(s, task("cache:1", "add", 1, 2), task("t2", "add", 3, 4))
    [(_, body, headers)] = [m for m in sent if m[0] == s.topics.dead_letter]
    assert body == task("cache:1", "add", 1, 2)
    assert dict(headers)["error"].decode() == (
        "task id 'cache:1' names an existing Redis key that YADTQ does not own (a string); refused, the key is "
        "left as it was; set redis.key_prefix when sharing a database")
    assert [parse_assignment(m).task.task_id for t, m, _ in sent if t != s.topics.dead_letter] == ["t2"]
    assert raw.get(s.keys.task("cache:1")) == "another app's value" and raw.ttl(s.keys.task("cache:1")) == -1
    assert "cache:1" not in s.state.tasks
    raw.close()


def test_unreadable_stored_payloads_end_as_failed_records_and_nothing_is_sent_for_them(scheduler: Scheduler) -> None:
    # Someone edited the scheduler's table and the retry schedule: what cannot be read must not be sent,
    # nor hold a worker's slot, nor stay on the schedule (or in the scheduler's memory of it) for ever.
    s = scheduler
    good, retry_good = task("g1", "add", 1, 2).decode(), task("r3", "add", 3, 4).decode()
    for t, worker, payload in (("g1", "W1", good), ("j1", "W1", "not json"), ("j2", "W2", good),
                               ("j3", "W9", "{]")):  # j3's worker is unknown: it would be moved
        pipe = s.store.pipeline()
        s.store.assign(pipe, t, "add", worker, payload, AT, 1)
        s.store.execute(pipe)
    for t, payload in (("r1", "not json"), ("r2", task("r9", "add", 5, 6).decode()), ("r3", retry_good)):
        s.redis.zadd(s.keys.retries, {t: AT - 1})
        s.redis.hset(s.keys.retry_payloads, t, payload)
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    s._reload()
    s._take_due_retries(AT)
    s._dispatch(AT, time.monotonic())
    assert sorted(parse_assignment(m).task.task_id for _, m, _ in producer.sent) == ["g1", "r3"]
    for t in ("j1", "j2", "j3", "r1", "r2"):
        rec = s.store.record(t)
        assert rec["status"] == "failed" and "InvalidMessage: its stored payload in yadtq:" in rec["error"], t
    assert sorted(s.state.tasks) == ["g1", "r3"] and s.state.load == {"W1": 1, "W2": 1}
    assert sorted(s.redis.hkeys(s.keys.assignments)) == ["g1", "r3"]
    assert s.redis.zcard(s.keys.retries) == 0 and s.redis.hlen(s.keys.retry_payloads) == 0
    s._take_due_retries(AT + 1)
    assert s._retrying == set() and not s.waiting


def test_reconcile_frees_the_slots_of_tasks_whose_events_were_lost(scheduler: Scheduler) -> None:
    """t1's record ended and t2 went to the retry schedule, but no tasks-finished event came:
    the reconcile drops both from the scheduler's memory and table, and their workers' load is freed."""
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2), task("t2", "add", 3, 4))
    placed = {parse_assignment(m).task.task_id: w for w, m, _ in sent}
    assert sorted(placed) == ["t1", "t2"] and sum(s.state.load.values()) == 2
    for t in ("t1", "t2"):
        pipe = s.store.pipeline()
        claim = s.store.claim(pipe, t, 1, placed[t], AT + 1, 111, 2)
        s.store.execute(pipe)
        assert claim.value is Claim.RUN
    pipe = s.store.pipeline()
    finish = s.store.finish(pipe, "t1", 1, Status.SUCCESS, AT + 2, {"result": "3"})
    s.store.execute(pipe)
    assert finish.value is Finish.WRITTEN
    assert s.store.retry("t2", 1, AT + 2, (1.0, 3.0), 2, {"error": "E"}, task("t2", "add", 3, 4).decode()).kind \
        is Retry.SCHEDULED  # off the table, onto the retry schedule
    assert sum(s.state.load.values()) == 2  # no event: the scheduler still counts both

    s._reconcile()
    s._dispatch(AT + 3, time.monotonic())  # writes the drops to Redis
    assert sorted(s.state.tasks) == [] and s.state.load == {"W1": 0, "W2": 0}
    assert s.store.placed(["t1", "t2"]) == [False, False]


def test_finished_and_worker_down_events_free_the_table_and_move_with_the_dead_pid(scheduler: Scheduler) -> None:
    """A tasks-finished event drops (task, attempt) from the table and from Redis; a worker-down
    event moves its tasks at once, with the dead pid (so the death is counted once), and has its
    offset committed in the same round."""
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2), task("t2", "add", 3, 4))
    placed = {parse_assignment(m).task.task_id: w for w, m, _ in sent}
    assert placed["t1"] != placed["t2"]
    pipe = s.store.pipeline()
    claim = s.store.claim(pipe, "t1", 1, placed["t1"], AT + 1, 111, 2)
    s.store.execute(pipe)
    assert claim.value is Claim.RUN

    # A stale attempt, then its own.
    finished = TasksFinished(placed["t2"], [["t2", 2, "success"], ["t2", 1, "success"]])
    s._on_event(encode_event(finished), AT + 2, time.monotonic())
    assert sorted(s.state.tasks) == ["t1"] and s.state.load[placed["t2"]] == 0
    s._dispatch(AT + 2, time.monotonic())
    assert s.store.placed(["t1", "t2"]) == [True, False]

    s._commit_status_now = False
    s._on_event(encode_event(WorkerDown(placed["t1"], "test", AT + 3, 111)), AT + 3, time.monotonic())
    assert s._commit_status_now
    s._dispatch(AT + 3, time.monotonic())
    moved = s._producer.sent[len(sent):]  # type: ignore[union-attr]
    assert [(w, parse_assignment(m).task.task_id, parse_assignment(m).attempt) for w, m, _ in moved] == \
        [(placed["t2"], "t1", 2)]
    assert s.store.record("t1")["worker_deaths"] == "1"  # pid 111 died running it
    assert not s.redis.hexists(s.keys.orphans, "t1")  # moved: a restarted scheduler must not move it again


def test_a_worker_down_event_leaves_a_task_that_a_newer_process_of_that_worker_runs(scheduler: Scheduler) -> None:
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2))
    worker = sent[0][0]
    for pid in (111, 222):  # pid 111 died; the worker's next process (222) re-read the message first
        pipe = s.store.pipeline()
        claim = s.store.claim(pipe, "t1", 1, worker, AT + 1, pid, 2)
        s.store.execute(pipe)
        assert claim.value is Claim.RUN
    s._on_event(encode_event(WorkerDown(worker, "test", AT + 2, 111)), AT + 2, time.monotonic())
    s._dispatch(AT + 2, time.monotonic())
    assert s._producer.sent[len(sent):] == []  # type: ignore[union-attr]
    record = s.store.record("t1")
    assert (record["status"], record["pid"], record["worker_deaths"]) == ("processing", "222", "1")


def test_a_due_retry_waits_once_however_often_the_schedule_is_read(scheduler: Scheduler) -> None:
    """While a due retry waits for a worker with room, reading the schedule again must not queue
    it a second time (one ASSIGN per retry, or a slot is held for a copy that is never sent)."""
    s = scheduler
    s.redis.zadd(s.keys.retries, {"r1": AT - 1})
    s.redis.hset(s.keys.retry_payloads, "r1", task("r1", "add", 1, 2).decode())
    s._take_due_retries(AT)
    s._take_due_retries(AT + 1)
    assert [w.retry_id for w in s.waiting] == ["r1"] and s._retrying == {"r1"}
