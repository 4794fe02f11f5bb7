"""The supervisor's view of its processes, published for the operator (client/insight.py).

The supervisor alone knows which processes it runs, their pids, and when their
heartbeats arrived. ``Publisher`` turns that into a ``Snapshot`` on every
round of its loop (the HTTP endpoint serves the fresh one), writes it to Redis
for readers in other processes (``python -m client info``), and counts each
death and restart in Redis, so those counts outlive the supervisor.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Protocol

import psutil
import redis

from client.insight import RECENT_MAX, SNAPSHOT_TTL, ProcessView, Snapshot, encode_snapshot
from client.protocol import now
from client.store import TaskStore
from supervisor.liveness import Liveness

SNAPSHOT_INTERVAL = 1.0  # seconds between writes of an unchanged snapshot (for the ages, RSS and CPU)


class Child(Protocol):
    """What the view reads of a supervised process (supervisor.Child)."""

    name: str

    @property
    def pid(self) -> int | None: ...

    def alive(self) -> bool: ...


class Publisher:
    """``count()`` deaths and restarts as they happen; ``publish()`` on every round of the loop."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.snapshot: Snapshot | None = None  # the processes as last seen (read by the HTTP threads)
        self._last_write = -SNAPSHOT_INTERVAL
        self._written: list[tuple[str, int | None, bool, bool]] = []  # the state last written
        self._events: list[tuple[str, str]] = []  # (deaths|restarts, process) not yet counted in Redis
        self._procs: dict[int, psutil.Process] = {}  # kept per pid: cpu_percent measures since its last call
        self._usage: dict[str, tuple[int | None, float | None]] = {}  # name -> (RSS bytes, CPU %), last sampled

    def count(self, what: str, name: str) -> None:
        """A death or a restart of process ``name``: counted in Redis at the next write."""
        self._events.append((what, name))

    def publish(self, children: Iterable[Child], liveness: Liveness, epoch: int, at: float,
                redis_up: bool) -> None:
        """Refresh the snapshot; write it (and the counts) to Redis at once when a process came,
        went, or turned up or down, else every SNAPSHOT_INTERVAL (``at``: the monotonic clock)."""
        children = list(children)
        due = at - self._last_write >= SNAPSHOT_INTERVAL
        if due:
            self._sample(children)
        procs = [ProcessView(c.name, c.pid, c.alive(), c.alive() and liveness.is_live(c.name, at),
                             liveness.age(c.name, at), *self._usage.get(c.name, (None, None))) for c in children]
        self.snapshot = Snapshot(now(), os.getpid(), epoch, procs)
        state = [(p.name, p.pid, p.alive, p.up) for p in procs]
        if (state == self._written and not due) or not redis_up:
            return
        self._last_write, self._written = at, state
        try:
            while self._events:
                self.store.count_event(*self._events[0])
                self._events.pop(0)
            self.store.write_snapshot(encode_snapshot(self.snapshot), SNAPSHOT_TTL)
            self.store.trim_recent(RECENT_MAX)
        except redis.RedisError:
            pass  # counted and written at the next round that reaches Redis

    def clear(self) -> None:
        """Remove the snapshot (a clean stop): readers see at once that no supervisor runs."""
        self.store.redis.delete(self.store.keys.snapshot)

    def _sample(self, children: list[Child]) -> None:
        """RSS and CPU (% of one core since the last sample) of each live process."""
        live = {c.pid: c.name for c in children if c.pid is not None and c.alive()}
        self._procs = {pid: p for pid, p in self._procs.items() if pid in live}
        self._usage = {}
        for pid, name in live.items():
            with contextlib.suppress(psutil.Error):
                if pid not in self._procs:
                    self._procs[pid] = psutil.Process(pid)
                    self._procs[pid].cpu_percent(None)  # the first call starts the measure (it says 0.0)
                    self._usage[name] = (self._procs[pid].memory_info().rss, None)
                    continue
                p = self._procs[pid]
                self._usage[name] = (p.memory_info().rss, p.cpu_percent(None))
