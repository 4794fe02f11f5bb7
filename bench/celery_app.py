"""The Celery anchor's app: Redis as broker and result backend, one no-op task.

The worker is `celery -A bench.celery_app worker --pool prefork --concurrency 2
--loglevel warning`; the Redis URL comes from YADTQ_BENCH_CELERY_URL (set by
bench.celery_run), so the bench process and the worker agree on it.
Everything else is Celery's default (JSON serializer, prefetch multiplier 4,
results delivered to waiting clients over Redis pub/sub).
"""

from __future__ import annotations

import os

from celery import Celery

URL = os.environ.get("YADTQ_BENCH_CELERY_URL", "redis://localhost:6379/13")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(broker_connection_retry_on_startup=True)


@app.task  # type: ignore[misc,untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y
