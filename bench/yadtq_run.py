"""YADTQ: the real `python -m supervisor FILE`, driven through client.Client.

Each measurement writes its own cluster file (topics and Redis key prefix
``bench-<id>``, Redis db 14), starts the supervisor in its own session, waits
for ``cluster ready``, and afterwards stops it as Ctrl-C does (SIGINT to the
process group; SIGKILL after a bound) and deletes its topics and keys.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    IDLE_PAUSE,
    WARM_UP,
    BenchError,
    Child,
    Deadline,
    Metrics,
    Options,
    PeakRss,
    batch,
    check_sum,
    cpu_during,
    round_trips,
)
from client import Client, TaskHandle, TaskSpec
from client.config import load_config
from client.store import Status
from tests.support.harness import remove_cluster_data

DB = 14
_STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")


def cluster_file(opts: Options, workers: int, tag: str, directory: Path) -> Path:
    """Write the cluster file: ``opts.yadtq_overrides`` on top of the defaults, then
    the keys that isolate this run (topics, key prefix, worker count)."""
    cfg: dict[str, Any] = {
        "kafka": {"bootstrap_servers": opts.kafka},
        "redis": {"url": opts.redis_url(DB)},
        "workers": {"shutdown_grace": 5.0},
        "tasks": {"modules": ["worker_pool.builtin_tasks"]},
    }
    for section, values in opts.yadtq_overrides.items():
        cfg.setdefault(section, {}).update(values)
    cfg["redis"]["key_prefix"] = f"{tag}:"
    cfg["topics"] = {"tasks": f"{tag}.TASKS", "status": f"{tag}.status", "workers": f"{tag}.W",
                     "dead_letter": f"{tag}.dead-letter"}
    cfg.setdefault("workers", {})["count"] = workers
    path = directory / "yadtq.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _roles(sup: Child) -> dict[int, str]:
    """pid -> supervisor | scheduler | worker, from the supervisor's `started X (pid N)` lines."""
    named = {name: int(pid) for line in list(sup.lines) if (m := _STARTED.search(line)) for name, pid in [m.groups()]}
    roles = {pid: ("scheduler" if name == "scheduler" else "worker") for name, pid in named.items()}
    roles[sup.proc.pid] = "supervisor"
    return roles


def _check_all_succeeded(client: Client, ids: list[str]) -> None:
    bad: list[tuple[str, str | None]] = []
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        bad += [(t, s) for t, s in zip(chunk, client.store.statuses(chunk), strict=True) if s != Status.SUCCESS]
    if bad:
        t, s = bad[0]
        raise BenchError(f"{len(bad)} of {len(ids)} tasks did not succeed, e.g. {t}: {s} {client.record(t)}")


def _measure(opts: Options, client: Client, sup: Child) -> Metrics:
    specs = [TaskSpec("add", (i, i)) for i in range(opts.n)]
    deadline = Deadline(opts.timeout, f"YADTQ: {opts.n} tasks")

    def wait(handles: list[TaskHandle]) -> list[str]:
        ids = [h.id for h in handles]
        client.wait(ids, timeout=deadline.left())
        return ids

    with PeakRss(lambda: _roles(sup)) as rss:
        (m, ids), cpu = cpu_during(rss, lambda: batch(opts.n, lambda: client.submit_many(specs), wait))
        m |= cpu
        _check_all_succeeded(client, ids)
        time.sleep(IDLE_PAUSE)
        m |= round_trips(opts.round_trips, lambda i: check_sum(i, client.submit("add", i, i).result(timeout=10)),
                         Deadline(opts.timeout, "YADTQ round trips"))
    return m | rss.metrics()



def measure(opts: Options, workers: int, log: Path) -> Metrics:
    """Throughput, enqueue rate, idle round trips and peak RSS of a cluster of ``workers``."""
    tag = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="yadtq-bench-") as d:
        config = load_config(cluster_file(opts, workers, tag, Path(d)))
        sup = Child("yadtq supervisor", [sys.executable, "-m", "supervisor", str(Path(d) / "yadtq.yaml")], log)
        client: Client | None = None
        try:
            sup.wait_line(r"cluster ready", Deadline(opts.startup_timeout, "YADTQ cluster start"))
            client = Client(config)
            for i in range(WARM_UP):
                check_sum(i, client.submit("add", i, i).result(timeout=30))
            return _measure(opts, client, sup)
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
            sup.stop(signal.SIGINT, group=True, grace=config.workers.shutdown_grace + 15)
            remove_cluster_data(config)
