"""The Redis scripts that keep 'final is final' and fence old attempts, on a real Redis."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis

from client.errors import Fenced
from client.store import (
    Assign,
    AssignResult,
    Claim,
    Finish,
    Keys,
    Placement,
    Reject,
    Release,
    Retry,
    RetryResult,
    TaskStore,
    Unreadable,
    UnreadableResult,
    connect,
)
from tests.integration.conftest import REDIS
from tests.support.scripts import run

pytestmark = pytest.mark.integration

# A task payload as the scheduler stores it: a readable task (what is read back is checked like a TASKS message).
P1 = '{"v":1,"task-id":"t1","task":"add","args":[]}'




def assign(store: TaskStore, worker: str, dead_pid: int | None = None, retries: int = 1,
           mode: str | None = None) -> AssignResult:
    mode = mode or ("new" if dead_pid is None else "move")
    return run(store, "assign", "t1", "add", worker, P1, 1.0, retries, mode, dead_pid or 0)  # type: ignore[no-any-return]


def retry(store: TaskStore, attempt: int, at: float = 10.0, limit: int = 2) -> RetryResult:
    return store.retry("t1", attempt, at, (1.0, 3.0), limit, {"error": "ValueError: x", "traceback": "tb"},
                       P1)


def test_a_redelivered_task_keeps_its_placement(store: TaskStore) -> None:
    assert assign(store, "W1") == AssignResult(Assign.ASSIGNED, 1)
    # The same message read again: no new attempt.
    assert assign(store, "W2") == AssignResult(Assign.PLACED, 1, "W1", P1)
    assert store.record("t1")["attempt"] == "1"


def test_a_terminal_record_is_final(store: TaskStore) -> None:
    assign(store, "W1")
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.RUN
    assert run(store, "finish", "t1", 1, "success", 3.0, {"result": "3"}) is Finish.WRITTEN
    assert run(store, "finish", "t1", 1, "failed", 4.0, {"error": "late"}) is Finish.ENDED
    assert run(store, "reject", "t1", 4.0, "InvalidMessage: late") is Reject.ENDED
    assert assign(store, "W2") == AssignResult(Assign.ENDED)
    assert run(store, "claim", "t1", 1, "W1", 5.0, 111, 1) is Claim.ENDED
    rec = store.record("t1")
    assert (rec["status"], rec["result"], rec.get("error")) == ("success", "3", None)
    assert 0 < store.redis.ttl(store.keys.task("t1")) <= 60
    assert not store.redis.hexists(store.keys.assignments, "t1")


def test_a_moved_task_fences_the_old_attempt(store: TaskStore) -> None:
    assign(store, "W1")
    # Queued on W1, never started: no death counted.
    assert assign(store, "W2", dead_pid=111) == AssignResult(Assign.ASSIGNED, 2)
    assert run(store, "claim", "t1", 1, "W1", 2.0, 222, 1) is Claim.FENCED
    assert run(store, "finish", "t1", 1, "success", 2.0, {"result": "0"}) is Finish.FENCED
    assert run(store, "claim", "t1", 2, "W2", 2.0, 333, 1) is Claim.RUN
    assert store.record("t1").get("worker_deaths") is None


def test_deaths_count_once_each_and_end_in_failed(store: TaskStore) -> None:
    assign(store, "W1")
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.RUN
    # pid 111 died; a newer W1 (pid 222) re-reads the message first: one death.
    assert run(store, "claim", "t1", 1, "W1", 3.0, 222, 1) is Claim.RUN
    # The scheduler's move for pid 111 arrives late: pid 222 runs it, so it stays.
    assert assign(store, "W2", dead_pid=111) == AssignResult(Assign.PLACED, 1, "W1", P1)
    # pid 222 dies too: the second death passes the limit of 1.
    assert assign(store, "W2", dead_pid=222) == AssignResult(Assign.FAILED_NOW)
    rec = store.record("t1")
    assert rec["status"] == "failed"
    assert rec["error"] == "WorkerLost: the worker died while running this task 2 time(s); the retry limit is 1"
    assert store.redis.hget(store.keys.stats, "failed") == "1"


def test_a_bad_duplicate_of_a_placed_task_does_not_touch_it(store: TaskStore) -> None:
    assign(store, "W1")
    assert run(store, "reject", "t1", 2.0, "InvalidMessage: bad args") is Reject.ACCEPTED
    assert store.record("t1")["status"] == "queued"


def test_a_handed_back_task_runs_again_without_counting_a_death(store: TaskStore) -> None:
    assign(store, "W1")
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 0) is Claim.RUN
    assert store.release("t1", 1, 222) is Release.NOT_HELD  # not the process that runs it
    assert store.release("t1", 1, 111) is Release.RELEASED
    assert store.record("t1")["status"] == "queued"
    assert run(store, "claim", "t1", 1, "W1", 3.0, 333, 0) is Claim.RUN  # retry limit 0, and still allowed
    assert store.record("t1").get("worker_deaths") is None


def test_results_wake_subscribers(store: TaskStore) -> None:
    sub = store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    sub.subscribe(store.keys.done_channel("t2"))
    run(store, "reject", "t2", 1.0, "InvalidMessage: x")
    deadline = time.monotonic() + 5
    msg = None
    while msg is None and time.monotonic() < deadline:  # the first reads return the subscribe ack as None
        msg = sub.get_message(timeout=1)
    sub.close()
    assert msg is not None and msg["data"] == "failed"


def test_the_redis_url_password_is_never_shown() -> None:
    from client.store import safe_url

    assert safe_url("redis://user:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert safe_url("redis://host:6379/0") == "redis://host:6379/0"
    with pytest.raises(redis.RedisError):
        connect("redis://localhost:1/0").ping()


def test_a_task_that_raised_is_retried_with_backoff_then_fails(store: TaskStore) -> None:
    assign(store, "W1")
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 2) is Claim.RUN
    assert retry(store, 1, at=10.0) == RetryResult(Retry.SCHEDULED, due=11.0)  # first retry after the base delay
    rec = store.record("t1")
    assert (rec["status"], rec["retries"], rec["error"], rec["retry_at"]) == ("queued", "1", "ValueError: x", "11")
    assert not store.redis.hexists(store.keys.assignments, "t1")  # off the scheduler's table
    assert store.due_retries(10.5, 10) == []
    assert store.due_retries(11.0, 10) == [("t1", P1)]

    assert assign(store, "W2", mode="retry") == AssignResult(Assign.ASSIGNED, 2)
    assert assign(store, "W2", mode="retry") == AssignResult(Assign.NOT_NOW)  # taken already: not placed twice
    assert store.due_retries(99.0, 10) == []
    assert run(store, "claim", "t1", 1, "W1", 12.0, 111, 2) is Claim.FENCED  # the old attempt is fenced
    assert run(store, "claim", "t1", 2, "W2", 12.0, 222, 2) is Claim.RUN
    assert retry(store, 1) == RetryResult(Retry.FENCED)
    assert retry(store, 2, at=20.0) == RetryResult(Retry.SCHEDULED, due=22.0)  # doubled
    assign(store, "W1", mode="retry")
    run(store, "claim", "t1", 3, "W1", 30.0, 333, 2)
    assert retry(store, 3, at=30.0) == RetryResult(Retry.EXHAUSTED, used=2)  # two retries used: the limit
    assert run(store, "finish", "t1", 3, "failed", 31.0, {"error": "ValueError: x (gave up)"}) is Finish.WRITTEN
    assert retry(store, 3) == RetryResult(Retry.ENDED)


def test_a_task_waiting_for_its_retry_is_placed_only_by_the_schedule(store: TaskStore) -> None:
    assign(store, "W1")
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 2)
    assert retry(store, 1, at=10.0).kind is Retry.SCHEDULED
    # A duplicate message, and a move after its worker died, arrive before the
    # scheduler heard of the retry: neither may place it, nor count a death.
    assert assign(store, "W2") == AssignResult(Assign.NOT_NOW)
    assert assign(store, "W2", dead_pid=111) == AssignResult(Assign.NOT_NOW)
    assert "worker_deaths" not in store.record("t1")
    assert assign(store, "W2", mode="retry") == AssignResult(Assign.ASSIGNED, 2)
    assert run(store, "claim", "t1", 2, "W2", 12.0, 222, 2) is Claim.RUN
    assert assign(store, "W1", mode="retry") == AssignResult(Assign.NOT_NOW)  # no second copy from the schedule either


def test_raises_and_deaths_share_one_retry_limit(store: TaskStore) -> None:
    assign(store, "W1", retries=1)
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 1)
    assert retry(store, 1, limit=1).kind is Retry.SCHEDULED
    assign(store, "W1", mode="retry", retries=1)
    run(store, "claim", "t1", 2, "W1", 3.0, 111, 1)
    # Its worker died: one failure too many.
    assert assign(store, "W2", dead_pid=111, retries=1) == AssignResult(Assign.FAILED_NOW)
    rec = store.record("t1")
    assert rec["status"] == "failed"
    assert rec["error"] == ("WorkerLost: the worker died while running this task 1 time(s) "
                            "(and it raised 1 time(s)); the retry limit is 1")


def test_scripts_are_loaded_again_when_redis_lost_them(store: TaskStore) -> None:
    # A restarted Redis has an empty script cache: NOSCRIPT, load, run again.
    store.redis.script_flush()
    pipe = store.pipeline()
    pipe.pipe.hincrby(store.keys.task("other"), "x", 1)
    store.assign(pipe, "t1", "add", "W1", P1, 1.0, 1)
    assert store.execute(pipe) == [1, ["assigned", 1]]
    assert store.record("t1")["attempt"] == "1"  # ran once, not twice
    assert store.redis.hget(store.keys.task("other"), "x") == "1"  # and so did the plain command


def test_only_the_scripts_that_missed_run_again(store: TaskStore) -> None:
    # Another client may load the scripts while a long pipeline is being read:
    # some scripts in it then run and others miss. Only those run again.
    assign(store, "W1")
    pipe = store.pipeline()
    store.claim(pipe, "t1", 1, "W1", 2.0, 111, 3)  # run twice, START would count a death
    pipe.pipe.evalsha("0" * 40, 0)  # a script Redis does not know, standing in for one that missed
    with pytest.raises(redis.exceptions.NoScriptError):  # the unknown one stays unknown
        store.execute(pipe)
    record = store.record("t1")
    assert record["status"] == "processing" and "worker_deaths" not in record


def test_a_submit_marks_queued_but_never_replaces_what_the_scheduler_wrote(store: TaskStore) -> None:
    run(store, "mark_queued", "t0", "add", 5.0)
    assert store.record("t0") == {"yadtq": "1", "status": "queued", "task": "add", "submitted_at": "5.0"}
    assign(store, "W1")  # the scheduler got to t1 before the client's write
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 1)
    run(store, "mark_queued", "t1", "add", 0.5)
    assert (store.record("t1")["status"], store.record("t1")["submitted_at"]) == ("processing", "1.0")
    run(store, "reject", "t2", 3.0, "InvalidMessage: bad")  # refused before the client's write
    run(store, "mark_queued", "t2", "add", 2.5)
    record = store.record("t2")
    assert (record["status"], record["task"], record["submitted_at"]) == ("failed", "add", "2.5")


def test_every_record_a_refusal_or_an_operator_makes_has_status_task_and_submitted_at(store: TaskStore) -> None:
    """Issue 13: a reader in another language counts on these three, whatever made the record."""
    run(store, "reject", "r1", 3.0, "InvalidMessage: bad", "new", "add")  # it named a task
    run(store, "reject", "r2", 3.0, "InvalidMessage: bad")  # it named none
    run(store, "cancel", "c1", 4.0, "ops")  # cancelled before any message of it was read
    assert store.fail_quarantined("q1", 5.0, "quarantined: x")
    run(store, "fail_unreadable", "u1", 6.0, "unreadable", "assignments")  # its table entry is gone already
    fields = {t: {k: v for k, v in store.record(t).items() if k in ("status", "task", "submitted_at")}
              for t in ("r1", "r2", "c1", "q1", "u1")}
    assert fields == {"r1": {"status": "failed", "task": "add", "submitted_at": "3.0"},
                      "r2": {"status": "failed", "task": "", "submitted_at": "3.0"},
                      "c1": {"status": "cancelled", "task": "", "submitted_at": "4.0"},
                      "q1": {"status": "failed", "task": "", "submitted_at": "5.0"},
                      "u1": {"status": "failed", "task": "", "submitted_at": "6.0"}}
    # The refusal counted no task by a name it gave (no registered task, and no bound on such names).
    assert "finished|failed|add" not in store.redis.hgetall(store.keys.stats)
    run(store, "mark_queued", "c1", "add", 3.5)  # the client's write, late: its name and time are the true ones
    assert (store.record("c1")["task"], store.record("c1")["submitted_at"]) == ("add", "3.5")
    run(store, "mark_queued", "k1", "add", 1.0)  # a client's record, then its message refused...
    run(store, "reject", "k1", 3.0, "InvalidMessage: bad", "new", "echo")
    run(store, "mark_queued", "k1", "mul", 4.0)  # ...and a second submit of that id: the first one's stay
    assert (store.record("k1")["task"], store.record("k1")["submitted_at"]) == ("add", "1.0")


# --- a task id that names a key YADTQ does not own (defect 5) ---

def snapshot(key: str) -> tuple[Any, ...]:
    """The key byte for byte: its type, serialized value and time to live."""
    raw = redis.Redis.from_url(REDIS)
    try:
        return raw.type(key), raw.dump(key), raw.ttl(key)
    finally:
        raw.close()


def every_script(store: TaskStore, task_id: str) -> list[Any]:
    """Each lifecycle script's answer for ``task_id``, every ASSIGN mode included."""
    p = '{"task-id":"x"}'
    answers = [run(store, "assign", task_id, "add", "W1", p, 1.0, 1, mode) for mode in ("new", "move")]
    answers += [run(store, "assign", task_id, "add", "W1", p, 1.0, 1, "retry"),
                run(store, "claim", task_id, 1, "W1", 2.0, 111, 1),
                run(store, "finish", task_id, 1, "success", 3.0, {"result": "1"}),
                run(store, "reject", task_id, 3.0, "InvalidMessage: x"),
                run(store, "mark_queued", task_id, "add", 1.0),
                store.release(task_id, 1, 111),
                store.retry(task_id, 1, 4.0, (1.0, 3.0), 2, {"error": "E"}, p).kind]
    return answers


