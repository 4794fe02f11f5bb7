"""The public client API: submit tasks, read their status, wait for results.

    from client import Client
    with Client.from_config("yadtq.yaml") as c:
        h = c.submit("add", 1, 2)
        print(h.result(timeout=10))   # 3
"""

from __future__ import annotations

import getpass
import json
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client import trace
from client.config import Config, KafkaConfig, RedisConfig, load_config
from client.errors import (
    InvalidMessage,
    ResultTimeout,
    ServiceUnavailable,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
)
from client.protocol import Task, TaskLimits, TaskOptions, check_task, check_task_id, now
from client.store import TERMINAL, CancelResult, Keys, Status, TaskStore, connect, safe_url
from client.trace import TRACING

SUBMIT_TIMEOUT = 30.0  # seconds a submit waits for Kafka to take the tasks


@dataclass(frozen=True)
class TaskSpec:
    """One task for ``Client.submit_many``: a name, its arguments and options."""

    name: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None
    task_id: str | None = None
    timeout: float | None = None
    max_retries: int | None = None


class TaskHandle:
    """A submitted task: its id, and ways to read its status and result."""

    def __init__(self, client: Client, task_id: str) -> None:
        self.client = client
        self.id = task_id

    def __repr__(self) -> str:
        return f"TaskHandle({self.id!r})"

    def status(self) -> str | None:
        """'queued', 'processing', 'success', 'failed' or 'cancelled'; None if Redis has no record."""
        return self.client.status(self.id)

    def record(self) -> dict[str, str]:
        """The whole Redis record of the task (status, result, error, worker, timestamps...)."""
        return self.client.record(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Block until the task ends and return its value; see ``Client.result``."""
        return self.client.result(self.id, timeout=timeout)


class Client:
    """Submits tasks to a YADTQ cluster and reads their results. Thread-safe for submits.

    Build it from the cluster file (``Client.from_config("yadtq.yaml")``) or from
    a Config. Kafka is connected on the first submit, so a client that only
    reads results needs only Redis.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.keys = Keys(self.config.redis.key_prefix)
        self.redis = connect(self.config.redis)
        # Pub/sub waits get a pool of their own: redis-py disconnects a pub/sub
        # connection when it is closed and hands it back to its pool, where the
        # next command would take it and connect again (the record read right
        # after a wake took 1.1 ms instead of 0.1: bench.trace, PERFORMANCE.md).
        self._waits = connect(self.config.redis)
        self.store = TaskStore(self.redis, self.keys, self.config.tasks.result_ttl)
        self._producer: Any = None

    @classmethod
    def from_config(cls, path: str | Path = "yadtq.yaml") -> Client:
        """A client for the cluster described by a yadtq.yaml file."""
        return cls(load_config(path))

    @classmethod
    def connect(cls, bootstrap_servers: str | list[str] = "localhost:9092",
                redis_url: str = "redis://localhost:6379/0", tasks_topic: str = "TASKS",
                key_prefix: str = "") -> Client:
        """A client from explicit addresses, for when there is no yadtq.yaml at hand."""
        servers = bootstrap_servers.split(",") if isinstance(bootstrap_servers, str) else bootstrap_servers
        cfg = Config.from_dict({"kafka": {"bootstrap_servers": servers},
                                "redis": {"url": redis_url, "key_prefix": key_prefix},
                                "topics": {"tasks": tasks_topic}})
        return cls(cfg)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush what was submitted and close the connections."""
        if self._producer is not None:
            # Every submit flushed already, so nothing is pending here.
            kafka_io.close_producer(self._producer, timeout=10)
            self._producer = None
        self.redis.close()
        self._waits.close()

    # --- submitting ---
    def submit(self, name: str, *args: Any, **kwargs: Any) -> TaskHandle:
        """Submit task ``name`` with these arguments; return once Kafka has it."""
        return self.submit_many([TaskSpec(name, args, kwargs)])[0]

    def submit_many(self, specs: Iterable[TaskSpec | tuple[Any, ...]]) -> list[TaskHandle]:
        """Submit many tasks with one Redis round trip and one Kafka flush.

        Each item is a TaskSpec, or a tuple ``(name, args)`` / ``(name, args, kwargs)``.
        Every task is checked first, as the scheduler will check it: if one is
        invalid, InvalidMessage says which and why, and none is submitted.
        """
        tasks, messages = _checked(list(specs), self.config.tasks.limits())
        self._refuse_foreign_ids([t.task_id for t in tasks])
        at = now()
        prod = self.producer()
        try:
            if TRACING:  # pragma: no mutate
                trace.mark_all([t.task_id for t in tasks], "client.send")  # pragma: no mutate
            futures = [prod.send(self.config.topics.tasks, m) for m in messages]
            if TRACING:  # pragma: no mutate
                trace.on_ack(futures, [t.task_id for t in tasks], "client.ack")  # pragma: no mutate
            prod.flush(timeout=SUBMIT_TIMEOUT)
            kafka_io.check_sent(futures, "the task")
        except (KafkaError, ServiceUnavailable) as e:
            # Some may have got through: resubmitting the same ids is safe, as
            # a task id that is already known is not run again.
            raise ServiceUnavailable(f"Kafka at {','.join(self.config.kafka.bootstrap_servers)} did not take "
                                     f"{len(tasks)} task(s) within {SUBMIT_TIMEOUT:g}s ({e}); resubmit them "
                                     "with the same task ids") from None
        # Kafka has the tasks; now the records say 'queued' (unless the scheduler
        # got there first: these writes never replace a field already set).
        pipe = self.store.pipeline()
        for t in tasks:
            self.store.mark_queued(pipe, t.task_id, t.name, at)
        try:
            self.store.execute(pipe)
        except redis.RedisError as e:
            raise ServiceUnavailable(f"tasks submitted, but Redis at {safe_url(self.config.redis.url)} "
                                     f"failed: {e}") from None
        if TRACING:  # pragma: no mutate
            trace.mark_all([t.task_id for t in tasks], "client.queued")  # pragma: no mutate
        return [TaskHandle(self, t.task_id) for t in tasks]

    def _refuse_foreign_ids(self, task_ids: list[str]) -> None:
        """Raise before producing if a task id names a Redis key YADTQ does not own."""
        try:
            foreign = self.store.foreign_ids(task_ids)
        except redis.RedisError as e:
            raise self.redis_down(e) from None
        if foreign:
            task_id, key_type = next(iter(foreign.items()))
            raise InvalidMessage(f"task id {task_id!r} names an existing Redis key that YADTQ does not own "
                                 f"(a {key_type}); nothing was submitted; set redis.key_prefix when sharing "
                                 "a database", task_id)

    def producer(self) -> Any:
        """This client's Kafka producer, connected on first use."""
        if self._producer is None:
            self._producer = kafka_io.producer(self.config.kafka)
        return self._producer

    # --- reading ---
    def handle(self, task_id: str) -> TaskHandle:
        """A handle on an existing task id."""
        return TaskHandle(self, task_id)

    def record(self, task_id: str) -> dict[str, str]:
        """The whole Redis record of a task; empty if unknown or expired."""
        try:
            return self.store.record(task_id)
        except redis.RedisError as e:
            raise self.redis_down(e) from None

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The events of a task's attempts, oldest first (the last 50: placed, started, raised,
        died, ended, ...; README "Redis layout", ``yadtq:history``); empty if unknown or expired."""
        try:
            return self.store.history(task_id)
        except redis.RedisError as e:
            raise self.redis_down(e) from None

    def status(self, task_id: str) -> str | None:
        """The task's status, or None if Redis has no record of it."""
        return self.record(task_id).get("status")

    def result(self, task_id: str, timeout: float | None = None) -> Any:
        """Block until the task ends; return its value or raise TaskFailed (TaskCancelled if cancelled).

        Waits on a Redis pub/sub channel, so nothing polls in a loop. Raises
        ResultTimeout after ``timeout`` seconds (None waits for ever).
        """
        self.wait([task_id], timeout=timeout)
        return _value(task_id, self.record(task_id))

    def wait(self, task_ids: Sequence[str], timeout: float | None = None) -> None:
        """Block until every task in ``task_ids`` has ended, or raise ResultTimeout."""
        for _ in self.as_ended(task_ids, timeout):
            pass

    def as_ended(self, task_ids: Sequence[str], timeout: float | None = None) -> Iterator[tuple[str, str]]:
        """Yield ``(task id, final status)`` for each of ``task_ids`` as it ends, those already ended
        first; raise ResultTimeout once ``timeout`` seconds passed with some not ended (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(task_ids)
        # Subscribe confirmations are read and skipped here: with
        # ignore_subscribe_messages, get_message returns None for each, which
        # would look like a timeout and trigger a full re-check every time.
        pubsub = self._waits.pubsub()  # type: ignore[no-untyped-call]
        channel_prefix = self.keys.done_channel("")
        try:
            for chunk in _chunks(sorted(pending), 1000):
                pubsub.subscribe(*(self.keys.done_channel(t) for t in chunk))
            if TRACING:  # pragma: no mutate
                trace.mark_all(pending, "client.subscribed")  # pragma: no mutate
            # Subscribed first, then read: an end between the two is not missed.
            yield from self._take_ended(pending)
            while pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ResultTimeout(f"{len(pending)} task(s) not finished after {timeout}s, "
                                        f"e.g. {sorted(pending)[0]}")
                msg = pubsub.get_message(timeout=min(left, 5.0) if left is not None else 5.0)
                if msg is None:  # quiet for a while: a cheap guard against a lost message
                    yield from self._take_ended(pending)
                elif msg["type"] == "message":
                    task_id = str(msg["channel"]).removeprefix(channel_prefix)
                    if task_id in pending:
                        if TRACING:  # pragma: no mutate
                            trace.mark(task_id, "client.woke")  # pragma: no mutate
                        pending.discard(task_id)
                        yield task_id, str(msg["data"])
        except redis.RedisError as e:
            raise self.redis_down(e) from None
        finally:
            pubsub.close()

    # --- an operator's action (the others are in client/ops.py) ---
    def cancel(self, task_id: str, by: str | None = None) -> CancelResult:
        """Cancel a task that has not ended: its record says ``cancelled`` (with ``cancelled_by``,
        ``cancelled_at``) and it never starts, even after any restart; if it runs, its worker
        stops it within about a second, as a time limit would. A task that has ended is left
        unchanged: the answer's ``kind`` is then ``Cancel.ENDED`` and ``status`` says how it ended.

        ``by`` names who cancelled (default: user@host). An id with no record
        yet (its message may still wait in TASKS) is cancelled all the same.
        """
        check_task_id(task_id)
        try:
            batch = self.store.pipeline()
            reply = self.store.cancel(batch, task_id, now(), by or operator_name())
            self.store.execute(batch)
        except redis.RedisError as e:
            raise self.redis_down(e) from None
        return reply.value

    def redis_down(self, e: Exception) -> ServiceUnavailable:
        """The error to raise for a failed Redis command ``e``: it names the server, never a password."""
        return ServiceUnavailable(f"Redis at {safe_url(self.config.redis.url)} failed: {e}")

    def _take_ended(self, pending: set[str]) -> Iterator[tuple[str, str]]:
        """Take the tasks of ``pending`` that have ended out of it, with their status."""
        for chunk in _chunks(sorted(pending), 1000):
            for t, s in zip(chunk, self.store.statuses(chunk), strict=True):
                if s in TERMINAL:
                    if TRACING:  # pragma: no mutate
                        trace.mark(t, "client.woke")  # pragma: no mutate
                    pending.discard(t)
                    yield t, str(s)


def operator_name() -> str:
    """Who an operator's action is recorded as by default: user@host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _value(task_id: str, rec: dict[str, str]) -> Any:
    if not rec:
        raise TaskNotFound(f"no record of task {task_id} (never submitted, or expired)")
    if rec.get("status") == Status.FAILED:
        raise TaskFailed(task_id, rec.get("error", "unknown error"), rec.get("traceback", ""))
    if rec.get("status") == Status.CANCELLED:
        raise TaskCancelled(task_id, rec.get("cancelled_by", "?"), rec.get("cancelled_at", ""))
    return json.loads(rec["result"])


