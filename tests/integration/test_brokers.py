"""A Kafka cluster of three brokers (issue 11's base): `scripts/services.sh` with
YADTQ_KAFKA_BROKERS=3 starts it, YADTQ's topics get three copies and
min.insync.replicas 2, and losing the leader of TASKS loses no task.

Behind the ``brokers`` marker (three JVMs on this machine): `make test-brokers`,
which `.ci/run` runs after `make test`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from client import TaskSpec
from tests.support.harness import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.brokers]

ROOT = Path(__file__).resolve().parents[2]
# Below Linux's ephemeral range (32768-60999): a node's port there may be taken by
# another node's outgoing connection, or a connection to it may connect to itself.
BASE = 29092
NODES = 3
SERVERS = [f"127.0.0.1:{BASE + i}" for i in range(NODES)]


def _services(state: Path, command: str) -> None:
    env = {**os.environ, "YADTQ_SERVICES_DIR": str(state), "YADTQ_KAFKA": f"localhost:{BASE}",
           "YADTQ_KAFKA_BROKERS": str(NODES),
           "YADTQ_KAFKA_JAVA_OPTS": "-Xms128m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"}
    subprocess.run([str(ROOT / "scripts" / "services.sh"), command], env=env, check=True, timeout=180)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Three KRaft nodes on 29092-29094 (controllers on 29192-29194), state in a temporary dir."""
    busy = [p for p in (*range(BASE, BASE + NODES), *range(BASE + 100, BASE + 100 + NODES)) if not _free(p)]
    assert not busy, f"ports {busy} are in use: another 3-broker test run, or a leftover of one"
    state = tmp_path_factory.mktemp("kafka3")
    _services(state, "kafka-up")
    try:
        yield state
    finally:  # SIGKILL: their data is thrown away, and a graceful stop of three nodes takes half a minute
        for pid_file in state.glob("kafka-*/kafka.pid"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        wait_until(lambda: all(_free(p) for p in range(BASE, BASE + NODES)), "the three nodes are gone", timeout=30)


def _leader_of(admin: KafkaAdminClient, topic: str) -> tuple[int, list[int]]:
    [described] = admin.describe_topics([topic])
    [partition] = described["partitions"]
    return partition["leader_id"], partition["replica_nodes"]


def test_yadtqs_topics_get_three_copies_and_losing_the_leader_of_tasks_loses_no_task(
        brokers: Path, start_cluster: Any) -> None:
    cluster = start_cluster(count=2, kafka={"bootstrap_servers": SERVERS})
    topics = cluster.config.topics
    admin = KafkaAdminClient(bootstrap_servers=SERVERS)
    try:
        leader, replicas = _leader_of(admin, topics.tasks)
        assert sorted(replicas) == [1, 2, 3]
        conf = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topics.tasks,
                                                      configs={"min.insync.replicas": None})])
        assert conf["topic"][topics.tasks]["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()

    c = cluster.client
    handles = c.submit_many([TaskSpec("sleep", (0.005,)) for _ in range(600)])
    wait_until(lambda: int(c.redis.hget(c.keys.stats, "success") or 0) >= 50, "some tasks ended")
    pid_file = brokers / f"kafka-{leader}" / "kafka.pid"
    os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the leader of TASKS, mid-run
    killed = time.monotonic()
    c.wait([h.id for h in handles], timeout=120)
    print(f"the {len(handles)} tasks ended {time.monotonic() - killed:.1f}s after node {leader} was killed")
    assert [h.status() for h in handles] == ["success"] * len(handles)
    assert c.submit("add", 2, 3).result(timeout=60) == 5  # and new tasks still go through
    _services(brokers, "kafka-up")  # the lost node comes back and rejoins
    wait_until(lambda: not _free(BASE + leader - 1), f"node {leader} answers again", timeout=60)
