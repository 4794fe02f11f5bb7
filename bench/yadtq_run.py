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
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

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
from bench.raw_submit import RawSubmitter
from client import Client, TaskSpec
from client.config import Config, load_config
from client.store import Status
from tests.support.harness import remove_cluster_data

DB = 14
_STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")


def cluster_file(opts: Options, workers: int, tag: str, directory: Path, node: str = "") -> Path:
    """Write the cluster file: ``opts.yadtq_overrides`` on top of the defaults, then
    the keys that isolate this run (topics, key prefix, worker count, and ``node``'s name)."""
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
    if node:
        cfg["node"] = node
    path = directory / f"{node or 'yadtq'}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def node_sizes(workers: int, nodes: int) -> list[int]:
    """How ``workers`` are spread over ``nodes`` (the first nodes get one more); every node has one."""
    nodes = max(1, min(nodes, workers))
    return [workers // nodes + (1 if i < workers % nodes else 0) for i in range(nodes)]


def _roles(sups: list[Child]) -> dict[int, str]:
    """pid -> supervisor | scheduler | worker, from each supervisor's `started X (pid N)` lines
    (every node's scheduler counts: the standbys' cost is the cluster's too)."""
    roles: dict[int, str] = {}
    for sup in sups:
        named = {name: int(pid) for line in list(sup.lines) if (m := _STARTED.search(line))
                 for name, pid in [m.groups()]}
        roles |= {pid: ("scheduler" if name == "scheduler" else "worker") for name, pid in named.items()}
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


def _measure(opts: Options, sups: list[Child], submitter: _Submitter) -> Metrics:
    with PeakRss(lambda: _roles(sups)) as rss:
        (m, ids), cpu = cpu_during(rss, lambda: batch(opts.n, submitter.submit_all, submitter.wait_all))
        m |= cpu
        submitter.check(ids)
        time.sleep(IDLE_PAUSE)
        m |= round_trips(opts.round_trips, submitter.one, Deadline(opts.timeout, "YADTQ round trips"))
    return m | rss.metrics()


class _Submitter(Protocol):
    """How the benchmark submits and waits: the YADTQ client, or a foreign program (bench/raw_submit.py)."""

    def submit_all(self) -> list[str]: ...
    def wait_all(self, ids: list[str]) -> list[str]: ...
    def check(self, ids: list[str]) -> None: ...
    def one(self, i: int, timeout: float = 10.0) -> None: ...


class _ClientSubmitter:
    """Client.submit_many and Client.wait; Client.submit and TaskHandle.result for one round trip."""

    def __init__(self, client: Client, n: int, timeout: float) -> None:
        self.client, self.timeout = client, timeout
        self.specs = [TaskSpec("add", (i, i)) for i in range(n)]  # built before the timed batch
        self.deadline = Deadline(timeout, "YADTQ: the batch")

    def submit_all(self) -> list[str]:
        self.deadline = Deadline(self.timeout, f"YADTQ: {len(self.specs)} tasks")
        return [h.id for h in self.client.submit_many(self.specs)]

    def wait_all(self, ids: list[str]) -> list[str]:
        self.client.wait(ids, timeout=self.deadline.left())
        return ids

    def check(self, ids: list[str]) -> None:
        _check_all_succeeded(self.client, ids)

    def one(self, i: int, timeout: float = 10.0) -> None:
        check_sum(i, self.client.submit("add", i, i).result(timeout=timeout))


class _RawSubmitter:
    """A plain kafka-python producer and plain redis-py (bench/raw_submit.py)."""

    def __init__(self, raw: RawSubmitter, n: int, timeout: float) -> None:
        self.raw, self.n, self.timeout = raw, n, timeout
        self.deadline = Deadline(timeout, "YADTQ: the batch")

    def submit_all(self) -> list[str]:
        self.deadline = Deadline(self.timeout, f"YADTQ: {self.n} tasks")  # from the batch's start, not the warm-up's
        return self.raw.submit_all(self.n)

    def wait_all(self, ids: list[str]) -> list[str]:
        return self.raw.wait_all(ids, self.deadline)

    def check(self, ids: list[str]) -> None:
        self.raw.check_all(ids)

    def one(self, i: int, timeout: float = 10.0) -> None:
        self.raw.one(i, timeout)


def measure(opts: Options, workers: int, log: Path, submit: str = "client", nodes: int = 1) -> Metrics:
    """Throughput, enqueue rate, idle round trips and peak RSS of a cluster of ``workers``, with
    tasks submitted by the YADTQ client (``submit`` 'client') or by a foreign program ('raw');
    with ``nodes`` > 1, as that many supervisors (nodes n1, n2, ...) sharing the workers."""
    tag = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="yadtq-bench-") as d:
        sizes = node_sizes(workers, nodes)
        names = [f"n{i + 1}" for i in range(len(sizes))] if nodes > 1 else [""]
        paths = [cluster_file(opts, size, tag, Path(d), name) for size, name in zip(sizes, names, strict=True)]
        configs = [load_config(p) for p in paths]
        sups: list[Child] = []
        with contextlib.ExitStack() as opened:
            try:
                for i, path in enumerate(paths):  # one after the other: the first node's scheduler is active
                    sups.append(Child(f"yadtq supervisor {names[i]}".rstrip(),
                                      [sys.executable, "-m", "supervisor", str(path)],
                                      log if i == 0 else log.with_name(f"{log.stem}-{names[i]}{log.suffix}")))
                    sups[-1].wait_line(r"cluster ready", Deadline(opts.startup_timeout, "YADTQ cluster start"))
                submitter = _submitter(submit, configs[0], opts, opened)
                for i in range(WARM_UP):
                    submitter.one(i, timeout=30)
                return _measure(opts, sups, submitter)
            finally:
                opened.close()
                for sup in sups:
                    sup.stop(signal.SIGINT, group=True, grace=configs[0].workers.shutdown_grace + 15)
                for config in configs:
                    remove_cluster_data(config)


def _submitter(kind: str, config: Config, opts: Options, opened: contextlib.ExitStack) -> _Submitter:
    """The submitter ``kind`` names, closed with ``opened``."""
    if kind == "raw":
        raw = RawSubmitter(opts.kafka, opts.redis_url(DB), config.topics.tasks, config.redis.key_prefix)
        opened.callback(_quietly, raw.close)
        return _RawSubmitter(raw, opts.n, opts.timeout)
    client = Client(config)
    opened.callback(_quietly, client.close)
    return _ClientSubmitter(client, opts.n, opts.timeout)


def _quietly(close: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):  # what failed is reported by the measurement itself
        close()
