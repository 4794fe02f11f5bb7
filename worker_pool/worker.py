"""The worker process: consume your own topic, run each task, record the result.

For each assignment, in order: claim it in Redis (the START script refuses a
fenced or finished attempt), run it under its time limit, write the terminal
record (FINISH), tell the scheduler on ``status``, and only then commit the
Kafka offset. A crash anywhere before the commit means the message is read
again, and the Redis record decides whether it still has to run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from client import kafka as kafka_io
from client import trace
from client.config import Config
from client.errors import Fenced, InvalidMessage, InvalidResult, TaskStopped, TaskTimeLimitExceeded
from client.protocol import (
    Assignment,
    Heartbeat,
    TasksFinished,
    encode,
    encode_event,
    encode_result,
    now,
    parse_assignment,
    safe_text,
    sniff_attempt,
    sniff_task_id,
)
from client.store import (
    TERMINAL,
    Batch,
    Claim,
    Finish,
    Keys,
    Release,
    Reply,
    Retry,
    Status,
    TaskStore,
    Unreadable,
    connect,
    failure_fields,
)
from client.trace import TRACING
from worker_pool import quarantine
from worker_pool.context import TaskContext, running
from worker_pool.process import EXIT_HARD_LIMIT, check_owner, check_parent, exit_on_service_loss, process_setup
from worker_pool.registry import Registry, default_registry

log = logging.getLogger("yadtq.worker")

HARD_LIMIT_GRACE = 5.0  # seconds past its time limit before a task's process is ended
REPORT_DELAY = 0.02  # seconds a finished task's report may wait to go out with others
# Seconds between two looks of the heartbeat thread at the record of the task in hand: an operator's
# cancel (or a move elsewhere) stops it within this, plus HARD_LIMIT_GRACE if it ignores TaskStopped.
WATCH_INTERVAL = 0.25


@dataclass(frozen=True)
class _Running:
    """The task a worker runs now, and when its hard time limit expires (monotonic)."""

    assignment: Assignment
    limit: float
    hard_deadline: float


@dataclass(frozen=True)
class _Result:
    """A task's outcome, not yet written to its record."""

    assignment: Assignment
    status: Status
    fields: dict[str, str]
    at: float


