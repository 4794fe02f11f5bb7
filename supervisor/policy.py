"""The scheduler's pure core: its tables, worker liveness and the assignment policy.

No I/O here, and time is passed in, so all of it is unit-tested without
Kafka, Redis or clock patching.
"""

from __future__ import annotations

from client.store import Placement as Placement  # re-exported: the scheduler's table holds them
from supervisor.liveness import Liveness


class SchedulerState:
    """The (task -> worker) table, each worker's load, and who is alive.

    A worker's load is the number of its tasks not yet finished: the one it
    runs plus those waiting on its topic. A worker is live while its last
    heartbeat arrived less than ``heartbeat_timeout`` ago (see liveness.py):
    every time given to the liveness methods is the scheduler's monotonic clock.
    """

    def __init__(self, workers: list[str], max_pending: int, heartbeat_timeout: float) -> None:
        self.workers = list(workers)
        self.max_pending = max_pending
        self.heartbeat_timeout = heartbeat_timeout
        self.tasks: dict[str, Placement] = {}
        self.load: dict[str, int] = {w: 0 for w in workers}
        self.liveness = Liveness(heartbeat_timeout)
        self._turn = 0  # rotates ties, so equal loads spread over all workers

    # --- the set of workers: from the config and from each node's registrations ---
    def add_worker(self, worker: str) -> bool:
        """Know ``worker`` from now on (not live before its first heartbeat); False if known."""
        if worker in self.load:
            return False
        self.workers.append(worker)
        self.load[worker] = 0
        return True

    def remove_worker(self, worker: str) -> list[tuple[str, Placement]]:
        """Forget ``worker`` (no node runs it any more); return its tasks, to be moved."""
        if worker not in self.load:
            return []
        self.workers.remove(worker)
        del self.load[worker]
        return self.orphan(worker)

    # --- liveness ---
    def heartbeat(self, worker: str, arrived: float) -> None:
        """A heartbeat of ``worker`` arrived at ``arrived`` (its own ``ts`` is not used)."""
        if worker in self.load:
            self.liveness.beat(worker, None, arrived)

    def is_live(self, worker: str, now: float) -> bool:
        return self.liveness.is_live(worker, now)

    def live(self, now: float) -> list[str]:
        return [w for w in self.workers if self.is_live(w, now)]

    # --- policy ---
    def choose(self, now: float) -> str | None:
        """The least-loaded live worker with room on its topic, or None."""
        n = len(self.workers)
        candidates = [(self.load[w], (i - self._turn) % n, w) for i, w in enumerate(self.workers)
                      if self.load[w] < self.max_pending and self.is_live(w, now)]
        if not candidates:
            return None
        self._turn = (self._turn + 1) % n
        return min(candidates)[2]

    # --- table ---
    def place(self, task_id: str, placement: Placement) -> None:
        """Record that ``task_id`` now belongs to ``placement.worker``."""
        self.forget(task_id)
        self.tasks[task_id] = placement
        if placement.worker in self.load:
            self.load[placement.worker] += 1

    def forget(self, task_id: str) -> Placement | None:
        old = self.tasks.pop(task_id, None)
        if old is not None and old.worker in self.load:
            self.load[old.worker] -= 1
        return old

    def finished(self, task_id: str, attempt: int) -> bool:
        """A worker ended (task, attempt). True if that dropped it from the table.

        An older attempt's report is ignored: the task has moved on since.
        """
        p = self.tasks.get(task_id)
        if p is None or p.attempt != attempt:
            return False
        self.forget(task_id)
        return True

    def orphan(self, worker: str) -> list[tuple[str, Placement]]:
        """Take every task away from a dead worker; return them, oldest attempt first."""
        gone = [(t, p) for t, p in self.tasks.items() if p.worker == worker or p.worker not in self.load]
        for t, _ in gone:
            self.forget(t)
        self.liveness.forget(worker)
        return gone
