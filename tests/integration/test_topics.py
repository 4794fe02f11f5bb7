"""The topics the supervisor creates carry the configured settings (defect 12)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from client import kafka as kafka_io

pytestmark = pytest.mark.integration


def test_topics_are_created_with_their_retention_and_replication(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, topics={"tasks_retention": 7200, "dead_letter_retention": 86400})
    t = cluster.config.topics
    admin = kafka_io.admin(cluster.config.kafka)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        names = [t.status, t.tasks, t.dead_letter, f"{t.workers}1"]
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
        configs = {n: {k: v["value"] for k, v in c.items()} for n, c in described["topic"].items()}
        replicas = {d["name"]: len(d["partitions"][0]["replica_nodes"]) for d in admin.describe_topics(names)}
    finally:
        admin.close()
    factor = min(3, brokers)
    insync = str(min(2, factor))
    # status: an hour of heartbeats in ten-minute segments, not Kafka's default week.
    assert configs[t.status] == {"retention.ms": "3600000", "segment.ms": "600000", "min.insync.replicas": insync}
    assert configs[t.tasks]["retention.ms"] == "7200000"
    assert configs[t.dead_letter]["retention.ms"] == "86400000"
    assert configs[f"{t.workers}1"]["retention.ms"] == str(7 * 86400 * 1000)
    assert replicas == dict.fromkeys(names, factor)
