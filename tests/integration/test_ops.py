"""An operator's actions on a running cluster (client/ops.py, Client.cancel): a cancel that lasts,
a running task stopped, an operator's retry, dead letters replayed, purge; and their CLI commands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from kafka import KafkaProducer

from client import TaskCancelled, TaskSpec, ops
from client.store import Cancel, CancelResult
from tests.integration.conftest import KAFKA
from tests.support.harness import run_own_group, wait_until

pytestmark = pytest.mark.integration



def runs(cluster: Any, task_id: str) -> int:
    """How many times ``counted`` (tests/tasks.py) ran this task."""
    return int(cluster.client.redis.hget(f"{cluster.config.redis.key_prefix}test:runs", task_id) or 0)


def cli(cluster: Any, *args: str, stdin: str | None = None) -> Any:
    """``python -m client -c FILE ARGS...`` to its end; the CompletedProcess."""
    argv = [sys.executable, "-m", "client", "-c", str(cluster.config_path), *args]
    if stdin is None:
        return run_own_group(argv, timeout=90)
    # a confirmation to type: run() with input, in its own session as run_own_group does
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=90, start_new_session=True)


def behind_a_blocker(cluster: Any, n: int, seconds: float = 4.0) -> tuple[Any, list[Any]]:
    """On a one-worker cluster: a task running ``seconds`` and ``n`` counted tasks placed behind it
    (queued on the worker's topic, not started)."""
    c = cluster.client
    [blocker] = c.submit_many([TaskSpec("counted", (seconds,))])
    wait_until(lambda: blocker.status() == "processing", "the blocker runs")
    waiting = c.submit_many([TaskSpec("counted", (0,)) for _ in range(n)])
    wait_until(lambda: all(h.record().get("worker") for h in waiting), "the tasks behind it are placed")
    return blocker, waiting


def test_a_cancelled_queued_task_never_runs_even_after_a_scheduler_restart(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    blocker, [victim, kept] = behind_a_blocker(cluster, 2)
    out = cli(cluster, "cancel", victim.id, "--by", "ann@ops")  # as an operator does
    assert out.returncode == 0 and out.stdout == f"{victim.id}\tcancelled\twas queued\n", out.stderr
    with pytest.raises(TaskCancelled, match="cancelled by ann@ops"):
        victim.result(timeout=5)

    mark = cluster.mark()
    os.kill(cluster.pid("scheduler"), signal.SIGKILL)  # its table in Redis still holds the victim's placement
    cluster.wait_line(r"scheduler live again", timeout=60, start=mark)
    after = cluster.client.submit("counted", 0)
    assert after.result(timeout=60) == 0  # handled after the victim's assignment on the same topic
    assert kept.result(timeout=5) == 0 and blocker.result(timeout=5) == 4.0
    assert runs(cluster, victim.id) == 0
    rec = victim.record()
    assert (rec["status"], rec["cancelled_by"]) == ("cancelled", "ann@ops")


def test_a_task_cancelled_in_tasks_and_on_the_retry_schedule_never_runs_after_a_restart(
        start_cluster: Any) -> None:
    """One task waiting for its retry, cancelled; the cluster stopped; one task submitted and
    cancelled while it is still unread in TASKS; the cluster started again: neither runs, and
    the retry never comes back once it is due."""
    cluster = start_cluster(count=1, tasks={"retry_backoff": 3.0})
    [retrying] = cluster.client.submit_many([TaskSpec("flaky", (1,))])
    wait_until(lambda: "retry_at" in retrying.record(), "its retry is scheduled")
    due = float(retrying.record()["retry_at"])
    assert [o.result for o in ops.cancel(cluster.client, [retrying.id])] == ["cancelled"]
    cluster.stop()
    client = type(cluster.client)(cluster.config)
    try:
        [unread] = client.submit_many([TaskSpec("counted", (0,))])
        assert client.cancel(unread.id, by="ann@ops") == CancelResult(Cancel.CANCELLED, "queued")
    finally:
        client.close()
    again = start_cluster(count=1, again=cluster)
    wait_until(lambda: time.time() > due + 0.5, "its retry is due")
    assert again.client.submit("counted", 0).result(timeout=60) == 0
    assert again.client.redis.zcard(again.client.keys.retries) == 0
    assert runs(again, unread.id) == 0 and runs(again, retrying.id) == 1  # its first, failed run only
    assert again.client.status(unread.id) == again.client.status(retrying.id) == "cancelled"


def test_a_running_task_is_stopped_and_its_worker_runs_the_next(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    w1 = cluster.config.worker_ids()[0]
    pid = cluster.pid(w1)
    [long] = cluster.client.submit_many([TaskSpec("counted", (60,))])
    wait_until(lambda: long.status() == "processing", "it runs")
    out = cli(cluster, "cancel", long.id, "--by", "cli@ops")  # as an operator does
    asked = time.monotonic()
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{long.id}\tcancelled\twas processing\n"
    nxt = cluster.client.submit("add", 2, 3)
    assert nxt.result(timeout=10) == 5
    assert time.monotonic() - asked < 5  # stopped within WATCH_INTERVAL, not after its 60 s
    cluster.wait_line(rf"task {long.id} attempt 1 stopped: task stopped: cancelled by an operator", timeout=5)
    rec = long.record()
    assert (rec["status"], rec["cancelled_by"]) == ("cancelled", "cli@ops") and "result" not in rec
    assert cluster.pid(w1) == pid  # the same process carries on


def test_a_running_task_that_ignores_its_cancel_has_its_process_ended(start_cluster: Any) -> None:
    """``stubborn`` swallows every exception: the worker process ends HARD_LIMIT_GRACE later, as for
    the hard time limit, and the record stays cancelled."""
    cluster = start_cluster(count=1)
    w1 = cluster.config.worker_ids()[0]
    [stuck] = cluster.client.submit_many([TaskSpec("stubborn", (120,))])
    wait_until(lambda: stuck.status() == "processing", "it runs")
    mark = cluster.mark()
    cluster.client.cancel(stuck.id)
    cluster.wait_line(rf"{w1} is dead \(exit code 70", timeout=15, start=mark)
    assert cluster.client.submit("add", 1, 1).result(timeout=60) == 2
    raw = cluster.client.redis.hgetall(cluster.client.keys.task(stuck.id))
    assert raw.get("status") == "cancelled", (raw, cluster.lines[mark:])


def test_cancel_of_a_finished_task_is_refused_and_leaves_it_unchanged(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    done = cluster.client.submit("add", 1, 2)
    assert done.result(timeout=30) == 3
    before = done.record()
    assert cluster.client.cancel(done.id) == CancelResult(Cancel.ENDED, "success")
    assert done.record() == before
    out = cli(cluster, "cancel", done.id)
    assert out.returncode == 1, out.stderr
    assert out.stdout.split("\t")[:2] == [done.id, "ended"]
    assert done.record() == before


def test_an_operators_retry_runs_a_failed_task_again(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    [task] = cluster.client.submit_many([TaskSpec("flaky", (1,), max_retries=0)])
    with pytest.raises(Exception, match="service is not there yet"):
        task.result(timeout=30)
    [o] = ops.retry(cluster.client, [task.id], by="bob@ops")
    assert (o.result, o.done) == ("reopened", True)
    cluster.client.wait([task.id], timeout=30)
    assert task.result(timeout=1) == 2
    rec = task.record()
    assert (rec["previous_status"], rec["reopened_by"]) == ("failed", "bob@ops")
    assert "service is not there yet" in rec["previous_error"]
    [again] = ops.retry(cluster.client, [task.id])  # it succeeded: final is final
    assert again.result == "refused"


def test_retry_failed_by_name_and_age_from_the_cli(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    c = cluster.client
    old_fail, other = c.submit_many([TaskSpec("flaky", (1,), max_retries=0), TaskSpec("fail", ("x",), max_retries=0)])
    c.wait([old_fail.id, other.id], timeout=30)
    time.sleep(1.5)  # the age --since tells apart: nothing else to wait on
    [new_fail] = c.submit_many([TaskSpec("flaky", (1,), max_retries=0)])
    c.wait([new_fail.id], timeout=30)
    assert ops.failed_tasks(c, task="flaky") == [old_fail.id, new_fail.id]
    out = cli(cluster, "retry", "--failed", "--task", "flaky", "--since", "1s")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{new_fail.id}\treopened\tqueued again"]
    assert new_fail.result(timeout=30) == 2
    assert old_fail.status() == other.status() == "failed"
    out = cli(cluster, "retry", old_fail.id, "no-such-task")
    assert out.returncode == 1
    assert [line.split("\t")[1] for line in out.stdout.splitlines()] == ["reopened", "unknown"]
    assert old_fail.result(timeout=30) == 2
    assert cli(cluster, "retry", "--task", "flaky").returncode == 2  # --task without --failed


def test_a_dead_letter_is_listed_with_its_reason_and_replayed(start_cluster: Any) -> None:
    """An id that names another program's key is dead-lettered; once that key is gone, the replay runs."""
    cluster = start_cluster(count=1)
    prefix = cluster.config.redis.key_prefix
    cluster.client.redis.set(f"{prefix}taken", "another app's value")
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    producer.send(cluster.config.topics.tasks, json.dumps({"task-id": "taken", "task": "add", "args": [2, 2]}).encode())
    producer.flush(10)
    producer.close()
    wait_until(lambda: len(ops.dead_letters(cluster.client)) == 1, "the dead letter")
    [d] = ops.dead_letters(cluster.client)
    assert d.task_id == "taken" and "names an existing Redis key" in d.error
    listed = cli(cluster, "dead-letters", "list")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{d.id}\t") and "taken" in listed.stdout
    cluster.client.redis.delete(f"{prefix}taken")
    out = cli(cluster, "dead-letters", "replay", d.id, "0:999")
    assert out.returncode == 1  # 0:999 does not exist
    assert [line.split("\t")[1] for line in out.stdout.splitlines()] == ["replayed", "not_found"]
    assert cluster.client.result("taken", timeout=30) == 4


def test_purge_cancels_what_has_not_started_and_asks_first(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    blocker, waiting = behind_a_blocker(cluster, 3)
    no = cli(cluster, "purge", stdin="n\n")
    assert no.returncode == 1 and "cancel 3 task(s) not started yet?" in no.stderr
    assert all(h.status() == "queued" for h in waiting)
    yes = cli(cluster, "purge", "--yes")
    assert yes.returncode == 0, yes.stderr
    assert sorted(line.split("\t")[0] for line in yes.stdout.splitlines()) == sorted(h.id for h in waiting)
    assert blocker.status() == "processing"  # started: left to run
    after = cluster.client.submit("counted", 0)
    assert after.result(timeout=60) == 0 and blocker.result(timeout=5) == 4.0
    assert [runs(cluster, h.id) for h in waiting] == [0, 0, 0]
    assert [h.status() for h in waiting] == ["cancelled"] * 3
    assert cli(cluster, "purge", "--yes").stdout.startswith("nothing to purge")


def test_cli_cancel_of_a_queued_task(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    blocker, [victim] = behind_a_blocker(cluster, 1, seconds=2.0)
    out = cli(cluster, "cancel", victim.id, "--by", "cli@ops")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{victim.id}\tcancelled\twas queued\n"
    res = cli(cluster, "result", victim.id, "--timeout", "5")
    assert res.returncode == 1 and "cancelled by cli@ops" in res.stderr
    assert blocker.result(timeout=30) == 2.0
    assert cluster.client.submit("counted", 0).result(timeout=30) == 0
    assert runs(cluster, victim.id) == 0


def test_purge_cancels_a_task_still_unread_in_tasks_that_has_no_record(start_cluster: Any) -> None:
    """A producer that writes no record (the seed's format), the cluster down: purge finds the
    task past the scheduler's committed offset in TASKS, and it never runs after the start."""
    cluster = start_cluster(count=1)
    assert cluster.client.submit("add", 1, 1).result(timeout=30) == 2  # the scheduler has committed
    cluster.stop()
    task_id = f"raw-{os.getpid()}-{time.monotonic_ns()}"
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    producer.send(cluster.config.topics.tasks, json.dumps({"task-id": task_id, "task": "counted",
                                                           "args": [0]}).encode())
    producer.flush(10)
    producer.close()
    client = type(cluster.client)(cluster.config)
    try:
        assert client.record(task_id) == {}
        assert ops.unstarted_tasks(client) == [task_id]
        assert ops.purge(client, by="ann@ops") == [ops.Outcome(task_id, "cancelled", "was none")]
    finally:
        client.close()
    again = start_cluster(count=1, again=cluster)
    assert again.client.submit("counted", 0).result(timeout=60) == 0
    assert runs(again, task_id) == 0
    rec = again.client.record(task_id)
    assert (rec["status"], rec["cancelled_by"]) == ("cancelled", "ann@ops")
    assert json.loads(rec["payload"])["task"] == "counted"  # read from TASKS and kept for a retry
