"""Fixtures that run real YADTQ clusters against the real Kafka and Redis.

The services are started once per test run by `make test` (scripts/services.sh).
Here they are only looked for: a test that needs them is skipped when they are
absent on a developer's machine, and fails under CI (CI=true), where a skip
would hide a broken set-up. Every cluster gets its own topics and Redis key
prefix, so tests never see each other's messages.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
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
from client.store import Keys, TaskStore, connect
from tests.integration.private_services import (  # noqa: F401  (fixtures for every module here)
    module_private_services,
    private_redis,
    private_services,
)
from tests.support.harness import ROOT as ROOT  # re-exported for the tests
from tests.support.harness import ClusterProcess, remove_cluster_data

KAFKA = os.environ.get("YADTQ_TEST_KAFKA", "localhost:9092")
REDIS = os.environ.get("YADTQ_TEST_REDIS", "redis://localhost:6379/15")
# Every key prefix a test may use on REDIS: ``t`` and 10 hex digits (cluster_config, the store
# tests) or ``chaos-`` and 8 (scripts/chaos.py). A YADTQ key under any other is a leak.
TEST_PREFIX = re.compile(r"(t[0-9a-f]{10}|chaos-[0-9a-f]{8}):")
# Set in this process's environment, so inherited by everything the tests start, even what was
# orphaned (its parent killed alone) and so is no longer a child of pytest.
SESSION_MARK = "YADTQ_TEST_SESSION"
# The key prefixes cluster_config handed out on REDIS this session: each cluster's data is deleted
# by whoever ran it (start_cluster, or the test), so none may still have a key at the end.
_SESSION_PREFIXES: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def leaves_nothing_behind() -> Iterator[None]:
    """At the end of the session: no YADTQ key without a test prefix in REDIS, and no process
    the tests started still alive. What it finds is named, and the processes are killed."""
    mark = uuid.uuid4().hex
    os.environ[SESSION_MARK] = mark
    yield
    leaked = _processes_left(mark)
    problems = [f"process {p.pid} still running: {_describe(p)}" for p in leaked]
    for p in leaked:  # named above, and not left to the next run
        with contextlib.suppress(psutil.Error):
            p.kill()
    problems += [f"Redis key {k!r} in {REDIS} has no test prefix" for k in _unprefixed_keys()]
    problems += [f"Redis keys of this session's cluster {prefix!r} in {REDIS}: {keys}"
                 for prefix, keys in _keys_of_this_session().items()]
    assert not problems, "the tests left behind:\n" + "\n".join(problems)


def _processes_left(mark: str) -> list[psutil.Process]:
    """Children of pytest, and processes carrying this session's mark, alive 10 s from now."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.pid != me.pid and p.environ().get(SESSION_MARK) == mark:
                found.setdefault(p.pid, p)
    _, alive = psutil.wait_procs(list(found.values()), timeout=10)
    return [p for p in alive if _running(p)]


def _running(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:200]
    except psutil.Error:
        return "(gone)"


def _keys_of_this_session() -> dict[str, list[str]]:
    """The keys left under each prefix cluster_config gave out this session (up to 5 each)."""
    r = redis.Redis.from_url(REDIS, decode_responses=True)
    try:
        found = {p: sorted(r.scan_iter(match=f"{p}*", count=1000))[:5] for p in sorted(_SESSION_PREFIXES)}
    except redis.RedisError:
        return {}
    finally:
        r.close()
    return {p: keys for p, keys in found.items() if keys}


def _unprefixed_keys() -> list[str]:
    """YADTQ's keys (``yadtq:`` in the name) in REDIS not under a test prefix."""
    r = redis.Redis.from_url(REDIS, decode_responses=True)
    try:
        return sorted(k for k in r.scan_iter(match="*yadtq:*", count=1000) if not TEST_PREFIX.match(k))
    except redis.RedisError:
        return []  # no Redis: the tests that needed it were skipped
    finally:
        r.close()


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

    def stop(self, timeout: float = 30, sig: int = signal.SIGINT) -> int:
        code = super().stop(timeout, sig)
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
        # A status line when the status changed, sampled each second, and at least every 10 s: a test that
        # waits for "workers 4/4 live" after a mark sees one within 10 s even when nothing changed since.
        "supervisor": {"status_interval": 1.0, "status_idle_interval": 10.0, "startup_timeout": 60.0},
        # Retries of tasks that raise come quickly here, so tests of them stay short.
        "tasks": {"modules": ["worker_pool.builtin_tasks", "tests.tasks"], "retry_backoff": 0.05},
        # Any free port: clusters of tests running side by side must not share 9180 (the supervisor says which).
        "http": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    if cfg["redis"]["url"] == REDIS and not TEST_PREFIX.fullmatch(cfg["redis"]["key_prefix"]):
        # Its keys would outlive the test (no prefix to delete them by) and be reloaded by the next
        # cluster without one, or be another run's: such a cluster needs a database of its own.
        raise ValueError(f"a cluster on the shared test database {REDIS} needs a test key prefix "
                         f"(got {cfg['redis']['key_prefix']!r}); give it private_redis's url")
    if cfg["redis"]["url"] == REDIS:
        _SESSION_PREFIXES.add(cfg["redis"]["key_prefix"])
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


@pytest.fixture
def store(services: None) -> Iterator[TaskStore]:
    """A TaskStore on the test database under a fresh key prefix (result_ttl 60 s); every key
    under the prefix is deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    client = connect(REDIS)
    yield TaskStore(client, Keys(prefix), result_ttl=60)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()
