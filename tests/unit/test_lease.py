"""The pieces that keep two generations of a cluster from running at once
(client/lease.py): reading the owner's epoch, a child's check of it, and the
thread that renews the lease whatever its supervisor's loop is doing."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from client.lease import Keeper, Renewal
from client.store import parse_owner_epoch
from worker_pool import process
from worker_pool.process import EXIT_FENCED, check_owner


@pytest.mark.parametrize("text", [
    None, "", "not json", "[1, 2]", '"text"', "3", "null", '{"host": "h"}', '{"epoch": "3"}',
    '{"epoch": 3.0}', '{"epoch": true}', '{"epoch": null}', '{"epoch": [3]}', "[" * 100000, b'{"epoch": 3}', 3,
])
def test_a_lease_value_that_names_no_epoch_is_none(text: Any) -> None:
    assert parse_owner_epoch(text) is None


def test_the_epoch_of_a_lease_value() -> None:
    assert parse_owner_epoch('{"host": "h", "pid": 1, "epoch": 7, "token": "x"}') == 7
    assert parse_owner_epoch('{"epoch": 0}') == 0


class _Store:
    def __init__(self, answer: int | Exception | None) -> None:
        self.answer = answer

    def owner_epoch(self) -> int | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Exited(Exception):
    pass


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        raise _Exited

    monkeypatch.setattr(process.os, "_exit", fake_exit)
    return codes


@pytest.mark.parametrize("answer", [3, None, redis.ConnectionError("away"), redis.TimeoutError("slow")])
def test_a_child_goes_on_while_the_lease_is_its_own_absent_or_unreadable(answer: Any, exits: list[int]) -> None:
    check_owner("worker W1", _Store(answer), 3)  # type: ignore[arg-type]
    assert exits == []


def test_a_child_run_without_a_lease_is_never_fenced(exits: list[int]) -> None:
    check_owner("worker W1", _Store(5), 0)  # type: ignore[arg-type]
    assert exits == []


@pytest.mark.parametrize("owner", [4, 2])
def test_a_child_exits_at_once_when_the_lease_names_another_epoch(owner: int, exits: list[int],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(_Exited):
        check_owner("worker W1", _Store(owner), 3)  # type: ignore[arg-type]
    assert exits == [EXIT_FENCED]
    assert [r.getMessage() for r in caplog.records] == [
        f"worker W1: the cluster's lease is held by epoch {owner}, not this process's 3 (a newer supervisor owns "
        "the cluster); exiting"]


class _Lease:
    """Answers renewals from a script; ``release`` records when it ran."""

    def __init__(self, answers: list[Renewal | Exception]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.done = threading.Event()

    def renew(self) -> Renewal:
        self.calls.append("renew")
        answer = self.answers.pop(0) if self.answers else Renewal.HELD
        if not self.answers:
            self.done.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    def release(self) -> None:
        self.calls.append("release")


def _news(keeper: Keeper) -> list[Renewal]:
    found = []
    while not keeper.news.empty():
        found.append(keeper.news.get())
    return found


def test_the_keeper_reports_what_the_owner_must_act_on_and_stops_once_lost() -> None:
    lease = _Lease([Renewal.HELD, redis.ConnectionError("away"), redis.ConnectionError("away"), Renewal.HELD,
                    Renewal.HELD, Renewal.RETAKEN, Renewal.HELD, Renewal.LOST])
    keeper = Keeper(lease, 0.001)  # type: ignore[arg-type]
    keeper.start()
    keeper._thread.join(5)
    assert not keeper._thread.is_alive()  # it ended with LOST
    assert _news(keeper) == [Renewal.AWAY, Renewal.HELD, Renewal.RETAKEN, Renewal.LOST]
    assert lease.calls == ["renew"] * 8


def test_no_renewal_runs_after_the_keeper_released_the_lease() -> None:
    lease = _Lease([Renewal.HELD] * 3)
    keeper = Keeper(lease, 0.001)  # type: ignore[arg-type]
    keeper.start()
    assert lease.done.wait(5)
    keeper.release()
    keeper._thread.join(5)
    assert not keeper._thread.is_alive()
    assert lease.calls[-1] == "release" and lease.calls.count("release") == 1  # a renewal after it would retake it


def test_the_keeper_thread_never_holds_up_the_exit_of_its_process() -> None:
    """A daemon thread: a supervisor that exits (its lease lost, Ctrl-C) is not kept alive by it."""
    assert Keeper(_Lease([]), 1.0)._thread.daemon  # type: ignore[arg-type]
