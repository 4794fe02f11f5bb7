"""The operator's scripts against the real Redis: CANCEL (client/lua/cancel.lua) and REOPEN
(client/lua/reopen.lua, an operator's retry), and how the lifecycle's scripts treat what they wrote."""

from __future__ import annotations

from typing import Any

import pytest

from client.store import (
    Assign,
    AssignResult,
    Cancel,
    CancelResult,
    Claim,
    Finish,
    Reopen,
    ReopenResult,
    Retry,
    TaskStore,
)
from tests.support.scripts import run

pytestmark = pytest.mark.integration

P1 = '{"v":1,"task-id":"t1","task":"add","args":[1,2]}'




def cancel(store: TaskStore, task_id: str = "t1", unstarted: bool = False, by: str = "ann@ops") -> CancelResult:
    return run(store, "cancel", task_id, 50.0, by, unstarted)  # type: ignore[no-any-return]


def reopen(store: TaskStore, task_id: str = "t1", at: float = 60.0) -> ReopenResult:
    return run(store, "reopen", task_id, at, "bob@ops")  # type: ignore[no-any-return]


def assign(store: TaskStore, mode: str = "new", worker: str = "W1", retries: int = 2) -> AssignResult:
    return run(store, "assign", "t1", "add", worker, P1, 1.0, retries, mode, 0)  # type: ignore[no-any-return]


def claim(store: TaskStore, attempt: int, retries: int = 2) -> Claim:
    return run(store, "claim", "t1", attempt, "W1", 2.0, 111, retries)  # type: ignore[no-any-return]


def published(store: TaskStore, act: Any) -> list[str]:
    """What ``act()`` publishes on t1's done channel."""
    sub = store.redis.pubsub()  # type: ignore[no-untyped-call]
    sub.subscribe(store.keys.done_channel("t1"))
    try:
        ack = sub.get_message(timeout=5)
        assert ack is not None and ack["type"] == "subscribe", ack
        act()
        got: list[str] = []
        while (msg := sub.get_message(timeout=0.5)) is not None:
            got.append(msg["data"])
        return got
    finally:
        sub.close()


def failed(store: TaskStore) -> None:
    """t1 assigned, claimed, and ended failed by attempt 1."""
    assert assign(store).kind is Assign.ASSIGNED
    assert claim(store, 1) is Claim.RUN
    assert run(store, "finish", "t1", 1, "failed", 3.0, {"error": "ValueError: x", "traceback": "tb"}) \
        is Finish.WRITTEN


# --- CANCEL ---
def test_a_placed_task_is_cancelled_counted_expired_and_its_waiters_told(store: TaskStore) -> None:
    """cancel.lua: the fields, EXPIRE, tally and PUBLISH (each dropped, or on another key)."""
    assign(store)
    answers: list[CancelResult] = []
    assert published(store, lambda: answers.append(cancel(store))) == ["cancelled"]
    assert answers == [CancelResult(Cancel.CANCELLED, "queued")]
    rec = store.record("t1")
    assert (rec["status"], rec["cancelled_by"], rec["cancelled_at"], rec["finished_at"]) == \
           ("cancelled", "ann@ops", "50.0", "50.0")
    assert 0 < store.redis.ttl(store.keys.task("t1")) <= 60
    assert store.redis.hget(store.keys.stats, "cancelled") == "1"


def test_a_cancelled_task_never_starts_wherever_its_message_still_is(store: TaskStore) -> None:
    """Its assignment on a worker's topic (CLAIM), a duplicate in TASKS (ASSIGN 'new'), a move
    away from a dead worker (ASSIGN 'move'): each refuses it, and it leaves the scheduler's table."""
    assign(store)
    cancel(store)
    assert claim(store, 1) is Claim.ENDED
    assert assign(store).kind is Assign.ENDED
    store.redis.hset(store.keys.assignments, "t1", f"W1|1|{P1}")
    assert assign(store, "move", "W2").kind is Assign.ENDED
    assert not store.redis.hexists(store.keys.assignments, "t1")
    assert store.record("t1")["status"] == "cancelled"