def assert_refused_untouched(store: TaskStore, task_id: str, key_type: str) -> None:
    key = store.keys.task(task_id)
    own_schedule = key in (store.keys.retries, store.keys.retry_payloads)
    if not own_schedule:  # so that ASSIGN's 'retry' gets past the schedule (else it answers not_now)
        store.redis.zadd(store.keys.retries, {task_id: 1.0})
        store.redis.hset(store.keys.retry_payloads, task_id, "{}")
    before = snapshot(key)
    sub = store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    sub.subscribe(store.keys.done_channel(task_id))
    try:
        assert store.foreign_ids([task_id, "free-id"]) == {task_id: key_type}
        answers = every_script(store, task_id)
        assert answers[0] == AssignResult(Assign.NOT_OURS, key_type=key_type)
        if own_schedule:
            assert answers.pop(2) == AssignResult(Assign.NOT_NOW)
        assert all(str(a.kind if isinstance(a, AssignResult) else a) == "not_ours" for a in answers), answers
        assert snapshot(key) == before
        assert sub.get_message(timeout=0.2) is None  # nothing published on its channel
    finally:
        sub.close()
    assert not store.redis.hexists(store.keys.assignments, task_id)
    assert store.redis.hget(store.keys.stats, "failed") is None


def test_an_id_naming_another_applications_string_is_refused_and_left_alone(store: TaskStore) -> None:
    store.redis.set(store.keys.task("session:42"), "another app's value")
    assert_refused_untouched(store, "session:42", "string")


