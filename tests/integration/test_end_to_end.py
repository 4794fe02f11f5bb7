"""The whole system, as a user runs it: supervisor, scheduler, workers, client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer

from client import Client, TaskFailed, TaskSpec
from tests.integration.conftest import KAFKA, cluster_config
from tests.integration.private_services import PrivateServices
from tests.support.harness import run_own_group

pytestmark = pytest.mark.integration


def test_thousand_tasks_through_four_workers(start_cluster: Any) -> None:
    cluster = start_cluster(count=4)
    handles = cluster.client.submit_many([TaskSpec("add", (i, i)) for i in range(1000)])
    cluster.client.wait([h.id for h in handles], timeout=180)

    records = [h.record() for h in handles]
    assert [r["status"] for r in records] == ["success"] * 1000
    assert [json.loads(r["result"]) for r in records] == [2 * i for i in range(1000)]
    assert {r["worker"] for r in records} == set(cluster.config.worker_ids())


def test_a_backlog_many_polls_long_drains(start_cluster: Any) -> None:
    # Far more tasks than the workers have room for (2 x 4) and than one poll
    # of TASKS returns (1000): the scheduler must stop reading TASKS while they
    # wait, keep reading status events, and come back for the rest.
    cluster = start_cluster(count=2, workers={"max_pending": 4})
    handles = cluster.client.submit_many([TaskSpec("add", (i, 1)) for i in range(3000)])
    cluster.client.wait([h.id for h in handles], timeout=240)
    assert [json.loads(h.record()["result"]) for h in handles] == [i + 1 for i in range(3000)]


def test_seed_format_from_a_plain_kafka_producer(start_cluster: Any, private_redis: PrivateServices) -> None:
    # No key prefix here: the record must sit at the bare task id, as in the seed. So a Redis of
    # its own: without a prefix, its keys (yadtq:epoch, yadtq:load...) could not be told from
    # another cluster's on the shared test database, nor deleted after it.
    cluster = start_cluster(count=1, redis={"url": private_redis.redis_url, "password": private_redis.redis_password,
                                            "key_prefix": ""})
    task_id = f"seed-{uuid.uuid4().hex[:12]}"
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    producer.send(cluster.config.topics.tasks, json.dumps({"task-id": task_id, "task": "add", "args": [1, 2]}).encode())
    producer.flush(10)
    producer.close()

    cluster.client.wait([task_id], timeout=60)
    r = private_redis.redis_client()
    try:
        record = r.hgetall(task_id)
        assert record["status"] == "success"
        assert record["result"] == "3"
    finally:
        r.close()


def test_unknown_raising_and_wrong_arguments_fail_clearly(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    c: Client = cluster.client
    unknown, raising, zero, arity = (c.submit("no_such_task", 1), c.submit("fail", "boom"),
                                     c.submit("div", 1, 0), c.submit("add", 1))
    ok = c.submit("mul", 6, 7)

    with pytest.raises(TaskFailed, match="unknown task 'no_such_task'"):
        unknown.result(timeout=60)
    with pytest.raises(TaskFailed, match=r"RuntimeError: boom \(gave up after 4 failed runs; the retry limit "
                                         r"is 3\)") as e:
        raising.result(timeout=60)
    assert "Traceback" in e.value.traceback
    assert raising.record()["retries"] == "3"
    with pytest.raises(TaskFailed, match="ZeroDivisionError"):
        zero.result(timeout=60)
    with pytest.raises(TaskFailed, match="wrong arguments for task 'add'"):
        arity.result(timeout=60)
    assert ok.result(timeout=60) == 42


def test_malformed_message_is_dead_lettered_and_the_next_task_runs(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    topics = cluster.config.topics
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    producer.send(topics.tasks, b"this is {not json")
    producer.flush(10)
    producer.close()
    after = cluster.client.submit("add", 2, 3)
    assert after.result(timeout=60) == 5

    consumer = KafkaConsumer(topics.dead_letter, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000)
    try:
        dead = next(iter(consumer))
    finally:
        consumer.close()
    assert dead.value == b"this is {not json"
    assert b"not valid JSON" in dict(dead.headers)["error"]
    cluster.wait_line(r"dead-lettered .*not valid JSON", timeout=10)


def test_sigkilled_worker_is_restarted_and_no_task_is_lost(start_cluster: Any) -> None:
    cluster = start_cluster(count=4)
    specs = [TaskSpec("sleep", (0.02,)) if i % 2 else TaskSpec("add", (i, 1)) for i in range(600)]
    handles = cluster.client.submit_many(specs)
    cluster.client.wait([h.id for h in handles[:40]], timeout=60)  # the run is under way

    w2 = cluster.config.worker_ids()[1]
    victim = cluster.pid(w2)
    mark = len(cluster.lines)
    os.kill(victim, signal.SIGKILL)

    cluster.client.wait([h.id for h in handles], timeout=180)
    records = [h.record() for h in handles]
    assert [r["status"] for r in records] == ["success"] * 600
    # W2 had tasks waiting on its topic when it died: they were reassigned.
    assert any(int(r["attempt"]) > 1 for r in records)
    cluster.wait_line(rf"{w2} is dead \(exit code -9\)", timeout=30, start=mark)
    cluster.wait_line(rf"{w2} live again \(pid \d+\)", timeout=60, start=mark)
    assert cluster.pid(w2) != victim


def test_sigkilled_scheduler_is_restarted_and_carries_on(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    specs = [TaskSpec("sleep", (0.01,)) if i % 2 else TaskSpec("add", (i, 1)) for i in range(600)]
    handles = cluster.client.submit_many(specs)
    cluster.client.wait([h.id for h in handles[:40]], timeout=60)

    victim = cluster.pid("scheduler")
    mark = len(cluster.lines)
    os.kill(victim, signal.SIGKILL)

    cluster.client.wait([h.id for h in handles], timeout=180)
    records = [h.record() for h in handles]
    assert [r["status"] for r in records] == ["success"] * 600
    assert [json.loads(r["result"]) for r in records[::2]] == [i + 1 for i in range(0, 600, 2)]
    cluster.wait_line(r"scheduler is dead \(exit code -9\)", timeout=30, start=mark)
    cluster.wait_line(r"scheduler live again", timeout=60, start=mark)


def test_ctrl_c_stops_every_process(start_cluster: Any) -> None:
    cluster = start_cluster(count=3)
    children = cluster.child_pids()
    assert len(children) >= 4  # the scheduler and three workers
    assert cluster.stop(timeout=20) == 0
    _, alive = psutil.wait_procs([psutil.Process(p) for p in children if psutil.pid_exists(p)], timeout=5)
    assert not alive
    cluster.wait_line(r"stopped$", timeout=5)


def test_cli_submit_status_result(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_own_group([sys.executable, "-m", "client", "--config", str(cluster.config_path), *args],
                             timeout=60)

    out = cli("submit", "add", "1", "2", "--wait", "--timeout", "30")
    assert (out.returncode, out.stdout.strip()) == (0, "3"), out.stderr
    task_id = cli("submit", "sleep", "0.1").stdout.strip()
    assert cli("result", task_id, "--timeout", "30").stdout.strip() == "0.1"
    assert cli("status", task_id).stdout.strip() == "success"
    failed = cli("submit", "fail", "nope", "--wait", "--timeout", "30")
    assert failed.returncode == 1 and "RuntimeError: nope" in failed.stderr
    missing = cli("status", "no-such-id")
    assert missing.returncode == 4 and "no record of task no-such-id" in missing.stderr


def test_worker_whose_heartbeats_lapse_is_killed_and_replaced(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    w1 = cluster.config.worker_ids()[0]
    frozen = cluster.pid(w1)
    mark = len(cluster.lines)
    os.kill(frozen, signal.SIGSTOP)  # alive, but silent: only the heartbeat timeout can tell
    try:
        handles = cluster.client.submit_many([TaskSpec("add", (i, 0)) for i in range(50)])
        cluster.wait_line(rf"{w1} is dead \(no heartbeat for", timeout=30, start=mark)
        cluster.client.wait([h.id for h in handles], timeout=60)
        assert [h.result() for h in handles] == list(range(50))
        cluster.wait_line(rf"{w1} live again", timeout=60, start=mark)
        assert not psutil.pid_exists(frozen) or psutil.Process(frozen).status() == psutil.STATUS_ZOMBIE
    finally:
        if psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGCONT)


@pytest.mark.parametrize("prefix", ["", "app:", "t0123456789:x:"])
def test_a_cluster_without_a_test_prefix_may_not_use_the_shared_test_database(tmp_path: Path, prefix: str) -> None:
    """Its keys could not be deleted after it, and a later cluster without a prefix would reload them."""
    with pytest.raises(ValueError, match="needs a test key prefix"):
        cluster_config(tmp_path, redis={"key_prefix": prefix})
