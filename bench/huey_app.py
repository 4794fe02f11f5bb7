"""The Huey anchor's app: RedisHuey, one no-op task.

The consumer is `huey_consumer bench.huey_app.huey -w 2 -k process -q`; the
Redis URL comes from YADTQ_BENCH_HUEY_URL (set by bench.huey_run).
``notify_result=True`` makes a waiting ``Result.get`` block on a Redis list
(BLPOP) instead of polling with backoff from 50 ms: Huey's own low-latency
option. Everything else is Huey's default (blocking BRPOP dequeue, pickle).
"""

from __future__ import annotations

import os

from huey import RedisHuey

URL = os.environ.get("YADTQ_BENCH_HUEY_URL", "redis://localhost:6379/12")

huey = RedisHuey("bench", url=URL, notify_result=True)


@huey.task()  # type: ignore[misc,untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y
