"""A task's history (Keys.history): what each lifecycle script notes, its bound, its expiry,
that a refused call notes nothing, and how Insight.task reads it back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from client import cli
from client.config import Config, RedisConfig
from client.insight import Insight
from client.store import (
    HISTORY_MAX,
    Assign,
    Cancel,
    Claim,
    Finish,
    Reject,
    Release,
    Reopen,
    Retry,
    Status,
    TaskStore,
    Unreadable,
    parse_history,
)
from tests.integration.conftest import REDIS
from tests.support.scripts import run

pytestmark = pytest.mark.integration

P1 = '{"v":1,"task-id":"t1","task":"add","args":[]}'
TTL = 60




def assign(store: TaskStore, worker: str = "W1", mode: str = "new", dead_pid: int = 0, at: float = 1.0,
           retries: int = 1) -> Any:
    return run(store, "assign", "t1", "add", worker, P1, at, retries, mode, dead_pid)


def claim(store: TaskStore, attempt: int, pid: int = 111, worker: str = "W1", at: float = 2.0,
          retries: int = 1) -> Any:
    return run(store, "claim", "t1", attempt, worker, at, pid, retries)


def history(store: TaskStore) -> list[dict[str, Any]]:
    """The history as stored, every line parsed (a damaged one would fail here)."""
    return [json.loads(line) for line in store.redis.lrange(store.keys.history("t1"), 0, -1)]  # type: ignore[union-attr]


def events(store: TaskStore) -> list[tuple[str, int]]:
    return [(e["event"], e["attempt"]) for e in history(store)]


def ttls(store: TaskStore) -> tuple[int, int]:
    """(the record's TTL, the history's), in seconds (-1: none)."""
    return store.redis.ttl(store.keys.task("t1")), store.redis.ttl(store.keys.history("t1"))  # type: ignore[return-value]


def test_a_task_retried_then_failed_has_one_entry_per_step_and_expires_with_its_record(store: TaskStore) -> None:
    assert assign(store).kind is Assign.ASSIGNED
    assert claim(store, 1, pid=111, at=2.0) is Claim.RUN
    due = store.retry("t1", 1, 3.0, (10.0, 60.0), 5, {"error": "ValueError: bad\nmore", "traceback": "tb"}, P1)
    assert due.kind is Retry.SCHEDULED
    assert ttls(store) == (-1, -1)  # the record does not expire yet, nor does its history
    assert assign(store, worker="W2", mode="retry", at=13.0).kind is Assign.ASSIGNED
    assert claim(store, 2, pid=222, worker="W2", at=14.0) is Claim.RUN
    assert run(store, "finish", "t1", 2, Status.FAILED, 15.0,
               {"error": "KeyError: 'x'\nline two", "traceback": "tb"}) is Finish.WRITTEN
    assert history(store) == [
        {"at": 1, "event": "assigned", "attempt": 1, "worker": "W1", "mode": "new"},
        {"at": 2, "event": "started", "attempt": 1, "worker": "W1", "pid": 111},
        {"at": 3, "event": "raised", "attempt": 1, "error": "ValueError: bad", "retry_at": 13, "retries": 1},
        {"at": 13, "event": "assigned", "attempt": 2, "worker": "W2", "mode": "retry"},
        {"at": 14, "event": "started", "attempt": 2, "worker": "W2", "pid": 222},
        {"at": 15, "event": "ended", "attempt": 2, "status": "failed", "error": "KeyError: 'x'"}]
    record_ttl, history_ttl = ttls(store)
    assert 0 < record_ttl <= TTL and 0 < history_ttl <= TTL


def test_a_success_notes_its_status_without_an_error(store: TaskStore) -> None:
    assign(store)
    claim(store, 1)
    assert run(store, "finish", "t1", 1, Status.SUCCESS, 3.5, {"result": "3"}) is Finish.WRITTEN
    assert history(store)[-1] == {"at": 3.5, "event": "ended", "attempt": 1, "status": "success"}


def test_a_death_found_by_a_claim_is_noted_and_a_last_one_ends_it(store: TaskStore) -> None:
    assign(store)
    claim(store, 1, pid=111)
    assert claim(store, 1, pid=112, at=5.0, retries=1) is Claim.RUN  # its worker died once: it runs again
    assert claim(store, 1, pid=113, at=6.0, retries=1) is Claim.FAILED_NOW
    assert [(e["event"], e.get("pid"), e.get("deaths")) for e in history(store)] == [
        ("assigned", None, None), ("started", 111, None), ("died", 111, 1), ("started", 112, None),
        ("died", 112, 2), ("ended", None, None)]
    assert history(store)[-1] == {"at": 6, "event": "ended", "attempt": 1, "status": "failed",
                                  "error": "WorkerLost"}
    assert 0 < ttls(store)[1] <= TTL


def test_a_move_off_a_dead_worker_names_both_workers(store: TaskStore) -> None:
    assign(store)
    claim(store, 1, pid=111)
    assert assign(store, worker="W2", mode="move", dead_pid=111, at=7.0, retries=3).kind is Assign.ASSIGNED
    assert history(store)[-2:] == [
        {"at": 7, "event": "died", "attempt": 1, "worker": "W1", "pid": 111, "deaths": 1},
        {"at": 7, "event": "moved", "attempt": 2, "from": "W1", "to": "W2"}]


def test_a_cancel_names_who_and_an_operator_retry_makes_it_last_again(store: TaskStore) -> None:
    assign(store)
    assert run(store, "cancel", "t1", 4.0, "alice").kind is Cancel.CANCELLED
    assert history(store)[-1] == {"at": 4, "event": "cancelled", "attempt": 1, "by": "alice", "was": "queued"}
    assert 0 < ttls(store)[1] <= TTL
    assert run(store, "reopen", "t1", 5.0, "bob").kind is Reopen.REOPENED
    assert history(store)[-1] == {"at": 5, "event": "reopened", "attempt": 1, "by": "bob", "was": "cancelled"}
    assert ttls(store) == (-1, -1)  # the record no longer expires: its history neither


def test_a_release_a_rejection_and_an_unreadable_payload_are_noted(store: TaskStore) -> None:
    assign(store)
    claim(store, 1, pid=111)
    assert store.release("t1", 1, 111) is Release.RELEASED
    assert history(store)[-1]["event"] == "released" and history(store)[-1]["pid"] == 111
    assert run(store, "fail_unreadable", "t1", 8.0, "InvalidMessage: no\nmore", "worker", worker="W1",
               attempt=1).kind is Unreadable.FAILED
    assert history(store)[-1] == {"at": 8, "event": "unreadable", "attempt": 1, "error": "InvalidMessage: no",
                                  "where": "worker"}
    assert 0 < ttls(store)[1] <= TTL
    store.redis.delete(store.keys.task("t1"), store.keys.history("t1"))
    assert run(store, "reject", "t1", 9.0, "InvalidMessage: bad", "new") is Reject.FAILED
    assert history(store) == [{"at": 9, "event": "rejected", "attempt": 0, "error": "InvalidMessage: bad",
                               "mode": "new"}]
    assert 0 < ttls(store)[1] <= TTL


def test_a_quarantined_task_is_noted_too(store: TaskStore) -> None:
    assign(store)
    assert store.fail_quarantined("t1", 9.5, "Quarantined: its message kills its reader\nmore")
    assert history(store)[-1] == {"at": 9.5, "event": "quarantined", "attempt": 1,
                                  "error": "Quarantined: its message kills its reader"}
    assert 0 < ttls(store)[1] <= TTL


@pytest.mark.parametrize("before", [HISTORY_MAX, HISTORY_MAX + 10])
def test_the_history_keeps_only_the_newest_entries(store: TaskStore, before: int) -> None:
    key = store.keys.history("t1")
    store.redis.rpush(key, *[json.dumps({"at": i, "event": "old", "attempt": 0}) for i in range(before)])
    assign(store)
    entries = history(store)
    assert len(entries) == HISTORY_MAX
    assert entries[0]["at"] == before + 1 - HISTORY_MAX and entries[-1]["event"] == "assigned"  # the oldest went


def test_a_refused_call_notes_nothing(store: TaskStore) -> None:
    assign(store)
    claim(store, 1)
    before = history(store)
    assert claim(store, 2) is Claim.FENCED  # not the attempt the record holds
    assert run(store, "finish", "t1", 2, Status.SUCCESS, 3.0, {}) is Finish.FENCED
    assert store.retry("t1", 2, 3.0, (1.0, 1.0), 5, {}, P1).kind is Retry.FENCED
    assert store.release("t1", 1, 999) is Release.NOT_HELD
    assert run(store, "reopen", "t1", 3.0, "bob").kind is Reopen.REFUSED
    assert assign(store, worker="W2").kind is Assign.PLACED  # a duplicate message
    stale = TaskStore(store.redis, store.keys, TTL, epoch=1)
    store.redis.set(store.keys.epoch, 2)
    assert claim(stale, 1) is Claim.STALE_EPOCH
    assert run(stale, "finish", "t1", 1, Status.SUCCESS, 3.0, {}) is Finish.STALE_EPOCH
    assert history(store) == before
    store.redis.delete(store.keys.epoch)
    run(store, "finish", "t1", 1, Status.SUCCESS, 3.0, {})
    ended = history(store)
    assert run(store, "finish", "t1", 1, Status.FAILED, 4.0, {}) is Finish.ENDED
    assert run(store, "cancel", "t1", 4.0, "alice").kind is Cancel.ENDED
    assert claim(store, 1) is Claim.ENDED
    assert history(store) == ended


def test_a_key_that_is_not_ours_gets_no_history(store: TaskStore) -> None:
    store.redis.set(store.keys.task("t1"), "someone else's")
    assert assign(store).kind is Assign.NOT_OURS
    assert run(store, "cancel", "t1", 4.0, "alice").kind is Cancel.NOT_OURS
    assert store.redis.exists(store.keys.history("t1")) == 0


def test_a_history_key_of_another_type_is_skipped_not_a_failure(store: TaskStore) -> None:
    store.redis.set(store.keys.history("t1"), "by hand")
    assert assign(store).kind is Assign.ASSIGNED
    assert claim(store, 1) is Claim.RUN
    assert store.fail_quarantined("t1", 9.5, "Quarantined")
    assert store.redis.get(store.keys.history("t1")) == "by hand"


def test_insight_task_returns_the_history_skipping_a_damaged_entry(store: TaskStore) -> None:
    assign(store)
    key = store.keys.history("t1")
    store.redis.rpush(key, "not json", "[1, 2]", '{"event": "x"}', '{"at": true, "event": "x"}', "{")
    claim(store, 1)
    cfg = Config(redis=RedisConfig(url=REDIS, key_prefix=store.keys.prefix))
    with Insight(cfg) as insight:
        task = insight.task("t1")
    assert task is not None
    assert [(e["event"], e["attempt"]) for e in task["history"]] == [("assigned", 1), ("started", 1)]
    assert task["record"]["status"] == "processing"  # the record itself is unchanged: no history in it


def test_parse_history_reads_no_list_as_no_history() -> None:
    assert parse_history(None) == []
    assert parse_history(ValueError("WRONGTYPE")) == []
    assert parse_history(['{"at": 1, "event": "e", "attempt": 1}', '{"at": NaN, "event": "e"}']) == [
        {"at": 1, "event": "e", "attempt": 1}]


def test_status_history_prints_one_line_per_event(store: TaskStore, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assign(store)
    claim(store, 1)
    store.retry("t1", 1, 3.0, (10.0, 60.0), 5, {"error": "ValueError: two words\x1b[2J"}, P1)
    config = tmp_path / "yadtq.yaml"
    # Kafka is never asked (status reads Redis only): a port where nothing listens says so if it were.
    config.write_text(yaml.safe_dump({"redis": {"url": REDIS, "key_prefix": store.keys.prefix},
                                      "kafka": {"bootstrap_servers": ["127.0.0.1:1"]}}))
    assert cli.main(["-c", str(config), "status", "t1", "--history"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1:3] for line in lines] == [["attempt 1", "assigned"], ["attempt 1", "started"],
                                                        ["attempt 1", "raised"]]
    assert 'error="ValueError: two words\\u001b[2J"' in lines[2]  # quoted, its control characters escaped
    assert "worker=W1" in lines[1] and "pid=111" in lines[1]
    assert cli.main(["-c", str(config), "status", "t1", "--history", "--json"]) == 0
    assert [e["event"] for e in json.loads(capsys.readouterr().out)] == ["assigned", "started", "raised"]
    assert cli.main(["-c", str(config), "status", "t1", "--json"]) == 0
    assert "history" not in json.loads(capsys.readouterr().out)  # the record as it was


def test_format_history_without_entries_says_so() -> None:
    assert cli.format_history([]).startswith("no history")
