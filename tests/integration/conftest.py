"""Fixtures that run real YADTQ clusters against the real Kafka and Redis.

The services are started once per test run by `make test` (scripts/services.sh).
Here they are only looked for: a test that needs them is skipped when they are
absent on a developer's machine, and fails under CI (CI=true), where a skip
would hide a broken set-up. Every cluster gets its own topics and Redis key
prefix, so tests never see each other's messages.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import yaml
from kafka import KafkaAdminClient

from client import Client, load_config
from tests.integration.private_services import private_services  # noqa: F401  (a fixture for every module here)

ROOT = Path(__file__).resolve().parents[2]
KAFKA = os.environ.get("YADTQ_TEST_KAFKA", "localhost:9092")
REDIS = os.environ.get("YADTQ_TEST_REDIS", "redis://localhost:6379/15")


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def services() -> None:
    """Kafka and Redis answer, or the test is skipped (failed under CI)."""
    host, port = KAFKA.rsplit(":", 1)
    r = redis.Redis.from_url(REDIS)
    missing = []
    if not _answers(host, int(port)):
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


class Cluster:
    """A running `python -m supervisor FILE` with its own topics and key prefix."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config = load_config(config_path)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # Its own session, so stop() can signal the whole process group as a terminal's Ctrl-C does.
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", str(config_path)], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.client = Client(self.config)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match[str]:
        """Block until a supervisor output line (from index ``start``) matches ``pattern``."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def pid(self, name: str) -> int:
        """The pid of the newest process started for ``name`` (scheduler, W1, ...)."""
        with self._cond:
            rx = re.compile(rf"started {re.escape(name)} \(pid (\d+)\)")
            pids = [m.group(1) for line in self.lines if (m := rx.search(line))]
        assert pids, f"{name} was never started"
        return int(pids[-1])

    def child_pids(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30) -> int:
        """SIGINT the supervisor's process group, as Ctrl-C does; return its exit code."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.client.close()
        return self.proc.returncode


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
        "tasks": {"modules": ["worker_pool.builtin_tasks", "tests.tasks"]},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    path = tmp_path / "yadtq.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cleanup(cluster: Cluster) -> None:
    cfg = cluster.config
    r = redis.Redis.from_url(cfg.redis.url)
    if cfg.redis.key_prefix:
        keys = list(r.scan_iter(match=f"{cfg.redis.key_prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            r.delete(*keys[i:i + 500])
    r.close()
    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        names = [t for t in admin.list_topics() if t.startswith(cfg.topics.tasks.split(".")[0] + ".")]
        if names:
            admin.delete_topics(names)
    finally:
        admin.close()


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
        _cleanup(c)