def _checked(specs: list[TaskSpec | tuple[Any, ...]], limits: TaskLimits) -> tuple[list[Task], list[bytes]]:
    """Each spec as a Task and its message, checked as the scheduler checks them;
    InvalidMessage naming the first bad spec (by its place in ``specs``)."""
    tasks, messages = [], []
    for i, spec in enumerate(specs):
        try:
            task = _to_task(spec)
            messages.append(check_task(task, limits))
        except InvalidMessage as e:
            raise InvalidMessage(f"task {i + 1} of {len(specs)} is invalid, so none was submitted: {e.reason}",
                                 e.task_id) from None
        tasks.append(task)
    return tasks, messages


def _to_task(spec: TaskSpec | tuple[Any, ...]) -> Task:
    try:
        if isinstance(spec, tuple):
            spec = TaskSpec(*spec)
        task_id = check_task_id(spec.task_id) if spec.task_id is not None else str(uuid.uuid4())
        if spec.kwargs is not None and not isinstance(spec.kwargs, dict):
            raise InvalidMessage(f"kwargs must be a dict, got {type(spec.kwargs).__name__}")
        if isinstance(spec.args, (str, bytes, dict)):  # a sequence, but surely not what was meant
            raise InvalidMessage(f"args must be a list or tuple, got {type(spec.args).__name__}")
        return Task(task_id, spec.name, list(spec.args), dict(spec.kwargs or {}),
                    TaskOptions(spec.timeout, spec.max_retries))
    except TypeError as e:  # TaskSpec(*spec) with too many items, args that is not a sequence...
        raise InvalidMessage(f"not a task spec: {e}") from None


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


__all__ = ["Client", "KafkaConfig", "RedisConfig", "TaskHandle", "TaskSpec"]
