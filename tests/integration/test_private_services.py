"""The private-services helper keeps its promises: stop means down, start means up,
and a restart keeps what Kafka and Redis held."""

from __future__ import annotations

import time

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.private_services import PrivateServices, answers

pytestmark = pytest.mark.integration


def _first_message(servers: str, topic: str, timeout: float = 30) -> bytes:
    c = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in c.poll(timeout_ms=500).values():
                return bytes(records[0].value)
        raise AssertionError(f"nothing read from {topic} within {timeout}s")
    finally:
        c.close()


def test_restarts_keep_the_data(private_services: PrivateServices) -> None:
    ps = private_services
    p = KafkaProducer(bootstrap_servers=ps.kafka, acks="all")
    p.send("kept", b"before-restart").get(timeout=30)
    p.close()
    r = ps.redis_client()
    r.set("kept", "before-restart")
    r.close()

    ps.stop_kafka()
    assert not answers(ps.kafka_port) and not answers(ps.sasl_port)
    ps.stop_redis()
    assert not answers(ps.redis_port)

    ps.start_redis()
    ps.start_kafka()
    r = ps.redis_client()
    assert r.get("kept") == "before-restart"  # Redis read its AOF back
    r.close()
    assert _first_message(ps.kafka, "kept") == b"before-restart"  # same KRaft storage, not formatted again
    print(f"private service timings (s): {ps.timings}")


def test_redis_requires_the_password(private_services: PrivateServices) -> None:
    anonymous = redis.Redis.from_url(private_services.redis_url, socket_connect_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("kept")
    anonymous.close()
