"""Kafka connections, built from the cluster file in one place.

Every producer here waits for the broker's acknowledgement from all in-sync
replicas (``acks='all'``, idempotent), since a task the client was told is
submitted must not be lost.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from client.config import KafkaConfig
from client.errors import ServiceUnavailable

BOOTSTRAP_TIMEOUT_MS = 10_000  # how long to look for a broker before saying it does not answer


def _common(cfg: KafkaConfig) -> dict[str, Any]:
    return {"bootstrap_servers": cfg.bootstrap_servers, "client_id": cfg.client_id,
            "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS}


def quiet_kafka_logs() -> None:
    """Silence kafka-python's own log lines.

    It logs every refused connection and coordinator move as a warning or
    error, even those it recovers from; YADTQ raises or reports the failures
    that matter itself, with the address and what to do.
    """
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def close_producer(p: KafkaProducer, timeout: float = 5.0) -> bool:
    """Flush and close ``p``; False if the broker did not take everything in time.

    kafka-python's close() raises when its flush times out (broker away), and
    then neither stops its sender thread nor counts as closed, so its exit
    hook and destructor raise again later. Finish the close it gave up on.
    """
    try:
        p.close(timeout=timeout)
        return True
    except KafkaError:
        sender = getattr(p, "_sender", None)
        if sender is not None:
            sender.force_close()
        p._closed = True
        return False


def check_sent(futures: list[Any], what: str) -> None:
    """Raise ServiceUnavailable if any produce in ``futures`` (already flushed) failed."""
    for f in futures:
        if not f.succeeded():
            raise ServiceUnavailable(f"Kafka did not accept {what}: {f.exception or 'timed out'}")


def _unavailable(cfg: KafkaConfig, e: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"Kafka at {','.join(cfg.bootstrap_servers)} does not answer: {e}")


def producer(cfg: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """A producer for YADTQ messages; raise ServiceUnavailable if no broker answers."""
    opts: dict[str, Any] = {"acks": "all", "linger_ms": 2, "max_block_ms": 15000,
                            "request_timeout_ms": 15000, **overrides}
    try:
        return KafkaProducer(**_common(cfg), **opts)
    except KafkaError as e:
        raise _unavailable(cfg, e) from None


def consumer(cfg: KafkaConfig, group_id: str | None, **overrides: Any) -> KafkaConsumer:
    """A consumer with manual commits; the caller assigns its partitions."""
    opts: dict[str, Any] = {"enable_auto_commit": False, "auto_offset_reset": "earliest",
                            "fetch_max_wait_ms": 50, **overrides}
    try:
        return KafkaConsumer(**_common(cfg), group_id=group_id, **opts)
    except KafkaError as e:
        raise _unavailable(cfg, e) from None


def partitions(c: KafkaConsumer, topic: str, timeout: float = 15.0) -> list[TopicPartition]:
    """All partitions of ``topic``; raise ServiceUnavailable if it cannot be found."""
    deadline = time.monotonic() + timeout
    while True:
        parts = c.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"Kafka topic {topic!r} was not found within {timeout:.0f}s "
                                     "(is the supervisor running? it creates the topics)")
        c.topics()  # forces a metadata refresh before the next look
        time.sleep(0.2)


def assign_all(c: KafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Assign every partition of ``topics`` to ``c`` (no group rebalancing: one owner each)."""
    tps = [tp for t in topics for tp in partitions(c, t)]
    c.assign(tps)
    return tps
