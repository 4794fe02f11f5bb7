"""Tasks for the integration tests only (listed in their clusters' tasks.modules)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass

import redis

from client.store import connect
from worker_pool import current_task
from worker_pool.registry import task


@task
def stubborn(seconds: float) -> str:
    """Swallow the soft time limit and keep going: only the hard limit stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # swallowing TaskTimeLimitExceeded is the point
            time.sleep(0.05)
    return "finished"


@task
def shout(text: str) -> str:
    """Print ``text`` on stdout and on stderr (a task's own output, outside the logging)."""
    print(text)
    print(text, file=sys.stderr)
    return text




_redis: dict[str, redis.Redis] = {}


def _store() -> tuple[redis.Redis, str]:
    """The cluster's Redis, and the key prefix under which tests may count things."""
    cfg = current_task().config
    if cfg.redis.url not in _redis:
        _redis[cfg.redis.url] = connect(cfg.redis)
    return _redis[cfg.redis.url], cfg.redis.key_prefix


@task
def die() -> None:
    """Count this run in ``<prefix>test:runs``, then kill the worker process running it, every time."""
    r, prefix = _store()
    r.hincrby(f"{prefix}test:runs", current_task().task_id, 1)
    os._exit(13)


@task
def flaky(failures: int) -> int:
    """Raise on the first ``failures`` runs of this task, then return the number of runs."""
    r, prefix = _store()
    runs = int(r.hincrby(f"{prefix}test:runs", current_task().task_id, 1))
    if runs <= failures:
        raise ConnectionError(f"run {runs}: the service is not there yet")
    return runs


@task
def counted(seconds: float) -> float:
    """Count this run in ``<prefix>test:runs``, then sleep ``seconds``."""
    r, prefix = _store()
    r.hincrby(f"{prefix}test:runs", current_task().task_id, 1)
    time.sleep(seconds)
    return seconds


@task
def stuck_in_c(seconds: int) -> None:
    """Sleep in C, holding the GIL, with SIGALRM blocked: neither the soft limit
    nor the worker's heartbeat thread can act; only the supervisor can."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    ctypes.PyDLL(None).sleep(seconds)  # PyDLL: the call keeps the GIL


@task
def unstorable(kind: str) -> object:
    """Return a value no record can hold: 'deep' nesting, or a file name that is not UTF-8."""
    if kind == "deep":
        value: list[object] = []
        for _ in range(100_000):
            value = [value]
        return value
    return b"caf\xe9.txt".decode("utf-8", "surrogateescape")  # as os.listdir gives it


def spans_key(prefix: str, task_id: str) -> str:
    return f"{prefix}test:spans:{task_id}"


def gate_key(prefix: str) -> str:
    """A list: a test pushes one item onto it (``open_gate``) to let every ``gated_span`` run end."""
    return f"{prefix}test:gate"


def open_gate(r: redis.Redis, prefix: str) -> None:
    r.rpush(gate_key(prefix), "open")
    r.expire(gate_key(prefix), 300)


@task
def gated_span(limit: float) -> float:
    """A ``span`` that lasts until the test opens the gate (``open_gate``), or at most ``limit``
    seconds: a task still running at a moment the test chooses, without a fixed sleep.
    Each run takes the gate's item and puts it back, so the next one passes too."""
    r, prefix = _store()
    key = spans_key(prefix, current_task().task_id)
    r.rpush(key, f"start {time.time()!r} {os.getpid()}")
    deadline = time.monotonic() + limit
    while (left := deadline - time.monotonic()) > 0:
        if r.blpop([gate_key(prefix)], timeout=max(1, min(int(left), 20))):  # under the client's 30 s timeout
            open_gate(r, prefix)
            break
    r.rpush(key, f"end {time.time()!r} {os.getpid()}")
    return limit