def test_a_cancelled_retry_leaves_the_schedule_and_never_comes_back(store: TaskStore) -> None:
    """cancel.lua: the ZREM, the HDEL of its payload and of retry_at (each dropped)."""
    assign(store)
    claim(store, 1)
    assert store.retry("t1", 1, 10.0, (1.0, 3.0), 2, {"error": "E"}, P1).kind is Retry.SCHEDULED
    assert cancel(store) == CancelResult(Cancel.CANCELLED, "queued")
    assert store.redis.zscore(store.keys.retries, "t1") is None
    assert not store.redis.hexists(store.keys.retry_payloads, "t1")
    assert "retry_at" not in store.record("t1")
    assert store.due_retries(1e12, 10) == []
    assert assign(store, "retry").kind is Assign.NOT_NOW


def test_a_running_task_is_cancelled_and_its_late_result_or_retry_refused(store: TaskStore) -> None:
    assign(store)
    claim(store, 1)
    assert cancel(store) == CancelResult(Cancel.CANCELLED, "processing")
    assert run(store, "finish", "t1", 1, "success", 9.0, {"result": "3"}) is Finish.ENDED
    assert store.retry("t1", 1, 9.0, (1.0, 3.0), 2, {"error": "E"}, P1).kind is Retry.ENDED
    assert store.running_state("t1") == ("cancelled", 1)
    rec = store.record("t1")
    assert rec["status"] == "cancelled" and "result" not in rec


def test_an_ended_task_is_left_unchanged_and_the_answer_says_how_it_ended(store: TaskStore) -> None:
    """cancel.lua's terminal check (made false, or after the writes)."""
    assign(store)
    claim(store, 1)
    run(store, "finish", "t1", 1, "success", 3.0, {"result": "3"})
    before, ttl = store.record("t1"), store.redis.ttl(store.keys.task("t1"))
    stats = store.redis.hgetall(store.keys.stats)
    answers: list[CancelResult] = []
    assert published(store, lambda: answers.append(cancel(store))) == []
    assert answers == [CancelResult(Cancel.ENDED, "success")]
    assert store.record("t1") == before and store.redis.hgetall(store.keys.stats) == stats
    assert 0 < store.redis.ttl(store.keys.task("t1")) <= ttl


def test_an_id_with_no_record_yet_is_cancelled_before_its_message_is_read(store: TaskStore) -> None:
    """A producer that wrote no record: the message in TASKS is dropped when the scheduler reads it,
    and the payload is kept for an operator's retry."""
    assert cancel(store) == CancelResult(Cancel.CANCELLED, "")
    assert store.record("t1")["status"] == "cancelled"
    assert assign(store).kind is Assign.ENDED
    assert store.record("t1")["payload"] == P1


def test_a_purge_cancels_only_what_has_not_started(store: TaskStore) -> None:
    """cancel.lua mode 'unstarted' (its condition made false or true)."""
    assign(store)
    claim(store, 1)
    before = store.record("t1")
    assert cancel(store, unstarted=True) == CancelResult(Cancel.STARTED, "processing")
    assert store.record("t1") == before
    store.redis.hset(store.keys.task("t2"), mapping={"yadtq": "1", "status": "queued"})
    assert cancel(store, "t2", unstarted=True) == CancelResult(Cancel.CANCELLED, "queued")
    assert cancel(store, "t3", unstarted=True) == CancelResult(Cancel.CANCELLED, "")
    assert cancel(store, "t1") == CancelResult(Cancel.CANCELLED, "processing")


def test_an_id_naming_a_foreign_key_is_left_alone(store: TaskStore) -> None:
    store.redis.set(store.keys.task("t1"), "another app's value")
    assert cancel(store) == CancelResult(Cancel.NOT_OURS, "string")
    assert reopen(store) == ReopenResult(Reopen.NOT_OURS, "string")
    assert store.redis.get(store.keys.task("t1")) == "another app's value"
    assert store.redis.exists(store.keys.stats, store.keys.retries) == 0


