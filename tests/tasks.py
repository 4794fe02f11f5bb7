"""Tasks for the integration tests only (listed in their clusters' tasks.modules)."""

from __future__ import annotations

import contextlib
import os
import time

from worker_pool.registry import task


@task
def stubborn(seconds: float) -> str:
    """Swallow the soft time limit and keep going: only the hard limit stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # swallowing TaskTimeLimitExceeded is the point
            time.sleep(0.05)
    return "finished"


@task
def die() -> None:
    """Kill the worker process running it, every time."""
    os._exit(13)
