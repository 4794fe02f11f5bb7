"""The scheduler process: from TASKS to the least-loaded live worker's topic.

Each loop: read ``status`` events (heartbeats, finished tasks, dead workers) and
new tasks from TASKS; assign what it can in one Redis pipeline (the ASSIGN
script records the placement and bumps the attempt); produce the assignments
and flush; and only then commit the Kafka offsets. Its table lives in Redis,
so a restarted scheduler reloads it and re-sends every placement, which makes
a crash between any two of these steps harmless.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from client import kafka as kafka_io
from client import trace
from client.config import Config
from client.errors import Fenced, InvalidMessage
from client.lease import REDIS_TIMEOUT, RENEW_INTERVAL, Keeper, Lease, Renewal, lease_ttl
from client.protocol import (
    Heartbeat,
    TasksFinished,
    WorkerDown,
    alias_kinds,
    assignment_bytes,
    encode,
    encode_event,
    now,
    parse_event,
    read_task,
    sniff_task_id,
)
from client.store import TERMINAL, Assign, AssignResult, Batch, Keys, Reject, Reply, TaskStore, connect
from client.trace import TRACING
from supervisor.policy import Placement, SchedulerState
from worker_pool import quarantine
from worker_pool.process import EXIT_DEPOSED, check_owner, check_parent, exit_on_service_loss, process_setup
from worker_pool.registry import Registry, default_registry

log = logging.getLogger("yadtq.scheduler")

RECONCILE_INTERVAL = 5.0  # seconds between checks of the table against the records
WORKERS_REFRESH_INTERVAL = 1.0  # at most this often, the registered workers are read again
STANDBY_POLL = 0.5  # seconds between a standby scheduler's tries to take the scheduler lease
LEASE_MARGIN = 1.0  # seconds of the scheduler's lease that must be left for a round to write
RETRY_CHECK_INTERVAL = 0.1  # seconds between looks at the retry schedule
MAX_WAITING = 1000  # due retries are taken only while fewer tasks than this wait
ALIAS_LOG_INTERVAL = 60.0  # seconds: at most one line per kind of mapped key name (tasks.accept_aliases)
PARTITIONS_CHECK_INTERVAL = 2.0  # seconds between looks (in the consumer's metadata) for partitions added to TASKS
# The TASKS consumer's metadata is at most this old (ms): a partition added to
# TASKS while the scheduler runs is read within about this long (one small
# metadata request per period).
TASKS_METADATA_MAX_AGE_MS = 5_000


class AliasLog:
    """Counts the messages whose key names tasks.accept_aliases mapped, per kind
    ('task_id->task-id'): a log line per kind at most once a ALIAS_LOG_INTERVAL,
    and the counts to add to the stats hash (the metric yadtq_messages_aliased)."""

    def __init__(self, interval: float = ALIAS_LOG_INTERVAL) -> None:
        self.interval = interval
        self.pending: Counter[str] = Counter()  # not yet written to Redis
        self._unlogged: Counter[str] = Counter()
        self._logged_at: dict[str, float] = {}

    def seen(self, kinds: tuple[str, ...], task_id: str, tick: float) -> None:
        for kind in kinds:
            self.pending[kind] += 1
            self._unlogged[kind] += 1
            if tick - self._logged_at.get(kind, -self.interval) >= self.interval:
                self._logged_at[kind] = tick
                alias, key = kind.split("->")
                log.warning("tasks.accept_aliases: read %r as %r in %d message(s) since the last such line "
                            "(e.g. task %s); the sender should write %r", alias, key, self._unlogged.pop(kind),
                            task_id, key)

    def take(self) -> dict[str, int]:
        out, self.pending = dict(self.pending), Counter()
        return out


@dataclass
class _Pending:
    """A task waiting for a worker: a new message from TASKS (``tp`` set, mode
    'new'), a task taken from a dead worker (mode 'move') or one due for a
    retry (mode 'retry'). ``_admit`` fills the rest."""

    raw: bytes
    tp: TopicPartition | None = None
    offset: int = -1
    mode: str = "new"
    dead_pid: int = 0  # for a move: the dead process it is taken from (0: unknown)
    retry_id: str = ""  # for a retry: its id on the retry schedule
    task_id: str = ""
    name: str = ""
    payload: str = ""
    max_retries: int = 0


class Scheduler:
    """``initialize()``, then ``loop(now)`` until ``stop()``, then ``shutdown()``."""

    def __init__(self, config: Config, registry: Registry = default_registry, epoch: int = 0,
                 careful: bool = False, keeper: Keeper | None = None) -> None:
        self.config = config
        self.epoch = epoch  # its node's supervisor's lease epoch: once another holds that lease, this exits
        # The lease of the cluster's one active scheduler, renewed by its own thread
        # (None: run bare, as in tests). Its epoch fences every write of this process.
        self.keeper = keeper
        self.careful = careful  # started after a crash: read what was uncommitted one by one (quarantine.py)
        self._guard: quarantine.Guard | None = None
        self.registry = registry
        self.topics = config.topics
        w = config.workers
        self.state = SchedulerState(config.worker_ids(), w.max_pending, w.heartbeat_timeout)
        self.waiting: deque[_Pending] = deque()
        self._limits = config.tasks.limits()
        self._stop = threading.Event()
        self._next_offset: dict[TopicPartition, int] = {}
        self._committers: dict[int, kafka_io.Committer] = {}  # by id() of the consumer
        self._ended: list[str] = []  # finished tasks to drop from the Redis table
        self._sent: list[Any] = []  # produce futures to check after the next flush
        self._orphaned: list[tuple[str, int]] = []  # (task, dead pid) taken from dead workers, to mark in Redis
        self._rejected: list[tuple[Reply[Reject], _Pending, str]] = []  # REJECTs queued, with the task id
        self.aliases = AliasLog()
        self._last_partitions_check = 0.0
        self._last_status_commit = 0.0
        self._commit_status_now = False
        self._last_reconcile = 0.0
        self._last_beat = 0.0
        self._last_retry_check = 0.0
        self._retrying: set[str] = set()  # ids taken off the retry schedule that wait here
        self._nodes: dict[str, str] = {}  # each registered worker's node
        self._lost: set[str] = set()  # workers of lost nodes whose tasks were moved, until they beat again
        self._active_since = 0.0
        self._last_refresh = -WORKERS_REFRESH_INTERVAL
        self._tasks_in: KafkaConsumer | None = None
        self._status_in: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None

    def initialize(self) -> None:
        self.registry.load_modules(self.config.tasks.modules)
        self.redis = connect(self.config.redis)
        self.keys = Keys(self.config.redis.key_prefix, self.config.node)
        fence = self.keeper.lease.epoch if self.keeper is not None else 0
        self.store = TaskStore(self.redis, self.keys, self.config.tasks.result_ttl, fence, self.keys.scheduler_epoch)
        self._active_since = time.monotonic()
        self._refresh_workers(self._active_since)
        if self._producer is None:  # the standby hands over its own
            self._producer = kafka_io.producer(self.config.kafka, linger_ms=1)
        # Two consumers, so flow control is simply not polling TASKS while tasks
        # wait for room, and status events (which make room) always flow.
        group = kafka_io.scheduler_group(self.topics.tasks)
        self._tasks_in = kafka_io.consumer(self.config.kafka, group, max_poll_records=1000,
                                           metadata_max_age_ms=TASKS_METADATA_MAX_AGE_MS)
        tasks = kafka_io.assign_all(self._tasks_in, [self.topics.tasks])
        self._status_in = kafka_io.consumer(self.config.kafka, group)
        status = kafka_io.assign_all(self._status_in, [self.topics.status])
        if self.careful:
            self._guard = quarantine.Guard(self.store, group, {**quarantine.uncommitted(self._tasks_in, tasks),
                                                               **quarantine.uncommitted(self._status_in, status)})
            log.warning("careful mode after a crash: reading %d uncommitted message(s) one by one",
                        sum(end - start for start, end in self._guard.ranges.values()))
        # Committed again now and then even while idle (see _commit_changed).
        self._next_offset.update({**kafka_io.positions(self._tasks_in), **kafka_io.positions(self._status_in)})
        self._reload()
        log.info("scheduler ready (pid %d): %d tasks in flight", os.getpid(), len(self.state.tasks))

    def _reload(self) -> None:
        """Load the table a previous scheduler left, and re-send each placement.

        Re-sending with the same attempt is safe (a worker skips a task that has
        ended) and covers a crash between recording a placement and producing it.
        """
        assert self._producer is not None
        table, orphans = self.store.placements(self._limits)  # an unreadable one is failed there, never sent
        for task_id, p in table.items():
            if task_id in orphans or p.worker not in self.state.load:  # a dead worker's, or an unknown one's
                self.waiting.append(_Pending(p.payload.encode(), mode="move", dead_pid=orphans.get(task_id, 0)))
                continue
            self.state.place(task_id, p)
            self._sent.append(self._producer.send(p.worker, assignment_bytes(p.payload, p.attempt, p.worker)))
        self._flush()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.is_set():
            self.loop(now(), time.monotonic())
        # A clean stop: what COMMIT_GAP (or a commit in flight) held back goes now;
        # shutdown() waits for it.
        for committer in self._committers.values():
            committer.drain()
        self._commit(time.monotonic(), force=True)

    def shutdown(self) -> None:
        if self._producer is not None:
            kafka_io.close_producer(self._producer)
        for committer in self._committers.values():
            committer.drain()  # the last commit sent is not lost with the consumer
        for c in (self._tasks_in, self._status_in):
            if c is not None:
                c.close(autocommit=False)
        log.info("scheduler stopped")

    # --- the loop ---
    def loop(self, at: float, tick: float) -> None:
        """One round: read events and tasks, assign what fits, then commit.

        ``at`` is the wall clock, for what is written (records, the retry
        schedule); ``tick`` the monotonic clock, for every interval and for
        liveness, so that a step of the wall clock (NTP, a resumed VM) neither
        stops the heartbeats nor makes a worker look dead or alive.
        """
        assert self._tasks_in is not None and self._status_in is not None
        self._check_active()
        # While tasks wait for room, TASKS is left unread (that bounds memory),
        # and the loop waits on status events instead, which make room.
        status_wait = 50
        # Careful mode (after a crash): one message a round from a topic with uncommitted messages left.
        one_task = self._guard is not None and self._guard.careful_topic(self.topics.tasks)
        one = self._guard is not None and self._guard.careful_topic(self.topics.status)
        if not self.waiting:
            status_wait = 0
            entered = time.time() if TRACING else 0.0  # pragma: no mutate
            got = self._tasks_in.poll(timeout_ms=50, max_records=1 if one_task else None)
            if TRACING:  # pragma: no mutate
                trace.polled(got, "sched.polled", entered)  # pragma: no mutate
            for tp, records in got.items():
                self.waiting.extend(_Pending(r.value, tp, r.offset) for r in self._screen(tp, records, at))
                self._next_offset[tp] = records[-1].offset + 1
            if got:  # new tasks go out before the status poll: each poll costs ~0.7 ms of kafka-python
                self._dispatch(at, tick)
        for tp, records in self._status_in.poll(timeout_ms=status_wait, max_records=1 if one else None).items():
            for r in self._screen(tp, records, at):
                self._on_event(r.value, at, tick)  # liveness is judged on this clock, never on a sender's
            self._next_offset[tp] = records[-1].offset + 1
            self._commit_status_now = self._commit_status_now or one
        if tick - self._last_retry_check >= RETRY_CHECK_INTERVAL:
            self._last_retry_check = tick
            self._take_due_retries(at)
        self._dispatch(at, tick)
        self._commit(tick)
        self._periodic(at, tick)

    def _periodic(self, at: float, tick: float) -> None:
        """What a round does only now and then: heartbeat, reconcile, look for new partitions."""
        if tick - self._last_beat >= self.config.workers.heartbeat_interval:
            self._last_beat = tick
            self._beat(at, tick)
        if tick - self._last_reconcile >= RECONCILE_INTERVAL:
            self._last_reconcile = tick
            self._reconcile()
        if tick - self._last_partitions_check >= PARTITIONS_CHECK_INTERVAL:
            self._last_partitions_check = tick
            self._read_new_partitions()

    def _read_new_partitions(self) -> None:
        """Read the partitions added to TASKS since this scheduler started (from the start of each:
        a producer may have written there already); the consumer's metadata says which exist."""
        assert self._tasks_in is not None
        found = kafka_io.known_partitions(self._tasks_in, self.topics.tasks)
        have = self._tasks_in.assignment()
        new = [TopicPartition(self.topics.tasks, p) for p in sorted(found) if
               TopicPartition(self.topics.tasks, p) not in have]
        if new:
            log.warning("topic %s has %d new partition(s): reading them too", self.topics.tasks, len(new))
            self._tasks_in.assign([*have, *new])  # the partitions read so far keep their positions

    def _screen(self, tp: TopicPartition, records: list[Any], at: float) -> list[Any]:
        """The records to handle: all of them, except in careful mode (after a crash) the quarantined."""
        if self._guard is None or not self._guard.careful(tp):
            return records
        return [r for r in records if not self._quarantined(tp, r, at)]

    def _quarantined(self, tp: TopicPartition, r: Any, at: float) -> bool:
        """In careful mode: record that ``r`` is being handled, or dead-letter it if it killed too often."""
        assert self._guard is not None
        tries = self._guard.check(tp, r.offset)
        if tries >= 0:
            return False
        assert self._producer is not None
        reason = quarantine.reason(-tries, "the scheduler")
        log.error("message at %s:%d@%d dead-lettered to %s: %s", tp.topic, tp.partition, r.offset,
                  self.topics.dead_letter, reason)
        task_id = sniff_task_id(r.value, self._limits.accept_aliases) if tp.topic == self.topics.tasks else None
        if task_id is not None:
            self.store.fail_quarantined(task_id, at, reason)
        body = r.value[:self.config.tasks.max_message_bytes]  # under Kafka's limit, like any dead letter
        self._sent.append(self._producer.send(self.topics.dead_letter, body, headers=[
            ("error", reason.encode()), ("from", f"{tp.topic}:{tp.partition}@{r.offset}".encode())]))
        return True

    def _on_event(self, raw: bytes, at: float, arrived: float) -> None:
        """Act on one status event; ``arrived`` is when it was read (monotonic clock)."""
        try:
            ev = parse_event(raw)
        except InvalidMessage as e:
            log.warning("ignoring invalid status event: %s", e.reason)
            return
        if isinstance(ev, Heartbeat) and ev.role == "worker":
            if ev.sender not in self.state.load:  # a node started since: is it registered now?
                self._refresh_workers(arrived)
            self.state.heartbeat(ev.sender, arrived)
            self._lost.discard(ev.sender)
        elif isinstance(ev, TasksFinished):
            for task_id, attempt, _ in ev.tasks:
                if self.state.finished(task_id, attempt):
                    self._ended.append(task_id)
        elif isinstance(ev, WorkerDown):
            self._move_away(ev.worker, self.state.orphan(ev.worker), ev.reason, ev.pid)

    def _move_away(self, worker: str, moved: list[tuple[str, Placement]], reason: str, pid: int = 0) -> None:
        """Queue a dead (or gone) worker's unfinished tasks for live workers."""
        log.info("worker %s down (%s): reassigning %d task(s)", worker, reason, len(moved))
        # Marked in Redis, and this event's offset committed, in this same
        # round: a restarted scheduler moves them too instead of re-sending
        # them to the dead worker's topic, and never replays this event.
        self._orphaned.extend((t, pid) for t, _ in moved)
        self._commit_status_now = True
        # Reassigned tasks go first: they have waited longest.
        self.waiting.extendleft(_Pending(p.payload.encode(), mode="move", dead_pid=pid) for _, p in reversed(moved))

    # --- the cluster's workers, over every node ---
    def _refresh_workers(self, tick: float) -> None:
        """Learn the workers each node's supervisor registered (at most once a WORKERS_REFRESH_INTERVAL);
        those no node runs any more leave, and their tasks move."""
        if tick - self._last_refresh < WORKERS_REFRESH_INTERVAL:
            return
        self._last_refresh = tick
        registered = self.store.registered_workers()
        mine = self.config.worker_ids()  # this node's, registered or not (a scheduler run bare)
        self._nodes = {**registered, **{w: self.config.node for w in mine}}
        for w in self._nodes:
            if self.state.add_worker(w):
                log.info("worker %s (node %s) joined", w, self._nodes[w] or "-")
        for w in [w for w in self.state.workers if w not in self._nodes]:
            self._move_away(w, self.state.remove_worker(w), "no node runs it any more")

    def _find_lost_nodes(self, tick: float) -> None:
        """Declare dead the silent workers of nodes whose supervisor is gone, and move their tasks.

        A node's own supervisor kills and announces its dead workers. One whose
        lease lapsed (the host is down or cut off) cannot: then its workers that
        have been silent for a heartbeat timeout while this scheduler was
        active are dead, as far as the cluster can tell. The node's epoch is
        bumped first, in the same step that finds its lease lapsed: whatever
        still runs of it (a paused host that resumes) can write nothing more,
        and its supervisor finds its lease gone and stops them. Their runs are
        also fenced by the attempt each move bumps.
        """
        if tick - self._active_since < self.config.workers.heartbeat_timeout:
            return  # every worker had a full timeout to beat since this scheduler became active
        silent = [w for w in self.state.workers if w not in self._lost and not self.state.is_live(w, tick)
                  and self._nodes.get(w, self.config.node) != self.config.node]
        if not silent:
            return
        lost = {n for n in sorted({self._nodes[w] for w in silent}) if self.store.fence_lost_node(n)}
        for w in silent:
            if self._nodes[w] in lost:
                self._lost.add(w)
                self._move_away(w, self.state.orphan(w), f"node {self._nodes[w]} is gone: its lease lapsed")

    # --- the scheduler's lease ---
    def _check_active(self) -> None:
        """Raise Fenced unless this scheduler surely still holds the cluster's scheduler lease.

        Its keeper renews the lease every second from its own thread. A process
        that stalled (SIGSTOP, a paused VM) past its lease's TTL may have been
        replaced meanwhile: it renews now, before any write, and stands down if
        another scheduler took over. Redis also refuses its writes (the epoch),
        but this way it does not even try.
        """
        if self.keeper is None:
            return
        while not self.keeper.news.empty():
            if self.keeper.news.get() is Renewal.LOST:
                raise Fenced(f"scheduler of epoch {self.keeper.lease.epoch}: another scheduler became active")
        if self.keeper.lease.valid(LEASE_MARGIN):
            return
        found = self.keeper.renew_now()
        if found not in (Renewal.HELD, Renewal.RETAKEN) or not self.keeper.lease.valid(LEASE_MARGIN):
            raise Fenced(f"scheduler of epoch {self.keeper.lease.epoch}: its lease lapsed (this process stalled "
                         f"or Redis did not answer) and could not be renewed ({found.value})")

    # --- assignment ---
    def _dispatch(self, at: float, tick: float) -> None:
        """Assign waiting tasks while some live worker has room; one Redis round trip."""
        chosen: list[tuple[Reply[AssignResult], _Pending, str, Placement | None]] = []  # (answer, task, worker, before)
        pipe = self.store.pipeline()
        self.store.drop_placements(pipe, self._ended)
        self._ended.clear()
        self.store.mark_orphans(pipe, self._orphaned)
        self._orphaned.clear()
        while self.waiting:
            item = self.waiting[0]
            if not item.task_id and not self._admit(item, pipe, at):
                self.waiting.popleft()
                continue
            worker = self.state.choose(tick)
            if worker is None:
                break
            self.waiting.popleft()
            self._retrying.discard(item.task_id)
            before = self.state.tasks.get(item.task_id)
            self.state.place(item.task_id, Placement(worker, 0, item.payload))  # holds its room
            answer = self.store.assign(pipe, item.task_id, item.name, worker, item.payload, at, item.max_retries,
                                       item.mode, item.dead_pid)
            chosen.append((answer, item, worker, before))
        if counts := self.aliases.take():
            self.store.count_aliases(pipe, counts)
        if len(pipe):
            self._check_active()  # right before each write: this process may have stalled since the last
            self.store.execute(pipe)
            if TRACING:  # pragma: no mutate
                trace.mark_all([c[1].task_id for c in chosen], "sched.assigned")  # pragma: no mutate
            self._rejected_done()
            self._send(chosen)
        if self._sent:  # dead letters too: flushed before the offsets past them are committed
            self._flush()
            if TRACING:  # pragma: no mutate
                trace.mark_all([c[1].task_id for c in chosen], "sched.flushed")  # pragma: no mutate

    def _admit(self, item: _Pending, pipe: Batch, at: float) -> bool:
        """Check a message and fill in ``item``; fail or dead-letter it if invalid."""
        try:
            task, aliased = read_task(item.raw, self._limits)
        except InvalidMessage as e:
            if self._limits.accept_aliases and (aliased := alias_kinds(item.raw)):  # mapped, then refused
                self.aliases.seen(aliased, e.task_id or "-", time.monotonic())
            self._reject(item, e, pipe, at)
            return False
        if aliased:
            self.aliases.seen(aliased, task.task_id, time.monotonic())
        try:
            self.registry.check_call(task.name, task.args, task.kwargs)
        except InvalidMessage as e:  # unknown task or wrong arguments: its record says why
            self._reject(item, InvalidMessage(str(e), task.task_id, task.name), pipe, at)
            return False
        item.task_id, item.name = task.task_id, task.name
        item.payload = encode(task.to_wire()).decode()
        item.max_retries = self.config.tasks.retries_for(task.options)
        return True

    def _reject(self, item: _Pending, e: InvalidMessage, pipe: Batch, at: float) -> None:
        if item.retry_id:  # e.g. its task is no longer registered: off the schedule, or it comes back for ever
            self.store.drop_retry(pipe, item.retry_id)
            self._retrying.discard(item.retry_id)
        if e.task_id:
            log.warning("task %s rejected: %s", e.task_id, e.reason)
            # Fails its record, unless that id was ever accepted or has ended: a
            # bad duplicate of a live task must not touch it.
            reply = self.store.reject(pipe, e.task_id, at, f"InvalidMessage: {e.reason}", item.mode, e.task_name)
            self._rejected.append((reply, item, e.task_id))
            return
        self._dead_letter(item, e.reason)

    def _rejected_done(self) -> None:
        """Act on REJECT's answers: an id naming a foreign key gets a dead letter instead."""
        rejected, self._rejected = self._rejected, []
        for reply, item, task_id in rejected:
            if reply.value is Reject.STALE_EPOCH:
                raise Fenced(f"scheduler of epoch {self.epoch}: a newer generation owns the cluster")
            if reply.value is Reject.NOT_OURS:
                self._refuse_foreign(item, task_id, "")

    def _refuse_foreign(self, item: _Pending, task_id: str, key_type: str) -> None:
        """The task id names a Redis key YADTQ does not own: a dead letter, and the key is left as it was."""
        what = f" (a {key_type})" if key_type else ""
        self._dead_letter(item, f"task id {task_id!r} names an existing Redis key that YADTQ does not own{what}; "
                                "refused, the key is left as it was; set redis.key_prefix when sharing a database")

    def _dead_letter(self, item: _Pending, reason: str) -> None:
        assert self._producer is not None
        where = f"{item.tp.topic}:{item.tp.partition}@{item.offset}" if item.tp else f"a task to {item.mode}"
        log.warning("message at %s dead-lettered to %s: %s", where, self.topics.dead_letter, reason)
        body, headers = item.raw, [("error", reason.encode())]
        if len(body) > self.config.tasks.max_message_bytes:  # keep the dead letter itself under Kafka's limit
            body = body[:self.config.tasks.max_message_bytes]
            headers.append(("truncated-from", str(len(item.raw)).encode()))
        self._sent.append(self._producer.send(self.topics.dead_letter, body, headers=headers))

    def _send(self, chosen: list[tuple[Reply[AssignResult], _Pending, str, Placement | None]]) -> None:
        """Act on ASSIGN's answers: send the new placements, keep the old ones."""
        assert self._producer is not None
        for reply, item, worker, before in chosen:
            answer = reply.value
            if answer.kind is Assign.STALE_EPOCH:
                raise Fenced(f"scheduler of epoch {self.epoch}: a newer generation owns the cluster")
            if answer.kind is Assign.PLACED:  # placed (and sent) before: keep that placement
                self.state.place(item.task_id, Placement(answer.worker, answer.attempt,
                                                         _kept_payload(answer, item, before)))
                continue
            if answer.kind is not Assign.ASSIGNED:  # ended, failed just now, not now, or not ours
                self.state.forget(item.task_id)
                if answer.kind is Assign.NOT_OURS:
                    self._refuse_foreign(item, item.task_id, answer.key_type)
                continue
            p = Placement(worker, answer.attempt, item.payload)
            self.state.place(item.task_id, p)
            if TRACING:  # pragma: no mutate
                trace.mark(item.task_id, "sched.send")  # pragma: no mutate
            self._sent.append(self._producer.send(worker, assignment_bytes(p.payload, p.attempt, p.worker)))
            if TRACING:  # pragma: no mutate
                trace.on_ack(self._sent[-1:], [item.task_id], "sched.ack")  # pragma: no mutate

    def _flush(self) -> None:
        """Flush and check every produce since the last flush.

        Runs before the offsets are committed: accepted means on a worker's
        topic. A failed send raises, and the restarted scheduler re-sends.
        """
        assert self._producer is not None
        self._check_active()
        self._producer.flush(timeout=30)
        sent, self._sent = self._sent, []
        kafka_io.check_sent(sent, "an assignment or a dead letter")

    # --- offsets, flow control, heartbeat ---
    def _commit(self, tick: float, force: bool = False) -> None:
        """Commit TASKS as far as every task before is placed; ``status`` about once a second
        (``force``: both now, even within COMMIT_GAP of the last commit).

        Re-reading status events after a restart is harmless (they are
        idempotent), so committing them on every round would be waste.
        """
        assert self._tasks_in is not None and self._status_in is not None
        self._check_active()
        tasks: dict[TopicPartition, int] = {}
        status: dict[TopicPartition, int] = {}
        for tp, nxt in self._next_offset.items():
            if tp.topic == self.topics.status:
                status[tp] = nxt
            else:
                first_waiting = next((w.offset for w in self.waiting if w.tp == tp), None)
                tasks[tp] = first_waiting if first_waiting is not None else nxt
        self._commit_changed(self._tasks_in, tasks, tick, force)
        if force or self._commit_status_now or tick - self._last_status_commit >= 1.0:
            urgent = force or self._commit_status_now
            went = self._commit_changed(self._status_in, status, tick, urgent)
            # An urgent commit held back by the one in flight is tried again next round, not in a second.
            self._last_status_commit, self._commit_status_now = tick, urgent and not went
        if self._guard is not None and self._guard.careful():
            for c in self._committers.values():
                for tp, (o, _) in c.committed.items():
                    self._guard.passed(tp, o)

    def _commit_changed(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, int], tick: float,
                        force: bool = False) -> bool:
        """Commit the offsets that moved, and every OFFSET_REFRESH seconds (of the
        monotonic clock) the others too: an idle group's offsets must not expire in Kafka.

        Without waiting for the broker (kafka_io.Committer): the loop goes back to its
        polls at once. In careful mode (after a crash) it waits, as the quarantine's
        bookkeeping counts a message as passed only once its offset is committed.
        False if a commit in flight held these back (``force`` cannot pass it).
        """
        committer = self._committers.get(id(consumer))
        if committer is None or committer.consumer is not consumer:
            committer = self._committers[id(consumer)] = kafka_io.Committer(consumer)
        wait = self._guard is not None and self._guard.careful()
        if not wait and committer.busy:
            return False  # the offsets stay due: a later round sends them
        committer.commit(offsets, tick, wait=wait, force=force)
        return True

    def _take_due_retries(self, at: float) -> None:
        """Queue the tasks whose retry time has come (ASSIGN takes them off the schedule).

        ``_retrying`` is rebuilt from what waits here, so an id can never stay
        in it after its task left (placed, refused, or another task's id): the
        store fails and drops a retry whose payload cannot be read or names
        another task, so every id it returns is its payload's own.
        """
        self._retrying = {w.retry_id for w in self.waiting if w.retry_id}
        if len(self.waiting) >= MAX_WAITING:
            return
        self._check_active()  # reading the schedule fails the entries it cannot read
        for task_id, payload in self.store.due_retries(at, MAX_WAITING - len(self.waiting), self._limits):
            if task_id in self._retrying:
                continue
            self._retrying.add(task_id)
            self.waiting.append(_Pending(payload.encode(), mode="retry", retry_id=task_id))

    def _reconcile(self) -> None:
        """Drop placed tasks that ended or left the table, in case an event was lost.

        A task leaves the Redis table when it ends or is scheduled for a retry.
        The table holds at most workers x max_pending tasks, so this is one
        small pipeline every few seconds; without it a lost event would hold a
        worker's slot until the scheduler restarts.
        """
        ids = list(self.state.tasks)
        if not ids:
            return
        statuses = self.store.statuses(ids)
        placed = self.store.placed(ids)
        ended = [t for t, s, p in zip(ids, statuses, placed, strict=True) if s in TERMINAL or not p]
        for t in ended:
            self.state.forget(t)
        self._ended.extend(ended)

    def _beat(self, at: float, tick: float) -> None:
        assert self._producer is not None
        check_parent("scheduler")
        self._check_active()
        self._producer.send(self.topics.status, heartbeat(self.config, at))
        check_owner("scheduler", self.store, self.epoch)
        self._refresh_workers(tick)
        self._find_lost_nodes(tick)
        self.store.write_load(self.state.load)


