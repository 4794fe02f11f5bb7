"""The Lua scripts' paths that `make mutate-lua` found no test for (docs/TESTING.md, "Lua mutants").

Each test here fails on at least one mutant of client/lua/*.lua that the rest of the
suite let live; its docstring names them (script:line, the change).
"""

from __future__ import annotations

from typing import Any

import pytest

from client.store import (
    Assign,
    AssignResult,
    Claim,
    Finish,
    Keys,
    Reject,
    Release,
    Retry,
    TaskStore,
)
from tests.support.scripts import run

pytestmark = pytest.mark.integration

P1 = '{"v":1,"task-id":"t1","task":"add","args":[]}'




def assign(store: TaskStore, worker: str = "W1", mode: str = "new", dead_pid: int = 0, retries: int = 1,
           task_id: str = "t1", at: float = 1.0) -> AssignResult:
    return run(store, "assign", task_id, "add", worker, P1, at, retries, mode, dead_pid)  # type: ignore[no-any-return]


def claim(store: TaskStore, attempt: int, pid: int = 111, worker: str = "W1", retries: int = 1,
          at: float = 2.0) -> Claim:
    return run(store, "claim", "t1", attempt, worker, at, pid, retries)  # type: ignore[no-any-return]


def test_a_move_clears_the_orphan_mark_and_only_a_move_does(store: TaskStore) -> None:
    """assign.lua:20 (the orphan mark cleared in every mode, or in none, or in all but 'move')."""
    assert assign(store).kind is Assign.ASSIGNED
    store.redis.hset(store.keys.orphans, "t1", "111")
    assert assign(store, "W2").kind is Assign.PLACED  # a duplicate message: the move is still to come
    assert store.redis.hget(store.keys.orphans, "t1") == "111"
    assert assign(store, "W2", mode="move", dead_pid=111) == AssignResult(Assign.ASSIGNED, 2)
    assert not store.redis.hexists(store.keys.orphans, "t1")


def test_an_id_naming_a_foreign_key_loses_its_table_entry(store: TaskStore) -> None:
    """assign.lua:27 (dropped, or HDEL on the orphans): a placement of an id whose key another
    program took would be sent again after every scheduler restart."""
    store.redis.hset(store.keys.assignments, "t1", f"W1|1|{P1}")
    store.redis.hset(store.keys.orphans, "t1", "111")
    store.redis.set(store.keys.task("t1"), "another app's value")
    assert assign(store, mode="move", dead_pid=111) == AssignResult(Assign.NOT_OURS, key_type="string")
    assert not store.redis.hexists(store.keys.assignments, "t1")


def test_the_record_holds_the_task_name_its_worker_and_when_it_was_submitted(store: TaskStore) -> None:
    """assign.lua:17-18 (ARGV[7] for the name read from another argument)."""
    run(store, "assign", "t1", "mul", "W2", P1, 7.5, 1, "new", 0)
    rec = store.record("t1")
    assert (rec["task"], rec["worker"], rec["submitted_at"], rec["status"]) == ("mul", "W2", "7.5", "queued")


def test_a_caller_of_the_current_epoch_or_a_newer_one_is_served_by_every_script(store: TaskStore) -> None:
    """The epoch argument of each script read from the wrong place (assign.lua:19 ARGV[11], ...):
    only an older caller was tested, and a missing epoch counts as 0."""
    store.redis.set(store.keys.epoch, "5")
    for epoch in (5, 6):
        s = TaskStore(store.redis, Keys(f"{store.keys.prefix}e{epoch}:"), 60, epoch=epoch)
        s.redis.set(s.keys.epoch, "5")
        assert run(s, "assign", "t1", "add", "W1", P1, 1.0, 2).kind is Assign.ASSIGNED
        assert run(s, "claim", "t1", 1, "W1", 2.0, 111, 2) is Claim.RUN
        assert s.release("t1", 1, 111) is Release.RELEASED
        assert run(s, "claim", "t1", 1, "W1", 2.0, 111, 2) is Claim.RUN
        assert s.retry("t1", 1, 3.0, (1.0, 3.0), 2, {"error": "E"}, P1).kind is Retry.SCHEDULED
        assert run(s, "assign", "t1", "add", "W1", P1, 4.0, 2, "retry").kind is Assign.ASSIGNED
        assert run(s, "claim", "t1", 2, "W1", 5.0, 112, 2) is Claim.RUN
        assert run(s, "finish", "t1", 2, "success", 6.0, {"result": "1"}) is Finish.WRITTEN
        assert run(s, "reject", "t2", 6.0, "InvalidMessage: x") is Reject.FAILED
        assert run(s, "fail_unreadable", "t3", 6.0, "InvalidMessage: x", "assignments", None).kind.value == "failed"
        s.redis.delete(s.keys.epoch)