def test_an_id_naming_another_applications_hash_is_refused_and_left_alone(store: TaskStore) -> None:
    # Even one with YADTQ-like fields: without the marker it is not a YADTQ record.
    store.redis.hset(store.keys.task("user:7"), mapping={"name": "ann", "status": "queued", "attempt": "1"})
    store.redis.expire(store.keys.task("user:7"), 1000)
    assert_refused_untouched(store, "user:7", "hash")


def test_an_id_naming_a_yadtq_internal_key_is_refused_and_left_alone(store: TaskStore) -> None:
    # This cluster's own tables, and those of another cluster in the same
    # database whose prefix extends this one's.
    other = TaskStore(store.redis, Keys(f"{store.keys.prefix}p2:"), 60)
    for s in (store, other):
        run(s, "assign", "t1", "add", "W1", P1, 1.0, 1)
        run(s, "claim", "t1", 1, "W1", 2.0, 111, 2)
        assert s.retry("t1", 1, 10.0, (1.0, 3.0), 2, {"error": "E"}, "{}").kind is Retry.SCHEDULED
    assert_refused_untouched(store, "yadtq:retry-payloads", "hash")
    assert_refused_untouched(store, "p2:yadtq:retries", "zset")
    assert_refused_untouched(store, "yadtq:retries", "zset")


