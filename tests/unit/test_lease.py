"""The pieces that keep two generations of a cluster from running at once
(client/lease.py): reading the owner's epoch, a child's check of it, and the
thread that renews the lease whatever its supervisor's loop is doing."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import psutil
import pytest
import redis

from client.lease import Holder, Keeper, Renewal
from client.store import parse_owner_epoch
from worker_pool import process
from worker_pool.process import EXIT_FENCED, EXIT_ORPHANED, check_owner, check_parent


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

    monkeypatch.setattr(os, "_exit", fake_exit)  # the module worker_pool.process calls it on
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


def test_a_holder_is_read_from_its_lease_value_with_defaults_for_what_is_missing() -> None:
    value = '{"host": "h", "pid": 12, "since": 1700000000.5, "topics": ["T", 3], "token": "x"}'
    assert Holder.parse(value, 900) == Holder("h", 12, 1700000000.5, 0, ["T", "3"], 900)  # no epoch: 0
    assert Holder.parse('{"host": "h", "pid": 12, "since": 1, "epoch": 4, "topics": "T"}').topics == []
    # Not YADTQ's: a holder of unknown host (never taken for dead, so never waited out), with its TTL.
    assert Holder.parse("not json", 1500) == Holder("?", 0, 0.0, 0, [], 1500)


def test_only_a_vanished_process_of_this_host_is_a_dead_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A holder on another host, or one whose process exists but cannot be read, is alive: its
    lease is never waited out (taking it would run a second owner beside it)."""
    here = socket.gethostname()
    assert not Holder(here + "-elsewhere", 999999999, 0.0, 1, []).is_dead_here()
    assert not Holder(here, os.getpid(), 0.0, 1, []).is_dead_here()
    assert Holder(here, 999999999, 0.0, 1, []).is_dead_here()

    def denied(pid: int) -> psutil.Process:
        raise psutil.AccessDenied(pid)

    monkeypatch.setattr(psutil, "Process", denied)  # e.g. another user's process
    assert not Holder(here, 999999999, 0.0, 1, []).is_dead_here()


def test_a_child_whose_supervisor_is_gone_exits_and_one_whose_is_alive_goes_on(
        exits: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_parent_pid", os.getppid())
    check_parent("worker W1")  # its parent is the one it was started by
    assert exits == []
    monkeypatch.setattr(process, "_parent_pid", os.getppid() + 100000)  # re-parented: the supervisor died
    with pytest.raises(_Exited):
        check_parent("worker W1")
    assert exits == [EXIT_ORPHANED]
