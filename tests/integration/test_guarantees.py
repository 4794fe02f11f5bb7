"""DESIGN §4.2, §4.4 and §4.5 with real processes: fencing, stuck tasks, SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from client import Client, TaskFailed, TaskSpec, load_config
from client.config import Config
from client.protocol import WorkerDown, encode_event, now
from supervisor.topics import ensure_topics
from tests.integration.conftest import KAFKA, cluster_config
from tests.support.harness import WatchedProcess, remove_cluster_data, wait_until

pytestmark = pytest.mark.integration

# One role of the cluster, run on its own: the test plays the supervisor.
ROLE = """
import sys
from client import load_config
from supervisor.scheduler import run_scheduler
from worker_pool.worker import run_worker
config = load_config(sys.argv[1])
run_scheduler(config) if sys.argv[2] == "scheduler" else run_worker(config, sys.argv[2])
"""



def committed_all(config: Config, worker: str) -> bool:
    """Has ``worker`` committed its topic up to the end (handled every assignment)?"""
    consumer = KafkaConsumer(bootstrap_servers=KAFKA, group_id=f"yadtq-worker.{worker}", enable_auto_commit=False)
    try:
        tp = TopicPartition(worker, 0)
        end = consumer.end_offsets([tp])[tp]
        return bool(consumer.committed(tp) == end)
    finally:
        consumer.close()


@pytest.fixture
def roles(services: None, tmp_path: Path) -> Iterator[tuple[Config, dict[str, WatchedProcess]]]:
    """A scheduler and two workers, each run on its own, without a supervisor."""
    # max_pending 3: tasks wait for room rather than all going to the worker
    # whose first heartbeat the scheduler happened to see first.
    path = cluster_config(tmp_path, count=2, workers={"max_pending": 3})
    config = load_config(path)
    ensure_topics(config)
    procs = {name: WatchedProcess([sys.executable, "-c", ROLE, str(path), name])
             for name in ["scheduler", *config.worker_ids()]}
    yield config, procs
    for name, p in procs.items():
        print(name, *p.lines[-20:], sep="\n  ")  # shown if the test failed
        with contextlib.suppress(ProcessLookupError):  # a test may have killed it
            os.kill(p.proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        p.stop(timeout=10, sig=signal.SIGTERM)
    remove_cluster_data(config)  # its Redis keys too, not only its topics


def test_a_paused_worker_declared_dead_neither_runs_nor_overwrites_its_moved_tasks(roles: Any) -> None:
    config, procs = roles
    w1, w2 = config.worker_ids()
    client = Client(config)
    try:
        assert client.submit("add", 1, 1).result(timeout=60) == 2  # every role is up
        handles = client.submit_many([TaskSpec("counted", (0.3,)) for _ in range(12)])
        wait_until(lambda: any(h.record().get("worker") == w1 and h.status() == "processing" for h in handles),
                   f"{w1} runs one of the tasks")
        os.kill(procs[w1].proc.pid, signal.SIGSTOP)
        # W1 is frozen mid-task. Declare it dead, as the supervisor does when
        # its heartbeats lapse; the supervisor would also SIGKILL it, but a
        # process can outlive that (uninterruptible sleep), or come back from
        # a network partition: what it does then is what is tested here.
        [in_flight] = [h for h in handles if h.record().get("worker") == w1 and h.status() == "processing"]
        producer = KafkaProducer(bootstrap_servers=KAFKA)
        producer.send(config.topics.status, encode_event(WorkerDown(w1, "paused (test)", now(), procs[w1].proc.pid)))
        producer.flush(10)
        producer.close()

        client.wait([h.id for h in handles], timeout=60)  # all on W2 now
        before = {h.id: h.record() for h in handles}
        assert {r["status"] for r in before.values()} == {"success"}
        assert before[in_flight.id]["worker"] == w2

        os.kill(procs[w1].proc.pid, signal.SIGCONT)
        # Either its run ends first and its result is refused, or the worker's 0.25 s watch of the
        # record sees it ended elsewhere and stops the run: which comes first is a race of the
        # remaining 0.3 s sleep with the watch; either way nothing is written (checked below).
        procs[w1].wait_line(rf"task {in_flight.id} attempt 1 (ended elsewhere while it ran; result dropped"
                            rf"|stopped: task stopped: its record now says success \(attempt 2\))")
        wait_until(lambda: committed_all(config, w1), f"{w1} handled every assignment it had")
        assert {h.id: h.record() for h in handles} == before  # nothing overwritten
        runs = client.redis.hgetall(f"{config.redis.key_prefix}test:runs")
        # The task W1 was running when frozen finished its body once there and
        # ran again on W2; none of the others ran on W1 after it resumed.
        assert runs == {h.id: "2" if h.id == in_flight.id else "1" for h in handles}
        assert procs[w1].proc.poll() is None  # and W1 carries on
    finally:
        client.close()


def test_a_task_stuck_in_c_holding_the_gil_is_ended_by_the_supervisor(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    w1 = cluster.config.worker_ids()[0]
    first = cluster.pid(w1)
    mark = cluster.mark()
    [stuck] = cluster.client.submit_many([TaskSpec("stuck_in_c", (120,), timeout=1, max_retries=0)])
    with pytest.raises(TaskFailed, match=r"WorkerLost: the worker died while running this task 1 time\(s\); "
                                         r"the retry limit is 0"):
        stuck.result(timeout=60)
    cluster.wait_line(rf"{w1} is dead \(no heartbeat for", timeout=10, start=mark)
    cluster.wait_line(rf"{w1} live again", timeout=60, start=mark)
    assert cluster.pid(w1) != first
    assert cluster.client.submit("add", 1, 2).result(timeout=30) == 3


def test_sigterm_lets_running_tasks_finish_and_a_restart_ends_every_task(start_cluster: Any) -> None:
    cluster = start_cluster(count=2, workers={"shutdown_grace": 2.0})
    c = cluster.client
    handles = c.submit_many([TaskSpec("sleep", (6,))] + [TaskSpec("counted", (0.02,)) for _ in range(300)])
    wait_until(lambda: handles[0].status() == "processing", "the long task started")
    stats = cluster.client.keys.stats
    wait_until(lambda: int(c.redis.hget(stats, "success") or 0) >= 10, "short tasks are under way too")

    cluster.proc.send_signal(signal.SIGTERM)  # the supervisor alone, as a service manager does
    assert cluster.proc.wait(20) == 0
    cluster.wait_line(r"\[yadtq\] stopped$", timeout=5)
    assert not any("did not stop in time" in line for line in cluster.lines)
    assert handles[0].status() == "queued"  # handed back: it would outlive the grace period

    again = start_cluster(again=cluster)
    c2 = again.client
    c2.wait([h.id for h in handles], timeout=120)
    assert [h.record()["status"] for h in handles] == ["success"] * len(handles)
    runs = c2.redis.hgetall(f"{again.config.redis.key_prefix}test:runs")
    assert sorted(runs.values()) == ["1"] * 300  # each short task ran exactly once across the restart