def test_a_record_is_marked_as_yadtqs_by_each_script_that_creates_one(store: TaskStore) -> None:
    run(store, "mark_queued", "a", "add", 1.0)
    run(store, "assign", "b", "add", "W1", "{}", 1.0, 1)
    run(store, "reject", "c", 1.0, "InvalidMessage: x")
    assert [store.record(t).get("yadtq") for t in "abc"] == ["1", "1", "1"]
    assert store.foreign_ids(["a", "b", "c"]) == {}


# --- a duplicate message must not replace an in-flight task's payload (defect 6) ---

def test_a_duplicate_gets_the_stored_payload_back_not_its_own(store: TaskStore) -> None:
    first, dup = '{"v":1,"task-id":"t1","task":"add","args":[1,2]}', '{"task-id":"t1","task":"rm","args":["/"]}'
    assert run(store, "assign", "t1", "add", "W1", first, 1.0, 1) == AssignResult(Assign.ASSIGNED, 1)
    assert run(store, "assign", "t1", "rm", "W2", dup, 2.0, 1) == AssignResult(Assign.PLACED, 1, "W1", first)
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 1)
    run(store, "claim", "t1", 1, "W1", 3.0, 222, 1)  # a newer W1 process runs it
    # The move for the dead pid 111 finds it running elsewhere: the stored payload again.
    moved = run(store, "assign", "t1", "rm", "W2", dup, 4.0, 1, "move", 111)
    assert moved == AssignResult(Assign.PLACED, 1, "W1", first)
    assert store.placements()[0]["t1"].payload == first


def test_an_unreadable_placement_is_dropped_and_replaced(store: TaskStore) -> None:
    store.redis.hset(store.keys.assignments, mapping={"bad": "no bars here", "t1": f"W1|1|{P1}"})
    store.redis.hset(store.keys.orphans, mapping={"t1": "not a pid"})
    placed, orphans = store.placements()
    assert list(placed) == ["t1"] and orphans == {"t1": 0}
    assert not store.redis.hexists(store.keys.assignments, "bad")


# --- a malformed duplicate must not fail a task that was accepted (defect 7) ---

def test_a_bad_duplicate_of_a_task_waiting_for_its_retry_does_not_touch_it(store: TaskStore) -> None:
    assign(store, "W1")
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 2)
    assert retry(store, 1, at=10.0).kind is Retry.SCHEDULED  # off the table, on the schedule
    before = store.record("t1")
    assert run(store, "reject", "t1", 11.0, "InvalidMessage: bad args") is Reject.ACCEPTED
    assert store.record("t1") == before
    assert store.due_retries(99.0, 10) == [("t1", P1)]
    # Even once taken off the schedule (between that and its placement), it has an attempt.
    assert assign(store, "W1", mode="retry") == AssignResult(Assign.ASSIGNED, 2)
    store.redis.hdel(store.keys.assignments, "t1")
    assert run(store, "reject", "t1", 12.0, "InvalidMessage: bad args") is Reject.ACCEPTED
    assert store.record("t1")["status"] == "queued"


def test_only_a_never_accepted_record_is_failed_by_reject(store: TaskStore) -> None:
    run(store, "mark_queued", "t3", "add", 1.0)  # only the client's write
    assert run(store, "reject", "t3", 2.0, "InvalidMessage: x") is Reject.FAILED
    assert run(store, "reject", "t4", 2.0, "InvalidMessage: x") is Reject.FAILED  # no record at all
    assert [store.record(t)["status"] for t in ("t3", "t4")] == ["failed", "failed"]


# --- an older generation of the cluster cannot write (the fencing epoch) ---