def test_a_task_failed_by_its_deaths_leaves_the_table(store: TaskStore) -> None:
    """assign.lua:53 (dropped, or HDEL on the orphans): a failed task left in the scheduler's
    table would be placed again by a restarted scheduler."""
    assign(store, retries=0)
    assert claim(store, 1, retries=0) is Claim.RUN
    assert assign(store, "W2", mode="move", dead_pid=111, retries=0) == AssignResult(Assign.FAILED_NOW)
    assert not store.redis.hexists(store.keys.assignments, "t1")


def test_a_retry_placed_again_no_longer_shows_its_due_time(store: TaskStore) -> None:
    """assign.lua:59 (dropped): the record of a running retry would still say when it was due."""
    assign(store)
    assert claim(store, 1, retries=2) is Claim.RUN
    assert store.retry("t1", 1, 10.0, (1.0, 3.0), 2, {"error": "E"}, P1).kind is Retry.SCHEDULED
    assert store.record("t1")["retry_at"] == "11"
    assert assign(store, "W2", mode="retry") == AssignResult(Assign.ASSIGNED, 2)
    assert "retry_at" not in store.record("t1")


def published(store: TaskStore, task_id: str, act: Any) -> list[str]:
    """What ``act()`` publishes on the task's done channel (each message within 1 s of the last)."""
    sub = store.redis.pubsub()  # type: ignore[no-untyped-call]
    sub.subscribe(store.keys.done_channel(task_id))
    try:
        ack = sub.get_message(timeout=5)  # subscribed before act() publishes
        assert ack is not None and ack["type"] == "subscribe", ack
        act()
        got: list[str] = []
        while (msg := sub.get_message(timeout=1)) is not None:
            got.append(msg["data"])
        return got
    finally:
        sub.close()


def test_a_claim_records_who_runs_it_and_since_when(store: TaskStore) -> None:
    """claim.lua:15 (a field written from another argument)."""
    assign(store)
    assert claim(store, 1, pid=4242, worker="W9", at=2.5) is Claim.RUN
    rec = store.record("t1")
    assert (rec["status"], rec["worker"], rec["started_at"], rec["pid"]) == ("processing", "W9", "2.5", "4242")


def test_a_task_failed_by_its_deaths_expires_and_wakes_its_waiters(store: TaskStore) -> None:
    """died.lua:14, 16 (the EXPIRE or the PUBLISH dropped, or on another key): a client waiting
    for the result would wait for ever, and the record would never go."""
    assign(store, retries=0)
    assert claim(store, 1, retries=0) is Claim.RUN
    answers: list[AssignResult] = []
    got = published(store, "t1", lambda: answers.append(assign(store, "W2", "move", 111, retries=0)))
    assert answers == [AssignResult(Assign.FAILED_NOW)] and got == ["failed"]
    assert 0 < store.redis.ttl(store.keys.task("t1")) <= 60
    rec = store.record("t1")
    assert (rec["status"], rec["finished_at"]) == ("failed", "1.0")


def test_a_finish_wakes_its_waiters_with_the_status(store: TaskStore) -> None:
    """finish.lua:16 (the PUBLISH dropped, or on another key)."""
    assign(store)
    claim(store, 1)
    answers: list[Finish] = []
    got = published(store, "t1", lambda: answers.append(run(store, "finish", "t1", 1, "success", 3.0,
                                                            {"result": "3"})))
    assert answers == [Finish.WRITTEN] and got == ["success"]
    rec = store.record("t1")
    assert (rec["status"], rec["finished_at"], rec["result"]) == ("success", "3.0", "3")


