"""What every system's measurement shares: options, deadlines, the two timed
phases (a batch of N tasks, sequential round trips), child processes in their
own session, and peak-RSS sampling."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parents[1]
Metrics = dict[str, float]
T = TypeVar("T")

IDLE_PAUSE = 1.0     # seconds between the batch and the round trips, so the round trips find an idle system
WARM_UP = 10         # untimed round trips after start (connections, imports, first-use caches)
RSS_INTERVAL = 0.1   # seconds between RSS samples


class BenchError(Exception):
    """A measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Options:
    """What every measurement needs to know; built from the command line."""

    n: int = 10_000
    round_trips: int = 300
    kafka: str = "localhost:9092"
    redis: str = "redis://localhost:6379"      # base URL; each system adds its own db number
    timeout: float = 600.0                     # bound of each timed phase (the batch; the round trips)
    startup_timeout: float = 90.0              # bound for a system to start and answer its first task
    anchor_concurrency: int = 2                # Celery's and Huey's worker processes
    log_dir: Path = ROOT / "bench" / "results" / "logs"
    yadtq_overrides: dict[str, Any] = field(default_factory=dict)
    nodes: int = 1                             # supervisors the workers of a 'yadtq-nodes' case are spread over

    def redis_url(self, db: int) -> str:
        return f"{self.redis.rstrip('/')}/{db}"


class Deadline:
    """A bound on one phase: ``left()`` is the time remaining, or raises BenchError."""

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BenchError(f"{self.what}: not done within {self.seconds:g}s")
        return left


def wait_until(ready: Callable[[], bool], deadline: Deadline, interval: float = 0.01) -> None:
    """Call ``ready`` every ``interval`` seconds until it is true; BenchError at the deadline."""
    while not ready():
        time.sleep(min(interval, deadline.left()))


# --- the numbers ---------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def latency_metrics(seconds: Sequence[float]) -> Metrics:
    """p50 and p99 of round-trip times given in seconds, as milliseconds."""
    return {"rt_p50_ms": percentile(seconds, 50) * 1000, "rt_p99_ms": percentile(seconds, 99) * 1000}


def batch(n: int, submit: Callable[[], T], wait: Callable[[T], Any]) -> tuple[Metrics, Any]:
    """Time ``submit()`` (all n tasks) and then ``wait(handles)`` (all n results readable).

    Returns the rates and whatever ``wait`` returned (checked by the caller, untimed).
    """
    t0 = time.perf_counter()
    handles = submit()
    t1 = time.perf_counter()
    out = wait(handles)
    t2 = time.perf_counter()
    return {"enqueue_rate": n / (t1 - t0), "throughput": n / (t2 - t0), "batch_s": t2 - t0}, out


def round_trips(count: int, one: Callable[[int], None], deadline: Deadline) -> Metrics:
    """Time ``one(i)`` (submit one task, wait for its result) ``count`` times in a row."""
    samples = []
    for i in range(count):
        deadline.left()
        t = time.perf_counter()
        one(i)
        samples.append(time.perf_counter() - t)
    return latency_metrics(samples)


def check_sum(i: int, value: Any) -> None:
    """Every benchmark task is add(i, i): its result must be 2*i."""
    if value != 2 * i:
        raise BenchError(f"add({i}, {i}) returned {value!r}")


