"""Creating the cluster's topics with Kafka's admin client, with their settings."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import InvalidPartitionsError, TopicAlreadyExistsError

from client import kafka as kafka_io
from client.config import Config
from client.errors import ConfigError, ServiceUnavailable


def topic_names(config: Config) -> list[str]:
    t = config.topics
    return [t.tasks, t.status, t.dead_letter, *config.worker_ids()]


def replication(config: Config, brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers`` brokers.

    Unset (0) in the config: three copies where there are three brokers, and a
    write acknowledged by two, so one broker can be lost without losing a task.
    """
    factor = config.topics.replication_factor or max(1, min(3, brokers))
    insync = config.topics.min_insync_replicas or min(2, factor)
    if factor > brokers:  # Kafka would refuse to create the topic, less clearly
        raise ConfigError(f"{config.source}: topics.replication_factor: {factor} copies, but the Kafka cluster "
                          f"reports {brokers} broker(s)")
    if insync > factor:  # every write would be refused with NotEnoughReplicas
        raise ConfigError(f"{config.source}: topics.min_insync_replicas: expected at most the replication "
                          f"factor ({factor}), got {insync}")
    return factor, insync


def topic_configs(config: Config, name: str, insync: int) -> dict[str, str]:
    """The topic-level settings ``name`` is created with (Kafka's config names)."""
    t = config.topics
    retention = {t.tasks: t.tasks_retention, t.status: t.status_retention,
                 t.dead_letter: t.dead_letter_retention}.get(name, t.workers_retention)
    out = {"retention.ms": str(int(retention * 1000)), "min.insync.replicas": str(insync)}
    if name == t.status:
        out["segment.ms"] = str(int(t.status_segment * 1000))
    return out


def partition_count(config: Config, name: str) -> int:
    """The partitions topic ``name`` is created with: ``topics.tasks_partitions`` for TASKS, else one."""
    return config.topics.tasks_partitions if name == config.topics.tasks else 1


def ensure_topics(config: Config, timeout: float = 30.0, say: Callable[[str], None] = print) -> list[str]:
    """Create every topic the cluster uses that does not exist yet; return the names.

    A topic that exists already is left as it is, settings included, except
    that a TASKS with fewer partitions than ``topics.tasks_partitions`` is
    grown to that many (``say`` tells it): producers that pick a partition
    would otherwise fail.
    """
    admin = kafka_io.admin(config.kafka, request_timeout_ms=int(timeout * 1000))
    try:
        names = topic_names(config)
        missing = [n for n in names if n not in set(admin.list_topics())]
        if missing:
            factor, insync = replication(config, len(admin.describe_cluster()["brokers"]))
            new = [NewTopic(n, partition_count(config, n), factor, topic_configs=topic_configs(config, n, insync))
                   for n in missing]
            # Another process may create one meanwhile: that is what we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new, timeout_ms=int(timeout * 1000))
        _wait_visible(admin, names, timeout)
        _grow_tasks(admin, config, timeout, say)
        return names
    finally:
        admin.close()


def _grow_tasks(admin: KafkaAdminClient, config: Config, timeout: float, say: Callable[[str], None]) -> None:
    """Give TASKS ``topics.tasks_partitions`` partitions if it has fewer (made earlier, or by another tool)."""
    topic, wanted = config.topics.tasks, config.topics.tasks_partitions
    has = _partition_count(admin, topic, timeout)
    if has >= wanted:
        return
    say(f"topic {topic} has {has} partition(s), topics.tasks_partitions asks {wanted}: adding {wanted - has}")
    # Another supervisor may grow it meanwhile (then Kafka refuses ours): what counts is the count after.
    with contextlib.suppress(InvalidPartitionsError):
        admin.create_partitions({topic: wanted}, timeout_ms=int(timeout * 1000))
    if (now := _partition_count(admin, topic, timeout, at_least=wanted)) < wanted:
        raise ServiceUnavailable(f"Kafka did not give topic {topic} the {wanted} partitions topics.tasks_partitions "
                                 f"asks: it has {now}")


def _partition_count(admin: KafkaAdminClient, topic: str, timeout: float, at_least: int = 1) -> int:
    """How many partitions ``topic`` has, once it has ``at_least`` (or ``timeout`` passed): a topic
    made or grown a moment ago may describe as it was at first."""
    deadline = time.monotonic() + timeout
    while True:
        [described] = admin.describe_topics([topic])
        if len(described["partitions"]) >= at_least or time.monotonic() > deadline:
            return len(described["partitions"])
        time.sleep(0.1)


def _wait_visible(admin: KafkaAdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not set(names) <= set(admin.list_topics()):
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka topics {names} were not visible after {timeout:.0f}s")
        time.sleep(0.1)
