"""The scheduler's use of the store, on a real Redis with a stand-in producer.

Cheaper than a cluster, and the scheduler's code is the real one: its
messages go in as a consumer would hand them over, and what it produces is
read back from the stand-in.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.future import Future

from client.config import Config
from client.kafka import COMMIT_GAP
from client.protocol import (
    Heartbeat,
    TasksFinished,
    WorkerDown,
    assignment_bytes,
    encode_event,
    parse_assignment,
    parse_event,
)
from client.store import Claim, Finish, Keys, Retry, Status, TaskStore, connect
from supervisor.scheduler import Scheduler, _Pending
from tests.integration.conftest import REDIS
from tests.unit.test_scheduler_clock import Consumer
from worker_pool import quarantine

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
    assert (s.state.tasks["t1"].worker, s.state.tasks["t1"].attempt) == (worker, 1)
    assert s.state.load[worker] == 1  # its room is held once
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


# --- the loop, its reload, admission, dead letters and commits (issue 12, the scheduler's mutants) ---

class Rec:
    """A record as a consumer hands it over: what the scheduler reads of it."""

    def __init__(self, offset: int, value: bytes) -> None:
        self.offset, self.value = offset, value


class FakeConsumer(Consumer):
    """Hands out the batches queued on it, one per poll; keeps each poll's arguments and each commit."""

    def __init__(self, tp: TopicPartition) -> None:
        super().__init__(tp)
        self.polls: list[tuple[int, int | None]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.polls.append((timeout_ms, max_records))
        return super().poll(timeout_ms, max_records)

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append({tp: m.offset for tp, m in offsets.items()})


def consumers(s: Scheduler) -> tuple[FakeConsumer, FakeConsumer]:
    """Give ``s`` a TASKS and a status consumer (one partition each)."""
    tasks, status = FakeConsumer(TopicPartition(s.topics.tasks, 0)), FakeConsumer(TopicPartition(s.topics.status, 0))
    s._tasks_in, s._status_in = tasks, status  # type: ignore[assignment]
    return tasks, status


def sent_to(s: Scheduler, mark: int = 0) -> list[tuple[str, bytes, Any]]:
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    return producer.sent[mark:]


def place(s: Scheduler, task_id: str, worker: str, payload: str) -> None:
    pipe = s.store.pipeline()
    s.store.assign(pipe, task_id, "add", worker, payload, AT, 1)
    s.store.execute(pipe)


def test_reload_resends_each_live_placement_as_it_was_and_moves_the_others(scheduler: Scheduler) -> None:
    """A restarted scheduler re-sends every placement of a known worker, same attempt, same worker;
    an orphan-marked task (with its dead pid) and a task of an unknown worker wait to be moved."""
    s = scheduler
    payloads = {t: task(t, "add", i, i) for i, t in enumerate(("t1", "t2", "t3", "t4"))}
    for t, worker in (("t1", "W1"), ("t2", "W2"), ("t3", "W1"), ("t4", "W9")):
        place(s, t, worker, payloads[t].decode())
    pipe = s.store.pipeline()
    s.store.claim(pipe, "t3", 1, "W1", AT + 1, 77, 2)  # pid 77 runs it, then dies
    s.store.mark_orphans(pipe, [("t3", 77)])
    s.store.execute(pipe)
    stored = {t: p.payload for t, p in s.store.placements()[0].items()}

    s._reload()
    assert sorted(sent_to(s)) == sorted([("W1", assignment_bytes(stored["t1"], 1, "W1"), None),
                                          ("W2", assignment_bytes(stored["t2"], 1, "W2"), None)])
    assert {t: (p.worker, p.attempt) for t, p in s.state.tasks.items()} == {"t1": ("W1", 1), "t2": ("W2", 1)}
    assert s.state.load == {"W1": 1, "W2": 1}
    assert sorted((json.loads(w.raw)["task-id"], w.mode, w.dead_pid, w.tp) for w in s.waiting) == \
        [("t3", "move", 77, None), ("t4", "move", 0, None)]
    s._dispatch(AT, time.monotonic())
    moved = {parse_assignment(m).task.task_id: parse_assignment(m).attempt for _, m, _ in sent_to(s, 2)}
    assert moved == {"t3": 2, "t4": 2}
    assert s.store.record("t3")["worker_deaths"] == "1"  # the dead pid went with the move: its death counted


def test_an_accepted_task_is_sent_in_its_canonical_form_and_moved_with_its_own_retry_limit(
        scheduler: Scheduler) -> None:
    """The payload stored and sent is the task re-encoded (``v`` added, compact); the retry limit
    a move applies is the task's ``options.max_retries``, else the cluster's default."""
    s = scheduler
    s.state.liveness.forget("W2")  # both go to W1
    raw = b'{"task": "add", "task-id": "t1", "args": [1, 2], "options": {"max_retries": 0}}'
    sent = take(s, raw, task("t2", "add", 3, 4))
    assert [(w, m) for w, m, _ in sent] == [
        ("W1", b'{"v":1,"task-id":"t1","task":"add","args":[1,2],"options":{"max_retries":0},'
               b'"attempt":1,"worker":"W1"}'),
        ("W1", b'{"v":1,"task-id":"t2","task":"add","args":[3,4],"attempt":1,"worker":"W1"}')]
    for t in ("t1", "t2"):
        pipe = s.store.pipeline()
        s.store.claim(pipe, t, 1, "W1", AT + 1, 111, 2)
        s.store.execute(pipe)
    s.state.heartbeat("W2", time.monotonic())
    s._on_event(encode_event(WorkerDown("W1", "test", AT + 2, 111)), AT + 2, time.monotonic())
    s._dispatch(AT + 2, time.monotonic())
    assert s.store.record("t1")["status"] == "failed"  # 1 death > its limit of 0
    assert [(w, parse_assignment(m).task.task_id) for w, m, _ in sent_to(s, 2)] == [("W2", "t2")]  # 1 <= 3


def test_a_refused_task_with_an_id_fails_its_record_and_the_rest_are_placed(scheduler: Scheduler) -> None:
    """An invalid message with a readable id, or an unknown task, fails that id's record (no dead
    letter); the next messages of the same batch are placed."""
    s = scheduler
    sent = take(s, b'{"task-id": "bad1", "task": "add", "args": 5}', task("bad2", "no_such_task"),
                task("bad3", "add", 1, 2, 3), task("ok", "add", 1, 2))
    assert [(w in ("W1", "W2"), parse_assignment(m).task.task_id) for w, m, _ in sent] == [(True, "ok")]
    for t, error in (("bad1", "InvalidMessage: 'args' must be a list, got 5"),
                     ("bad2", "InvalidMessage: unknown task 'no_such_task'"),
                     ("bad3", "InvalidMessage: ")):
        rec = s.store.record(t)
        assert rec["status"] == "failed" and rec["error"].startswith(error), (t, rec)
        assert rec["finished_at"] == repr(AT)  # the round's time
    assert sorted(s.state.tasks) == ["ok"] and not s.waiting


def test_a_message_without_an_id_is_dead_lettered_whole_or_cut_to_the_limit(scheduler: Scheduler) -> None:
    s = scheduler
    limit = s.config.tasks.max_message_bytes
    big = b'{"no-id": "' + b"x" * limit + b'"}'
    sent = take(s, b"not json", big)
    assert [t for t, _, _ in sent] == [s.topics.dead_letter] * 2
    (_, body1, headers1), (_, body2, headers2) = sent
    assert body1 == b"not json"
    assert [k for k, _ in headers1] == ["error"] and dict(headers1)["error"].startswith(b"message is not valid JSON")
    assert body2 == big[:limit]
    assert dict(headers2) == {"error": f"message is {len(big)} bytes, over the limit of {limit}".encode(),
                              "truncated-from": str(len(big)).encode()}


def test_a_due_retry_of_a_task_no_longer_registered_fails_and_leaves_the_schedule(scheduler: Scheduler) -> None:
    s = scheduler
    for t, name in (("r1", "no_such_task"), ("r2", "add")):  # each ran once, raised, and waits for its retry
        place(s, t, "W1", task(t, "add", 1, 2).decode())
        pipe = s.store.pipeline()
        s.store.claim(pipe, t, 1, "W1", AT, 111, 3)
        s.store.execute(pipe)
        assert s.store.retry(t, 1, AT, (1.0, 3.0), 3, {"error": "E"}, task(t, name, 1, 2).decode()).kind \
            is Retry.SCHEDULED
    s._take_due_retries(AT + 1)
    assert s._retrying == {"r1", "r2"}
    sent = take(s)
    assert [parse_assignment(m).task.task_id for _, m, _ in sent] == ["r2"]
    assert s._retrying == set() and not s.waiting
    assert s.redis.zcard(s.keys.retries) == 0 and s.redis.hlen(s.keys.retry_payloads) == 0
    assert s.store.record("r1")["status"] == "failed"  # as a refused retry (a new message would leave it)


def test_tasks_wait_in_order_while_no_live_worker_has_room(scheduler: Scheduler) -> None:
    s = scheduler
    s.state.max_pending = 1
    sent = take(s, *(task(f"t{i}", "add", i, i) for i in range(4)))
    assert sorted(w for w, _, _ in sent) == ["W1", "W2"]
    assert [(w.offset, w.task_id) for w in s.waiting] == [(2, "t2"), (3, "")]  # t2 admitted, holding its place
    assert s.redis.hget(s.keys.task("t3"), "status") is None  # nothing written for what waits
    s._on_event(encode_event(TasksFinished(sent[0][0], [[parse_assignment(sent[0][1]).task.task_id, 1, "success"]])),
                AT, time.monotonic())
    s._dispatch(AT, time.monotonic())
    assert [parse_assignment(m).task.task_id for _, m, _ in sent_to(s, 2)] == ["t2"]
    assert [w.offset for w in s.waiting] == [3]


def test_the_loop_reads_tasks_only_while_none_wait_and_commits_only_what_is_placed(scheduler: Scheduler) -> None:
    """TASKS is read (without blocking on status) only while no task waits; its offset is committed
    up to the first task still waiting, and past a batch once all of it is placed."""
    s = scheduler
    s.state.max_pending = 1
    tasks, status = consumers(s)
    tp = tasks.tp
    s._next_offset.update({tp: 0, status.tp: 0})
    tasks.queue.append([Rec(10 + i, task(f"t{i}", "add", i, i)) for i in range(3)])
    tick = time.monotonic()
    s.loop(AT, tick)
    assert tasks.polls == [(50, None)] and status.polls == [(0, None)]
    assert len([t for t, _, _ in sent_to(s) if t in ("W1", "W2")]) == 2 and [w.offset for w in s.waiting] == [12]
    assert tasks.commits == [{tp: 12}]  # not past the waiting one
    assert s.redis.hget(s.keys.task("t0"), "submitted_at") == repr(AT)  # the round's wall clock
    assert status.commits == [{status.tp: 0}]  # the first round commits status too

    finished = TasksFinished("W1", [[t, 1, "success"] for t, p in s.state.tasks.items() if p.worker == "W1"])
    status.queue.append([Rec(5, encode_event(finished))])
    s.loop(AT, tick + 0.01)
    assert tasks.polls == [(50, None)]  # a task waited: TASKS left unread, the wait is on status
    assert status.polls[1] == (50, None)
    assert not s.waiting and tasks.commits == [{tp: 12}]  # all placed, but within COMMIT_GAP of the last commit
    s.loop(AT, tick + COMMIT_GAP + 0.01)
    assert tasks.commits[-1] == {tp: 13}  # past the batch, once the gap is over
    assert len(status.commits) == 1  # status: about once a second, not every round
    s.loop(AT, tick + 1.1)
    assert status.commits[-1] == {status.tp: 6} and len(tasks.commits) == 2  # tasks: unchanged, not again


def test_a_worker_down_event_is_committed_in_its_round(scheduler: Scheduler) -> None:
    s = scheduler
    _, status = consumers(s)
    s._next_offset[status.tp] = 0
    tick = time.monotonic()
    s.loop(AT, tick)
    assert status.commits == [{status.tp: 0}]
    status.queue.append([Rec(0, encode_event(WorkerDown("W2", "test", AT, 5)))])
    s.loop(AT, tick + 0.01)
    assert status.commits == [{status.tp: 0}, {status.tp: 1}] and not s._commit_status_now  # not a second later
    s.loop(AT, tick + 0.02)
    assert len(status.commits) == 2


def test_a_worker_down_event_held_back_by_a_commit_in_flight_is_committed_once_that_is_answered(
        scheduler: Scheduler) -> None:
    s = scheduler
    status = UnansweredCommits(TopicPartition(s.topics.status, 0))
    s._tasks_in, s._status_in = FakeConsumer(TopicPartition(s.topics.tasks, 0)), status  # type: ignore[assignment]
    s._next_offset[status.tp] = 0
    tick = time.monotonic()
    s.loop(AT, tick)
    assert status.commits == [{status.tp: 0}]  # in flight, unanswered
    status.queue.append([Rec(0, encode_event(WorkerDown("W2", "test", AT, 5)))])
    s.loop(AT, tick + 0.01)
    assert status.commits == [{status.tp: 0}] and s._commit_status_now  # held back, still urgent
    status.answer()
    s.loop(AT, tick + 0.02)  # the next round, not a second later
    assert status.commits == [{status.tp: 0}, {status.tp: 1}] and not s._commit_status_now


def counting(calls: list[str], name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    """``real``, noting each call in ``calls``."""
    def counted(*a: Any) -> Any:
        calls.append(name)
        return real(*a)
    return counted


def test_the_loop_beats_checks_retries_and_reconciles_at_its_intervals(
        scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
    import supervisor.scheduler as scheduler_module

    s = scheduler
    checks: list[tuple[Any, ...]] = []
    monkeypatch.setattr(scheduler_module, "check_parent", lambda name: checks.append(("parent", name)))
    monkeypatch.setattr(scheduler_module, "check_owner", lambda *a: checks.append(("owner", *a)))
    s.epoch = 3
    consumers(s)
    calls: list[str] = []
    for name in ("_take_due_retries", "_reconcile"):
        monkeypatch.setattr(s, name, counting(calls, name, getattr(s, name)))
    [(worker, _, _)] = take(s, task("t1", "add", 1, 2))  # placed in Redis too: the reconcile keeps it
    tick = 1000.0
    for dt in (0.0, 0.05, 0.1, 0.99, 1.0, 4.99, 5.0):
        s.loop(AT + dt, tick + dt)
    assert calls.count("_take_due_retries") == 4  # at 0, 0.1, 0.99, 4.99: 0.1 s or more after the last
    assert calls.count("_reconcile") == 2  # at 0 and 5
    beats = [parse_event(v) for t, v, _ in sent_to(s, 1) if t == s.topics.status]
    assert beats == [Heartbeat("scheduler", "scheduler", os.getpid(), AT + dt) for dt in (0.0, 1.0, 4.99)]
    assert checks == [("parent", "scheduler"), ("owner", "scheduler", s.store, 3)] * 3
    assert s.redis.hgetall(s.keys.load) == {w: str(int(w == worker)) for w in ("W1", "W2")}


def test_careful_mode_reads_one_message_a_round_and_dead_letters_the_one_that_killed_too_often(
        scheduler: Scheduler) -> None:
    """After a crash: each uncommitted message is read alone and committed before the next; the one
    on which the scheduler died TRIES times goes to the dead-letter topic (its record failed) and
    the next is placed; past the uncommitted range, messages are read in batches again."""
    s = scheduler
    tasks, status = consumers(s)
    group = "yadtq-scheduler.test"
    s._guard = quarantine.Guard(s.store, group, {tasks.tp: (0, 2), status.tp: (0, 1)})
    for tp in (tasks.tp, status.tp):  # the scheduler died TRIES times on each
        s.store.set_quarantine_mark(quarantine.field(group, tp), quarantine.Mark(0, quarantine.TRIES).encode())
    killer, event = task("k1", "add", 1, 2), encode_event(TasksFinished("W1", []))
    tasks.queue += [[Rec(0, killer)], [Rec(1, task("t2", "add", 3, 4))]]
    status.queue.append([Rec(0, event)])
    tick = time.monotonic()
    s._last_beat = tick  # no heartbeat in these rounds

    s.loop(AT, tick)
    assert tasks.polls == [(50, 1)] and status.polls == [(0, 1)]  # one message at a time
    error = quarantine.reason(quarantine.TRIES, "the scheduler").encode()
    dead = s.topics.dead_letter
    assert sent_to(s) == [(dead, killer, [("error", error), ("from", f"{s.topics.tasks}:0@0".encode())]),
                          (dead, event, [("error", error), ("from", f"{s.topics.status}:0@0".encode())])]
    assert (s.store.record("k1")["status"], s.store.record("k1")["finished_at"]) == ("failed", repr(AT))
    assert tasks.commits == [{tasks.tp: 1}] and status.commits == [{status.tp: 1}]
    assert s._guard.careful(tasks.tp) and not s._guard.careful(status.tp)  # status: its range is passed

    s.loop(AT, tick + 0.01)
    assert tasks.polls[1] == (50, 1) and status.polls[1] == (0, None)
    assert [parse_assignment(m).task.task_id for t, m, _ in sent_to(s, 2)] == ["t2"]
    assert tasks.commits[-1] == {tasks.tp: 2} and not s._guard.careful()  # past the range: careful no more
    assert s.store.quarantine_mark(quarantine.field(group, tasks.tp)) is None  # and its marks are gone
    s.loop(AT, tick + 0.02)
    assert tasks.polls[2] == (50, None)


def test_tasks_placed_or_ended_already_do_not_stop_the_rest_of_the_batch(scheduler: Scheduler) -> None:
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2), task("t3", "add", 5, 6))
    worker = {parse_assignment(m).task.task_id: w for w, m, _ in sent}["t1"]
    pipe = s.store.pipeline()
    s.store.claim(pipe, "t1", 1, worker, AT, 111, 3)
    s.store.finish(pipe, "t1", 1, Status.SUCCESS, AT, {"result": "3"})
    s.store.execute(pipe)
    s._on_event(encode_event(TasksFinished(worker, [["t1", 1, "success"]])), AT, time.monotonic())
    # Redelivered: t3 (placed: kept), t1 (ended: dropped); then a new task.
    sent = take(s, task("t3", "add", 5, 6), task("t1", "add", 1, 2), task("t2", "add", 3, 4))
    assert [parse_assignment(m).task.task_id for _, m, _ in sent] == ["t2"]
    assert sorted(s.state.tasks) == ["t2", "t3"] and sum(s.state.load.values()) == 2


def test_an_invalid_message_whose_id_names_a_foreign_key_is_dead_lettered(scheduler: Scheduler) -> None:
    """REJECT refuses to fail a record it does not own: the message goes to the dead-letter topic."""
    s = scheduler
    s.redis.set(s.keys.task("cache:2"), "another app's value")
    bad = b'{"task-id": "cache:2", "task": "add", "args": 5}'
    sent = take(s, bad, task("t2", "add", 3, 4))
    [(_, body, headers)] = [m for m in sent if m[0] == s.topics.dead_letter]
    assert body == bad
    assert headers == [("error", b"task id 'cache:2' names an existing Redis key that YADTQ does not own; refused, "
                                 b"the key is left as it was; set redis.key_prefix when sharing a database")]
    assert [parse_assignment(m).task.task_id for t, m, _ in sent if t != s.topics.dead_letter] == ["t2"]
    assert s.redis.get(s.keys.task("cache:2")) == "another app's value"


def test_a_dead_letter_of_exactly_the_size_limit_is_sent_whole(scheduler: Scheduler) -> None:
    s = scheduler
    limit = s.config.tasks.max_message_bytes
    [(_, body, headers)] = take(s, b"x" * limit)
    assert len(body) == limit and [k for k, _ in headers] == ["error"]


def test_the_clusters_task_limits_are_applied_to_new_tasks(scheduler: Scheduler) -> None:
    s = Scheduler(Config.from_dict({"redis": {"url": REDIS, "key_prefix": scheduler.keys.prefix},
                                    "workers": {"count": 2}, "tasks": {"max_timeout": 10, "time_limit": 5}}))
    s.redis, s.keys, s.store, s._producer = scheduler.redis, scheduler.keys, scheduler.store, scheduler._producer
    s.state.heartbeat("W1", time.monotonic())
    sent = take(s, json.dumps({"task-id": "t1", "task": "add", "args": [1, 2], "options": {"timeout": 20}}).encode())
    assert sent == []
    assert s.store.record("t1")["error"] == \
        "InvalidMessage: options.timeout 20 is over this cluster's limit (tasks.max_timeout = 10)"


def test_a_quarantined_message_without_a_task_is_dead_lettered_once_and_fails_no_record(scheduler: Scheduler) -> None:
    """A status message is never a task's, even if it holds a task id; a message past the
    uncommitted range is handled, never quarantined."""
    s = scheduler
    group = "yadtq-scheduler.test"
    status_tp, tasks_tp = TopicPartition(s.topics.status, 0), TopicPartition(s.topics.tasks, 0)
    s._guard = quarantine.Guard(s.store, group, {status_tp: (0, 1), tasks_tp: (0, 1)})
    for tp in (status_tp, tasks_tp):
        s.store.set_quarantine_mark(quarantine.field(group, tp), quarantine.Mark(0, quarantine.TRIES).encode())
    event = b'{"type": "heartbeat", "task-id": "t9"}'
    assert s._screen(status_tp, [Rec(0, event)], AT) == []
    assert s.store.record("t9") == {}
    assert s._screen(tasks_tp, [Rec(0, b"not json")], AT) == []
    s._dispatch(AT, time.monotonic())
    assert [(t, body) for t, body, _ in sent_to(s)] == [(s.topics.dead_letter, event),
                                                          (s.topics.dead_letter, b"not json")]
    late = Rec(1, task("t1", "add", 1, 2))
    assert s._quarantined(tasks_tp, late, AT) is False  # offset 1: past the range


class UnansweredCommits(FakeConsumer):
    """A consumer whose commits stay in flight until the test answers them (``answer``)."""

    def __init__(self, tp: TopicPartition) -> None:
        super().__init__(tp)
        self.pending: list[Future] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        raise AssertionError("the loop waited for a commit")

    def commit_async(self, offsets: Any) -> Future:
        self.commits.append({tp: m.offset for tp, m in offsets.items()})
        self.pending.append(Future())
        return self.pending[-1]

    def answer(self) -> None:
        for f in self.pending:
            if not f.is_done:
                f.success(None)


def test_the_loop_never_waits_for_a_commit_and_sends_the_newest_once_one_is_answered(scheduler: Scheduler) -> None:
    """A commit is a round trip to the group coordinator (3 ms): the loop sends it and goes on. While
    one is in flight no other is sent (they cannot overtake each other); the newest offset goes once
    it is answered."""
    s = scheduler
    tasks = UnansweredCommits(TopicPartition(s.topics.tasks, 0))
    status = UnansweredCommits(TopicPartition(s.topics.status, 0))
    s._tasks_in, s._status_in = tasks, status  # type: ignore[assignment]
    s._next_offset.update({tasks.tp: 0, status.tp: 0})
    tick = time.monotonic()
    for i in range(3):
        tasks.queue.append([Rec(i, task(f"t{i}", "add", i, i))])
        s.loop(AT, tick + i * 0.01)
    assert tasks.commits == [{tasks.tp: 1}]  # t1's and t2's rounds: the first commit still in flight
    assert len([t for t, _, _ in sent_to(s) if t in ("W1", "W2")]) == 3  # every task placed meanwhile
    tasks.answer()
    s.loop(AT, tick + 0.05)
    assert tasks.commits == [{tasks.tp: 1}]  # answered, but within COMMIT_GAP of the last one sent
    s.loop(AT, tick + COMMIT_GAP + 0.01)
    assert tasks.commits == [{tasks.tp: 1}, {tasks.tp: 3}]
    tasks.answer()
    s.loop(AT, tick + COMMIT_GAP + 0.02)
    assert len(tasks.commits) == 2  # answered and unchanged: nothing more to send


class WatchingStatus(FakeConsumer):
    """A status consumer that notes, at each poll, which of ``ids`` the scheduler has placed already."""

    def __init__(self, tp: TopicPartition, s: Scheduler, ids: list[str]) -> None:
        super().__init__(tp)
        self.s, self.ids, self.placed_at_poll = s, ids, list[list[str]]()

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Rec]]:
        self.placed_at_poll.append([t for t in self.ids if self.s.redis.hexists(self.s.keys.assignments, t)])
        return super().poll(timeout_ms, max_records)


def test_new_tasks_are_placed_and_sent_before_the_status_poll(scheduler: Scheduler) -> None:
    """A status poll costs ~0.7 ms of kafka-python even with nothing to read: a task just read goes
    out first (the idle round trip's TASKS hop fell from 3.5 to 0.5 ms with this and async commits)."""
    s = scheduler
    tasks = FakeConsumer(TopicPartition(s.topics.tasks, 0))
    status = WatchingStatus(TopicPartition(s.topics.status, 0), s, ["t0", "t1"])
    s._tasks_in, s._status_in = tasks, status  # type: ignore[assignment]
    s._next_offset.update({tasks.tp: 0, status.tp: 0})
    tasks.queue.append([Rec(0, task("t0", "add", 1, 1)), Rec(1, task("t1", "add", 2, 2))])
    s.loop(AT, time.monotonic())
    assert status.placed_at_poll == [["t0", "t1"]]
    assert sorted(t for t, _, _ in sent_to(s) if t != "status") == ["W1", "W2"]  # and the heartbeat