# --- child processes ------------------------------------------------------
class Child:
    """A command run in its own session (so its whole process group can be
    signalled), its output copied to a log file and kept for ``wait_line``."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self.lines: list[str] = []
        self._cond = threading.Condition()
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log.open("w", encoding="utf-8")
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            self._log.write(raw)
            self._log.flush()
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def tail(self, count: int = 12) -> str:
        with self._cond:
            return "\n".join(self.lines[-count:])

    def exited(self) -> BenchError | None:
        """A BenchError describing the exit, if the process has exited."""
        code = self.proc.poll()
        if code is None:
            return None
        return BenchError(f"{self.name} exited with code {code} (log {self.log}); last lines:\n{self.tail()}")

    def wait_line(self, pattern: str, deadline: Deadline) -> re.Match[str]:
        """Block until an output line matches ``pattern``; BenchError at the deadline or on exit."""
        rx = re.compile(pattern)
        with self._cond:
            while True:
                for line in self.lines:
                    if m := rx.search(line):
                        return m
                if (err := self.exited()) is not None and not self._reader.is_alive():
                    raise err
                try:
                    left = deadline.left()
                except BenchError as e:
                    raise BenchError(f"{e}; last lines of {self.name}:\n{self.tail()}") from None
                self._cond.wait(min(left, 0.5))

    def tree(self) -> list[psutil.Process]:
        """The process and all its descendants (those alive now)."""
        try:
            leader = psutil.Process(self.proc.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, sig: signal.Signals = signal.SIGINT, group: bool = True, grace: float = 30.0) -> None:
        """Send ``sig`` (to the whole process group, or to the leader only), wait up to
        ``grace`` seconds for the leader to exit, then SIGKILL whatever is left of the group."""
        pgid = self.proc.pid  # its own session: the group id is the leader's pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(pgid, sig)
                else:
                    self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        kill_group(pgid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(p)
    return members


def kill_group(pgid: int, timeout: float = 5.0) -> None:
    """SIGKILL every process left in group ``pgid`` and wait (bounded) until they are gone."""
    deadline = time.monotonic() + timeout
    while _group_members(pgid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.05)


def until_ready(attempt: Callable[[float], bool], child: Child, deadline: Deadline) -> None:
    """Call ``attempt(timeout)`` (send a task, wait for it) until one succeeds; BenchError
    if ``child`` exits or the deadline passes first."""
    while True:
        if (err := child.exited()) is not None:
            raise err
        try:
            left = deadline.left()
        except BenchError as e:
            raise BenchError(f"{e}; last lines of {child.name}:\n{child.tail()}") from None
        if attempt(min(2.0, left)):
            return


class PeakRss:
    """Samples the RSS of some processes every RSS_INTERVAL seconds, in a thread, and keeps
    each role's peak (the largest single process of that role). ``roles()`` maps pid -> role."""

    def __init__(self, roles: Callable[[], dict[int, str]]) -> None:
        self.roles = roles
        self.peak: dict[str, int] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL):
            self.sample()

    def sample(self) -> None:
        for pid, role in self.roles().items():
            try:
                p = self._procs.get(pid) or self._procs.setdefault(pid, psutil.Process(pid))
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            self.peak[role] = max(self.peak.get(role, 0), rss)

    def metrics(self) -> Metrics:
        return {f"rss_{role}_mb": rss / 2**20 for role, rss in self.peak.items()}

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far, summed per role, this process as ``client``."""
        totals: dict[str, float] = {}
        for pid, role in {**self.roles(), os.getpid(): "client"}.items():
            try:
                t = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            totals[role] = totals.get(role, 0.0) + t.user + t.system
        return totals


def cpu_during(rss: PeakRss, phase: Callable[[], T]) -> tuple[T, Metrics]:
    """Run ``phase()``; also return the CPU seconds each role used meanwhile (``cpu_<role>_s``)
    and how busy the whole machine was (``machine_busy_pct``, 100 = every core busy)."""
    before, machine_before = rss.cpu(), psutil.cpu_times()
    out = phase()
    after, machine_after = rss.cpu(), psutil.cpu_times()
    m = {f"cpu_{role}_s": round(t - before.get(role, 0.0), 3) for role, t in after.items()}
    total = sum(machine_after) - sum(machine_before)
    idle = (machine_after.idle + machine_after.iowait) - (machine_before.idle + machine_before.iowait)
    if total > 0:
        m["machine_busy_pct"] = round(100 * (1 - idle / total), 1)  # all cores, every process on the machine
    return out, m


def tree_roles(child: Child, main: str, others: str) -> Callable[[], dict[int, str]]:
    """Roles for PeakRss: ``child``'s own process is ``main``, its descendants ``others``."""
    def roles() -> dict[int, str]:
        return {p.pid: (main if p.pid == child.proc.pid else others) for p in child.tree()}
    return roles


def load_app(module: str, env: str, url: str) -> Any:
    """Import ``bench.<module>`` (a Celery or Huey app) set up for the Redis at ``url``.

    The app reads its URL from ``env`` when it is first imported, which is also
    how the worker processes started for it find it.
    """
    os.environ[env] = url
    mod = importlib.import_module(f"bench.{module}")
    if url != mod.URL:
        raise BenchError(f"bench.{module} was imported for {mod.URL}, not {url}")
    return mod