class Worker:
    """One worker: ``initialize()``, then ``loop()`` until ``stop()``, then ``shutdown()``."""

    def __init__(self, config: Config, worker_id: str, registry: Registry = default_registry, epoch: int = 0,
                 careful: bool = False) -> None:
        self.config = config
        self.id = worker_id
        self.epoch = epoch  # the supervisor's lease epoch: the store refuses this process's writes once it is old
        self.careful = careful  # started after a crash: read what was uncommitted one by one (quarantine.py)
        self._guard: quarantine.Guard | None = None
        self.registry = registry
        self.running: _Running | None = None  # read by the heartbeat thread
        # The task in hand whose record says it must stop (cancelled, or moved elsewhere), the status to
        # report for it, and when its process ends if it does not stop (monotonic): the heartbeat thread's.
        self._stopping: tuple[_Running, str, float] | None = None
        self._watch_failed: _Running | None = None  # the run whose record could not be read (logged once)
        self._held: _Result | None = None  # the last result, until written with the next claim
        self._done: list[list[Any]] = []  # reports not sent yet (see send_reports)
        self._done_since = 0.0
        self._stop = threading.Event()     # leave the loop after the task in hand
        self._closed = threading.Event()   # the heartbeat thread's end
        self._wake = threading.Event()     # wakes the heartbeat thread before its next beat (see stop)
        self._stop_deadline: float | None = None  # monotonic: hand back the task in hand then
        # Held while a task is claimed, and by the heartbeat thread when it ends
        # the process: so the main thread cannot start another task meanwhile.
        self._gate = threading.Lock()
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        self._beat: threading.Thread | None = None
        self._last_commit = time.monotonic()
        self._owed: dict[TopicPartition, int] = {}  # offsets of handled batches, not committed yet
        self._commits: kafka_io.Committer | None = None
        self._limits = config.tasks.limits()

    def initialize(self) -> None:
        _time_limit.install()  # before any task: the heartbeat thread may signal the main thread from then on
        self.registry.load_modules(self.config.tasks.modules)
        self.redis = connect(self.config.redis)
        self.store = TaskStore(self.redis, Keys(self.config.redis.key_prefix, self.config.node),
                               self.config.tasks.result_ttl, self.epoch)
        self._producer = kafka_io.producer(self.config.kafka)
        self._consumer = kafka_io.consumer(self.config.kafka, f"yadtq-worker.{self.id}",
                                           max_poll_records=self.config.workers.max_pending)
        tps = kafka_io.assign_all(self._consumer, [self.id])
        if self.careful:
            self._guard = quarantine.Guard(self.store, f"yadtq-worker.{self.id}",
                                           quarantine.uncommitted(self._consumer, tps))
            log.warning("careful mode after a crash: reading %d uncommitted assignment(s) one by one",
                        sum(end - start for start, end in self._guard.ranges.values()))
        self._beat = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        self._beat.start()
        log.info("worker %s ready (pid %d)", self.id, os.getpid())

    def stop(self) -> None:
        """Finish the task in hand, then leave ``run``.

        A task still running shortly before the supervisor's grace period ends
        is handed back (see ``_hand_back``), to run again after the next start.
        """
        grace = self.config.workers.shutdown_grace
        self._stop_deadline = time.monotonic() + grace - min(1.0, grace / 2)
        self._stop.set()
        self._wake.set()  # the watchdog now wakes at the stop deadline, not at its next beat

    def run(self) -> None:
        while not self._stop.is_set():
            self.loop()

    def loop(self) -> None:
        """One poll: run the assignments it returns, then commit past them."""
        assert self._consumer is not None
        careful = self._guard is not None and self._guard.careful()
        entered = time.time() if TRACING else 0.0  # pragma: no mutate
        batches = self._consumer.poll(timeout_ms=200, max_records=1) if careful else self._consumer.poll(timeout_ms=200)
        if TRACING:  # pragma: no mutate
            trace.polled(batches, "worker.polled", entered)  # pragma: no mutate
        if not batches and not self._stop.is_set():
            self._recommit()
        for tp, records in batches.items():
            done = None
            for rec in records:
                if self._stop.is_set():
                    break
                if not careful or self._careful_pass(tp, rec):
                    self.handle(rec)
                    self.send_reports()
                done = rec
            self.write_held_result()  # before the commit: the offset covers only recorded work
            self.send_reports(force=True)
            if done is not None:
                self._owed[tp] = done.offset + 1
                self._pay(careful)
                if careful:
                    assert self._guard is not None
                    self._guard.passed(tp, done.offset + 1)
        if not batches:
            self._pay(careful)  # what a commit in flight held back

    @property
    def _committer(self) -> kafka_io.Committer:
        """The committer of the current consumer."""
        assert self._consumer is not None
        if self._commits is None or self._commits.consumer is not self._consumer:
            self._commits = kafka_io.Committer(self._consumer)
        return self._commits

    def _pay(self, careful: bool, force: bool = False) -> None:
        """Commit the offsets owed, without waiting for the broker (kafka_io.Committer), unless
        in careful mode, whose quarantine counts a message as passed once it is committed. While
        a commit is in flight, or within COMMIT_GAP of the last (unless ``force``), they stay
        owed: a later batch's offset, or a later empty poll, sends them."""
        at = time.monotonic()
        if not self._owed or not (careful or self._committer.ready(at) or (force and not self._committer.busy)):
            return
        self._committer.commit(self._owed, at, wait=careful, force=force)
        self._owed = {}
        self._last_commit = time.monotonic()

    def _recommit(self) -> None:
        """Idle: commit the position again every OFFSET_REFRESH seconds, so that
        Kafka never expires this worker's offset (a restart would then replay
        its topic). Every record before the position is handled: an empty poll
        comes only after whole batches."""
        assert self._consumer is not None
        if time.monotonic() - self._last_commit < kafka_io.OFFSET_REFRESH:
            return
        at = kafka_io.positions(self._consumer)
        self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in at.items()})
        self._last_commit = time.monotonic()

    def shutdown(self) -> None:
        self._stop.set()
        try:  # a result still held (the loop ended by an error) would otherwise count as a death
            self.write_held_result()
            self.send_reports(force=True)
        except Exception as e:  # Redis or Kafka is what failed: the task then runs again, as after a crash
            log.error("could not record the last result before stopping: %s", e)
        self._closed.set()
        self._wake.set()
        if self._producer is not None:
            kafka_io.close_producer(self._producer)
        if self._consumer is not None:
            try:
                self._committer.drain()  # the commit in flight first, so that what is still owed goes too
                self._pay(careful=False, force=True)
                self._committer.drain()  # and is not lost with the consumer
            except Exception as e:  # Kafka is what failed: those assignments are read again, and skipped
                log.warning("could not commit the last offsets before stopping: %s", e)
            self._consumer.close(autocommit=False)
        log.info("worker %s stopped", self.id)

    def _careful_pass(self, tp: Any, rec: ConsumerRecord) -> bool:
        """Careful mode (after a crash): handle ``rec``, or dead-letter it if it killed too often.

        A task that ended meanwhile (e.g. quarantined from another copy of its
        assignment) is skipped unread: reading it may be what kills.
        """
        assert self._guard is not None and self._producer is not None and self._consumer is not None
        tries = self._guard.check(tp, rec.offset)
        task_id = sniff_task_id(rec.value)
        if tries >= 0:
            return tries == 0 or task_id is None or self.store.statuses([task_id])[0] not in TERMINAL
        reason = quarantine.reason(-tries, f"worker {self.id}")
        log.error("assignment at %s:%d@%d dead-lettered to %s: %s", rec.topic, rec.partition, rec.offset,
                  self.config.topics.dead_letter, reason)
        if task_id is not None:
            self.store.fail_quarantined(task_id, now(), reason)
        sent = self._producer.send(self.config.topics.dead_letter, rec.value, headers=[
            ("error", reason.encode()), ("from", f"{rec.topic}:{rec.partition}@{rec.offset}".encode())])
        self._producer.flush(timeout=30)
        kafka_io.check_sent([sent], "a dead letter")  # before the commit past it
        self._guard.extend(self._consumer.end_offsets([tp]))
        return False

    # --- one assignment ---
    def handle(self, rec: ConsumerRecord) -> None:
        try:
            a = parse_assignment(rec.value, self._limits)
        except InvalidMessage as e:
            self._unreadable(rec, e)
            return
        with self._gate:
            claim = self._claim(a)
        if TRACING:  # pragma: no mutate
            trace.mark(a.task.task_id, "worker.claimed")  # pragma: no mutate
        self.send_reports()  # the previous task's, written with this claim, if they are due
        if claim is not Claim.RUN:
            # Reported all the same, so the scheduler drops the placement.
            log.info("task %s attempt %d %s; not running it", a.task.task_id, a.attempt, _NOT_RUN[claim][0])
            self._report(a, _NOT_RUN[claim][1])
            return
        outcome, fields = self.execute(a)
        if TRACING:  # pragma: no mutate
            trace.mark(a.task.task_id, "worker.ran")  # pragma: no mutate
        if outcome == "stopped":  # its record was changed by someone else: nothing of this run is written
            self._report(a, fields["report"])
            return
        if outcome == "raised":
            outcome, fields = self._retry_or_fail(a, fields)
            if outcome == "retry":
                self._report(a, outcome)
                return
        status = Status(outcome)
        # Written with the next task's claim, in one round trip, or at the end
        # of the batch: either way before any other task starts here.
        self._held = _Result(a, status, fields, now())

    def _unreadable(self, rec: ConsumerRecord, e: InvalidMessage) -> None:
        """An assignment that cannot be parsed: fail its task if it is placed here, and report it.

        Only the scheduler writes here, so this is a bug, damage or a stray
        producer. If its task id and attempt can be read, and the record holds
        that attempt placed on this worker (and has not ended), no copy of it
        can run here: the record is failed with the reason, it leaves the
        scheduler's table, and the report frees its slot. Anything else is
        left alone: a stray message must not end a task placed elsewhere.
        """
        log.error("invalid assignment at %s:%d@%d: %s", rec.topic, rec.partition, rec.offset, e.reason)
        task_id, attempt = e.task_id or sniff_task_id(rec.value), sniff_attempt(rec.value)
        if task_id is None or attempt is None:
            return
        pipe = self.store.pipeline()
        reply = self.store.fail_unreadable(pipe, task_id, now(), safe_text(
            f"InvalidMessage: its assignment on {rec.topic} cannot be read: {e.reason}"), "worker",
            worker=self.id, attempt=attempt)
        self.store.execute(pipe)
        answer = reply.value.kind
        if answer is Unreadable.STALE_EPOCH:
            raise Fenced(f"worker {self.id} of epoch {self.epoch}: a newer generation owns the cluster")
        if answer is Unreadable.FAILED:
            log.error("task %s attempt %d failed: its assignment cannot be read", task_id, attempt)
            if not self._done:
                self._done_since = time.monotonic()
            self._done.append([task_id, attempt, Status.FAILED.value])

    def write_held_result(self) -> None:
        """Write the result of the last task run, if ``handle`` still holds it."""
        if self._held is None:
            return
        pipe = self.store.pipeline()
        held = self._queue_held(pipe)
        if held is not None:
            self.store.execute(pipe)
            if TRACING:  # pragma: no mutate
                trace.mark(held[0].assignment.task.task_id, "worker.finished")  # pragma: no mutate
            self._finished(*held)

    def _queue_held(self, pipe: Batch) -> tuple[_Result, Reply[Finish]] | None:
        held, self._held = self._held, None
        if held is None:
            return None
        a = held.assignment
        return held, self.store.finish(pipe, a.task.task_id, a.attempt, held.status, held.at, held.fields)

    def _finished(self, held: _Result, reply: Reply[Finish]) -> None:
        """Act on FINISH's answer."""
        a, answer = held.assignment, reply.value
        if answer is Finish.STALE_EPOCH:
            raise Fenced(f"worker {self.id} of epoch {self.epoch}: a newer generation owns the cluster")
        if answer is not Finish.WRITTEN:
            log.warning("task %s attempt %d %s while it ran; result dropped", a.task.task_id, a.attempt,
                        _NOT_WRITTEN[answer])
            if answer is Finish.FENCED:  # the attempt that replaced it reports
                return
        self._report(a, held.status if answer is not Finish.NOT_OURS else "fenced")

    def _retry_or_fail(self, a: Assignment, fields: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The task raised: schedule a retry ('retry', {}) or, with none left, ('failed', fields).

        A fenced or already ended attempt gives ('failed', fields) too, which
        FINISH then refuses to write.
        """
        t, cfg = a.task, self.config.tasks
        limit = cfg.retries_for(t.options)
        answer = self.store.retry(t.task_id, a.attempt, now(), (cfg.retry_backoff, cfg.retry_backoff_max),
                                  limit, fields, encode(t.to_wire()).decode())
        if answer.kind is Retry.STALE_EPOCH:
            raise Fenced(f"worker {self.id} of epoch {self.epoch}: a newer generation owns the cluster")
        if answer.kind is Retry.SCHEDULED:
            log.info("task %s raised %s; retry at %s", t.task_id, fields["error"], _clock(answer.due))
            return "retry", {}
        if answer.kind is Retry.EXHAUSTED:
            fields = {**fields, "error": f"{fields['error']} (gave up after {answer.used + 1} failed runs; "
                                         f"the retry limit is {limit})"}
        return Status.FAILED, fields

    def _claim(self, a: Assignment) -> Claim:
        """CLAIM the task (and write the previous one's result in the same round trip)."""
        pipe = self.store.pipeline()
        held = self._queue_held(pipe)
        retries = self.config.tasks.retries_for(a.task.options)
        claim = self.store.claim(pipe, a.task.task_id, a.attempt, self.id, now(), os.getpid(), retries)
        self.store.execute(pipe)
        if held is not None:
            if TRACING:  # pragma: no mutate
                trace.mark(held[0].assignment.task.task_id, "worker.finished")  # pragma: no mutate
            self._finished(*held)
        if claim.value is Claim.STALE_EPOCH:
            raise Fenced(f"worker {self.id} of epoch {self.epoch}: a newer generation owns the cluster")
        return claim.value

    def _finish(self, a: Assignment, status: Status, fields: dict[str, str]) -> Finish:
        pipe = self.store.pipeline()
        reply = self.store.finish(pipe, a.task.task_id, a.attempt, status, now(), fields)
        self.store.execute(pipe)
        return reply.value

    def execute(self, a: Assignment) -> tuple[str, dict[str, str]]:
        """Run the task under its time limit: ('success', fields), ('raised',
        fields) when the task raised (it may be retried) or ('failed', fields)
        when it cannot run as asked or passed its time limit (never retried).

        Total: whatever the task raises, BaseException included (a task that
        calls ``sys.exit(3)`` raised ``SystemExit: 3``), is that task's error,
        never the worker's end; only the hard time limit ends the process.

        The limit is enforced twice: SIGALRM raises TaskTimeLimitExceeded in the
        task (the soft limit); if the task swallows that, or is stuck in code
        that never returns to Python, the heartbeat thread ends the process
        HARD_LIMIT_GRACE seconds later (the hard limit, see ``_enforce``).
        """
        t = a.task
        limit = self.config.tasks.time_limit_for(t.options)
        self.running = token = _Running(a, limit, time.monotonic() + limit + HARD_LIMIT_GRACE)
        try:
            fn = self.registry.check_call(t.name, t.args, t.kwargs).fn
            with running(TaskContext(t.task_id, t.name, a.attempt, self.id, self.config)), _time_limit(limit, token):
                value = fn(*t.args, **t.kwargs)
        except TaskStopped as e:
            stopping = self._stopping
            if stopping is not None and stopping[0] is token:
                log.warning("task %s attempt %d stopped: %s", t.task_id, a.attempt, e)
                return "stopped", {"report": stopping[1]}
            return "raised", {k: safe_text(v) for k, v in failure_fields(e).items()}  # the task's own raise
        except (InvalidMessage, TaskTimeLimitExceeded) as e:  # running it again would end the same way
            return Status.FAILED, {"error": safe_text(f"{type(e).__name__}: {e}")}
        except BaseException as e:  # the task's own error, whatever its kind: recorded, never fatal to the worker
            # Its message may hold text Redis cannot take (a lone surrogate).
            return "raised", {k: safe_text(v) for k, v in failure_fields(e).items()}
        finally:
            self.running = None
        return _stored(value)

    def _report(self, a: Assignment, status: str) -> None:
        """Tell the scheduler this assignment is done with, in the next tasks-finished event."""
        if not self._done:
            self._done_since = time.monotonic()
        self._done.append([a.task.task_id, a.attempt, status])

    def send_reports(self, force: bool = False) -> None:
        """Send the reports gathered so far as one event: at the end of each
        batch (``force``), or mid-batch once the oldest is REPORT_DELAY old, so
        slow tasks do not hold back the scheduler's view of the load."""
        if self._done and (force or time.monotonic() - self._done_since >= REPORT_DELAY):
            assert self._producer is not None
            done, self._done = self._done, []
            self._producer.send(self.config.topics.status, encode_event(TasksFinished(self.id, done)))

    def _heartbeats(self) -> None:
        """The heartbeat thread: beat every heartbeat_interval, and watch the task in hand.

        It wakes at each beat, but also at the stop deadline and at the hard
        deadline: a watchdog that looked only at each beat could hand a task
        back after the supervisor's grace period has already killed the process.
        With each beat it reads the cluster's lease (``check_owner``), on a
        connection of its own whose short timeout cannot hold the beats up.
        """
        interval = self.config.workers.heartbeat_interval
        lease = TaskStore(connect(self.config.redis, timeout=max(0.1, interval / 2)), self.store.keys, 0, self.epoch)
        next_beat = next_watch = 0.0
        while not self._closed.is_set():
            check_parent(f"worker {self.id}")
            running = self.running
            if running is not None:
                self._enforce(running)
                if time.monotonic() >= next_watch:
                    next_watch = time.monotonic() + WATCH_INTERVAL
                    self._watch(running, lease)
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + interval
                self._send_heartbeat(running)
                check_owner(f"worker {self.id}", lease, self.epoch)
            self._wake.wait(self._until_next_check(min(next_beat, next_watch) if running else next_beat, running))
            self._wake.clear()

    def _watch(self, running: _Running, lease: TaskStore) -> None:
        """Stop the task in hand if its record no longer says this attempt is processing it.

        An operator cancelled it, or the scheduler moved it elsewhere, or it
        ended otherwise: whatever this run does next would be refused (FINISH
        is fenced), so it is interrupted the way the soft time limit does it
        (TaskStopped raised in the task), and its process ended like the hard
        limit's if it does not stop within HARD_LIMIT_GRACE. Why here and not
        a pub/sub message: this thread wakes anyway, one read per
        WATCH_INTERVAL costs nothing per task on the hot path, and a read,
        unlike a message, cannot be missed while Redis reconnects.
        """
        a = running.assignment
        try:
            status, attempt = lease.running_state(a.task.task_id)
        except Exception as e:  # Redis is slow or away: look again next time (said once per run, not 4 times a second)
            if self._watch_failed is not running:
                self._watch_failed = running
                log.warning("task %s: could not read its record to see if it was cancelled: %s", a.task.task_id, e)
            return
        if status is None or (status == Status.PROCESSING and attempt == a.attempt):
            return
        if self._stopping is None or self._stopping[0] is not running:
            report = "ended" if status in TERMINAL else "fenced"
            log.warning("task %s attempt %d: its record now says %s (attempt %d); stopping it", a.task.task_id,
                        a.attempt, status, attempt)
            self._stopping = (running, report, time.monotonic() + HARD_LIMIT_GRACE)
        _time_limit.interrupt(running, "cancelled by an operator" if status == Status.CANCELLED else
                              f"its record now says {status} (attempt {attempt})")

    def _send_heartbeat(self, running: _Running | None) -> None:
        assert self._producer is not None
        hb = Heartbeat(self.id, "worker", os.getpid(), now(), running.assignment.task.task_id if running else None)
        try:
            self._producer.send(self.config.topics.status, encode_event(hb))
        except Exception as e:  # keep beating: a transient Kafka error must not stop heartbeats
            log.warning("heartbeat not sent: %s", e)

    def _until_next_check(self, next_beat: float, running: _Running | None) -> float:
        """Seconds until the watchdog must look again: the next beat, or a deadline of the task in hand."""
        wake = next_beat
        if running is not None:
            wake = min(wake, running.hard_deadline)
            if self._stop_deadline is not None:
                wake = min(wake, self._stop_deadline)
            stopping = self._stopping
            if stopping is not None and stopping[0] is running:
                wake = min(wake, stopping[2])
        return max(0.005, wake - time.monotonic())  # never 0: a deadline is passed strictly after it

    def _enforce(self, running: _Running) -> None:
        """End the process if the task in hand is past its hard limit or the stop deadline."""
        at = time.monotonic()
        stopping = self._stopping
        ignored = stopping is not None and stopping[0] is running and at > stopping[2]
        hard = at > running.hard_deadline or ignored
        if not hard and (self._stop_deadline is None or at < self._stop_deadline):
            return
        self._gate.acquire()  # never released: the process ends below
        if self.running is not running:  # it ended meanwhile
            self._gate.release()
            return
        try:
            if ignored:
                self._ignored_stop(running)
            elif hard:
                self._hard_limit(running)
            else:
                self._hand_back(running)
        except Exception as e:  # Redis or Kafka failed: the process still has to end
            log.error("task %s: could not record why the process ends: %s", running.assignment.task.task_id, e)
        os._exit(EXIT_HARD_LIMIT if hard else 0)

    def _hard_limit(self, running: _Running) -> None:
        """Fail the task that ignored its soft time limit (the process ends next).

        Only the process's end is sure to stop a task that swallowed
        TaskTimeLimitExceeded or never returns to Python; the supervisor starts
        a new process, which skips the task since its record has ended.
        """
        a = running.assignment
        error = (f"TaskTimeLimitExceeded: task ran past its time limit of {running.limit:g}s and did not stop "
                 f"within {HARD_LIMIT_GRACE:g}s more; its worker process was ended and replaced")
        log.error("task %s: %s", a.task.task_id, error)
        if self._finish(a, Status.FAILED, {"error": error}) is Finish.WRITTEN:
            assert self._producer is not None  # the process ends next: this event goes out alone
            self._producer.send(self.config.topics.status,
                                encode_event(TasksFinished(self.id, [[a.task.task_id, a.attempt, Status.FAILED]])))
            self._producer.flush(timeout=2)

    def _ignored_stop(self, running: _Running) -> None:
        """The task in hand did not stop within HARD_LIMIT_GRACE of being told (the process ends next).

        Its record is not touched (it was cancelled or moved by someone else);
        the scheduler is told this assignment is done with, so its slot is freed.
        """
        a = running.assignment
        assert self._stopping is not None and self._producer is not None
        log.error("task %s attempt %d did not stop within %gs of its cancel; its worker process is ended and "
                  "replaced", a.task.task_id, a.attempt, HARD_LIMIT_GRACE)
        self._producer.send(self.config.topics.status,
                            encode_event(TasksFinished(self.id, [[a.task.task_id, a.attempt, self._stopping[1]]])))
        self._producer.flush(timeout=2)

    def _hand_back(self, running: _Running) -> None:
        """Stopping, and the task would outlive the grace period: give it back.

        Its record goes back to 'queued' and its offset stays uncommitted, so
        the next start runs it again, and that run is not counted as a death.
        """
        a = running.assignment
        if self.store.release(a.task.task_id, a.attempt, os.getpid()) is Release.STALE_EPOCH:
            log.warning("task %s not handed back: a newer generation owns the cluster", a.task.task_id)
            return
        log.warning("task %s did not finish within the shutdown grace period; it will run again after the "
                    "next start", a.task.task_id)


# Why a claimed task is not run: (log text, status reported to the scheduler).
_NOT_RUN = {Claim.ENDED: ("already ended", "ended"), Claim.FENCED: ("fenced (reassigned)", "fenced"),
            Claim.FAILED_NOW: ("failed: retry limit", Status.FAILED),
            Claim.NOT_OURS: ("names a Redis key YADTQ does not own", "fenced")}
# Why a result was not written (FINISH's other answers).
_NOT_WRITTEN = {Finish.FENCED: "was reassigned", Finish.ENDED: "ended elsewhere",
                Finish.NOT_OURS: "lost its record to a key YADTQ does not own"}


def _stored(value: object) -> tuple[str, dict[str, str]]:
    """The record fields of a task that returned ``value``: its JSON, or why it cannot be stored.

    Encoding runs the value's own code (a mapping's ``items()``...), which may
    raise anything, BaseException included: the task then failed, the worker goes on.
    """
    try:
        return Status.SUCCESS, {"result": encode_result(value)}
    except InvalidResult as e:  # the same value again next time: no retry
        return Status.FAILED, {"error": f"InvalidResult: {e}"}
    except BaseException as e:  # e.g. SystemExit from the value's code
        return Status.FAILED, {"error": safe_text(f"InvalidResult: the task's return value cannot be stored: "
                                                  f"{failure_fields(e)['error']}")}


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f"{ts % 1:.3f}"[1:]


class _time_limit:
    """Raise TaskTimeLimitExceeded in the main thread after ``seconds`` (SIGALRM),
    and TaskStopped when another thread asks (``interrupt``, SIGUSR1).

    The handlers are installed once per process and only the timer is set per
    task: installing a handler for every task cost a worker 7% of its time.
    An interrupt names the run it is for (``token``): one that arrives after
    that run left the block, or before it entered, does nothing.
    """

    _seconds = 0.0  # the limit of the task the timer runs for
    _current: object = None  # the token of the run inside the block now
    _stop: object = None  # the token of the run to interrupt
    _why = ""

    def __init__(self, seconds: float, token: object = None) -> None:
        self.seconds = seconds
        self.token = token

    @classmethod
    def install(cls) -> None:
        """Install the handlers (main thread only), cheaply if they are there."""
        if signal.getsignal(signal.SIGALRM) != cls._fire:  # cheap: no system call
            signal.signal(signal.SIGALRM, cls._fire)
        if signal.getsignal(signal.SIGUSR1) != cls._interrupted:
            signal.signal(signal.SIGUSR1, cls._interrupted)

    @classmethod
    def interrupt(cls, token: object, why: str) -> None:
        """From another thread: raise TaskStopped in the run of ``token``, if it is still inside the block."""
        cls._why, cls._stop = why, token
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    @classmethod
    def _fire(cls, signum: int, frame: FrameType | None) -> None:
        raise TaskTimeLimitExceeded(f"task ran past its time limit of {cls._seconds:g}s")

    @classmethod
    def _interrupted(cls, signum: int, frame: FrameType | None) -> None:
        if cls._current is not None and cls._current is cls._stop:
            raise TaskStopped(f"task stopped: {cls._why}")

    def __enter__(self) -> None:
        _time_limit.install()
        _time_limit._seconds = self.seconds
        _time_limit._current = self.token
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        _time_limit._current = None  # first: an interrupt from now on is for nobody
        signal.setitimer(signal.ITIMER_REAL, 0)


def run_worker(config: Config, worker_id: str, epoch: int = 0, careful: bool = False) -> None:
    """Process entry point: run worker ``worker_id`` (of the cluster's generation ``epoch``) until SIGTERM
    (``careful``: started after a crash, see worker_pool/quarantine.py)."""
    process_setup(f"worker {worker_id}", config.supervisor.log_format)
    w = Worker(config, worker_id, epoch=epoch, careful=careful)
    signal.signal(signal.SIGTERM, lambda *_: w.stop())
    with exit_on_service_loss(f"worker {worker_id}"):
        try:
            w.initialize()
            w.run()
        finally:
            w.shutdown()