def test_a_caller_of_an_older_epoch_is_refused_and_touches_nothing(store: TaskStore) -> None:
    assign(store, "W1")
    store.redis.set(store.keys.epoch, "5")
    old = TaskStore(store.redis, store.keys, 60, epoch=4)
    before = store.record("t1")
    p = P1
    assert [run(old, "assign", t, "add", "W2", p, 2.0, 1, m) for t, m in (("t1", "move"), ("t9", "new"))] == \
        [AssignResult(Assign.STALE_EPOCH)] * 2
    assert run(old, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.STALE_EPOCH
    assert run(old, "finish", "t1", 1, "success", 3.0, {"result": "1"}) is Finish.STALE_EPOCH
    assert run(old, "reject", "t8", 3.0, "InvalidMessage: x") is Reject.STALE_EPOCH
    assert old.release("t1", 1, 111) is Release.STALE_EPOCH
    assert old.retry("t1", 1, 4.0, (1.0, 3.0), 2, {"error": "E"}, p).kind is Retry.STALE_EPOCH
    assert store.record("t1") == before
    assert store.record("t8") == {} and store.record("t9") == {}
    current = TaskStore(store.redis, store.keys, 60, epoch=5)
    assert run(current, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.RUN
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.STALE_EPOCH  # epoch 0 once a lease exists


def test_reading_an_id_that_names_a_foreign_key_shows_no_record(store: TaskStore) -> None:
    store.redis.set(store.keys.task("s"), "x")
    store.redis.hset(store.keys.task("h"), mapping={"status": "success", "result": "1"})
    run(store, "mark_queued", "t", "add", 1.0)
    assert [store.record(t) for t in ("s", "h")] == [{}, {}]
    assert store.statuses(["s", "h", "t", "none"]) == [None, None, "queued", None]


def test_a_retry_that_cannot_run_is_failed_by_the_scheduler(store: TaskStore) -> None:
    # Taken off the schedule, its payload is refused (e.g. its task is no longer
    # registered): not a duplicate, so its record says why, or it stays 'queued' for ever.
    assign(store, "W1")
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 2)
    retry(store, 1, at=10.0)
    pipe = store.pipeline()
    store.drop_retry(pipe, "t1")
    reply = store.reject(pipe, "t1", 11.0, "InvalidMessage: unknown task 'add'", "retry")
    store.execute(pipe)
    assert reply.value is Reject.FAILED
    assert (store.record("t1")["status"], store.due_retries(99.0, 10)) == ("failed", [])
    # A placed task is left alone (a later copy placed it meanwhile).
    run(store, "assign", "t2", "add", "W1", "{}", 1.0, 1)
    assert run(store, "reject", "t2", 12.0, "InvalidMessage: x", "retry") is Reject.ACCEPTED
    assert store.record("t2")["status"] == "queued"


# --- a payload read back from Redis is checked like a message from TASKS; an unreadable one fails its task ---

def payload(task_id: str) -> str:
    return P1.replace('"t1"', f'"{task_id}"')


def test_unreadable_placements_fail_their_tasks_and_are_never_returned(store: TaskStore) -> None:
    for t, p in (("t1", P1 + " \n"), ("junk", "not json"), ("other", P1), ("t9", payload("t9"))):
        run(store, "assign", t, "add", "W1", p, 1.0, 1)  # ASSIGN stores what it is given
    store.redis.hset(store.keys.assignments, "zero", f"W1|0|{payload('zero')}")  # attempt 0 cannot be sent
    run(store, "claim", "t9", 1, "W1", 2.0, 111, 1)
    run(store, "finish", "t9", 1, "success", 3.0, {"result": "1"})
    store.redis.hset(store.keys.assignments, "t9", "W1|1|not json")  # ended: only its entry goes
    store.redis.set(store.keys.task("s"), "x")
    store.redis.hset(store.keys.assignments, "s", "W1|1|not json")  # a foreign key: left alone
    store.redis.hset(store.keys.orphans, mapping={"junk": "111", "t1": "111"})
    placed, orphans = store.placements()
    # The one readable entry comes back re-encoded (its trailing blanks would break the assignment built from it).
    assert placed == {"t1": Placement("W1", 1, P1)} and orphans == {"t1": 111}
    assert store.redis.hgetall(store.keys.assignments) == {"t1": f"W1|1|{P1} \n"}
    assert store.redis.hgetall(store.keys.orphans) == {"t1": "111"}
    for t, why in (("junk", "message is not valid JSON"), ("other", "another task, 't1'"),
                   ("zero", "attempt >= 1")):
        rec = store.record(t)
        assert rec["status"] == "failed", t
        assert rec["error"].startswith("InvalidMessage: its stored payload in yadtq:assignments cannot be read: ")
        assert why in rec["error"], rec["error"]
    assert store.record("t9")["status"] == "success" and store.redis.get(store.keys.task("s")) == "x"
    assert store.counters()[1]["failed"] == 3


def test_bytes_that_are_not_utf8_in_yadtqs_keys_are_read_without_a_crash(store: TaskStore) -> None:
    """redis-py decoding a value that is not UTF-8 raised UnicodeDecodeError in the scheduler's reload."""
    raw = redis.Redis.from_url(REDIS)
    try:
        raw.hset(store.keys.assignments, "t1", b"W1|1|" + P1.encode().replace(b"add", b"\xffadd"))
        raw.hset(store.keys.orphans, "t1", b"\xfe")
        raw.hset(store.keys.task("t2"), mapping={"yadtq": "1", "status": b"\xff", "error": b"caf\xe9"})
    finally:
        raw.close()
    placed, orphans = store.placements()
    # Read with U+FFFD for the bad bytes: a task name no registry holds, which
    # its worker refuses (unknown task), and a pid that is none (moved as from
    # an unknown process).
    assert placed["t1"].payload == P1.replace('"add"', '"\ufffdadd"') and orphans == {"t1": 0}
    assert store.record("t2")["error"] == "caf\ufffd"


def test_unreadable_or_foreign_retry_payloads_fail_their_tasks_and_leave_the_schedule(store: TaskStore) -> None:
    for t in ("t1", "t2", "t3", "t4"):
        run(store, "mark_queued", t, "add", 1.0)
        store.redis.zadd(store.keys.retries, {t: 5.0})
    store.redis.hset(store.keys.retry_payloads, mapping={"t1": "not json", "t2": P1, "t4": payload("t4")})
    # t1 cannot be read, t2 holds another task's payload, t3 has none: none is returned, each fails.
    assert store.due_retries(10.0, 10) == [("t4", payload("t4"))]
    assert store.redis.zrange(store.keys.retries, 0, -1) == ["t4"]
    assert store.redis.hkeys(store.keys.retry_payloads) == ["t4"]
    for t, why in (("t1", "not valid JSON"), ("t2", "another task, 't1'"), ("t3", "it is missing")):
        rec = store.record(t)
        assert rec["status"] == "failed", t
        assert rec["error"].startswith("InvalidMessage: its stored payload in yadtq:retry-payloads cannot be read")
        assert why in rec["error"], rec["error"]
        assert float(rec["finished_at"]) > 1e9, rec  # failed now, on the wall clock


def test_an_unreadable_payload_changed_meanwhile_or_read_by_an_old_generation_is_left_alone(
        store: TaskStore) -> None:
    run(store, "assign", "t1", "add", "W1", "not json", 1.0, 1)
    pipe = store.pipeline()
    reply = store.fail_unreadable(pipe, "t1", 2.0, "InvalidMessage: x", "assignments", "W1|1|older text")
    store.execute(pipe)
    assert reply.value.kind is Unreadable.CHANGED and store.record("t1")["status"] == "queued"
    store.redis.set(store.keys.epoch, "5")
    with pytest.raises(Fenced):
        TaskStore(store.redis, store.keys, 60, epoch=4).placements()
    assert store.record("t1")["status"] == "queued" and store.redis.hexists(store.keys.assignments, "t1")


def test_a_moved_task_that_cannot_run_is_failed_and_leaves_the_table(store: TaskStore) -> None:
    # E.g. its task is no longer registered: left in place, it would stay 'processing' for ever.
    assign(store, "W1")
    run(store, "claim", "t1", 1, "W1", 2.0, 111, 1)
    store.redis.hset(store.keys.orphans, "t1", "111")
    assert run(store, "reject", "t1", 3.0, "InvalidMessage: unknown task 'add'", "move") is Reject.FAILED
    assert store.record("t1")["status"] == "failed"
    assert not store.redis.hexists(store.keys.assignments, "t1") and not store.redis.hexists(store.keys.orphans, "t1")


def test_a_worker_fails_an_unreadable_assignment_only_of_its_placed_attempt(store: TaskStore) -> None:
    assign(store, "W1")

    def fail(task_id: str, worker: str, attempt: int) -> UnreadableResult:
        return run(store, "fail_unreadable", task_id, 2.0, "InvalidMessage: x", "worker",  # type: ignore[no-any-return]
                   worker=worker, attempt=attempt)

    # Another worker's, another attempt's, or an unknown task's: a stray message, left alone.
    assert [fail("t1", "W2", 1).kind, fail("t1", "W1", 2).kind, fail("t7", "W1", 1).kind] == [Unreadable.ELSEWHERE] * 3
    assert store.record("t1")["status"] == "queued" and store.record("t7") == {}
    assert fail("t1", "W1", 1) == UnreadableResult(Unreadable.FAILED, 1)
    assert store.record("t1")["status"] == "failed" and not store.redis.hexists(store.keys.assignments, "t1")
    assert fail("t1", "W1", 1).kind is Unreadable.ENDED


JUNK = ["x", "", "-3", "1.5", "1e400", "nan", " ", "9" * 40]


@pytest.mark.parametrize("junk", JUNK)
def test_damaged_counts_in_a_record_are_read_as_zero_never_as_a_script_error(store: TaskStore, junk: str) -> None:
    # DESIGN 4.6: HINCRBY or tonumber(junk) + n failed the script with a Redis error, which ended its
    # caller with exit 3 ("service lost"); the replacement read the same message again, for ever.
    key, stats = store.keys.task("t1"), store.keys.stats
    store.redis.hset(key, mapping={"yadtq": "1", "status": "queued", "attempt": junk, "retries": junk,
                                   "worker_deaths": junk})
    store.redis.hset(stats, mapping={"failed": junk, "success": junk})
    first = assign(store, "W1", retries=2)
    assert first.kind is Assign.ASSIGNED and first.attempt >= 1, first
    attempt = first.attempt
    assert run(store, "claim", "t1", attempt, "W1", 2.0, 111, 2) is Claim.RUN
    store.redis.hset(key, mapping={"retries": junk, "worker_deaths": junk})
    assert retry(store, attempt, limit=2).kind is Retry.SCHEDULED
    again = assign(store, "W1", retries=2, mode="retry")
    assert again == AssignResult(Assign.ASSIGNED, attempt + 1), again
    assert run(store, "claim", "t1", attempt + 1, "W1", 3.0, 222, 2) is Claim.RUN
    # Its process died: the move counts a death on a damaged count.
    store.redis.hset(key, mapping={"retries": junk, "worker_deaths": junk})
    assert assign(store, "W2", dead_pid=222, retries=2) == AssignResult(Assign.ASSIGNED, attempt + 2)
    assert run(store, "claim", "t1", attempt + 2, "W2", 4.0, 333, 2) is Claim.RUN
    store.redis.hset(key, "attempt", junk)  # damaged while it runs: that attempt is fenced, nothing fails
    assert run(store, "finish", "t1", attempt + 2, "success", 5.0, {"result": "1"}) is Finish.FENCED
    assert retry(store, attempt + 2).kind is Retry.FENCED
    store.redis.hset(key, "attempt", str(attempt + 2))
    assert run(store, "finish", "t1", attempt + 2, "success", 5.0, {"result": "1"}) is Finish.WRITTEN
    assert store.counters()[1]["success"] == 1


@pytest.mark.parametrize("junk", ["x", "-1"])
def test_a_death_on_damaged_counts_still_fails_the_task_at_its_limit(store: TaskStore, junk: str) -> None:
    key = store.keys.task("t1")
    assert assign(store, "W1", retries=0).kind is Assign.ASSIGNED
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 0) is Claim.RUN
    store.redis.hset(key, mapping={"retries": junk, "worker_deaths": junk})
    store.redis.hset(store.keys.stats, "failed", junk)
    assert run(store, "claim", "t1", 1, "W1", 3.0, 112, 0) is Claim.FAILED_NOW  # its process died running it
    rec = store.record("t1")
    assert rec["status"] == "failed" and rec["error"].startswith("WorkerLost: the worker died while running "
                                                                 "this task 1 time(s)"), rec
    assert store.counters()[1]["failed"] == 1


