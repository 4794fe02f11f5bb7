"""The supervisor's lease on a cluster: one owner at a time, with a fencing epoch.

A cluster is its topics and its Redis key prefix. Its owner holds the key
``Keys.owner`` (a JSON value: host, pid, since, epoch, topics, token) with a
TTL, renewed about once a second. Taking the lease bumps ``Keys.epoch``; the
owner hands that epoch to its children, and the store refuses writes from an
older one, so the processes of a supervisor that lost its lease cannot write.
Each step is one Lua script (client/lua/lease_*.lua), so two supervisors can never
both hold it, and a value it cannot read is never taken for its own.

A supervisor that stalls (SIGSTOP, a paused VM) loses its lease while its
children still run. So the lease is renewed by its own thread (``Keeper``),
never behind the supervisor's loop; each child reads the owner's epoch with
every heartbeat and exits once it names another generation; and a new owner
that took a lease nobody released (``Lease.released_before``) waits until
those children must have seen it before it starts its own.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import psutil
import redis

from client.errors import ClusterOwned
from client.store import Keys, lua_text

RENEW_INTERVAL = 1.0  # seconds between renewals of a lease, by its own thread
MIN_TTL = 3 * RENEW_INTERVAL  # a lease's TTL is workers.heartbeat_timeout, but never this short
REDIS_TIMEOUT = 2.0  # seconds a renewal may wait on Redis: then it is late, not stuck
EXPIRY_CHECK_INTERVAL = 0.1  # seconds between looks at a lease's time left, when its expiry is acted on
STALL_RENEW_WAIT = 0.5  # after a stall past the lease: how long its check waits for a renewal in progress


def lease_ttl(heartbeat_timeout: float) -> float:
    """The TTL of a node's lease and of the scheduler's: a holder silent this long is gone."""
    return max(heartbeat_timeout, MIN_TTL)


class Renewal(Enum):
    """What a renewal found."""

    HELD = "held"          # still ours
    AWAY = "away"          # Redis did not answer (only a Keeper's news): tried again each interval
    RETAKEN = "retaken"    # it had lapsed (Redis away, or we stalled) and no one took it: ours again
    LOST = "lost"          # another supervisor holds it now: this one must stop its cluster at once


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as stored in its value."""

    host: str
    pid: int
    since: float
    epoch: int
    topics: list[str]
    ms_left: int = -1
    node: str = ""
    raw: str = field(default="", compare=False)  # the value as stored: to take over once its holder is dead

    @classmethod
    def parse(cls, text: str, ms_left: int = -1) -> Holder:
        """The holder a lease value names; one that cannot be read (the key was
        written by hand, or by another program) is a holder of unknown host."""
        try:
            v = json.loads(text)
            topics = v.get("topics", [])
            return cls(str(v["host"]), int(v["pid"]), float(v["since"]), int(v.get("epoch", 0)),
                       [str(t) for t in topics] if isinstance(topics, list) else [], ms_left, str(v.get("node", "")),
                       text)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            return cls("?", 0, 0.0, 0, [], ms_left)

    def describe(self) -> str:
        if self.host == "?":
            return "a lease value that is not YADTQ's (written by hand, or by another program)"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        node = f"node {self.node}, " if self.node else ""
        return f"{node}host {self.host}, pid {self.pid}, since {since} (epoch {self.epoch})"

    def is_dead_here(self) -> bool:
        """Is the holder a process of this host that no longer exists (killed, not stopped)?"""
        if self.host != socket.gethostname():
            return False
        try:
            return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:  # e.g. another user's process: it exists
            return False


