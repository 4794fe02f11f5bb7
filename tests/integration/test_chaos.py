"""DESIGN §4.1-4.3 under fire: SIGKILL workers and the scheduler while 3,000 tasks run."""

from __future__ import annotations

from typing import Any

import pytest

from client import Config
from scripts.chaos import Options, run
from tests.integration.conftest import KAFKA, REDIS

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
