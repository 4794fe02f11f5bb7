"""DESIGN §4.6 on a running cluster: no value in a task's record, nor anything a
task raises or returns, ends a YADTQ process or makes it restart in a loop."""

from __future__ import annotations

import os
import re
import signal
from typing import Any

import pytest

from client.errors import ResultTimeout
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration

JUNK = {"attempt": "x", "retries": "not a number", "worker_deaths": "-1.5"}


def wait_record(cluster: Any, task_id: str, done: Any, timeout: float = 30) -> dict[str, str]:
    """Poll the task's record until ``done(record)``; AssertionError after ``timeout`` seconds."""
    found: tuple[dict[str, str]] = wait_until(lambda: (r,) if done(r := cluster.client.record(task_id)) else None,
                                              f"task {task_id}'s record to get there", timeout=timeout)
    return found[0]


def deaths(cluster: Any, mark: int) -> list[str]:
    return [line for line in cluster.lines[mark:] if re.search(r" is dead \(", line)]


def wait_ended(cluster: Any, task_ids: list[str], mark: int, timeout: float = 60) -> None:
    try:
        cluster.client.wait(task_ids, timeout=timeout)
    except ResultTimeout as e:
        raise AssertionError(f"{e}; cluster output:\n" + "\n".join(cluster.lines[mark:][-60:])) from None


def test_damaged_counts_in_a_running_tasks_record_restart_nothing(start_cluster: Any) -> None:
    # Before: the move of the task off its dead worker (and the new worker's claim of it) ran HINCRBY on
    # worker_deaths = "-1.5": a Redis error, so the scheduler and the worker exited 3 ("service lost")
    # and read the same message again after each restart, never careful, never quarantined.
    cluster = start_cluster(count=1)
    mark = cluster.mark()
    h = cluster.client.submit("counted", 2.0)
    record = wait_record(cluster, h.id, lambda r: r.get("status") == "processing")
    cluster.client.redis.hset(cluster.config.redis.key_prefix + h.id, mapping=JUNK)
    os.kill(int(record["pid"]), signal.SIGKILL)  # so that its record is read again: moved, claimed
    wait_ended(cluster, [h.id], mark)
    assert h.record()["status"] == "success", h.record()
    assert len(deaths(cluster, mark)) == 1, "\n".join(cluster.lines[mark:])  # the kill, nothing else
    assert cluster.client.submit("add", 2, 3).result(timeout=30) == 5
    assert len(deaths(cluster, mark)) == 1, "\n".join(cluster.lines[mark:])


def test_damaged_counts_in_the_record_of_a_task_waiting_for_its_retry_restart_nothing(start_cluster: Any) -> None:
    # Before: the scheduler's ASSIGN of the retry ran HINCRBY on attempt = "x" and exited 3.
    cluster = start_cluster(count=1, tasks={"retry_backoff": 2.0})
    mark = cluster.mark()
    h = cluster.client.submit("flaky", 1)
    wait_record(cluster, h.id, lambda r: "retry_at" in r)
    cluster.client.redis.hset(cluster.config.redis.key_prefix + h.id, mapping=JUNK)
    wait_ended(cluster, [h.id], mark)
    assert h.result(timeout=1) == 2
    assert cluster.client.submit("add", 2, 3).result(timeout=30) == 5
    assert deaths(cluster, mark) == [], "\n".join(cluster.lines[mark:])


@pytest.mark.parametrize(("name", "args", "error"), [
    ("exits", [3], "SystemExit: 3"),
    ("exits", [0], "SystemExit: 0"),
    ("exits", [70], "SystemExit: 70"),
    ("interrupted", ["keyboard"], "KeyboardInterrupt: from a task"),
    ("interrupted", ["generator"], "GeneratorExit: from a task"),
    ("unprintable", [], "_Unprintable: <unprintable _Unprintable object>"),
    ("bad_value", [], "InvalidResult: the task's return value cannot be stored: SystemExit: 4"),
])
def test_whatever_a_task_raises_fails_it_and_its_worker_lives_on(start_cluster: Any, name: str, args: list[Any],
                                                                  error: str) -> None:
    # Before: execute caught only Exception, so SystemExit, KeyboardInterrupt and GeneratorExit ended the
    # worker (exit 0, 3 and 70 even looked expected to the quarantine), and so did an exception whose
    # __str__ raises (in failure_fields) or a value whose items() raises while it is stored.
    cluster = start_cluster(count=1)
    mark = cluster.mark()
    h = cluster.client.submit(name, *args)
    wait_ended(cluster, [h.id], mark)
    record = h.record()
    assert record["status"] == "failed" and record["error"].startswith(error), record
    assert cluster.client.submit("add", 2, 3).result(timeout=30) == 5
    assert deaths(cluster, mark) == [], "\n".join(cluster.lines[mark:])
    started = [line for line in cluster.lines[mark:] if re.search(r"started \S+ \(pid", line)]
    assert not started, started  # no process was replaced


def test_yadtqs_own_keys_of_another_type_stop_the_start_with_the_key_named(tmp_path: Any, services: None) -> None:
    """Every script touching such a key would fail: refuse to start, naming it, rather than crash-loop."""
    import sys

    from client import load_config
    from client.store import Keys, connect
    from tests.integration.conftest import cluster_config
    from tests.support.harness import run_own_group

    path = cluster_config(tmp_path, count=1)
    config = load_config(path)
    keys = Keys(config.redis.key_prefix)
    r = connect(config.redis)
    try:
        r.set(keys.assignments, "someone's value")
        r.hset(keys.epoch, "x", "1")
        before = (r.dump(keys.assignments), r.dump(keys.epoch))
        run = run_own_group([sys.executable, "-m", "supervisor", str(path)], timeout=60)
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"{keys.assignments} (a string, not a hash)" in run.stderr
        assert f"{keys.epoch} (a hash, not a string)" in run.stderr
        assert "started" not in run.stdout
        assert (r.dump(keys.assignments), r.dump(keys.epoch)) == before  # left as they were
    finally:
        r.delete(keys.assignments, keys.epoch)
        r.close()
