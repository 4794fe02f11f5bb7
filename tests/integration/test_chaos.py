"""DESIGN §4.1-4.3 and 4.7-4.8 under fire: SIGKILL workers, the scheduler and the supervisor,
restart Redis and the broker, while tasks run."""

from __future__ import annotations

from typing import Any

import pytest

from client import Config
from scripts.chaos import Options, run
from tests.integration.conftest import KAFKA, REDIS
from tests.integration.private_services import PrivateServices

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_chaos_run_loses_nothing_and_runs_nothing_after_it_ended(services: Any) -> None:
    base = Config.from_dict({"kafka": {"bootstrap_servers": KAFKA}, "redis": {"url": REDIS}})
    summary = run(Options(tasks=3000, workers=4, worker_kills=10, scheduler_kills=2, seed=7), base)
    print(summary.line())
    assert summary.ok, summary.line()
    assert (summary.success, summary.lost, summary.wrong, summary.after_success) == (3000, 0, 0, 0)
    assert (summary.worker_kills, summary.scheduler_kills) == (10, 2)
    assert summary.restarts >= 12
    assert summary.live_workers == "4/4"
    assert summary.overlapping == 0
    # Per task: runs <= 1 + the deaths that hit it while it ran (its own log of its runs); and
    # kills that landed mid-task, so that this is not true only because every kill hit an idle worker.
    assert summary.unexplained == 0
    assert summary.mid_task >= 1


def test_chaos_run_with_a_supervisor_kill_runs_nothing_twice_at_once(services: Any) -> None:
    """DESIGN §4.7-4.8: after SIGKILL of the supervisor and a restart (as systemd would), its
    old children are gone within the heartbeat timeout, and no task ran twice at the same time."""
    base = Config.from_dict({"kafka": {"bootstrap_servers": KAFKA}, "redis": {"url": REDIS}})
    summary = run(Options(tasks=1500, workers=4, worker_kills=3, scheduler_kills=1, supervisor_kills=1, seed=11),
                  base)
    print(summary.line())
    assert summary.ok, summary.line()
    assert (summary.lost, summary.wrong, summary.after_success, summary.overlapping) == (0, 0, 0, 0)
    assert summary.supervisor_kills == 1
    assert (summary.unexplained, summary.mid_task >= 1) == (0, True)


def test_chaos_run_across_redis_and_broker_restarts(private_services: PrivateServices,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing lost or run twice at once while Redis and the broker restart mid-run (private services)."""
    ps = private_services
    for name, value in ps.env().items():  # scripts/services.sh then restarts these, not the shared ones
        if name.startswith("YADTQ_"):
            monkeypatch.setenv(name, value)
    base = Config.from_dict({"kafka": {"bootstrap_servers": ps.kafka},
                             "redis": {"url": f"redis://:{ps.redis_password}@127.0.0.1:{ps.redis_port}/0"}})
    summary = run(Options(tasks=1000, workers=3, worker_kills=2, scheduler_kills=1, redis_restarts=1,
                          broker_restarts=1, seed=5), base)
    print(summary.line())
    assert summary.ok, summary.line()
    assert (summary.redis_restarts, summary.broker_restarts) == (1, 1)
    assert (summary.lost, summary.wrong, summary.after_success, summary.overlapping) == (0, 0, 0, 0)
    assert (summary.unexplained, summary.mid_task >= 1) == (0, True)