def heartbeat(config: Config, at: float) -> bytes:
    """The scheduler process's heartbeat, active or standing by: its supervisor sees it alive either way."""
    return encode_event(Heartbeat(config.scheduler_id(), "scheduler", os.getpid(), at))


def _kept_payload(answer: AssignResult, item: _Pending, before: Placement | None) -> str:
    """The payload of a task ASSIGN found placed: the stored one, else the one
    held before; a duplicate message's own payload never replaces it."""
    if answer.payload is not None:
        return answer.payload
    if before is not None:
        return before.payload
    return item.payload  # a move or retry: its payload came from the placement itself


class Standby:
    """A scheduler process that waits to become the cluster's one active scheduler.

    Every node may run a scheduler; the one holding ``Keys.scheduler_lease``
    is active. The others beat (so their supervisors know them alive) and try
    to take the lease every STANDBY_POLL seconds: a dead active scheduler's
    lapses after its TTL, and the first standby to try then takes over, with a
    new epoch that fences anything the old one might still try to write.
    """

    def __init__(self, config: Config, epoch: int) -> None:
        self.config = config
        self.epoch = epoch  # its node's supervisor's
        self.stopped = threading.Event()
        keys = Keys(config.redis.key_prefix, config.node)
        self.store = TaskStore(connect(config.redis), keys, config.tasks.result_ttl)
        self.lease = Lease(connect(config.redis, timeout=REDIS_TIMEOUT), keys,
                           lease_ttl(config.workers.heartbeat_timeout), [config.topics.tasks], scheduler=True)
        self.producer: KafkaProducer | None = None

    def wait(self) -> Keeper | None:
        """Stand by until this process holds the scheduler lease; its Keeper renews it from
        then on. None if stopped (SIGTERM) meanwhile."""
        self.producer = kafka_io.producer(self.config.kafka, linger_ms=1)  # handed to the Scheduler
        since, last_beat, said = time.monotonic(), -math.inf, False
        while not self.stopped.is_set():
            if time.monotonic() - last_beat >= self.config.workers.heartbeat_interval:
                last_beat = time.monotonic()
                self._beat()
            holder = self.lease.try_acquire()
            if holder is not None and holder.node == self.config.node and holder.is_dead_here():
                # This node's previous scheduler, killed: its lease need not be waited out (a
                # write of it still on the wire is refused for its older epoch).
                log.warning("the previous scheduler of this node (pid %d) is gone: taking over at once", holder.pid)
                holder = self.lease.try_acquire(replacing=holder)
            if holder is None:
                self._say_active(time.monotonic() - since, said)
                keeper = Keeper(self.lease, RENEW_INTERVAL)
                keeper.start()
                return keeper
            if not said:
                said = True
                log.info("scheduler standing by (pid %d): the active scheduler is %s", os.getpid(),
                         holder.describe())
            self.stopped.wait(STANDBY_POLL)
        return None

    def _beat(self) -> None:
        assert self.producer is not None
        check_parent("scheduler")
        self.producer.send(self.config.topics.status, heartbeat(self.config, now()))
        check_owner("scheduler", self.store, self.epoch)

    def _say_active(self, waited: float, was_standby: bool) -> None:
        how = (f"took over after {waited:.1f}s standing by" if was_standby else
               "the lease was free" if self.lease.released_before else
               "the previous scheduler's lease had lapsed")
        log.warning("scheduler active (pid %d, node %s, epoch %d): %s", os.getpid(), self.config.node or "-",
                    self.lease.epoch, how)


