"""Test-only: crashes no parse step can foresee, for the quarantine's tests.

Loaded through ``tasks.modules``, so it is imported in the scheduler and the
workers. A task id containing ``crash-scheduler`` ends the scheduler
(``os._exit(1)``) when it reads that task from TASKS; one containing
``crash-worker`` ends the worker that reads its assignment, before its claim.
"""

from __future__ import annotations

import os
from typing import Any

import supervisor.scheduler as scheduler
import worker_pool.worker as worker
from client.protocol import Assignment, Task
from client.protocol import parse_assignment as _parse_assignment
from client.protocol import read_task as _read_task

CRASH_SCHEDULER = "crash-scheduler"
CRASH_WORKER = "crash-worker"


def _crashing_read_task(raw: bytes, *args: Any, **kwargs: Any) -> tuple[Task, tuple[str, ...]]:
    if CRASH_SCHEDULER.encode() in raw:
        os._exit(1)
    return _read_task(raw, *args, **kwargs)


def _crashing_parse_assignment(raw: bytes, *args: Any, **kwargs: Any) -> Assignment:
    if CRASH_WORKER.encode() in raw:
        os._exit(1)
    return _parse_assignment(raw, *args, **kwargs)


scheduler.read_task = _crashing_read_task  # type: ignore[attr-defined]
worker.parse_assignment = _crashing_parse_assignment  # type: ignore[attr-defined]