@task
def span(seconds: float) -> float:
    """Record this run's start and end (wall clock) in ``<prefix>test:spans:<id>``, sleeping between.

    A run killed mid-way leaves a start without an end; a test checks that no
    two runs of one task overlapped.
    """
    r, prefix = _store()
    key = spans_key(prefix, current_task().task_id)
    r.rpush(key, f"start {time.time()!r} {os.getpid()}")
    time.sleep(seconds)
    r.rpush(key, f"end {time.time()!r} {os.getpid()}")
    return seconds


@task
def exits(code: int) -> None:
    """Call sys.exit(code): the task's error, never the end of its worker."""
    sys.exit(code)


@task
def interrupted(kind: str) -> None:
    """Raise a BaseException that is not an Exception: 'keyboard' or 'generator'."""
    raise KeyboardInterrupt("from a task") if kind == "keyboard" else GeneratorExit("from a task")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@task
def unprintable() -> None:
    """Raise an exception whose __str__ raises."""
    raise _Unprintable()


class _BadMapping(dict):  # type: ignore[type-arg]
    def items(self):  # type: ignore[no-untyped-def]
        raise SystemExit(4)


@task
def bad_value() -> object:
    """Return a mapping whose items() (called while it is stored) calls sys.exit."""
    return _BadMapping(a=1)


def watch_key(prefix: str, task_id: str) -> str:
    return f"{prefix}test:watch:{task_id}"


@task
def watched(seconds: float, failures: int = 0) -> float:
    """Count this run in ``<prefix>test:runs`` and log it in ``<prefix>test:watch:<id>``: at its
    start 'start <time> <worker> <pid> <attempt>', then sleep ``seconds``, log 'end <time> <worker> <pid>',
    and raise on the first ``failures`` runs (after the end entry, so that a run that raised is
    not mistaken for one cut short).

    The bounds tests read these (``watched_runs``): how often a task ran, where, when, and
    whether each run got to its end or was cut short by the death of its process.
    """
    r, prefix = _store()
    ctx = current_task()
    key = watch_key(prefix, ctx.task_id)
    runs = int(r.hincrby(f"{prefix}test:runs", ctx.task_id, 1))
    r.rpush(key, f"start {time.time()!r} {ctx.worker} {os.getpid()} {ctx.attempt}")
    time.sleep(seconds)
    r.rpush(key, f"end {time.time()!r} {ctx.worker} {os.getpid()}")
    if runs <= failures:
        raise ConnectionError(f"run {runs}: the service is not there yet")
    return seconds


@dataclass
class WatchedRun:
    """One run of a ``watched`` task, as it logged itself."""

    start: float
    worker: str
    pid: int
    attempt: int
    end: float | None = None  # None: cut short (its process died), or still running


def watched_runs(r: redis.Redis, prefix: str, task_id: str) -> list[WatchedRun]:
    """The runs of a ``watched`` task, in start order."""
    runs: list[WatchedRun] = []
    for entry in r.lrange(watch_key(prefix, task_id), 0, -1):  # type: ignore[union-attr]
        kind, at, worker, pid, *rest = str(entry).split(" ")
        if kind == "start":
            runs.append(WatchedRun(float(at), worker, int(pid), int(rest[0])))
            continue
        # A process runs one task at a time: the end is its newest run's.
        [run] = [x for x in runs if x.pid == int(pid) and x.end is None][-1:]
        run.end = float(at)
    return runs


@task
def node_of_worker() -> str:
    """The ``node`` of the cluster file of the worker that runs it ('' on a single node)."""
    return current_task().config.node


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write of a short line with O_APPEND: never interleaved
    finally:
        os.close(fd)


@task
def span_work(n: int, seconds: float) -> int:
    """Sleep ``seconds`` and return n * n; log the run's start and end ('S id pid start', 'E id pid
    start end') to the file $YADTQ_TEST_SPANS. A file, not Redis: a worker cut off from Redis by a
    network partition runs on, and its runs must still be seen."""
    path, task_id, pid = os.environ["YADTQ_TEST_SPANS"], current_task().task_id, os.getpid()
    start = repr(time.time())
    _append(path, f"S {task_id} {pid} {start}\n")
    time.sleep(seconds)
    _append(path, f"E {task_id} {pid} {start} {time.time()!r}\n")
    return n * n
