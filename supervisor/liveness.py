"""Who is alive, judged from when heartbeats ARRIVED, on the judge's own clock.

The one judge of liveness, used by the supervisor (to replace a silent child)
and by the scheduler (to give tasks only to live workers). A heartbeat's own
``ts`` field is the sender's wall clock: a clock step there (NTP, a resumed VM)
must not kill a worker or starve it of tasks, so it is never read here. Every
time given to this module is the judge's ``time.monotonic()``, passed in, so
it is tested without clock patching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class _Seen:
    """What the judge knows of one sender."""

    pid: int | None  # the process expected to beat (None: any process of that name)
    since: float     # silence is counted from here when no heartbeat arrived yet
    last: float | None = None  # arrival of its last heartbeat


class Liveness:
    """Arrival times of heartbeats, per sender name (and pid when known).

    A sender is live while its last heartbeat arrived less than ``timeout``
    ago. One that never beat is given ``startup_timeout`` from when it was
    watched. While heartbeats cannot flow (Kafka away, see ``pause``) silence
    says nothing, and nobody lapses.
    """

    def __init__(self, timeout: float, startup_timeout: float = math.inf) -> None:
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self._seen: dict[str, _Seen] = {}
        self._judge_from = -math.inf  # no lapse is judged before this time

    def watch(self, name: str, pid: int | None, at: float) -> None:
        """A new process ``pid`` runs as ``name`` from ``at``: only its heartbeats count now."""
        self._seen[name] = _Seen(pid, at)

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def beat(self, name: str, pid: int | None, at: float) -> bool:
        """A heartbeat of ``name`` (process ``pid``) arrived at ``at``.

        Returns True if it counts: it is the watched process's (or nobody is
        watched under that name yet). A beat from a replaced process is ignored.
        """
        s = self._seen.get(name)
        if s is None:
            s = self._seen[name] = _Seen(None, at)
        elif s.pid is not None and s.pid != pid:
            return False
        s.last = at if s.last is None else max(s.last, at)
        if self._judge_from > at:  # the first heartbeat since an outage: they flow again
            self._judge_from = at
            self._fresh_window(at)
        return True

    def has_beaten(self, name: str) -> bool:
        s = self._seen.get(name)
        return s is not None and s.last is not None

    def is_live(self, name: str, at: float) -> bool:
        """Has a heartbeat of ``name`` arrived within ``timeout`` before ``at``?"""
        s = self._seen.get(name)
        return s is not None and s.last is not None and at - s.last < self.timeout

    def age(self, name: str, at: float) -> float | None:
        """Seconds since the last heartbeat of ``name`` arrived; None if none did."""
        s = self._seen.get(name)
        return None if s is None or s.last is None else max(0.0, at - s.last)

    def lapsed(self, name: str, at: float) -> str | None:
        """Why ``name`` counts as dead at ``at`` (silent too long), or None."""
        s = self._seen.get(name)
        if s is None or at < self._judge_from:
            return None
        if s.last is not None:
            if at - s.last > self.timeout:
                return f"no heartbeat for {at - s.last:.1f}s"
        elif at - s.since > self.startup_timeout:
            return f"no heartbeat within {self.startup_timeout:g}s of starting"
        return None

    # --- outages of the transport ---
    def pause(self) -> None:
        """Heartbeats cannot flow now (Kafka is away): silence says nothing until ``resume``."""
        self._judge_from = math.inf

    def resume(self, at: float) -> None:
        """Heartbeats may flow again from ``at``: judged from the first one to arrive
        (see ``beat``), or at the latest ``startup_timeout`` later."""
        self._judge_from = at + self.startup_timeout if math.isfinite(self.startup_timeout) else at
        self._fresh_window(at)

    def stalled(self, at: float) -> None:
        """The judge itself did not run until ``at`` (SIGSTOP, a paused VM, a long block): the
        heartbeats sent meanwhile are not read yet, so count every sender's silence from ``at``."""
        self._fresh_window(at)

    def _fresh_window(self, at: float) -> None:
        """Count every sender's silence from ``at`` on: none could arrive before."""
        for s in self._seen.values():
            s.since = max(s.since, at)
            if s.last is not None:
                s.last = max(s.last, at)
