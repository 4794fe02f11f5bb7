"""The operator's view against the real services: /metrics, /healthz, /api and the CLI's info and inspect.

Every value checked here is checked against what the records say, and again
after the processes that wrote it were killed: the counters live in Redis and
Kafka, never in one process's memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import TaskFailed, TaskSpec
from client import kafka as kafka_io
from client.insight import parse_stats, parse_timings
from client.store import Assign, Batch, Claim, Finish, Retry, Status, TaskStore
from tests.integration.conftest import ROOT
from tests.integration.private_services import PrivateServices
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration



def http_port(cluster: Any, start: int = 0) -> int:
    return int(cluster.wait_line(r"http: .* on http://127\.0\.0\.1:(\d+)", timeout=30, start=start).group(1))


def get(port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {},
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus-client: {(name, sorted labels): value}."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def by_label(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict[tuple[str, ...], float]:
    """The samples of ``name`` by their label values, in the order of the labels' names."""
    return {tuple(v for _, v in labels): value for (n, labels), value in samples.items() if n == name}


def expected_counts(records: list[dict[str, str]]) -> dict[str, Any]:
    """What the metrics must say, from the records alone."""
    finished = Counter((r["task"], r["status"]) for r in records)
    retries: Counter[str] = Counter()
    for r in records:
        retries[r["task"]] += int(r.get("retries", 0))
    return {"submitted": Counter(r["task"] for r in records), "finished": finished, "retries": retries}


def check_against_records(samples: dict[Any, float], records: list[dict[str, str]]) -> None:
    want = expected_counts(records)
    assert by_label(samples, "yadtq_tasks_submitted_total") == {(t,): n for t, n in want["submitted"].items()}
    assert by_label(samples, "yadtq_tasks_finished_total") == {(s, t): n for (t, s), n in want["finished"].items()}
    assert {k: v for k, v in by_label(samples, "yadtq_task_retries_total").items() if v} == \
        {(t,): n for t, n in want["retries"].items() if n}
    # Every task started once at least (its queue wait), and each ended by its worker (its run time).
    assert by_label(samples, "yadtq_task_queue_wait_seconds_count") == {(t,): n for t, n in want["submitted"].items()}
    assert by_label(samples, "yadtq_task_run_seconds_count") == {(t,): n for t, n in want["submitted"].items()}
    runs = {t: sum(float(r["finished_at"]) - float(r["started_at"]) for r in records if r["task"] == t)
            for t in want["submitted"]}
    for (t,), total in by_label(samples, "yadtq_task_run_seconds_sum").items():
        assert total == pytest.approx(runs[t], abs=1e-3)
    # A sleep of 0.3 s lands above the 0.25 s bucket (and, on any machine that is not stalled, within 1 s).
    assert by_label(samples, "yadtq_task_run_seconds_bucket")[("0.25", "sleep")] == 0
    assert by_label(samples, "yadtq_task_run_seconds_bucket")[("1.0", "sleep")] == want["submitted"]["sleep"]


