"""Creating the cluster's topics with Kafka's admin client."""

from __future__ import annotations

import contextlib
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from client import kafka as kafka_io
from client.config import Config
from client.errors import ServiceUnavailable


def topic_names(config: Config) -> list[str]:
    t = config.topics
    return [t.tasks, t.status, t.dead_letter, *config.worker_ids()]


def ensure_topics(config: Config, timeout: float = 30.0) -> list[str]:
    """Create every topic the cluster uses that does not exist yet; return the names."""
    admin = kafka_io.admin(config.kafka, request_timeout_ms=int(timeout * 1000))
    try:
        names = topic_names(config)
        missing = [n for n in names if n not in set(admin.list_topics())]
        if missing:
            # Another process may create one meanwhile: that is what we wanted.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(n, 1, 1) for n in missing], timeout_ms=int(timeout * 1000))
        _wait_visible(admin, names, timeout)
        return names
    finally:
        admin.close()


def _wait_visible(admin: KafkaAdminClient, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not set(names) <= set(admin.list_topics()):
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka topics {names} were not visible after {timeout:.0f}s")
        time.sleep(0.1)
