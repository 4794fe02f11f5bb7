"""The private-services helper keeps its promises: stop means down, start means up,
and a restart keeps what Kafka and Redis held."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.private_services import (
    SERVICES,
    START_TIMEOUT,
    PrivateServices,
    answers,
    free_port_block,
    running_private_services,
)
from tests.support.harness import kill_group

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


def test_stopped_starts_the_service_again_however_its_block_ends(private_services: PrivateServices) -> None:
    ps = private_services
    with ps.redis_client() as r:
        r.set("kept-by-stopped", "yes")
    with pytest.raises(AssertionError, match="a test failing"), ps.stopped("redis"):
        assert not answers(ps.redis_port)
        raise AssertionError("a test failing between stop and start")
    assert answers(ps.redis_port)
    with ps.redis_client() as r:
        assert r.get("kept-by-stopped") == "yes"  # the same data


def test_a_test_that_leaves_a_service_down(private_services: PrivateServices) -> None:
    """The first half of the next test: a test that failed between stop and start, in effect."""
    with private_services.redis_client() as r:
        r.set("kept-while-down", "yes")
    private_services.stop_redis()
    assert not answers(private_services.redis_port)


def test_the_next_test_of_the_module_gets_it_up_again(private_services: PrivateServices) -> None:
    """Right after the test above (pytest runs a module's tests in file order)."""
    ps = private_services
    assert answers(ps.redis_port) and answers(ps.kafka_port) and answers(ps.sasl_port)
    with ps.redis_client() as r:
        assert r.get("kept-while-down") == "yes"


def test_a_fresh_broker_takes_a_cluster_id_that_begins_with_a_dash(tmp_path: Path) -> None:
    """Defect 15: an id that begins with '-' was taken by kafka-storage for an option.
    Such ids are valid (Uuid.fromString takes them), and one given is used as it is."""
    given = "-" + "bcdefghijklmnopqrstu" + "A"
    with running_private_services(tmp_path, cluster_id=given) as ps:  # returns once the broker serves
        meta = (tmp_path / "kafka" / "data" / "meta.properties").read_text()
        assert f"cluster.id={given}\n" in meta
        admin = KafkaAdminClient(bootstrap_servers=ps.kafka, request_timeout_ms=10000)
        try:
            assert admin.describe_cluster()["cluster_id"] == given
        finally:
            admin.close()


def test_two_starts_at_once_on_a_fresh_folder_both_succeed(tmp_path: Path) -> None:
    """Two `services.sh kafka-up` at once on one fresh state dir (two terminals, two
    `make services`): one formats and starts, the other finds the broker answering."""
    ps = PrivateServices(tmp_path, *_ports())
    runs: list[subprocess.Popen[str]] = []
    try:
        runs += [subprocess.Popen([str(SERVICES), "kafka-up"], env=ps.env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True) for _ in range(2)]
        outs = [p.communicate(timeout=2 * START_TIMEOUT + 30)[0] for p in runs]
        assert [p.returncode for p in runs] == [0, 0], outs
        assert sum("formatted" in out for out in outs) == 1, outs
        ps.start_kafka()  # answers already: waits until it serves metadata on both listeners
    finally:
        for p in runs:  # a services.sh that hung (the wait timed out) goes too, with its children
            kill_group(p.pid)
            p.wait(10)
        ps.stop_all()


def _ports() -> tuple[int, int, int]:
    base = free_port_block(4)
    return base, base + 2, base + 3