class Lease:
    """A lease with a fencing epoch: ``acquire``, ``renew`` often, ``release``.

    A node's supervisor holds its node's (``Keys.owner``, ``Keys.epoch``);
    with ``scheduler``, the active scheduler of the whole cluster holds
    ``Keys.scheduler_lease`` (``Keys.scheduler_epoch``), whatever its node.
    """

    def __init__(self, client: redis.Redis, keys: Keys, ttl: float, topics: list[str],
                 scheduler: bool = False) -> None:
        self.redis = client
        self.keys = keys
        self.ttl_ms = max(1, int(ttl * 1000))
        self.epoch = 0
        self.released_before = True  # did the previous owner release the lease (else it may still run)?
        # Until when (monotonic clock) the lease is surely ours: the start of the last
        # renewal that held it, plus its TTL. A process that stalled past it must not
        # write before it has renewed again (see ``valid``).
        self.valid_until = 0.0
        self._token = uuid.uuid4().hex
        self._value = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
                       "topics": topics, "token": self._token, "node": keys.node}
        if scheduler:
            self._names = [keys.scheduler_lease, keys.scheduler_epoch, keys.scheduler_released]
        else:
            self._names = [keys.owner, keys.epoch, keys.owner_released]
        # Three scripts (client/lua/lease_*.lua), so two supervisors can never both hold it.
        self._acquire = client.register_script(lua_text("lease_acquire"))
        self._renew = client.register_script(lua_text("lease_renew"))
        self._release = client.register_script(lua_text("lease_release"))

    def try_acquire(self, replacing: Holder | None = None) -> Holder | None:
        """Take the lease (a new epoch) and return None, or return who holds it. ``replacing``: a
        holder whose process is known to be gone, whose lease is taken over without waiting for it
        to lapse (only if it is still exactly that holder's)."""
        self._value["since"] = time.time()
        asked = time.monotonic()
        answer: list[Any] = self._acquire(keys=self._names, args=[self.ttl_ms, json.dumps(self._value),
                                                                  replacing.raw if replacing else ""])
        if int(answer[0]) == 1:
            self.valid_until = asked + self.ttl_ms / 1000
            self.epoch = int(answer[1])
            self.released_before = int(answer[2]) == 1
            self._value["epoch"] = self.epoch
            return None
        return Holder.parse(str(answer[1]), int(answer[2]))

    def acquire(self, wait_for_dead: float, say: Any) -> int:
        """Take the lease and return its epoch; raise ClusterOwned if another supervisor holds it.

        A holder on this host whose process is gone (killed, as before a
        restart by systemd) cannot renew: wait up to ``wait_for_dead`` seconds
        for its lease to lapse, then take it with a new epoch.
        """
        deadline = time.monotonic() + wait_for_dead
        waited = False
        while (holder := self.try_acquire()) is not None:
            if not holder.is_dead_here() or time.monotonic() > deadline:
                raise ClusterOwned(
                    f"this cluster (topics {', '.join(holder.topics)}) already has a supervisor: {holder.describe()}; "
                    f"it renews its lease every second, which lapses {self.ttl_ms / 1000:g}s after it stops")
            if not waited:
                waited = True
                say(f"the previous supervisor of this cluster ({holder.describe()}) is gone without releasing "
                    f"its lease: waiting {max(holder.ms_left, 0) / 1000:.1f}s for the lease to lapse")
            time.sleep(min(0.2, max(holder.ms_left, 50) / 1000))
        return self.epoch

    def renew(self) -> Renewal:
        """Extend the lease if it is still ours; raises redis.RedisError if Redis is away."""
        asked = time.monotonic()
        code = int(self._renew(keys=self._names[:2],
                               args=[self._token, self.ttl_ms, json.dumps(self._value), self.epoch]))
        found = {1: Renewal.HELD, 2: Renewal.RETAKEN}.get(code, Renewal.LOST)
        if found is not Renewal.LOST:
            self.valid_until = max(self.valid_until, asked + self.ttl_ms / 1000)
        return found

    def valid(self, margin: float = 0.0) -> bool:
        """Is the lease surely still ours for ``margin`` more seconds, by this process's own clock?"""
        return time.monotonic() + margin < self.valid_until

    def release(self) -> None:
        """Give the lease up, if it is still ours, so the next start need not wait."""
        self._release(keys=[self._names[0], self._names[2]], args=[self._token, self.epoch])


