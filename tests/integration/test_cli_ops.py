"""The operator CLI against the real services (issue 9, item 3): ``submit-many``, ``wait`` and
``events``, each run as ``python -m client ...`` in its own process, as an operator runs them."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from client import kafka as kafka_io
from tests.integration.conftest import KAFKA
from tests.support.harness import ROOT, WatchedProcess, kill_group

pytestmark = pytest.mark.integration

TIMEOUT = 60  # seconds any one command may take


def cli(cluster: Any, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m client --config FILE args...`` with ``stdin``; its whole process group is killed after."""
    argv = [sys.executable, "-m", "client", "--config", str(cluster.config_path), *args]
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=TIMEOUT)
    finally:
        kill_group(proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def jsonl(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tasks_topic_end(cluster: Any) -> int:
    c = kafka_io.consumer(cluster.config.kafka, None)
    try:
        parts = kafka_io.assign_all(c, [cluster.config.topics.tasks])
        return sum(c.end_offsets(parts).values())
    finally:
        c.close()


def test_submit_many_then_wait_with_plain_lines_when_not_a_terminal(start_cluster: Any, tmp_path: Path) -> None:
    cluster = start_cluster(count=2)
    path = jsonl(tmp_path, '{"task": "add", "args": [1, 2]}', "",
                 '{"task": "fail", "args": ["on purpose"], "options": {"max_retries": 0}}',
                 '{"task": "mul", "kwargs": {"a": 6, "b": 7}, "id": "the-answer"}',
                 '{"task": "sleep", "args": [0.2], "options": {"timeout": 30}}')
    submitted = cli(cluster, "submit-many", path)
    assert submitted.returncode == 0, submitted.stderr
    ids = submitted.stdout.split()
    assert len(ids) == 4 and ids[2] == "the-answer"  # in the file's order, the given id kept

    waited = cli(cluster, "wait", "--timeout", "30", stdin=submitted.stdout)  # the ids, from submit-many
    assert waited.returncode == 1, waited.stderr  # one failed
    lines = waited.stdout.splitlines()
    assert sorted(lines[:-1]) == sorted([f"{ids[0]} success", f"{ids[1]} failed: RuntimeError: on purpose (gave up "
                                         "after 1 failed runs; the retry limit is 0)",
                                         "the-answer success", f"{ids[3]} success"])
    assert lines[-1] == "4 task(s): 1 failed, 3 success"
    assert "\x1b" not in waited.stdout  # no terminal codes when not a terminal
    assert cluster.client.result("the-answer") == 42

    ok = cli(cluster, "wait", ids[0], "the-answer", ids[0])  # as arguments; a repeated id counted once
    assert (ok.returncode, ok.stdout.splitlines()[-1]) == (0, "2 task(s): 2 success"), ok.stderr


def test_submit_many_names_a_bad_line_and_sends_nothing(start_cluster: Any, tmp_path: Path) -> None:
    cluster = start_cluster(count=1)
    path = jsonl(tmp_path, '{"task": "add", "args": [1, 2], "id": "first"}', '{"task": "add", "id": "second"}',
                 '{"task": "add", "args": [1, 2], "option": {}}', '{"task": "add", "id": "fourth"}')
    out = cli(cluster, "submit-many", path)
    assert out.returncode == 2 and out.stdout == ""
    assert f"error: {path}:3: unknown key(s) 'option'" in out.stderr and "nothing was submitted" in out.stderr
    assert tasks_topic_end(cluster) == 0  # not one message on TASKS
    assert all(cluster.client.record(t) == {} for t in ("first", "second", "fourth"))


def test_wait_refuses_an_unknown_id_and_times_out_with_status_3(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    unknown = cli(cluster, "wait", "no-such-task", "--timeout", "5")
    assert unknown.returncode == 4 and "no record of 1 task(s)" in unknown.stderr and "no-such-task" in unknown.stderr
    slow = cluster.client.submit("sleep", 3).id
    started = time.monotonic()
    timed_out = cli(cluster, "wait", slow, "--timeout", "0.5")
    assert timed_out.returncode == 3, timed_out.stderr
    assert timed_out.stdout.splitlines() == [f"{slow} not ended", "1 task(s): 1 not ended after 0.5s"]
    assert time.monotonic() - started < 3  # it gave up, and did not wait for the task
    assert cli(cluster, "wait", "--timeout", "30", stdin=slow).returncode == 0


def test_wait_on_a_terminal_shows_a_progress_bar(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    ids = [h.id for h in cluster.client.submit_many([("add", (i, i)) for i in range(10)])]
    out = run_on_terminal([sys.executable, "-m", "client", "--config", str(cluster.config_path), "wait", *ids,
                           "--timeout", "30"])
    assert "10/10" in out  # rich's bar, at its end (M/N)
    assert "10 task(s): 10 success" in out
    assert not any(f"{t} success" in out for t in ids)  # no line per task: the bar says it


def run_on_terminal(argv: list[str]) -> str:
    """Run ``argv`` with a pseudo-terminal as stdout and stderr; return all it wrote (bounded by TIMEOUT)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower,
                            start_new_session=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the other side is closed, the process is done
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        assert proc.wait(10) == 0
    finally:
        kill_group(proc.pid)
        os.close(leader)
    return b"".join(chunks).decode(errors="replace")


def test_events_shows_the_status_topic_and_an_invalid_message_as_such(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    done = cluster.client.submit("add", 2, 3)
    assert done.result(timeout=30) == 5
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        producer.send(cluster.config.topics.status, b"this is {not an event").get(timeout=10)
    finally:
        producer.close()

    last = cli(cluster, "events", "--last", "200")  # no --follow: what is there, then it exits
    assert last.returncode == 0, last.stderr
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(rf"^{stamp} heartbeat \S+\.W1 \(worker, pid \d+\) (idle|running \S+)$", last.stdout, re.M)
    assert re.search(rf"^{stamp} tasks-finished \S+: {done.id} success$", last.stdout, re.M)
    assert re.search(rf"^{stamp} invalid event at {re.escape(cluster.config.topics.status)}:\d+@\d+: .*not valid "
                     r"JSON", last.stdout, re.M)
    quiet = cli(cluster, "events", "--last", "200", "--no-heartbeats")
    assert " heartbeat " not in quiet.stdout and f"{done.id} success" in quiet.stdout
    everything = cli(cluster, "events", "--from-beginning")
    assert len(everything.stdout.splitlines()) >= len(last.stdout.splitlines())
    assert everything.stdout.splitlines()[0] <= last.stdout.splitlines()[0]  # it starts earlier (times sort)


def test_events_follow_prints_new_events_until_ctrl_c(start_cluster: Any) -> None:
    cluster = start_cluster(count=2)
    first = cluster.client.submit("add", 1, 1)
    first.result(timeout=30)
    follow = WatchedProcess([sys.executable, "-m", "client", "--config", str(cluster.config_path), "events",
                             "--follow", "--last", "100", "--no-heartbeats"])
    try:
        follow.wait_line(rf"tasks-finished \S+: {first.id} success$", timeout=30)  # it reads
        task = cluster.client.submit("add", 20, 22)  # so this one's event comes after it started
        follow.wait_line(rf"tasks-finished \S+: {task.id} success$", timeout=30)
        w1 = cluster.config.worker_ids()[0]
        os.kill(cluster.pid(w1), signal.SIGKILL)
        follow.wait_line(rf"worker-down {re.escape(w1)} \(pid \d+\): exit code -9", timeout=30)
    finally:
        code = follow.stop(timeout=10)
    assert code == 0
    assert not any(" heartbeat " in line for line in follow.lines)
    assert not any("Traceback" in line for line in follow.lines)