def test_only_the_process_that_runs_its_claimed_attempt_hands_it_back(store: TaskStore) -> None:
    """release.lua:8-12 (each refusal's condition made false): a process that does not hold the
    task would put it back to 'queued' under the one that runs it, or revive an ended one."""
    assert store.release("t1", 1, 111) is Release.NOT_HELD  # no record
    assert store.record("t1") == {}
    assign(store)
    assert store.release("t1", 1, 111) is Release.NOT_HELD  # placed, not running
    assert claim(store, 1, pid=111) is Claim.RUN
    assert store.release("t1", 2, 111) is Release.NOT_HELD  # another attempt
    assert store.release("t1", 1, 112) is Release.NOT_HELD  # another process
    assert store.record("t1")["status"] == "processing"
    assert store.release("t1", 1, 111) is Release.RELEASED
    rec = store.record("t1")
    assert rec["status"] == "queued" and "pid" not in rec and "started_at" not in rec, rec
    assert claim(store, 1, pid=111) is Claim.RUN  # run again (by the same pid), and ended
    assert run(store, "finish", "t1", 1, "success", 3.0, {"result": "1"}) is Finish.WRITTEN
    assert store.release("t1", 1, 111) is Release.NOT_HELD
    assert store.record("t1")["status"] == "success"


def test_a_retry_records_the_failure_and_keeps_the_payload_for_the_schedule(store: TaskStore) -> None:
    """retry.lua:21-25 (a field from another argument, the HDEL of pid and started_at, the ZADD
    or the payload dropped)."""
    assign(store)
    claim(store, 1, retries=2)
    fields = {"error": "ValueError: x", "traceback": "Traceback: here"}
    answer = store.retry("t1", 1, 10.0, (1.0, 3.0), 2, fields, P1)
    assert answer.kind is Retry.SCHEDULED and answer.due == 11.0
    rec = store.record("t1")
    assert {k: rec.get(k) for k in ("status", "retry_at", "failed_at", "error", "traceback", "pid", "started_at",
                                    "retries")} == {
        "status": "queued", "retry_at": "11", "failed_at": "10.0", "error": "ValueError: x",
        "traceback": "Traceback: here", "pid": None, "started_at": None, "retries": "1"}
    assert store.redis.zscore(store.keys.retries, "t1") == 11.0
    assert store.redis.hget(store.keys.retry_payloads, "t1") == P1


def test_an_epoch_key_holding_text_counts_as_no_epoch(store: TaskStore) -> None:
    """common.lua:27 (text read as epoch 1, not 0): a cluster without a lease would be fenced."""
    store.redis.set(store.keys.epoch, "junk")
    assert assign(store).kind is Assign.ASSIGNED
    assert claim(store, 1) is Claim.RUN


# Counts at the edge of what common.lua's count() reads as a number: 2^53 and beyond is damage.
EDGES = [str(2 ** 53), "1e20", str(2 ** 53 + 2)]


@pytest.mark.parametrize("junk", EDGES)
def test_a_count_too_big_to_be_exact_is_read_as_zero(store: TaskStore, junk: str) -> None:
    """common.lua:38 (2 ^ 53 made 2 ^ 54 or 3 ^ 53, >= made >): an attempt no double holds exactly
    cannot fence, so it counts as 0."""
    store.redis.hset(store.keys.task("t1"), mapping={"yadtq": "1", "status": "queued", "attempt": junk,
                                                       "retries": junk, "worker_deaths": junk})
    assert assign(store) == AssignResult(Assign.ASSIGNED, 1)
    assert claim(store, 1, retries=5) is Claim.RUN
    assert store.retry("t1", 1, 10.0, (1.0, 3.0), 5, {"error": "E"}, P1).kind is Retry.SCHEDULED
    assert store.record("t1")["retries"] == "1"


