"""Fixtures that run real YADTQ clusters against the real Kafka and Redis.

The services are started once per test run by `make test` (scripts/services.sh).
Here they are only looked for: a test that needs them is skipped when they are
absent on a developer's machine, and fails under CI (CI=true), where a skip
would hide a broken set-up. Every cluster gets its own topics and Redis key
prefix, so tests never see each other's messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml

from client import Client, load_config
from client import kafka as kafka_io
from tests.integration.private_services import private_services  # noqa: F401  (a fixture for every module here)
from tests.support.harness import ROOT as ROOT  # re-exported for the tests
from tests.support.harness import ClusterProcess, remove_cluster_data

KAFKA = os.environ.get("YADTQ_TEST_KAFKA", "localhost:9092")
REDIS = os.environ.get("YADTQ_TEST_REDIS", "redis://localhost:6379/15")


@pytest.fixture(scope="session")
def services() -> None:
    """Kafka and Redis answer, or the test is skipped (failed under CI)."""
    r = redis.Redis.from_url(REDIS)
    missing = []
    if not kafka_io.reachable([KAFKA]):
        missing.append(f"Kafka at {KAFKA}")
    try:
        r.ping()
    except redis.RedisError:
        missing.append(f"Redis at {REDIS}")
    if missing:
        msg = f"{' and '.join(missing)} not reachable: run `make services` (or `make test`)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


class Cluster(ClusterProcess):
    """A running `python -m supervisor FILE` with its own topics and key prefix, and a client."""

    def __init__(self, config_path: Path) -> None:
        super().__init__(config_path)
        self.config = load_config(config_path)
        self.client = Client(self.config)

    def child_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int:
        code = super().stop(timeout)
        self.client.close()
        return code


def cluster_config(tmp_path: Path, count: int = 4, **sections: dict[str, Any]) -> Path:
    """Write a cluster file with unique topic names and key prefix; return its path."""
    tag = f"t{uuid.uuid4().hex[:10]}"
    cfg: dict[str, Any] = {
        "kafka": {"bootstrap_servers": KAFKA},
        "redis": {"url": REDIS, "key_prefix": f"{tag}:"},
        "topics": {"tasks": f"{tag}.TASKS", "status": f"{tag}.status", "workers": f"{tag}.W",
                   "dead_letter": f"{tag}.dead-letter"},
        "workers": {"count": count, "heartbeat_interval": 0.5, "heartbeat_timeout": 4.0, "shutdown_grace": 5.0},
        "supervisor": {"status_interval": 1.0, "startup_timeout": 60.0},
        # Retries of tasks that raise come quickly here, so tests of them stay short.
        "tasks": {"modules": ["worker_pool.builtin_tasks", "tests.tasks"], "retry_backoff": 0.05},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / "yadtq.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def start_cluster(services: None, tmp_path: Path) -> Iterator[Any]:
    """Factory: ``start_cluster(count=4, workers={...}, tasks={...})`` -> a ready Cluster.

    ``count`` is the number of workers; each keyword overrides keys of that
    section of the cluster file. ``again=cluster`` starts a stopped cluster's
    file again (same topics, same Redis keys).
    """
    started: list[Cluster] = []

    def start(count: int = 4, ready: bool = True, again: Cluster | None = None,
              **sections: dict[str, Any]) -> Cluster:
        c = Cluster(again.config_path if again else cluster_config(tmp_path, count, **sections))
        started.append(c)
        if ready:
            c.wait_line(r"cluster ready", timeout=90)
        return c

    yield start
    for c in started:
        c.stop()
    for c in {c.config_path: c for c in started}.values():
        remove_cluster_data(c.config)
