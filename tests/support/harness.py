"""Run ``python -m supervisor FILE`` as a child process and watch what it says.

For scripts that drive a whole cluster (the chaos run, the benchmark, the
integration tests): start it, wait for the lines it prints, find its
processes' pids, signal it, and stop it as a terminal's Ctrl-C does.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from client import kafka as kafka_io
from client.config import Config
from client.store import Keys, TaskStore, connect

ROOT = Path(__file__).resolve().parents[2]  # the repository (tests/support/harness.py)


class WatchedProcess:
    """A child process in its own session, its output lines (stdout and stderr) kept in ``lines``."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # Its own session, so stop() can signal the whole process group as a terminal's Ctrl-C does.
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float = 60, start: int = 0) -> re.Match[str]:
        """Block until an output line (from index ``start``) matches ``pattern``; AssertionError if none does."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if m := rx.search(line):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; output:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        """The index of the next line: pass it as ``start`` to wait for what comes after now."""
        with self._cond:
            return len(self.lines)

    def stop(self, timeout: float = 30, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` to the process group (SIGINT: as Ctrl-C does); return the exit code.

        Past ``timeout`` the whole group is killed.
        """
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(self.proc.pid)
                self.proc.wait(10)
        kill_group(self.proc.pid)  # whatever of its group outlived it (the test may have killed it alone)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def kill_group(pgid: int) -> None:
    """SIGKILL every process left in the process group ``pgid`` (none left: nothing to do)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_own_group(argv: list[str], timeout: float, env: dict[str, str] | None = None,
                  ) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True, timeout=timeout)``, but in its own
    session, and the whole process group is killed when it ends, times out or the wait fails.

    A supervisor (or a client) run to its end by a test must not leave a child behind: a
    ``subprocess.run`` timeout kills only the process it started. A child that outlives its
    leader while holding the output pipes makes this time out, so it cannot pass unseen.
    """
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        kill_group(proc.pid)
        proc.communicate()
        raise
    kill_group(proc.pid)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """``127.0.0.1:PORT`` where nothing listens, for as long as the block runs: the port is bound
    (so no one else can take it) but never listened on, so every connection is refused at once.

    For tests that run a cluster process which must never reach the shared services.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def unreachable_services() -> Iterator[str]:
    """Three lines of a cluster file (``kafka``, ``redis``, ``topics``) that point Kafka and Redis at
    closed ports, with topics and a key prefix of their own, valid while the block runs.

    For tests of what a process refuses before it connects: if a regression let it past the check
    under test (a broken ``load_modules``, say), it fails at once instead of starting a cluster, or
    submitting, on the shared services' default topics and Redis db 0.
    """
    tag = f"t{uuid.uuid4().hex[:10]}"
    with closed_port() as kafka, closed_port() as redis:
        yield (f"kafka: {{bootstrap_servers: '{kafka}'}}\n"
               f"redis: {{url: 'redis://{redis}/15', key_prefix: '{tag}:'}}\n"
               f"topics: {{tasks: {tag}.TASKS, status: {tag}.status, workers: {tag}.W, dead_letter: {tag}.dl}}\n")


class ClusterProcess(WatchedProcess):
    """A running ``python -m supervisor FILE``."""

    def __init__(self, config_path: str | Path, env: dict[str, str] | None = None) -> None:
        self.config_path = Path(config_path)
        super().__init__([sys.executable, "-m", "supervisor", str(self.config_path)], env)

    def pid(self, name: str) -> int:
        """The pid of the newest process started for ``name`` (scheduler, W1, ...)."""
        rx = re.compile(rf"started {re.escape(name)} \(pid (\d+)\)")
        with self._cond:
            pids = [m.group(1) for line in self.lines if (m := rx.search(line))]
        if not pids:
            raise AssertionError(f"{name} was never started")
        return int(pids[-1])


def remove_cluster_data(config: Config) -> None:
    """Delete what a throw-away cluster left: every Redis key under its key
    prefix, and every topic named like its tasks topic up to the first dot.

    For clusters whose names all share one prefix (``tag.TASKS``, ``tag.W1``,
    ``tag:`` keys), as tests, the chaos run and the benchmark make them.
    Without a key prefix no key is deleted: they could be anyone's.
    """
    if "." not in config.topics.tasks:
        raise ValueError("remove_cluster_data needs a 'tag.'-prefixed tasks topic")
    if config.redis.key_prefix:
        r = connect(config.redis)
        try:
            TaskStore(r, Keys(config.redis.key_prefix), config.tasks.result_ttl).delete_all()
        finally:
            r.close()
    admin = kafka_io.admin(config.kafka)
    try:
        tag = config.topics.tasks.split(".")[0] + "."
        mine = (tag, f"{config.node}.{tag}") if config.node else (tag,)  # a node's workers' topics: 'a.tag.W1'
        names = [t for t in admin.list_topics() if t.startswith(mine)]
        if names:
            admin.delete_topics(names)
    finally:
        admin.close()


def wait_until(check: Callable[[], Any], what: str, timeout: float = 30, every: float = 0.05) -> Any:
    """The first truthy value of ``check()``, looked at every ``every`` seconds; an AssertionError
    naming ``what`` after ``timeout`` seconds. For states only Redis or Kafka hold, with no event
    to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        if value := check():
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(every)
