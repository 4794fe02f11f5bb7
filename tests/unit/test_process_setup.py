"""What a child process sets up when it starts (worker_pool/process.py), without starting one.

The cluster tests run ``process_setup`` in real children, where mutmut cannot
see it; here its calls are recorded instead of made (no signal handler, no
parent-death signal is set on the test process itself).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from typing import Any

import pytest

from client import kafka as kafka_io
from worker_pool import process


class _Libc:
    """Records prctl's arguments; answers ``result``."""

    def __init__(self, result: int) -> None:
        self.result = result
        self.calls: list[tuple[Any, ...]] = []

    def prctl(self, *args: Any) -> int:
        self.calls.append(args)
        return self.result


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Stand-ins for what process_setup changes in the process; what each was called with."""
    calls: dict[str, list[Any]] = {"signal": [], "basicConfig": [], "quiet": [], "exit": [], "cdll": []}
    monkeypatch.setattr(signal, "signal", lambda *a: calls["signal"].append(a))
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: calls["basicConfig"].append(kw))
    monkeypatch.setattr(kafka_io, "quiet_kafka_logs", lambda: calls["quiet"].append(True))
    monkeypatch.setattr(os, "_exit", lambda code: calls["exit"].append(code))
    monkeypatch.setattr(process, "_parent_pid", 0)
    return calls


def _libc(monkeypatch: pytest.MonkeyPatch, calls: dict[str, list[Any]], result: int) -> _Libc:
    libc = _Libc(result)

    def cdll(name: Any, use_errno: bool = False) -> _Libc:
        calls["cdll"].append((name, use_errno))
        return libc
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return libc


def test_a_child_ignores_ctrl_c_logs_under_its_name_and_dies_with_its_parent(
        recorded: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    libc = _libc(monkeypatch, recorded, 0)
    with caplog.at_level(logging.WARNING, logger="yadtq"):
        process.process_setup("worker W1")
    assert caplog.records == []  # prctl answered 0: set, nothing to warn about
    assert recorded["signal"] == [(signal.SIGINT, signal.SIG_IGN)]
    assert recorded["basicConfig"] == [{"level": logging.INFO,
                                        "format": "%(asctime)s worker W1 %(levelname)s %(message)s"}]
    assert recorded["quiet"] == [True]
    assert recorded["cdll"] == [(None, True)]
    assert libc.calls == [(1, signal.SIGKILL, 0, 0, 0)]  # PR_SET_PDEATHSIG
    # Run from pytest, not by multiprocessing: the parent is the one the OS names; it is alive.
    assert process._parent_pid == os.getppid() and recorded["exit"] == []


def test_the_parent_is_the_multiprocessing_parent_when_there_is_one(
        recorded: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    _libc(monkeypatch, recorded, 0)

    class Parent:
        pid = os.getppid() + 100000
    monkeypatch.setattr(multiprocessing, "parent_process", lambda: Parent())
    process._die_with_parent("worker W1")
    assert process._parent_pid == Parent.pid
    assert recorded["exit"] == [process.EXIT_ORPHANED]  # not our parent by now: it died before prctl
    monkeypatch.setattr(Parent, "pid", None)  # a parent whose pid is not known: the OS's answer
    recorded["exit"].clear()
    process._die_with_parent("worker W1")
    assert process._parent_pid == os.getppid() and recorded["exit"] == []


@pytest.mark.parametrize("failure", ["refused", "no libc"])
def test_without_a_parent_death_signal_the_child_still_starts(
        recorded: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch, failure: str,
        caplog: pytest.LogCaptureFixture) -> None:
    if failure == "refused":
        _libc(monkeypatch, recorded, -1)
    else:
        def no_libc(name: Any, use_errno: bool = False) -> Any:
            raise OSError("no libc here")
        monkeypatch.setattr(ctypes, "CDLL", no_libc)
    with caplog.at_level(logging.WARNING, logger="yadtq"):
        process._die_with_parent("worker W1")
    assert process._parent_pid == os.getppid() and recorded["exit"] == []
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("worker W1: ") and "heartbeat" in message
