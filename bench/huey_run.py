"""Huey anchor: `huey_consumer -w 2 -k process`, RedisHuey on db 12.

Runs only in .venv-bench (Huey is a bench-only dependency). The db is flushed
before and after each measurement. All N results are readable when the result
store holds N entries (HLEN, polled every 5 ms: Huey has no bulk wait).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    IDLE_PAUSE,
    WARM_UP,
    Child,
    Deadline,
    Metrics,
    Options,
    PeakRss,
    batch,
    check_sum,
    cpu_during,
    load_app,
    round_trips,
    tree_roles,
    until_ready,
    wait_until,
)

DB = 12
ENV = "YADTQ_BENCH_HUEY_URL"


def _measure(opts: Options, mod: Any, consumer: Child) -> Metrics:
    add, huey = mod.add, mod.huey
    deadline = Deadline(opts.timeout, f"Huey: {opts.n} tasks")

    before = huey.result_count()  # results of start-up attempts that timed out, if any

    def wait(results: list[Any]) -> list[Any]:
        wait_until(lambda: huey.result_count() >= before + opts.n, deadline, interval=0.005)
        return results

    with PeakRss(tree_roles(consumer, "main", "worker")) as rss:
        (m, results), cpu = cpu_during(rss, lambda: batch(opts.n, lambda: [add(i, i) for i in range(opts.n)], wait))
        m |= cpu
        for i, res in enumerate(results):
            check_sum(i, res.get(blocking=False))
        time.sleep(IDLE_PAUSE)
        m |= round_trips(opts.round_trips, lambda i: check_sum(i, add(i, i).get(blocking=True, timeout=10)),
                         Deadline(opts.timeout, "Huey round trips"))
    return m | rss.metrics()


def measure(opts: Options, log: Path) -> Metrics:
    """Throughput, enqueue rate, idle round trips and peak RSS of a Huey consumer."""
    from huey.exceptions import ResultTimeout

    url = opts.redis_url(DB)
    mod = load_app("huey_app", ENV, url)
    r = redis.Redis.from_url(url)
    r.flushdb()
    consumer_bin = str(Path(sys.executable).parent / "huey_consumer")
    consumer = Child("huey consumer", [consumer_bin, "bench.huey_app.huey", "-w", str(opts.anchor_concurrency),
                                       "-k", "process", "-q"], log, env={ENV: url})

    def attempt(timeout: float) -> bool:
        try:
            check_sum(1, mod.add(1, 1).get(blocking=True, timeout=timeout))
            return True
        except ResultTimeout:
            return False

    try:
        until_ready(attempt, consumer, Deadline(opts.startup_timeout, "Huey consumer start"))
        for i in range(WARM_UP):
            check_sum(i, mod.add(i, i).get(blocking=True, timeout=30))
        return _measure(opts, mod, consumer)
    finally:
        # SIGINT to the main process is Huey's graceful shutdown; SIGKILL the group after a bound.
        consumer.stop(signal.SIGINT, group=False, grace=20)
        r.flushdb()
        r.close()