def test_a_stats_key_of_another_type_does_not_fail_a_finish(store: TaskStore) -> None:
    store.redis.set(store.keys.stats, "not a hash")
    assert assign(store, "W1").kind is Assign.ASSIGNED
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.RUN
    assert run(store, "finish", "t1", 1, "success", 3.0, {"result": "3"}) is Finish.WRITTEN
    assert run(store, "reject", "t2", 4.0, "InvalidMessage: bad") is Reject.FAILED


@pytest.mark.parametrize("damage", ["junk", "string"])
def test_a_damaged_stats_counter_does_not_fail_the_quarantines_write(store: TaskStore, damage: str) -> None:
    if damage == "junk":
        store.redis.hset(store.keys.stats, "failed", "x")
    else:
        store.redis.set(store.keys.stats, "not a hash")
    assert assign(store, "W1").kind is Assign.ASSIGNED
    assert store.fail_quarantined("t1", 2.0, "quarantined: test")
    assert store.record("t1")["status"] == "failed"
    if damage == "junk":
        assert store.counters()[1]["failed"] == 1


def test_an_epoch_key_overwritten_with_another_type_fails_no_script(store: TaskStore) -> None:
    """While a cluster runs, its epoch key turned into a hash counts as absent, not as an error in every script."""
    store.redis.hset(store.keys.epoch, "x", "1")
    assert run(store, "assign", "t1", "add", "W1", P1, 1.0, 1).kind is Assign.ASSIGNED
    assert run(store, "claim", "t1", 1, "W1", 2.0, 111, 1) is Claim.RUN
    assert store.misplaced_keys() == [f"{store.keys.epoch} (a hash, not a string)"]