# --- REOPEN ---
def test_the_record_keeps_the_payload_its_placement_holds(store: TaskStore) -> None:
    """assign.lua: the payload written to the record (dropped): no operator's retry could run it."""
    assign(store)
    assert store.record("t1")["payload"] == P1


def test_a_failed_task_reopened_runs_again_as_a_new_attempt(store: TaskStore) -> None:
    """reopen.lua: every write (dropped, or from another argument)."""
    failed(store)
    assert store.redis.hset(store.keys.task("t1"), mapping={"retries": "1", "worker_deaths": "1"}) == 2
    assert reopen(store) == ReopenResult(Reopen.REOPENED)
    rec = store.record("t1")
    assert (rec["status"], rec["previous_status"], rec["previous_error"], rec["reopened_by"], rec["reopened_at"],
            rec["reopened"], rec["retry_at"]) == ("queued", "failed", "ValueError: x", "bob@ops", "60.0", "1", "60.0")
    for gone in ("error", "traceback", "finished_at", "retries", "worker_deaths", "pid", "started_at"):
        assert gone not in rec, gone
    assert store.redis.ttl(store.keys.task("t1")) == -1  # it runs again: it must not expire meanwhile
    assert store.redis.zscore(store.keys.retries, "t1") == 60.0
    assert store.redis.hget(store.keys.stats, "reopened") == "1"
    assert store.due_retries(60.0, 10) == [("t1", P1)]
    assert assign(store, "retry") == AssignResult(Assign.ASSIGNED, 2)
    assert claim(store, 1) is Claim.FENCED  # the old attempt's message, if read again
    assert claim(store, 2) is Claim.RUN
    assert run(store, "finish", "t1", 2, "success", 61.0, {"result": "3"}) is Finish.WRITTEN
    assert store.record("t1")["status"] == "success"


def test_a_cancelled_task_reopened_says_who_cancelled_it(store: TaskStore) -> None:
    assign(store)
    cancel(store)
    assert reopen(store) == ReopenResult(Reopen.REOPENED)
    rec = store.record("t1")
    assert (rec["previous_status"], rec["previous_error"]) == ("cancelled", "cancelled by ann@ops")
    assert "cancelled_by" not in rec and "cancelled_at" not in rec


def test_only_a_failed_or_cancelled_task_with_a_payload_is_reopened(store: TaskStore) -> None:
    """reopen.lua's refusals (each condition made false): final is final for every other record."""
    assert reopen(store) == ReopenResult(Reopen.UNKNOWN)
    assert store.record("t1") == {}
    assign(store)
    assert reopen(store) == ReopenResult(Reopen.REFUSED, "queued")
    claim(store, 1)
    assert reopen(store) == ReopenResult(Reopen.REFUSED, "processing")
    run(store, "finish", "t1", 1, "success", 3.0, {"result": "3"})
    before = store.record("t1")
    assert reopen(store) == ReopenResult(Reopen.REFUSED, "success")
    assert store.record("t1") == before
    assert run(store, "reject", "t2", 3.0, "InvalidMessage: x").value == "failed"
    assert reopen(store, "t2") == ReopenResult(Reopen.NO_PAYLOAD)
    assert store.record("t2")["status"] == "failed"
    assert store.redis.exists(store.keys.retries) == 0


def test_only_a_cancelled_record_takes_the_payload_of_a_message_read_after_it_ended(store: TaskStore) -> None:
    """assign.lua:39 (its condition made true): a task failed as invalid, then a valid message
    with its id, would become retryable with a payload that never was its own."""
    assert run(store, "reject", "t1", 3.0, "InvalidMessage: x").value == "failed"
    assert assign(store).kind is Assign.ENDED
    assert "payload" not in store.record("t1")
    assert reopen(store) == ReopenResult(Reopen.NO_PAYLOAD)
