"""Issue 13: producers and readers written for other YADTQ implementations.

Everything here talks to the cluster as such a client does: a plain
kafka-python ``KafkaProducer`` writes JSON to TASKS (sometimes picking the
partition itself), and plain redis-py reads the records with ``HGETALL``.

- Each near miss of the seed's keys (``task_id``, ``id``, ``taskId``,
  ``task_type``, ``type``, ``name``, ``arguments``, ``params``, an ``args``
  object) is refused with the rename to make: in the record when an id can be
  read, in the dead letter otherwise. With ``tasks.accept_aliases`` each runs.
- A TASKS of three partitions (``topics.tasks_partitions``) is read whole,
  also when it was made with one and grown, or grown while the cluster runs.
- Every record, refused or not, has ``status``, ``task`` and ``submitted_at``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from client import kafka as kafka_io
from client.config import load_config
from tests.integration.conftest import KAFKA, REDIS, Cluster, cluster_config
from tests.integration.test_insight import http_port, scrape
from tests.support.harness import remove_cluster_data, wait_until

pytestmark = pytest.mark.integration

# name -> (the message a foreign client sends, with ID where its task id goes; the rename its refusal must name)
SHAPES: dict[str, tuple[dict[str, Any], str]] = {
    "task_id": ({"task_id": "ID", "task": "add", "args": [1, 2]}, "rename 'task_id' to 'task-id'"),
    "id": ({"id": "ID", "task": "add", "args": [1, 2]}, "rename 'id' to 'task-id'"),
    "taskId": ({"taskId": "ID", "task": "add", "args": [1, 2]}, "rename 'taskId' to 'task-id'"),
    "task_type": ({"task-id": "ID", "task_type": "add", "args": [1, 2]}, "rename 'task_type' to 'task'"),
    "type": ({"task-id": "ID", "type": "add", "args": [1, 2]}, "rename 'type' to 'task'"),
    "name": ({"task-id": "ID", "name": "add", "args": [1, 2]}, "rename 'name' to 'task'"),
    "arguments": ({"task-id": "ID", "task": "add", "arguments": [1, 2]}, "rename 'arguments' to 'args'"),
    "params": ({"task-id": "ID", "task": "add", "params": [1, 2]}, "rename 'params' to 'args'"),
    "args object": ({"task-id": "ID", "task": "add", "args": {"a": 1, "b": 2}}, "rename 'args' to 'kwargs'"),
    "params object": ({"task-id": "ID", "task": "add", "params": {"a": 1, "b": 2}}, "rename 'params' to 'kwargs'"),
    "all at once": ({"id": "ID", "type": "add", "arguments": [1, 2]},
                    "rename 'id' to 'task-id', 'type' to 'task', 'arguments' to 'args'"),
}


def message(shape: dict[str, Any], task_id: str) -> bytes:
    return json.dumps({k: task_id if v == "ID" else v for k, v in shape.items()}).encode()


@pytest.fixture
def plain_redis() -> Iterator[redis.Redis]:
    """What a reader in another language has: a Redis client, nothing of YADTQ."""
    r = redis.Redis.from_url(REDIS, decode_responses=True)
    yield r
    r.close()


def produce(cluster: Cluster, messages: Sequence[tuple[bytes, int | None]]) -> None:
    """Send each (message, partition or None) as a foreign client would: a plain KafkaProducer."""
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    topic = cluster.config.topics.tasks
    try:
        if wanted := {p for _, p in messages if p is not None}:  # a partition made a moment ago: known yet?
            wait_until(lambda: wanted <= (producer.partitions_for(topic) or set()),
                       f"the producer to know partitions {sorted(wanted)} of {topic}", timeout=30)
        for body, partition in messages:
            producer.send(topic, body, partition=partition)
        producer.flush(30)
    finally:
        producer.close()


def dead_letters(cluster: Cluster, count: int) -> list[tuple[bytes, str]]:
    """The first ``count`` dead letters: (body, error header)."""
    consumer = KafkaConsumer(cluster.config.topics.dead_letter, bootstrap_servers=KAFKA,
                             auto_offset_reset="earliest", consumer_timeout_ms=1000)
    found: list[tuple[bytes, str]] = []
    try:
        def enough() -> bool:
            found.extend((m.value, dict(m.headers)["error"].decode()) for m in consumer)
            return len(found) >= count
        wait_until(enough, f"{count} dead letters", timeout=60)
    finally:
        consumer.close()
    return found


def test_near_misses_are_refused_with_the_key_to_rename_and_the_good_tasks_around_them_run(
        start_cluster: Any, plain_redis: redis.Redis) -> None:
    cluster = start_cluster(count=2)
    tag = uuid.uuid4().hex[:8]
    ids = {shape: f"{tag}-{i}" for i, shape in enumerate(SHAPES)}
    good = [f"{tag}-good-{i}" for i in range(len(SHAPES))]
    sent: list[tuple[bytes, int | None]] = []
    for (shape, (body, _)), good_id in zip(SHAPES.items(), good, strict=True):
        sent += [(message(body, ids[shape]), None),
                 (json.dumps({"task-id": good_id, "task": "add", "args": [len(sent), 1]}).encode(), None)]
    # No id can be read: the reason goes to the dead letter.
    unreadable = json.dumps({"id": 42, "task": "add", "args": [1, 2]}).encode()
    sent.append((unreadable, None))
    produce(cluster, sent)

    cluster.client.wait(list(ids.values()) + good, timeout=60)
    assert [cluster.client.result(g) for g in good] == [2 * i + 1 for i in range(len(good))]
    prefix = cluster.config.redis.key_prefix
    for shape, (_, rename) in SHAPES.items():
        record = plain_redis.hgetall(prefix + ids[shape])
        assert record["status"] == "failed", (shape, record)
        assert rename in record["error"], (shape, record["error"])
        assert "tasks.accept_aliases: true" in record["error"]
        # What a foreign reader needs of a refused record (DESIGN §3, issue 13 item 4).
        assert record["task"] == "add"  # the name it gave, under whichever key
        assert float(record["submitted_at"]) > 0
    [error] = [e for b, e in dead_letters(cluster, 1) if b == unreadable]
    assert "rename 'id' to 'task-id'" in error, error


def test_with_accept_aliases_each_near_miss_runs_and_is_counted(start_cluster: Any,
                                                              plain_redis: redis.Redis) -> None:
    cluster = start_cluster(count=2, tasks={"accept_aliases": True})
    tag = uuid.uuid4().hex[:8]
    ids = {shape: f"{tag}-{i}" for i, shape in enumerate(SHAPES)}
    mark = cluster.mark()
    # Mapped, then refused for another reason: counted too.
    refused: dict[str, dict[str, Any]] = {f"{tag}-unknown": {"task_id": "ID", "type": "no_such_task"},
               f"{tag}-options": {"id": "ID", "task": "add", "args": [1, 2], "options": {"timeout": -1}}}
    produce(cluster, [(message(body, ids[shape]), None) for shape, (body, _) in SHAPES.items()]
            + [(message(SHAPES["task_id"][0], f"{tag}-again-{i}"), None) for i in range(3)]
            + [(message(body, task_id), None) for task_id, body in refused.items()])
    cluster.client.wait(list(ids.values()) + list(refused), timeout=60)
    errors = {t: str(plain_redis.hget(cluster.config.redis.key_prefix + t, "error")) for t in refused}
    assert "unknown task 'no_such_task'" in errors[f"{tag}-unknown"]
    assert errors[f"{tag}-options"].endswith("(tasks.accept_aliases read 'id' as 'task-id')")
    for shape, task_id in ids.items():
        record = plain_redis.hgetall(cluster.config.redis.key_prefix + task_id)
        assert (record["status"], record["result"], record["task"]) == ("success", "3", "add"), (shape, record)
    # Counted per mapping: one log line per kind (at most once a minute), and the metric.
    want = {"task_id->task-id": 5, "id->task-id": 3, "taskId->task-id": 1, "task_type->task": 1,
            "type->task": 3, "name->task": 1, "arguments->args": 2, "params->args": 1, "args->kwargs": 1,
            "params->kwargs": 1}
    port = http_port(cluster)

    def aliased() -> dict[str, float]:
        return {dict(labels)["alias"]: v for (name, labels), v in scrape(port).items()
                if name == "yadtq_messages_aliased_total"}
    wait_until(lambda: aliased() == want, "the aliases metric to count every mapped message", timeout=30)

    def logged() -> list[str]:
        return sorted(m[1] for line in cluster.lines[mark:] if (m := re.search(r"accept_aliases: read ('\S+' as '\S+')",
                                                                               line)))
    kinds = sorted("'{}' as '{}'".format(*kind.split("->")) for kind in want)
    wait_until(lambda: logged() == kinds, "a log line per kind of mapping", timeout=30)
    assert logged() == kinds  # and no second one within the minute


def test_an_ambiguous_message_is_refused_even_with_accept_aliases(start_cluster: Any,
                                                                  plain_redis: redis.Redis) -> None:
    cluster = start_cluster(count=1, tasks={"accept_aliases": True})
    task_id = f"{uuid.uuid4().hex[:8]}-both"
    produce(cluster, [(json.dumps({"task-id": task_id, "type": "add", "name": "mul", "args": [2, 3]}).encode(),
                       None)])
    cluster.client.wait([task_id], timeout=60)
    record = plain_redis.hgetall(cluster.config.redis.key_prefix + task_id)
    assert record["status"] == "failed"
    assert "'type' and 'name' could each be 'task'" in record["error"]


def admin_for(cluster_or_config: Any) -> Any:
    return kafka_io.admin(cluster_or_config.kafka)


def partitions_of(config: Any, topic: str) -> int:
    admin = admin_for(config)
    try:
        return len(admin.describe_topics([topic])[0]["partitions"])
    finally:
        admin.close()


def test_a_producer_that_picks_partitions_0_1_and_2_has_every_task_run(start_cluster: Any) -> None:
    cluster = start_cluster(count=2, topics={"tasks_partitions": 3})
    assert partitions_of(cluster.config, cluster.config.topics.tasks) == 3
    tag = uuid.uuid4().hex[:8]
    ids = [f"{tag}-{i}" for i in range(60)]
    produce(cluster, [(json.dumps({"task-id": t, "task": "add", "args": [i, 100]}).encode(), i % 3)
                      for i, t in enumerate(ids)])
    cluster.client.wait(ids, timeout=60)
    assert [cluster.client.result(t) for t in ids] == [i + 100 for i in range(60)]


def test_a_tasks_topic_made_with_one_partition_is_grown_and_one_grown_while_running_is_read(
        services: None, tmp_path: Path) -> None:
    path = cluster_config(tmp_path, count=1, topics={"tasks_partitions": 2})
    config = load_config(path)
    admin = admin_for(config)
    try:  # made by another tool, or by an older release, with one partition
        admin.create_topics([NewTopic(config.topics.tasks, 1, 1)])
    finally:
        admin.close()
    cluster = Cluster(path)
    try:
        cluster.wait_line(rf"topic {re.escape(config.topics.tasks)} has 1 partition\(s\), topics.tasks_partitions "
                          r"asks 2: adding 1", timeout=60)
        cluster.wait_line("cluster ready", timeout=90)
        assert partitions_of(config, config.topics.tasks) == 2
        tag = uuid.uuid4().hex[:8]
        ids = [f"{tag}-{p}" for p in range(3)]
        produce(cluster, [(json.dumps({"task-id": t, "task": "add", "args": [p, 1]}).encode(), p)
                          for p, t in enumerate(ids[:2])])
        cluster.client.wait(ids[:2], timeout=60)  # the scheduler reads both partitions
        mark = cluster.mark()
        admin = admin_for(config)
        try:  # an operator adds one more while the cluster runs
            admin.create_partitions({config.topics.tasks: 3})
        finally:
            admin.close()
        produce(cluster, [(json.dumps({"task-id": ids[2], "task": "add", "args": [2, 1]}).encode(), 2)])
        cluster.client.wait(ids[2:], timeout=60)
        assert [cluster.client.result(t) for t in ids] == [1, 2, 3]
        cluster.wait_line(rf"topic {re.escape(config.topics.tasks)} has 1 new partition\(s\)", timeout=5,
                          start=mark)
    finally:
        cluster.stop()
        remove_cluster_data(config)


def test_a_clients_own_string_at_the_task_id_is_refused_and_stalls_nothing(start_cluster: Any,
                                                                         plain_redis: redis.Redis) -> None:
    """One client writes ``SET id '{"status": "queued"}' EX 300`` before it submits (issue 13)."""
    cluster = start_cluster(count=2)
    tag = uuid.uuid4().hex[:8]
    prefix = cluster.config.redis.key_prefix
    theirs = [f"{tag}-theirs-{i}" for i in range(5)]
    for t in theirs:
        plain_redis.set(prefix + t, '{"status": "queued"}', ex=300)
    good = [f"{tag}-good-{i}" for i in range(20)]
    mark = cluster.mark()
    produce(cluster, [(json.dumps({"task-id": t, "task": "add", "args": [1, 2]}).encode(), None) for t in theirs]
            + [(json.dumps({"task-id": t, "task": "add", "args": [i, 1]}).encode(), None)
               for i, t in enumerate(good)])
    cluster.client.wait(good, timeout=60)
    assert [cluster.client.result(t) for t in good] == [i + 1 for i in range(20)]
    letters = dead_letters(cluster, len(theirs))
    for t in theirs:
        assert plain_redis.get(prefix + t) == '{"status": "queued"}'  # left as it was
        [error] = [e for b, e in letters if json.loads(b)["task-id"] == t]
        assert "names an existing Redis key that YADTQ does not own (a string)" in error
        assert "redis.key_prefix" in error
    assert not [line for line in cluster.lines[mark:] if re.search(r"is dead|started \S+ \(pid|crashing", line)]