def test_the_retry_backoff_doubles_up_to_its_cap(store: TaskStore) -> None:
    """First delay 1 s, longest 3 s: the retries are due 1, 2, 3, 3 s after each failure (never 4, 8)."""
    dues = []
    for attempt in range(1, 5):
        assign(store, "W1", mode="new" if attempt == 1 else "retry")
        at = 10.0 * attempt
        assert run(store, "claim", "t1", attempt, "W1", at, 111, 9) is Claim.RUN
        answer = retry(store, attempt, at=at, limit=9)
        assert answer.kind is Retry.SCHEDULED
        dues.append(answer.due - at)
    assert dues == [1.0, 2.0, 3.0, 3.0]


def test_a_quarantined_task_is_failed_once_whatever_its_state_and_only_if_ours(store: TaskStore) -> None:
    """fail_quarantined (WATCH/MULTI, not a script): the record it writes, the counter, the
    assignment entry and the wake-up, and each case in which it must write nothing."""
    sub = store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    sub.subscribe(store.keys.done_channel("t2"))
    assert assign(store, "W1").kind is Assign.ASSIGNED
    assert store.fail_quarantined("t1", 2.5, "quarantined: one")  # placed: failed, and off the table
    assert not store.redis.hexists(store.keys.assignments, "t1")
    assert store.fail_quarantined("t2", 3.5, "quarantined: two")  # never recorded (still queued in Kafka)
    record = store.record("t2")  # a new record, marked as YADTQ's
    assert (record["status"], record["finished_at"], record["error"]) == ("failed", "3.5", "quarantined: two")
    assert 0 < store.redis.ttl(store.keys.task("t2")) <= 60
    assert store.counters()[1]["failed"] == 2  # counted once each, from no stats key, then from a hash
    deadline = time.monotonic() + 5
    msg = None
    while msg is None and time.monotonic() < deadline:
        msg = sub.get_message(timeout=1)
    sub.close()
    assert msg is not None and msg["data"] == "failed"

    assert not store.fail_quarantined("t2", 4.0, "quarantined: again")  # ended: final
    assert store.record("t2")["error"] == "quarantined: two" and store.counters()[1]["failed"] == 2
    store.redis.hset(store.keys.task("t3"), "status", "running")  # a hash without YADTQ's marker
    store.redis.set(store.keys.task("t4"), "someone else's")
    assert not store.fail_quarantined("t3", 4.0, "quarantined")
    assert not store.fail_quarantined("t4", 4.0, "quarantined")
    assert store.redis.hgetall(store.keys.task("t3")) == {"status": "running"}
    assert store.redis.get(store.keys.task("t4")) == "someone else's"
    store.redis.set(store.keys.epoch, "2")  # a newer generation owns the cluster
    old = TaskStore(store.redis, store.keys, 60, epoch=1)
    assert not old.fail_quarantined("t5", 4.0, "quarantined") and store.record("t5") == {}
    assert store.counters()[1]["failed"] == 2


def test_a_large_failed_counter_is_incremented_not_reset_by_a_quarantine(store: TaskStore) -> None:
    store.redis.hset(store.keys.stats, "failed", "1000")  # only a counter past 2**62 counts as damaged
    assert store.fail_quarantined("t1", 2.0, "quarantined")
    assert store.counters()[1]["failed"] == 1001