def test_metrics_match_the_records_and_survive_killed_processes(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    port = http_port(cluster)
    c = cluster.client
    handles = c.submit_many([*(TaskSpec("add", (i, 1)) for i in range(12)),
                             *(TaskSpec("sleep", (0.3,)) for _ in range(3)),
                             *(TaskSpec("fail", ("no",), max_retries=1) for _ in range(2)),
                             *(TaskSpec("flaky", (1,)) for _ in range(2))])
    for h in handles:
        with contextlib.suppress(TaskFailed):
            h.result(timeout=60)
    records = [h.record() for h in handles]
    assert Counter(r["status"] for r in records) == {"success": 17, "failed": 2}

    before = scrape(port)
    check_against_records(before, records)
    w1, w2 = cluster.config.worker_ids()
    assert by_label(before, "yadtq_worker_up") == {(w1,): 1.0, (w2,): 1.0}
    assert by_label(before, "yadtq_backlog")[(cluster.config.topics.tasks,)] == 0
    assert before[("yadtq_oldest_unstarted_age_seconds", ())] == 0
    assert before[("yadtq_kafka_up", ())] == 1 and before[("yadtq_redis_up", ())] == 1
    assert get(port, "/healthz") == (200, "ok\n")

    # The scheduler killed: /healthz says so, then recovers; the counters stay as they were.
    mark = len(cluster.lines)
    os.kill(cluster.pid("scheduler"), signal.SIGKILL)
    _, reason = wait_until(lambda: (s := get(port, "/healthz"))[0] == 503 and s, "healthz says 503")
    assert "scheduler" in reason
    cluster.wait_line(r"scheduler live again", timeout=60, start=mark)
    assert wait_until(lambda: get(port, "/healthz")[0] == 200, "healthz is 200 again")
    os.kill(cluster.pid(w1), signal.SIGKILL)
    cluster.wait_line(rf"{w1} live again", timeout=60, start=mark)
    wait_until(lambda: by_label(scrape(port), "yadtq_worker_up") == {(w1,): 1.0, (w2,): 1.0}, "both workers up")

    after = wait_until(lambda: (s := scrape(port))[("yadtq_worker_restarts_total", (("worker", w1),))] == 1 and s,
                       "the restart is counted")
    check_against_records(after, records)
    assert by_label(after, "yadtq_worker_deaths_total") == {("scheduler",): 1, (w1,): 1, (w2,): 0}
    assert by_label(after, "yadtq_worker_restarts_total") == {("scheduler",): 1, (w1,): 1, (w2,): 0}

    # A whole new supervisor (a new process for every part) reads the same counters.
    cluster.stop()
    again = start_cluster(again=cluster)
    port = http_port(again)
    final = scrape(port)
    check_against_records(final, records)
    assert by_label(final, "yadtq_worker_deaths_total")[(w1,)] == 1


def test_healthz_and_the_api(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, http={"listen": "127.0.0.1:0", "token": "s3cret"},
                            tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks"], "retry_backoff": 60})
    port = http_port(cluster)
    c = cluster.client
    ok = c.submit("add", 1, 2)
    assert ok.result(timeout=30) == 3
    bad = c.submit("fail", "boom")  # waits 60 s for its retry
    wait_until(lambda: c.redis.zscore(c.keys.retries, bad.id), "the failed task waits for its retry")
    producer = kafka_io.producer(cluster.config.kafka)
    try:
        producer.send(cluster.config.topics.tasks, b"not json").get(timeout=30)
    finally:
        kafka_io.close_producer(producer)

    status, body = get(port, "/api/overview")
    overview = json.loads(body)
    assert status == 200 and overview["health"] == [] and overview["totals"]["success"] == 1
    assert overview["retries_waiting"] == 1
    workers = json.loads(get(port, "/api/workers")[1])
    assert [(w["id"], w["up"]) for w in workers] == [("scheduler", True), (cluster.config.worker_ids()[0], True)]
    assert all(w["rss"] > 10 * 2 ** 20 for w in workers)  # sampled with psutil by the supervisor
    listed = json.loads(get(port, "/api/tasks?status=success&name=add")[1])
    assert [t["id"] for t in listed] == [ok.id] and listed[0]["status"] == "success"
    assert [t["id"] for t in json.loads(get(port, "/api/tasks")[1])] == [bad.id, ok.id]  # newest first
    assert [t["id"] for t in json.loads(get(port, "/api/tasks?status=queued")[1])] == [bad.id]  # its retry waits
    assert json.loads(get(port, "/api/tasks?status=queued&name=add")[1]) == []
    assert [t["id"] for t in json.loads(get(port, "/api/tasks?limit=1")[1])] == [bad.id]
    one = json.loads(get(port, f"/api/tasks/{ok.id}")[1])
    assert one["record"]["result"] == "3" and one["attempts"]["attempt"] == 1
    assert [(e["event"], e["attempt"]) for e in one["history"]] == [("assigned", 1), ("started", 1), ("ended", 1)]
    assert get(port, "/api/tasks/no-such-task")[0] == 404
    retries = json.loads(get(port, "/api/retries")[1])
    assert [(t["id"], t["retries"]) for t in retries] == [(bad.id, 1)] and retries[0]["due"] > time.time()
    zero = c.submit_many([TaskSpec("div", (1, 0), max_retries=0), TaskSpec("fail", ("x",), max_retries=0)])
    for h in zero:
        with pytest.raises(TaskFailed):
            h.result(timeout=30)
    groups = json.loads(get(port, "/api/failed-groups")[1])
    assert groups == [{"error_type": "RuntimeError", "count": 1, "ids": [zero[1].id]},
                      {"error_type": "ZeroDivisionError", "count": 1, "ids": [zero[0].id]}]
    dead = wait_until(lambda: json.loads(get(port, "/api/dead-letters")[1]), "the dead letter is listed")
    assert [d["message"] for d in dead] == ["not json"] and "not valid JSON" in dead[0]["error"]
    assert get(port, "/api/tasks?limit=x")[0] == 400
    assert get(port, "/api/nothing")[0] == 404
    # Actions: the token is needed (they are tested in test_http_actions.py).
    assert get(port, "/api/retry", "POST")[0] == 401
    assert get(port, "/api/retry", "POST", {"Authorization": "Bearer wrong"})[0] == 401
    assert get(port, "/api/retry", "POST", {"Authorization": "Bearer s3cret"})[0] == 400  # no ids


def cli(config: Any, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "client", "--config", str(config), *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_info_and_inspect(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, workers={"max_pending": 1, "heartbeat_interval": 0.5, "heartbeat_timeout": 4.0},
                            tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks"], "retry_backoff": 60})
    path, c = cluster.config_path, cluster.client
    w1 = cluster.config.worker_ids()[0]
    done = c.submit("add", 1, 1)
    assert done.result(timeout=30) == 2
    bad = c.submit("fail", "boom")
    wait_until(lambda: c.redis.zscore(c.keys.retries, bad.id), "the failed task waits for its retry")
    running, waiting = c.submit("sleep", 30), c.submit("add", 2, 2)
    wait_until(lambda: running.status() == "processing", "the sleep runs")

    info = cli(path, "info")
    assert f"{w1:<10} up" in info and "scheduler  up" in info and "health: ok" in info
    assert "success 1 failed 0" in info and "retries waiting 1" in info
    assert f"{cluster.config.topics.tasks} 1" in info  # the add waits in TASKS: one slot, taken by the sleep
    oldest = re.search(r"oldest waiting: ([0-9.]+)s", info)
    assert oldest is not None and 0 < float(oldest.group(1)) < 60  # the add's, from its message's timestamp
    assert f"{running.id}  sleep  on {w1}" in cli(path, "inspect", "running")
    assert f"{waiting.id}  add  waiting" in cli(path, "inspect", "queued")
    assert f"{bad.id}  fail  due in" in cli(path, "inspect", "retries")
    assert cli(path, "inspect", "dead") == "no dead letters\n"
    assert [t["id"] for t in json.loads(cli(path, "inspect", "running", "--json"))] == [running.id]


def test_a_port_in_use_is_said_and_the_cluster_runs_without_http(start_cluster: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = start_cluster(count=1, http={"listen": f"127.0.0.1:{port}"})
        cluster.wait_line(rf"http: cannot listen on 127\.0\.0\.1:{port}: .*running without /metrics", timeout=5)
        assert cluster.client.submit("add", 1, 2).result(timeout=30) == 3



def add_payload(task_id: str) -> str:
    return json.dumps({"v": 1, "task-id": task_id, "task": "add", "args": [1, 2]})


def one_task(store: TaskStore, task_id: str, started: float, finished: float | None) -> None:
    """A task of 'add' through ASSIGN (at 1.0), CLAIM (by pid 111) and FINISH, as the scheduler and a
    worker run it; left running if ``finished`` is None."""
    ops: list[Callable[[Batch], object]] = [
        lambda b: store.assign(b, task_id, "add", "W1", add_payload(task_id), 1.0, 3),
        lambda b: store.claim(b, task_id, 1, "W1", started, 111, 3)]
    if finished is not None:
        ops.append(lambda b: store.finish(b, task_id, 1, Status.SUCCESS, finished, {"result": "3"}))
    for op in ops:
        batch = store.pipeline()
        op(batch)
        store.execute(batch)


def test_the_scripts_count_per_task_and_a_damaged_counter_starts_again(store: TaskStore) -> None:
    """The counts the scripts keep for /metrics, and DESIGN 4.6: no damaged counter fails a script."""
    one_task(store, "a", 1.5, 1.6)  # waited 0.5 s (submitted at 1.0 by ASSIGN), ran 0.1 s
    stats = parse_stats(store.redis.hgetall(store.keys.stats))  # type: ignore[arg-type]
    assert (stats.submitted, stats.finished, stats.totals) == ({"add": 1}, {("add", "success"): 1}, {"success": 1})
    timings = parse_timings(store.redis.hgetall(store.keys.timings))  # type: ignore[arg-type]
    wait, run = timings["wait"]["add"], timings["run"]["add"]
    assert (wait.count, wait.total, run.count) == (1, 0.5, 1) and run.total == pytest.approx(0.1)
    assert dict(wait.cumulative())["0.25"] == 0 and dict(wait.cumulative())["0.5"] == 1
    assert store.redis.zrange(store.keys.recent, 0, -1) == ["a"]
    assert store.record("a")["first_started_at"] == "1.5"

    store.redis.hset(store.keys.stats, mapping={"submitted|add": "x", "finished|success|add": "1.5"})
    store.redis.hset(store.keys.timings, mapping={"run_sum|add": "junk", "run|5|add": "-"})
    one_task(store, "b", 2.0, 2.1)
    stats = parse_stats(store.redis.hgetall(store.keys.stats))  # type: ignore[arg-type]
    assert (stats.submitted, stats.finished, stats.totals) == ({"add": 1}, {("add", "success"): 1}, {"success": 2})
    assert parse_timings(store.redis.hgetall(store.keys.timings))["run"]["add"].total == pytest.approx(0.1)  # type: ignore[arg-type]

    # RETRY counts a retry; a move of a task that was running (its worker died) counts a lost run.
    one_task(store, "d", 4.5, None)
    one_task(store, "e", 4.5, None)
    assert store.retry("d", 1, 5.0, (1.0, 3.0), 3, {"error": "E: x", "traceback": "tb"},
                       add_payload("d")).kind is Retry.SCHEDULED
    batch = store.pipeline()
    moved = store.assign(batch, "e", "add", "W2", add_payload("e"), 6.0, 3, "move", 111)
    store.execute(batch)
    assert moved.value.kind is Assign.ASSIGNED
    batch = store.pipeline()
    store.claim(batch, "e", 2, "W2", 7.0, 333, 3)  # its second start: no second queue wait
    store.execute(batch)
    assert parse_timings(store.redis.hgetall(store.keys.timings))["wait"]["add"].count == 4  # type: ignore[arg-type]
    assert store.record("e")["first_started_at"] == "4.5"
    stats = parse_stats(store.redis.hgetall(store.keys.stats))  # type: ignore[arg-type]
    assert (stats.retries, stats.lost, stats.submitted) == ({"add": 1}, {"add": 1}, {"add": 3})
    assert store.redis.zrevrange(store.keys.recent, 0, -1) == ["e", "d", "b", "a"]

    # A task placed again by a new message (its table entry gone) is not submitted twice.
    for _ in range(2):
        batch = store.pipeline()
        store.assign(batch, "g", "add", "W1", add_payload("g"), 7.5, 3)
        store.execute(batch)
        store.redis.hdel(store.keys.assignments, "g")
    assert store.record("g")["attempt"] == "2"
    assert parse_stats(store.redis.hgetall(store.keys.stats)).submitted == {"add": 4}  # type: ignore[arg-type]

    # Damaged times in a record: no observation, and no script error (DESIGN 4.6).
    batch = store.pipeline()
    store.assign(batch, "f", "add", "W1", add_payload("f"), 8.0, 3)
    store.execute(batch)
    store.redis.hset(store.keys.task("f"), "submitted_at", "x")
    batch = store.pipeline()
    claimed = store.claim(batch, "f", 1, "W1", 8.5, 111, 3)
    store.execute(batch)
    store.redis.hset(store.keys.task("f"), "started_at", "y")
    batch = store.pipeline()
    finished = store.finish(batch, "f", 1, Status.SUCCESS, 9.0, {"result": "3"})
    store.execute(batch)
    assert (claimed.value, finished.value) == (Claim.RUN, Finish.WRITTEN)
    timings = parse_timings(store.redis.hgetall(store.keys.timings))  # type: ignore[arg-type]
    assert (timings["wait"]["add"].count, timings["run"]["add"].count) == (4, 2)

    store.redis.delete(store.keys.timings, store.keys.recent)
    store.redis.set(store.keys.timings, "not a hash")
    store.redis.set(store.keys.recent, "not a zset")
    one_task(store, "c", 3.0, 3.1)  # skipped, not failed
    assert store.record("c")["status"] == "success"


def test_healthz_and_metrics_while_redis_is_away(private_redis: PrivateServices, start_cluster: Any) -> None:
    # private_redis first: it is stopped after the cluster is stopped and its keys deleted.
    cluster = start_cluster(count=1, redis={"url": private_redis.redis_url, "password": private_redis.redis_password})
    port = http_port(cluster)
    assert get(port, "/healthz") == (200, "ok\n")
    with private_redis.stopped("redis"):
        _, reason = wait_until(lambda: (s := get(port, "/healthz"))[0] == 503 and s, "healthz says 503")
        assert "redis does not answer" in reason
        samples = scrape(port)  # still answers: what needs Redis is left out
        assert samples[("yadtq_redis_up", ())] == 0 and samples[("yadtq_kafka_up", ())] == 1
        assert ("yadtq_backlog", (("topic", cluster.config.topics.tasks),)) in samples
        assert not [name for name, _ in samples if name.startswith("yadtq_tasks_")]
    wait_until(lambda: get(port, "/healthz")[0] == 200, "healthz is 200 again", timeout=90)
    assert cluster.client.submit("add", 2, 3).result(timeout=60) == 5
    assert scrape(port)[("yadtq_tasks_finished_total", (("status", "success"), ("task", "add")))] == 1
