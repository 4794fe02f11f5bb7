"""What the supervisor prints (item 5 of issue 9): the status line only when the
cluster's status changed (and at most every ``status_interval``), and with
``--log-format json`` one JSON object per line from every process of the cluster."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from client import Client, TaskSpec, load_config
from tests.integration.conftest import cluster_config
from tests.support.harness import WatchedProcess, remove_cluster_data

pytestmark = pytest.mark.integration

STATUS = re.compile(r"\[yadtq\] workers \d+/\d+ live \|")


def status_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if STATUS.search(line)]


def test_the_status_line_comes_on_change_not_while_idle(start_cluster: Any) -> None:
    cluster = start_cluster(count=2, supervisor={"status_interval": 0.2, "status_idle_interval": 30.0})
    cluster.wait_line(r"workers 2/2 live \| scheduler up \| load \S+=0 \S+=0 \| done 0 failed 0", timeout=30)
    # Idle: sampled 5 times a second, printed never (the old supervisor printed one per interval).
    mark = cluster.mark()
    time.sleep(3.0)  # the window in which nothing may be printed: the absence of lines is what is shown
    assert status_lines(cluster.lines[mark:]) == []

    # Tasks end: the counts change, and a line says so within a couple of samples.
    handles = cluster.client.submit_many([TaskSpec("add", (i, i)) for i in range(20)])
    cluster.client.wait([h.id for h in handles], timeout=60)
    cluster.wait_line(r"workers 2/2 live \| scheduler up \| load \S+=0 \S+=0 \| done 20 failed 0", timeout=5,
                      start=mark)
    # A worker dies: printed at once, not at the next idle minute.
    mark = cluster.mark()
    os.kill(cluster.pid(cluster.config.worker_ids()[0]), signal.SIGKILL)
    cluster.wait_line(r"workers 1/2 live \| scheduler up", timeout=10, start=mark)
    cluster.wait_line(r"workers 2/2 live \| scheduler up .* restarts 1$", timeout=60, start=mark)
    # Quiet again once the status settled.
    settled = cluster.mark()
    time.sleep(2.0)
    assert status_lines(cluster.lines[settled:]) == []


def test_an_idle_cluster_still_gets_a_line_every_idle_interval(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, supervisor={"status_interval": 0.2, "status_idle_interval": 2.0})
    first = cluster.wait_line(r"workers 1/1 live \| scheduler up", timeout=30)
    mark = cluster.mark()
    # Unchanged, the same line again each 2 s (sampled every 0.2 s): 3 in 6.5 s after the mark, give or take one.
    cluster.wait_line(r"workers 1/1 live \| scheduler up", timeout=10, start=mark)
    time.sleep(6.5 - 0.2)  # a window to count lines in (their number is the point)
    repeats = status_lines(cluster.lines[mark:])
    assert 2 <= len(repeats) <= 4, repeats
    assert {line.removeprefix("[yadtq] ") for line in repeats} == {first.string.removeprefix("[yadtq] ")}


def _json_cluster(tmp_path: Path) -> tuple[WatchedProcess, Path]:
    path = cluster_config(tmp_path, 2, supervisor={"status_interval": 0.5, "status_idle_interval": 30.0})
    return WatchedProcess([sys.executable, "-m", "supervisor", str(path), "--log-format", "json"]), path


def test_log_format_json_gives_one_object_per_line_from_every_process(services: None, tmp_path: Path) -> None:
    proc, path = _json_cluster(tmp_path)
    config = load_config(path)
    try:
        proc.wait_line(r'"event": "ready"', timeout=90)
        with Client(config) as c:
            assert c.submit("shout", "hello from a task").result(timeout=30) == "hello from a task"
            assert c.submit_many([TaskSpec("add", (1, 2))] * 10)
            proc.wait_line(r'"done": 11', timeout=30)
    finally:
        code = proc.stop()
        remove_cluster_data(config)
    assert code == 0
    objs = [json.loads(line) for line in proc.lines]  # every line, or this raises
    assert all(set(o) == {"ts", "level", "source", "event", "message", "fields"} for o in objs)
    kinds = {(o["source"], o["event"]) for o in objs}
    assert {("supervisor", "started"), ("supervisor", "live"), ("supervisor", "status"),
            ("supervisor", "stopped")} <= kinds
    assert ("scheduler", "log") in kinds and any(s.startswith("worker ") and e == "log" for s, e in kinds)
    # A task's own print, on stdout and on stderr, is a line of its worker too.
    printed = {o["event"] for o in objs if o["message"] == "hello from a task"}
    assert printed == {"stdout", "stderr"}
    status = [o for o in objs if o["event"] == "status"]
    assert status[-1]["fields"]["done"] == 11 and status[-1]["fields"]["workers_total"] == 2
    assert status[-1]["message"].startswith("workers 2/2 live | scheduler up")
    # At most one status line per status_interval (0.5 s), by their own timestamps.
    times = [datetime.fromisoformat(o["ts"]).timestamp() for o in status]
    assert all(b - a >= 0.45 for a, b in itertools.pairwise(times))


def test_log_format_json_from_the_cluster_file_and_its_errors(services: None, tmp_path: Path) -> None:
    path = cluster_config(tmp_path, 1, supervisor={"log_format": "json"}, tasks={"modules": ["no.such.module"]})
    proc = WatchedProcess([sys.executable, "-m", "supervisor", str(path)])
    try:
        assert proc.proc.wait(60) == 2
    finally:
        proc.stop()
    (line,) = proc.lines
    obj = json.loads(line)
    assert obj["event"] == "error" and obj["level"] == "error" and "no.such.module" in obj["message"]
