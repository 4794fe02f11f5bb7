"""DESIGN §2: every kind of bad message, from a plain producer, between good ones.

Each bad message gets its own clear error: in the task's record when a task id
can be read, else in the dead-letter topic (reason in the 'error' header) and
the scheduler's log. The good tasks around them all succeed, and nothing the
cluster had accepted is touched.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from client import TaskSpec
from client.errors import InvalidMessage
from tests.integration.conftest import KAFKA

pytestmark = pytest.mark.integration

LIMIT = 2000  # tasks.max_message_bytes for this cluster


def task_json(task_id: str, **fields: Any) -> bytes:
    return json.dumps({"task-id": task_id, **fields}).encode()


def test_bad_messages_fail_clearly_and_the_good_ones_around_them_succeed(start_cluster: Any) -> None:
    cluster = start_cluster(count=2, tasks={"max_message_bytes": LIMIT})
    c = cluster.client
    done = c.submit("add", 40, 2)
    assert done.result(timeout=60) == 42
    ended = done.record()
    tag = uuid.uuid4().hex[:8]

    # task id -> (message, the error its record must end with)
    with_id: dict[str, tuple[bytes, str]] = {
        f"{tag}-no-task": (task_json(f"{tag}-no-task", args=[1]),
                           "InvalidMessage: 'task' must be a non-empty string naming a registered task, got None"),
        f"{tag}-unknown": (task_json(f"{tag}-unknown", task="launch_missiles", args=[]),
                           "InvalidMessage: unknown task 'launch_missiles': no module in tasks.modules registers it"),
        f"{tag}-args": (task_json(f"{tag}-args", task="add", args={"a": 1}),
                        "InvalidMessage: 'args' must be a list, got {'a': 1}"),
        f"{tag}-arity": (task_json(f"{tag}-arity", task="add", args=[1, 2, 3]),
                         "InvalidMessage: wrong arguments for task 'add': too many positional arguments "
                         "(it takes (a, b))"),
        f"{tag}-big": (task_json(f"{tag}-big", task="echo", args=["x" * LIMIT]),
                       f"over the limit of {LIMIT}"),
    }
    # no readable task id: dead-lettered, with this reason
    no_id: list[tuple[bytes, str]] = [
        (b"\xff\xfe not even text", "message is not UTF-8 text"),
        (b"this is {not json", "message is not valid JSON"),
        (b"[1, 2, 3]", "message must be a JSON object, got list"),
        (b'{"task": "add", "args": [1, 2]}', "'task-id' must be 1-200 characters"),
        (b'{"task-id": "", "task": "add"}', "'task-id' must be 1-200 characters"),
        (json.dumps({"task": "echo", "args": ["x" * LIMIT]}).encode(), f"over the limit of {LIMIT}"),
    ]
    duplicate = task_json(done.id, task="add", args=[1, 1])  # the id of a task that already ended

    good: list[tuple[str, int]] = []
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        bad = [m for m, _ in with_id.values()] + [m for m, _ in no_id] + [duplicate]
        for i, message in enumerate(bad):
            producer.send(cluster.config.topics.tasks, message)
            good_id = f"{tag}-good-{i}"
            producer.send(cluster.config.topics.tasks, task_json(good_id, task="add", args=[i, 1000]))
            good.append((good_id, i + 1000))
        producer.flush(10)
    finally:
        producer.close()

    c.wait([t for t, _ in good] + list(with_id), timeout=60)
    assert [c.result(t) for t, _ in good] == [v for _, v in good]
    for task_id, (_, error) in with_id.items():
        record = c.record(task_id)
        assert record["status"] == "failed", task_id
        assert error in record["error"], (task_id, record["error"])
    assert c.record(done.id) == ended  # the duplicate neither ran again nor changed the record

    consumer = KafkaConsumer(cluster.config.topics.dead_letter, bootstrap_servers=KAFKA,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        letters = [next(consumer) for _ in no_id]
    finally:
        consumer.close()
    for letter, (message, reason) in zip(letters, no_id, strict=True):
        headers = dict(letter.headers)
        assert reason in headers["error"].decode(), headers["error"]
        if len(message) > LIMIT:
            assert letter.value == message[:LIMIT] and headers["truncated-from"] == str(len(message)).encode()
        else:
            assert letter.value == message
    for _, reason in no_id:
        cluster.wait_line(rf"dead-lettered to \S+: .*{re.escape(reason)}", timeout=10)

    # And the cluster still takes work as usual.
    assert c.submit_many([TaskSpec("mul", (6, 7))])[0].result(timeout=30) == 42


def test_ids_naming_keys_yadtq_does_not_own_are_refused_and_the_keys_left_alone(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    c, prefix = cluster.client, cluster.config.redis.key_prefix
    raw = redis.Redis.from_url(cluster.config.redis.url)  # bytes, for DUMP
    # Another application's string and hash, and another cluster's internal
    # key in the same database (its prefix 'p2:' inside this one's).
    raw.set(f"{prefix}foreign-string", b"another app's value")
    raw.hset(f"{prefix}foreign-hash", mapping={"name": "ann", "status": "queued"})
    raw.expire(f"{prefix}foreign-hash", 1000)
    raw.zadd(f"{prefix}p2:yadtq:retries", {"x": 1.0})
    foreign = {"foreign-string": "string", "foreign-hash": "hash", "p2:yadtq:retries": "zset"}

    def snapshot() -> list[Any]:
        return [(raw.type(prefix + t), raw.dump(prefix + t), raw.ttl(prefix + t) > 900) for t in foreign]

    before = snapshot()
    for task_id in foreign:  # the client refuses them before producing anything
        with pytest.raises(InvalidMessage, match="names an existing Redis key that YADTQ does not own"):
            c.submit_many([TaskSpec("add", (1, 2), task_id=f"{task_id}")])

    good: list[str] = []
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        for i, task_id in enumerate(foreign):  # a plain producer is not stopped: the scheduler refuses them
            producer.send(cluster.config.topics.tasks, task_json(task_id, task="add", args=[1, 2]))
            good.append(f"{uuid.uuid4().hex[:8]}-good-{i}")
            producer.send(cluster.config.topics.tasks, task_json(good[-1], task="add", args=[i, 1000]))
        producer.flush(10)
    finally:
        producer.close()
    c.wait(good, timeout=60)
    assert [c.result(t) for t in good] == [i + 1000 for i in range(len(foreign))]
    assert not [line for line in cluster.lines if " is dead " in line or "exiting" in line]
    assert snapshot() == before

    consumer = KafkaConsumer(cluster.config.topics.dead_letter, bootstrap_servers=KAFKA,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        letters = [next(consumer) for _ in foreign]
    finally:
        consumer.close()
    errors = {json.loads(m.value)["task-id"]: dict(m.headers)["error"].decode() for m in letters}
    assert set(errors) == set(foreign)
    for task_id in foreign:
        assert f"task id {task_id!r} names an existing Redis key that YADTQ does not own" in errors[task_id]
        assert "set redis.key_prefix when sharing a database" in errors[task_id]
    for task_id in ("foreign-string", "foreign-hash"):
        assert f"does not own (a {foreign[task_id]}); refused, the key is left as it was" in errors[task_id]
    raw.close()
