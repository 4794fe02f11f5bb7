"""The task the chaos run submits: it counts its own runs in Redis.

Every run adds one to ``<prefix>chaos:runs`` and records when it started in
``<prefix>chaos:started``, so the chaos run can tell re-executions (a run after
its worker was killed mid-task: allowed) from a run after the task had already
ended ``success`` (never allowed). Each run also appends its start, and its
end if it gets there, to the list ``<prefix>chaos:spans``, so that the chaos run
can tell whether two runs of one task overlapped (never allowed), and whether each
run but a task's last was on a process that died (a task runs again only after a
death hit it). While it runs, ``<prefix>chaos:running`` maps its pid to it, so
that the chaos run can pick a worker that is running a task to kill.
"""

from __future__ import annotations

import os
import time

import redis

from client.protocol import now
from client.store import connect
from worker_pool import current_task, task

_clients: dict[str, redis.Redis] = {}


def runs_key(prefix: str) -> str:
    return f"{prefix}chaos:runs"


def started_key(prefix: str) -> str:
    return f"{prefix}chaos:started"


def running_key(prefix: str) -> str:
    """Hash pid -> the task that process runs now: the chaos run kills a busy worker with it."""
    return f"{prefix}chaos:running"


def spans_key(prefix: str) -> str:
    """List of 'S task pid start' and 'E task pid start end': each run's start and end."""
    return f"{prefix}chaos:spans"


@task
def chaos_work(n: int, seconds: float) -> int:
    """Count this run, sleep ``seconds`` (0: an instant task), return n * n."""
    ctx = current_task()
    url, prefix = ctx.config.redis.url, ctx.config.redis.key_prefix
    r = _clients.get(url) or _clients.setdefault(url, connect(ctx.config.redis))
    start, pid = repr(now()), os.getpid()
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(runs_key(prefix), ctx.task_id, 1)
    pipe.hset(started_key(prefix), ctx.task_id, start)
    pipe.rpush(spans_key(prefix), f"S {ctx.task_id} {pid} {start}")
    pipe.hset(running_key(prefix), str(pid), ctx.task_id)
    pipe.execute()
    if seconds:
        time.sleep(seconds)
    pipe.rpush(spans_key(prefix), f"E {ctx.task_id} {pid} {start} {now()!r}")
    pipe.hdel(running_key(prefix), str(pid))
    pipe.execute()
    return n * n
