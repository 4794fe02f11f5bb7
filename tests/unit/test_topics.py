"""The settings the supervisor creates the topics with (no services needed)."""

from __future__ import annotations

import re

import pytest

from client.config import Config
from client.errors import ConfigError
from supervisor.topics import replication, topic_configs


@pytest.mark.parametrize(("brokers", "expected"), [(1, (1, 1)), (2, (2, 2)), (3, (3, 2)), (7, (3, 2))])
def test_replication_defaults_follow_the_cluster(brokers: int, expected: tuple[int, int]) -> None:
    # Defect 12: every topic was created with replication factor 1, whatever the cluster.
    assert replication(Config(), brokers) == expected


def test_replication_as_configured() -> None:
    cfg = Config.from_dict({"topics": {"replication_factor": 2, "min_insync_replicas": 1}})
    assert replication(cfg, 5) == (2, 1)


@pytest.mark.parametrize(("topics", "message"), [
    ({"replication_factor": 3}, "topics.replication_factor: 3 copies, but the Kafka cluster reports 1 broker(s)"),
    ({"min_insync_replicas": 2}, "topics.min_insync_replicas: expected at most the replication factor (1), got 2"),
])
def test_settings_the_cluster_cannot_meet_are_a_config_error(topics: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        replication(Config.from_dict({"topics": topics}), 1)


def test_status_keeps_an_hour_in_short_segments_and_the_others_days() -> None:
    cfg = Config()
    status = topic_configs(cfg, "status", 2)
    assert status == {"retention.ms": "3600000", "segment.ms": "600000", "min.insync.replicas": "2"}
    assert topic_configs(cfg, "TASKS", 2)["retention.ms"] == str(7 * 86400 * 1000)
    assert topic_configs(cfg, "W3", 2)["retention.ms"] == str(7 * 86400 * 1000)
    assert topic_configs(cfg, "TASKS.dead-letter", 1) == {"retention.ms": str(14 * 86400 * 1000),
                                                         "min.insync.replicas": "1"}
