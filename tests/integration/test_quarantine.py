"""DESIGN §4.6: a message that keeps killing the process that reads it is quarantined.

tests/crashy_tasks.py makes the scheduler, or a worker, end with os._exit(1)
when it reads a message carrying a special task id: a crash no parse step can
foresee. The message must end dead-lettered with the quarantine's reason (and
its record failed), after a bounded number of restarts, and the good tasks
before and after it must succeed.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from client.errors import ResultTimeout
from tests.crashy_tasks import CRASH_SCHEDULER, CRASH_WORKER
from tests.integration.conftest import KAFKA
from worker_pool.quarantine import TRIES

pytestmark = pytest.mark.integration


def task_json(task_id: str, a: int) -> bytes:
    return json.dumps({"task-id": task_id, "task": "add", "args": [a, 1000]}).encode()


def dead_letter(topic: str, task_id: str) -> tuple[bytes, dict[str, bytes]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000)
    try:
        for m in consumer:
            if task_id.encode() in m.value:
                return m.value, dict(m.headers)
    finally:
        consumer.close()
    raise AssertionError(f"no dead letter for {task_id}")


@pytest.mark.parametrize("process,marker", [("scheduler", CRASH_SCHEDULER), ("W1", CRASH_WORKER)])
def test_a_message_that_keeps_killing_its_reader_is_quarantined(start_cluster: Any, process: str,
                                                                 marker: str) -> None:
    cluster = start_cluster(count=1, tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks",
                                                        "tests.crashy_tasks"]})
    tag = uuid.uuid4().hex[:8]
    before = [f"{tag}-before-{i}" for i in range(3)]
    after = [f"{tag}-after-{i}" for i in range(3)]
    crash = f"{marker}-{tag}"
    mark = cluster.mark()
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        for i, t in enumerate(before):
            producer.send(cluster.config.topics.tasks, task_json(t, i))
        producer.send(cluster.config.topics.tasks, task_json(crash, 0))
        for i, t in enumerate(after):
            producer.send(cluster.config.topics.tasks, task_json(t, i))
        producer.flush(10)
    finally:
        producer.close()

    c = cluster.client
    try:
        c.wait(before + after + [crash], timeout=120)
    except ResultTimeout as e:
        raise AssertionError(f"{e}; cluster output:\n" + "\n".join(cluster.lines[mark:][-60:])) from None
    assert [c.result(t) for t in before + after] == [i + 1000 for i in range(3)] * 2
    record = c.record(crash)
    assert record["status"] == "failed" and "quarantined" in record["error"], record
    body, headers = dead_letter(cluster.config.topics.dead_letter, crash)
    assert "quarantined" in headers["error"].decode() and crash.encode() in body
    started = [m.group(1) for line in cluster.lines[mark:] if (m := re.search(r"started (\S+) \(pid", line))]
    assert 1 <= len(started) <= TRIES + 1, "\n".join(cluster.lines[mark:])  # worker names are '<tag>.W1'
    assert all(name == process or name.endswith(f".{process}") for name in started), started
    # And it goes on: a task sent now runs at once.
    assert c.submit("add", 2, 3).result(timeout=30) == 5