def test_a_quarantines_write_raced_by_another_writer_is_tried_again(
        store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WatchError (the record changed between the read and the write) means: read again."""
    real = store._fail_quarantined
    calls: list[str] = []

    def raced(task_id: str, at: float, error: str) -> bool:
        calls.append(task_id)
        if len(calls) == 1:
            raise redis.WatchError("changed meanwhile")
        return real(task_id, at, error)

    monkeypatch.setattr(store, "_fail_quarantined", raced)
    assert store.fail_quarantined("t1", 2.0, "quarantined") and calls == ["t1", "t1"]
    assert store.record("t1")["status"] == "failed"

    def always(task_id: str, at: float, error: str) -> bool:
        raise redis.WatchError("changed meanwhile")

    monkeypatch.setattr(store, "_fail_quarantined", always)
    assert not store.fail_quarantined("t2", 2.0, "quarantined")  # gave up: not written


def _woken(sub: Any, count: int) -> list[tuple[str, str]]:
    """The first ``count`` (channel, message) published to ``sub``'s channels, within 5 s."""
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + 5
    while len(got) < count and time.monotonic() < deadline:
        msg = sub.get_message(timeout=1)
        if msg is not None:
            got.append((msg["channel"], msg["data"]))
    return got


def test_each_ending_script_writes_the_times_it_is_given_and_wakes_the_waiters(store: TaskStore) -> None:
    """claim, finish, retry, fail_unreadable and a death past the limit (assign, claim): the
    record holds the caller's times and failure fields, and each end is published on the task's
    channel (a client's wait is woken by it)."""
    k = store.keys
    sub = store.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    sub.subscribe(*(k.done_channel(t) for t in ("t1", "t2", "t3", "t4")))
    assign(store, "W1")
    assert run(store, "claim", "t1", 1, "W1", 2.25, 111, 1) is Claim.RUN
    assert store.record("t1")["started_at"] == "2.25"
    assert retry(store, 1, at=3.5, limit=2).kind is Retry.SCHEDULED
    rec = store.record("t1")
    assert (rec["failed_at"], rec["error"], rec["traceback"]) == ("3.5", "ValueError: x", "tb")
    assign(store, "W1", mode="retry")
    assert run(store, "claim", "t1", 2, "W1", 20.0, 111, 2) is Claim.RUN
    assert run(store, "finish", "t1", 2, "success", 21.5, {"result": "3"}) is Finish.WRITTEN
    assert store.record("t1")["finished_at"] == "21.5"

    def placed(task_id: str) -> None:
        payload = P1.replace('"t1"', f'"{task_id}"')
        assert run(store, "assign", task_id, "add", "W1", payload, 1.0, 0, "new", 0).kind is Assign.ASSIGNED

    placed("t2")
    assert run(store, "fail_unreadable", "t2", 4.75, "InvalidMessage: x", "worker", worker="W1",
               attempt=1).kind is Unreadable.FAILED
    assert store.record("t2")["finished_at"] == "4.75"
    placed("t3")  # retry limit 0: its worker's first death fails it, at the claim of the next one
    assert run(store, "claim", "t3", 1, "W1", 5.0, 111, 0) is Claim.RUN
    assert run(store, "claim", "t3", 1, "W1", 6.0, 222, 0) is Claim.FAILED_NOW
    placed("t4")
    assert run(store, "claim", "t4", 1, "W1", 5.0, 111, 0) is Claim.RUN
    assert run(store, "assign", "t4", "add", "W2", P1.replace('"t1"', '"t4"'), 7.0, 0, "move", 111).kind \
        is Assign.FAILED_NOW
    assert run(store, "reject", "t5", 8.5, "InvalidMessage: x") is Reject.FAILED
    assert store.record("t5")["finished_at"] == "8.5"
    woken = _woken(sub, 4)
    sub.close()
    assert sorted(woken) == sorted([(k.done_channel("t1"), "success"), (k.done_channel("t2"), "failed"),
                                    (k.done_channel("t3"), "failed"), (k.done_channel("t4"), "failed")])


def test_orphan_marks_are_written_for_a_restarted_scheduler(store: TaskStore) -> None:
    batch = store.pipeline()
    store.mark_orphans(batch, [("t1", 111), ("t2", 222)])
    store.execute(batch)
    assert store.redis.hgetall(store.keys.orphans) == {"t1": "111", "t2": "222"}


def test_the_published_load_is_read_back(store: TaskStore) -> None:
    store.write_load({"W1": 3, "W2": 0})
    assert store.counters()[0] == {"W1": 3, "W2": 0}


def test_no_key_holding_the_type_yadtq_writes_is_reported_as_misplaced(store: TaskStore) -> None:
    k = store.keys
    for key in (k.assignments, k.orphans, k.retry_payloads, k.load, k.stats, k.quarantine):
        store.redis.hset(key, "x", "1")
    store.redis.zadd(k.retries, {"x": 1.0})
    for key in (k.epoch, k.owner, k.owner_released):
        store.redis.set(key, "1")
    assert store.misplaced_keys() == []


def test_quarantine_marks_are_kept_per_field_and_cleared(store: TaskStore) -> None:
    assert store.quarantine_mark("g|T|0") is None
    store.set_quarantine_mark("g|T|0", "5:1")
    store.set_quarantine_mark("g|T|1", "9:2")
    assert (store.quarantine_mark("g|T|0"), store.quarantine_mark("g|T|1")) == ("5:1", "9:2")
    store.clear_quarantine_marks(["g|T|0"])
    assert (store.quarantine_mark("g|T|0"), store.quarantine_mark("g|T|1")) == (None, "9:2")


def test_delete_all_deletes_every_key_under_the_prefix_and_nothing_else(store: TaskStore) -> None:
    other = Keys(f"t{uuid.uuid4().hex[:10]}:")
    store.redis.set(other.epoch, "1")  # another cluster's
    try:
        for i in range(1500):  # more than one batch of deletes
            store.redis.set(store.keys.task(f"x{i}"), "1")
        assert store.delete_all() == 1500
        assert list(store.redis.scan_iter(match=f"{store.keys.prefix}*")) == []
        assert store.delete_all() == 0  # nothing left: no DEL without keys (a Redis error)
        assert store.redis.get(other.epoch) == "1"
        with pytest.raises(ValueError, match="needs a key prefix"):
            TaskStore(store.redis, Keys(""), 60).delete_all()
    finally:
        store.redis.delete(other.epoch)
