"""What happens when tasks misbehave or arrive twice: fail clearly, never run twice."""

from __future__ import annotations

import time
from typing import Any

import pytest

from client import TaskFailed, TaskSpec
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration


def test_a_task_that_ignores_its_time_limit_is_ended_and_its_worker_replaced(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    w1 = cluster.config.worker_ids()[0]
    first = cluster.pid(w1)
    mark = len(cluster.lines)
    [stuck] = cluster.client.submit_many([TaskSpec("stubborn", (60,), timeout=0.5)])

    with pytest.raises(TaskFailed, match=r"time limit of 0\.5s and did not stop within 5s more"):
        stuck.result(timeout=30)
    cluster.wait_line(rf"{w1} is dead \(exit code 70: hard time limit\)", timeout=10, start=mark)
    cluster.wait_line(rf"{w1} live again", timeout=60, start=mark)
    assert cluster.pid(w1) != first
    assert cluster.client.submit("add", 1, 1).result(timeout=30) == 2


def test_the_soft_time_limit_fails_the_task_and_keeps_the_worker(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, tasks={"time_limit": 1.5})
    slow, slow_by_default = cluster.client.submit_many([TaskSpec("sleep", (30,), timeout=0.3), ("sleep", (30,))])
    with pytest.raises(TaskFailed, match=r"TaskTimeLimitExceeded: task ran past its time limit of 0\.3s"):
        slow.result(timeout=30)
    with pytest.raises(TaskFailed, match=r"TaskTimeLimitExceeded: task ran past its time limit of 1\.5s"):
        slow_by_default.result(timeout=30)
    assert slow_by_default.record().get("retries") is None  # a time limit is not retried
    assert cluster.client.submit("add", 2, 2).result(timeout=30) == 4
    assert not any("is dead" in line for line in cluster.lines)


def test_poison_tasks_fail_after_their_retry_limit_while_the_rest_run(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    c = cluster.client
    killer, raiser, flaky = c.submit_many([TaskSpec("die", max_retries=1), TaskSpec("fail", ("always",), max_retries=2),
                                           TaskSpec("flaky", (2,))])
    # Queued behind the killer on its workers' topics, so moved away at each of its deaths.
    bystanders = c.submit_many([TaskSpec("counted", (0.05,)) for _ in range(40)])
    others = c.submit_many([TaskSpec("add", (i, 1)) for i in range(300)])

    with pytest.raises(TaskFailed, match=r"WorkerLost: the worker died while running this task 2 time\(s\); "
                                         r"the retry limit is 1"):
        killer.result(timeout=90)
    with pytest.raises(TaskFailed, match=r"^task \S+ failed: RuntimeError: always \(gave up after 3 failed runs; "
                                         r"the retry limit is 2\)$"):
        raiser.result(timeout=60)
    assert raiser.record()["retries"] == "2"
    assert flaky.result(timeout=60) == 3  # raised twice, then succeeded on its second retry
    assert flaky.record()["retries"] == "2"
    runs = c.redis.hget(f"{cluster.config.redis.key_prefix}test:runs", flaky.id)
    assert runs == "3"  # ran exactly three times (its attempt may be higher: a move bumps it too)
    # Per task, runs <= 1 + the deaths that hit it, counted by the tasks themselves: the killer's
    # every run was a death (2, the limit 1 then reached); the deaths hit no other task, so each
    # of those ran once, though they shared the killer's workers.
    assert [h.result(timeout=60) for h in bystanders] == [0.05] * 40
    all_runs = c.redis.hgetall(f"{cluster.config.redis.key_prefix}test:runs")
    assert (all_runs[killer.id], killer.record()["worker_deaths"]) == ("2", "2")
    assert [all_runs.get(h.id, "0") for h in bystanders] == ["1"] * 40
    # The cluster kept serving meanwhile, and is whole again.
    assert [h.result(timeout=60) for h in others] == [i + 1 for i in range(300)]
    for w in cluster.config.worker_ids():
        cluster.wait_line(rf"{w} live again", timeout=60)


def test_a_duplicate_task_id_runs_once_and_never_changes_a_finished_record(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    c = cluster.client
    spec = TaskSpec("sleep", (0.5,), task_id="dup-1")
    c.submit_many([spec])
    c.submit_many([spec])  # while the first is still queued or running
    assert c.result("dup-1", timeout=30) == 0.5
    first = c.record("dup-1")
    assert first["attempt"] == "1"

    c.submit_many([TaskSpec("add", (1, 2), task_id="dup-1")])  # after it ended
    marker = c.submit("add", 0, 0)  # submitted after the duplicate, so it is handled after it
    assert marker.result(timeout=30) == 0
    assert c.record("dup-1") == first


def test_ctrl_c_hands_back_a_task_that_outlives_the_grace_period(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, workers={"shutdown_grace": 2.0})
    [long] = cluster.client.submit_many([TaskSpec("sleep", (6,), max_retries=0)])
    # The state is only in Redis: no event to wait on.
    wait_until(lambda: long.status() == "processing", "the task to start")

    started = time.monotonic()
    assert cluster.stop(timeout=20) == 0
    assert time.monotonic() - started < 5
    assert long.status() == "queued"  # handed back, not lost and not failed

    again = start_cluster(again=cluster)
    assert long.result(timeout=60) == 6
    record = long.record()
    assert record["attempt"] == "1" and "worker_deaths" not in record
    again.stop()
