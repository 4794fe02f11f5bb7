"""Guarantees whose code could once be removed with the suite still green (issue 12).

Each test here fails with its code removed: the arming of the heartbeat window
around a Kafka outage in ``Supervisor._probe``, the second Ctrl-C, and the
default registry's loading of ``tasks.modules``. No services: time is passed in.
"""

from __future__ import annotations

import signal
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from client import kafka as kafka_io
from client.config import Config
from client.protocol import Heartbeat
from supervisor.supervisor import Supervisor
from worker_pool.registry import default_registry


class _Alive:
    """Stands in for a running child process."""

    pid = 42
    exitcode = None

    def is_alive(self) -> bool:
        return True


class _Redis:
    """Stands in for a Redis that answers."""

    def ping(self) -> bool:
        return True


def _supervised_w1(monkeypatch: pytest.MonkeyPatch, kafka: dict[str, bool]) -> Supervisor:
    """A supervisor (heartbeat_timeout 6, startup_timeout 30) whose W1 last beat at 100;
    the probe finds Kafka up or down as ``kafka["up"]`` says."""
    monkeypatch.setattr(kafka_io, "reachable", lambda servers, timeout=1.0: kafka["up"])
    sup = Supervisor(Config(), say=lambda line: None)
    sup.redis = _Redis()  # type: ignore[assignment]
    sup.children["W1"].process = _Alive()  # type: ignore[assignment]
    sup.liveness.watch("W1", 42, 90.0)
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 100.0)  # arrivals, on the monotonic clock
    return sup


def test_the_probe_stops_judging_heartbeats_while_kafka_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = {"up": True}
    sup = _supervised_w1(monkeypatch, kafka)
    w1 = sup.children["W1"]
    sup._probe(101.0)
    assert sup._death(w1, 107.0) == "no heartbeat for 7.0s"  # Kafka up: silence means death
    kafka["up"] = False
    sup._probe(102.0)  # Kafka went away: no heartbeat can arrive
    assert sup._death(w1, 200.0) is None


def test_the_probe_gives_a_fresh_window_once_kafka_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = {"up": False}
    sup = _supervised_w1(monkeypatch, kafka)
    w1 = sup.children["W1"]
    sup.liveness.pause()  # as the probe that saw Kafka go found it (the probe above tests that)
    sup.up["kafka"] = False
    kafka["up"] = True
    sup._probe(200.0)  # back at 200: judged from the first heartbeat, at the latest startup_timeout later
    assert sup._death(w1, 229.0) is None
    assert sup._death(w1, 231.0) == "no heartbeat for 31.0s"
    sup._on_heartbeat(Heartbeat("W1", "worker", 42, 0.0), 232.0)
    assert sup._death(w1, 237.0) is None
    assert sup._death(w1, 238.5) == "no heartbeat for 6.5s"


def _signals_during_start(monkeypatch: pytest.MonkeyPatch, count: int) -> Supervisor:
    """Run a supervisor whose start receives ``count`` SIGINTs; shutdown is left out."""
    handlers: dict[int, Any] = {}
    monkeypatch.setattr(signal, "signal",
                        lambda signum, handler: handlers.__setitem__(signum, handler))
    sup = Supervisor(Config(), say=lambda line: None)
    frame: FrameType | None = None

    def start() -> None:
        for _ in range(count):
            handlers[signal.SIGINT](signal.SIGINT, frame)

    monkeypatch.setattr(sup, "start", start)
    monkeypatch.setattr(sup, "shutdown", lambda: None)
    sup.run()
    return sup


def test_a_first_ctrl_c_stops_with_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    sup = _signals_during_start(monkeypatch, 1)
    assert sup.stopping and not sup._hurry


def test_a_second_ctrl_c_skips_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    sup = _signals_during_start(monkeypatch, 2)
    assert sup.stopping and sup._hurry


def test_the_default_registry_loads_the_configured_modules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A module named in tasks.modules, imported by nothing else, registers its tasks by being loaded."""
    module = f"yadtq_test_tasks_{uuid.uuid4().hex[:10]}"
    task = f"task_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text(
        f"from worker_pool.registry import task\n\n\n@task\ndef {task}() -> int:\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(default_registry, "_tasks", dict(default_registry._tasks))  # leave no task behind
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert module not in sys.modules
    default_registry.load_modules(["worker_pool.builtin_tasks", module])  # each module listed, not the first only
    assert task in default_registry.names()
    assert default_registry.get(task).fn() == 1
    sys.modules.pop(module, None)
