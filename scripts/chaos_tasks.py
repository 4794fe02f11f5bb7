"""The task the chaos run submits: it counts its own runs in Redis.

Every run adds one to ``<prefix>chaos:runs`` and records when it started in
``<prefix>chaos:started``, so the chaos run can tell re-executions (a run after
its worker was killed mid-task: allowed) from a run after the task had already
ended ``success`` (never allowed).
"""

from __future__ import annotations

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


@task
def chaos_work(n: int, seconds: float) -> int:
    """Count this run, sleep ``seconds`` (0: an instant task), return n * n."""
    ctx = current_task()
    url, prefix = ctx.config.redis.url, ctx.config.redis.key_prefix
    r = _clients.get(url) or _clients.setdefault(url, connect(ctx.config.redis))
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(runs_key(prefix), ctx.task_id, 1)
    pipe.hset(started_key(prefix), ctx.task_id, repr(now()))
    pipe.execute()
    if seconds:
        time.sleep(seconds)
    return n * n