def run_scheduler(config: Config, epoch: int = 0, careful: bool = False) -> None:
    """Process entry point: stand by until this is the cluster's active scheduler, then run it
    until SIGTERM (``epoch``: its node's supervisor's generation; ``careful``: started after a
    crash, see worker_pool/quarantine.py)."""
    process_setup("scheduler", config.supervisor.log_format)
    with exit_on_service_loss("scheduler"):
        standby = Standby(config, epoch)
        signal.signal(signal.SIGTERM, lambda *_: standby.stopped.set())
        keeper = standby.wait()
        if keeper is None:
            return
        s = Scheduler(config, epoch=epoch, careful=careful, keeper=keeper)
        s._producer = standby.producer
        signal.signal(signal.SIGTERM, lambda *_: s.stop())
        if standby.stopped.is_set():  # SIGTERM just before the handler moved
            s.stop()
        deposed = False
        try:
            s.initialize()
            s.run()
        except Fenced as e:  # this process's epoch is the scheduler lease's: another scheduler is active
            deposed = True
            log.error("scheduler: %s; standing down (its supervisor starts it again, as a standby)", e)
            sys.exit(EXIT_DEPOSED)
        finally:
            s.shutdown()
            keeper.stop()
            if not deposed:  # the next scheduler need not wait for the TTL (not if another holds it)
                with contextlib.suppress(redis.RedisError):
                    keeper.release()