class Keeper:
    """Renews a held lease from its own daemon thread every ``interval`` seconds.

    It never waits on its owner's loop, which may block for seconds (joining a
    killed child, a Kafka flush). What the owner must act on goes on ``news``:
    LOST (stop everything at once), RETAKEN, AWAY (Redis did not answer) and
    HELD once it answers again. Give its lease a client with a short timeout:
    ``release`` waits for a renewal in progress, so that none runs after it.
    """

    def __init__(self, lease: Lease, interval: float, on_expiry: Callable[[], None] | None = None,
                 margin: float = 1.0) -> None:
        self.lease = lease
        self.interval = interval
        # Called from this thread, once, when the lease has less than ``margin`` seconds left by
        # this process's clock and a renewal did not extend it (then again after it was renewed):
        # it must act before the lease lapses, whatever the owner's loop is blocked on.
        self.on_expiry = on_expiry
        self.margin = margin
        self.expiring = False
        self.news: queue.SimpleQueue[Renewal] = queue.SimpleQueue()
        self._done = threading.Event()
        self._lock = threading.Lock()  # one renewal or release at a time
        self._thread = threading.Thread(target=self._run, name="lease", daemon=True)
        # The expiry is watched by a thread of its own: a renewal in progress may wait
        # REDIS_TIMEOUT on a lost connection, past the moment to act.
        self._watcher = threading.Thread(target=self._watch, name="lease-expiry", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if self.on_expiry is not None:
            self._watcher.start()

    def stop(self) -> None:
        """No renewal from now on (the lease lapses by itself, unless released)."""
        with self._lock:
            self._done.set()

    def release(self) -> None:
        """Stop renewing, then give the lease up: a renewal after it would take it again."""
        self.stop()
        self.lease.release()

    def renew_now(self, wait: float | None = None) -> Renewal:
        """Renew from the caller's thread now (it must know before it writes); AWAY if Redis does
        not answer, or if a renewal in progress holds it up more than ``wait`` seconds (None: no bound)."""
        return self._renew(wait) or Renewal.LOST  # stopped: no longer renewed, so as good as lost

    def _run(self) -> None:
        away = False
        while not self._done.wait(self.interval):
            found = self._renew()
            if found is None:
                continue
            if (found is Renewal.AWAY) != away or found in (Renewal.RETAKEN, Renewal.LOST):
                self.news.put(found)
            away = found is Renewal.AWAY
            if found is Renewal.LOST:
                return

    def _watch(self) -> None:
        while not self._done.wait(EXPIRY_CHECK_INTERVAL):
            self._watch_expiry()

    def _watch_expiry(self) -> None:
        if self.on_expiry is None:
            return
        if self.lease.valid(self.margin):
            self.expiring = False
            return
        if self.expiring:
            return
        if not self.lease.valid():
            # Lapsed already: this process did not run until now (SIGSTOP, a paused VM). Whether
            # anything must stop depends on what happened meanwhile: a lease retaken with the
            # same epoch means no one fenced it (a node declared lost has its epoch bumped).
            # Not behind a renewal that hangs on a lost connection for long: this is late already.
            found = self.renew_now(wait=STALL_RENEW_WAIT)
            if found in (Renewal.HELD, Renewal.RETAKEN) and self.lease.valid(self.margin):
                self.news.put(found)
                return
        self.expiring = True
        self.on_expiry()

    def _renew(self, wait: float | None = None) -> Renewal | None:
        """One renewal; None once stopped."""
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            return Renewal.AWAY
        try:
            if self._done.is_set():
                return None
            try:
                return self.lease.renew()
            except redis.RedisError:
                return Renewal.AWAY
        finally:
            self._lock.release()
