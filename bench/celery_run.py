"""Celery anchor: prefork worker, concurrency 2, Redis broker and result backend (db 13).

Runs only in .venv-bench (Celery is a bench-only dependency). The db is
flushed before and after each measurement.
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
)

DB = 13
ENV = "YADTQ_BENCH_CELERY_URL"


def _measure(opts: Options, mod: Any, worker: Child) -> Metrics:
    from celery.result import ResultSet

    add = mod.add
    deadline = Deadline(opts.timeout, f"Celery: {opts.n} tasks")
    with PeakRss(tree_roles(worker, "main", "worker")) as rss:
        (m, values), cpu = cpu_during(rss, lambda: batch(
            opts.n, lambda: [add.delay(i, i) for i in range(opts.n)],
            lambda rs: ResultSet(rs).join_native(timeout=deadline.left(), propagate=True)))
        m |= cpu
        for i, v in enumerate(values):
            check_sum(i, v)
        time.sleep(IDLE_PAUSE)
        m |= round_trips(opts.round_trips, lambda i: check_sum(i, add.delay(i, i).get(timeout=10)),
                         Deadline(opts.timeout, "Celery round trips"))
    return m | rss.metrics()


def measure(opts: Options, log: Path) -> Metrics:
    """Throughput, enqueue rate, idle round trips and peak RSS of a Celery worker."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    url = opts.redis_url(DB)
    mod = load_app("celery_app", ENV, url)
    r = redis.Redis.from_url(url)
    r.flushdb()
    celery = str(Path(sys.executable).parent / "celery")
    worker = Child("celery worker", [celery, "-A", "bench.celery_app", "worker", "--pool", "prefork",
                                     "--concurrency", str(opts.anchor_concurrency), "--loglevel", "warning"],
                   log, env={ENV: url})

    def attempt(timeout: float) -> bool:
        try:
            check_sum(1, mod.add.delay(1, 1).get(timeout=timeout))
            return True
        except CeleryTimeout:
            return False

    try:
        until_ready(attempt, worker, Deadline(opts.startup_timeout, "Celery worker start"))
        for i in range(WARM_UP):
            check_sum(i, mod.add.delay(i, i).get(timeout=30))
        return _measure(opts, mod, worker)
    finally:
        # SIGTERM to the main process is Celery's warm shutdown; SIGKILL the group after a bound.
        worker.stop(signal.SIGTERM, group=False, grace=20)
        r.flushdb()
        r.close()