def test_a_claim_that_finds_its_process_dead_fails_the_task_at_the_claims_time(store: TaskStore) -> None:
    """claim.lua:14 (died() given the pid for the time)."""
    assign(store, retries=0)
    assert claim(store, 1, pid=111, retries=0) is Claim.RUN
    assert claim(store, 1, pid=112, retries=0, at=3.5) is Claim.FAILED_NOW  # pid 111 died running it
    rec = store.record("t1")
    assert (rec["status"], rec["finished_at"]) == ("failed", "3.5")


def test_a_refused_task_is_failed_with_the_reason_counted_expiring_and_announced(store: TaskStore) -> None:
    """reject.lua:28-31 (a field from another argument, the EXPIRE, the tally or the PUBLISH dropped)."""
    got = published(store, "t2", lambda: run(store, "reject", "t2", 4.5, "InvalidMessage: bad args"))
    assert got == ["failed"]
    rec = store.record("t2")
    assert (rec["status"], rec["finished_at"], rec["error"]) == ("failed", "4.5", "InvalidMessage: bad args")
    assert 0 < store.redis.ttl(store.keys.task("t2")) <= 60
    assert store.counters()[1] == {"failed": 1}


def test_a_bad_duplicate_of_a_task_on_the_retry_schedule_is_accepted_even_without_an_attempt(
        store: TaskStore) -> None:
    """reject.lua:24-25 (the schedule looked up on another key): the record says only 'queued'
    (the client's write), but the schedule holds the task, so it was accepted."""
    run(store, "mark_queued", "t1", "add", 1.0)
    store.redis.zadd(store.keys.retries, {"t1": 5.0})
    assert run(store, "reject", "t1", 2.0, "InvalidMessage: x") is Reject.ACCEPTED
    assert store.record("t1")["status"] == "queued"


def test_a_worker_never_fails_a_key_that_is_not_yadtqs(store: TaskStore) -> None:
    """unreadable.lua:17 (its condition made false): another program's hash that happens to hold
    'worker' and 'attempt' would be overwritten as a failed task, and a string fail the script."""
    store.redis.hset(store.keys.task("h"), mapping={"worker": "W1", "attempt": "1", "status": "queued"})
    store.redis.set(store.keys.task("s"), "x")
    for task_id in ("h", "s"):
        answer = run(store, "fail_unreadable", task_id, 2.0, "InvalidMessage: x", "worker", worker="W1", attempt=1)
        assert answer.kind.value == "elsewhere"
    assert store.redis.hgetall(store.keys.task("h")) == {"worker": "W1", "attempt": "1", "status": "queued"}


def test_an_unreadable_task_is_failed_with_the_reason_expiring_and_announced(store: TaskStore) -> None:
    """unreadable.lua:38-41 (a field from another argument, the EXPIRE or the PUBLISH dropped)."""
    assign(store)
    answers: list[Any] = []
    got = published(store, "t1", lambda: answers.append(run(
        store, "fail_unreadable", "t1", 2.5, "InvalidMessage: x", "worker", worker="W1", attempt=1)))
    assert [a.kind.value for a in answers] == ["failed"] and got == ["failed"]
    rec = store.record("t1")
    assert (rec["status"], rec["finished_at"], rec["error"]) == ("failed", "2.5", "InvalidMessage: x")
    assert 0 < store.redis.ttl(store.keys.task("t1")) <= 60
    assert store.counters()[1] == {"failed": 1}


def test_a_worker_writing_for_a_task_that_has_no_record_is_fenced(store: TaskStore) -> None:
    """claim.lua:9, finish.lua:8, retry.lua:12 (the condition made false: answered 'not_ours'):
    a record gone (expired, or deleted by hand) means the attempt is over, not another program's key."""
    assert claim(store, 1) is Claim.FENCED
    assert run(store, "finish", "t1", 1, "success", 3.0, {"result": "1"}) is Finish.FENCED
    assert store.retry("t1", 1, 3.0, (1.0, 3.0), 2, {"error": "E"}, P1).kind is Retry.FENCED
    assert store.record("t1") == {} and store.redis.zcard(store.keys.retries) == 0
