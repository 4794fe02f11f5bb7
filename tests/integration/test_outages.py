"""DESIGN §4.1 across service outages: Redis, then the Kafka broker, restarted mid-run.

These run against a private Kafka and Redis (``private_services``), so that
stopping them does not disturb any other test. While a service is down the
supervisor says so in one line, and a client gets ServiceUnavailable within a
bound instead of hanging; once it is back the cluster resumes by itself and
every task, submitted before or after, ends ``success``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from client import Client, ServiceUnavailable, TaskSpec
from tests.integration.private_services import PrivateServices

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def private_cluster(start_cluster: Any, ps: PrivateServices) -> Any:
    return start_cluster(count=2, kafka={"bootstrap_servers": ps.kafka},
                         redis={"url": ps.redis_url, "password": ps.redis_password})


def submit(c: Client, n: int, tag: str) -> list[tuple[str, int]]:
    specs = [TaskSpec("add", (i, 1)) if i % 2 else TaskSpec("sleep", (0.01,)) for i in range(n)]
    handles = c.submit_many(specs)
    return [(h.id, i + 1 if i % 2 else 0.01) for i, h in enumerate(handles)]  # type: ignore[misc]


def all_succeed(c: Client, tasks: list[tuple[str, Any]]) -> None:
    c.wait([t for t, _ in tasks], timeout=180)
    assert [c.result(t) for t, _ in tasks] == [v for _, v in tasks]


def test_a_redis_restart_while_tasks_run_loses_nothing(start_cluster: Any, private_services: PrivateServices) -> None:
    ps = private_services
    cluster = private_cluster(start_cluster, ps)
    c = cluster.client
    before = submit(c, 600, "before")
    c.wait([t for t, _ in before[:20]], timeout=60)  # under way

    mark = cluster.mark()
    with ps.stopped("redis"):
        cluster.wait_line(r"redis at redis://127\.0\.0\.1:\d+/0 does not answer: tasks are kept", timeout=15,
                          start=mark)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"Redis at redis://127\.0\.0\.1:\d+/0"):
            c.result(before[-1][0], timeout=60)
        assert time.monotonic() - started < 15  # a clear error, not a hang
    cluster.wait_line(r"redis at \S+ answers again: resuming", timeout=15, start=mark)

    after = submit(c, 200, "after")
    all_succeed(c, before + after)
    n = cluster.config.workers.count
    cluster.wait_line(rf"workers {n}/{n} live \| scheduler up", timeout=60, start=cluster.mark())
    assert ps.redis_password not in "\n".join(cluster.lines)


def test_a_kafka_restart_while_tasks_run_loses_nothing(start_cluster: Any, private_services: PrivateServices) -> None:
    ps = private_services
    cluster = private_cluster(start_cluster, ps)
    c = cluster.client
    before = submit(c, 600, "before")
    c.wait([t for t, _ in before[:20]], timeout=60)

    mark = cluster.mark()
    with ps.stopped("kafka"):
        cluster.wait_line(rf"kafka at 127\.0\.0\.1:{ps.kafka_port} does not answer: tasks are kept", timeout=15,
                          start=mark)
        started = time.monotonic()
        with (Client(cluster.config) as fresh,
              pytest.raises(ServiceUnavailable, match=rf"127\.0\.0\.1:{ps.kafka_port}")):
            fresh.submit("add", 1, 1)
        assert time.monotonic() - started < 20  # a clear error, not a hang
    cluster.wait_line(r"kafka at \S+ answers again: resuming", timeout=15, start=mark)

    after = submit(c, 200, "after")
    all_succeed(c, before + after)
    n = cluster.config.workers.count
    cluster.wait_line(rf"workers {n}/{n} live \| scheduler up", timeout=60, start=cluster.mark())
