"""An operator's actions on a cluster: cancel, retry, dead letters, purge.

    from client import Client, ops
    with Client.from_config("yadtq.yaml") as c:
        for o in ops.retry_failed(c, task="add", since=ops.parse_duration("1h")):
            print(o.id, o.result, o.detail)

Each action answers one ``Outcome`` per task id (or dead letter), in the
order asked: what happened to it, and why when nothing did. The state changes
are the store's atomic scripts (client/lua/cancel.lua, reopen.lua), so an
action never races the cluster into a state the lifecycle does not know; the
CLI (client/cli.py) and the supervisor's HTTP actions call these functions.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client.api import Client, operator_name
from client.errors import InvalidMessage, ServiceUnavailable, YadtqError
from client.protocol import check_task_id, now, sniff_task_id
from client.store import TERMINAL, Batch, Cancel, Reopen, Reply, Status

READ_TIMEOUT = 30.0  # seconds an action may spend reading a topic (dead letters, the TASKS backlog)

# Outcomes that mean the action was done (the others say why not).
DONE = frozenset({"cancelled", "reopened", "replayed"})


@dataclass(frozen=True)
class Outcome:
    """What an action did to one task id (or dead letter ``partition:offset``)."""

    id: str
    result: str       # cancelled, reopened, replayed; or why not: ended, started, refused, no_payload,
                      # unknown, not_ours, invalid, not_found
    detail: str = ""  # for a person: the status before or now, the reason

    @property
    def done(self) -> bool:
        return self.result in DONE


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter topic, with the reason it was put there (its ``error`` header)."""

    id: str            # 'partition:offset', as ``replay`` takes it
    timestamp: float   # when it was dead-lettered (epoch seconds)
    error: str
    task_id: str | None  # read from its bytes if they name one
    value: bytes


# --- cancel and retry ---
def cancel(client: Client, task_ids: Iterable[str], by: str | None = None) -> list[Outcome]:
    """Cancel each task that has not ended (see ``Client.cancel``); one round trip for all."""
    return _cancel(client, list(task_ids), by or operator_name(), unstarted=False)


def _cancel(client: Client, task_ids: list[str], by: str, unstarted: bool) -> list[Outcome]:
    at = now()
    return _each(client, task_ids, lambda batch, t: client.store.cancel(batch, t, at, by, unstarted), _CANCEL_DETAIL)


def _each(client: Client, task_ids: list[str], call: Callable[[Batch, str], Reply[Any]],
          details: Mapping[Any, str]) -> list[Outcome]:
    """``call(batch, id)`` for each valid id, all in one pipeline; an Outcome per id, in order
    (an invalid id's says why). ``details[kind]`` formats the answer's status."""
    valid, out = _checked_ids(task_ids)
    batch = client.store.pipeline()
    replies = {t: call(batch, t) for t in valid}
    _run(client, batch)
    for t, reply in replies.items():
        r = reply.value
        out[t] = Outcome(t, str(r.kind), details[r.kind].format(r.status or "none"))
    return [out[t] for t in task_ids]


_CANCEL_DETAIL = {Cancel.CANCELLED: "was {}", Cancel.ENDED: "already ended: {}; left unchanged",
                  Cancel.STARTED: "already started: {}; left alone",
                  Cancel.NOT_OURS: "names a Redis key YADTQ does not own (a {}); left alone"}


def retry(client: Client, task_ids: Iterable[str], by: str | None = None) -> list[Outcome]:
    """Run each failed or cancelled task again, on the operator's explicit request.

    A new run, not a redelivery: the record goes back to ``queued`` (keeping
    ``previous_status`` and ``previous_error``) with a fresh retry budget, and
    the scheduler sends its stored payload to a worker at once. A task that
    is not failed or cancelled is refused (``refused``), so nothing that
    succeeded or still runs is run twice.
    """
    ids = list(task_ids)
    at, who = now(), by or operator_name()
    return _each(client, ids, lambda batch, t: client.store.reopen(batch, t, at, who), _REOPEN_DETAIL)


_REOPEN_DETAIL = {Reopen.REOPENED: "queued again",
                  Reopen.REFUSED: "it is {}: only a failed or cancelled task is retried",
                  Reopen.NO_PAYLOAD: "it never reached a worker (an invalid message?): nothing to run",
                  Reopen.UNKNOWN: "no record (never submitted, or expired)",
                  Reopen.NOT_OURS: "names a Redis key YADTQ does not own (a {}); left alone"}


def failed_tasks(client: Client, task: str | None = None, since: float | None = None) -> list[str]:
    """The ids of the failed tasks still on record, oldest first; ``task``: only those of that
    name; ``since``: only those that ended in the last ``since`` seconds."""
    after = now() - since if since is not None else float("-inf")
    found = []
    try:
        for task_id, rec in client.store.records_by_status(frozenset({Status.FAILED.value})):
            ended = _float(rec.get("finished_at"))
            if (task is None or rec.get("task") == task) and ended >= after:
                found.append((ended, task_id))
    except redis.RedisError as e:
        raise client.redis_down(e) from None
    return [t for _, t in sorted(found)]


def retry_failed(client: Client, task: str | None = None, since: float | None = None,
                 by: str | None = None) -> list[Outcome]:
    """``retry`` every task of ``failed_tasks(client, task, since)``."""
    return retry(client, failed_tasks(client, task, since), by)


# --- purge ---
def unstarted_tasks(client: Client) -> list[str]:
    """The ids of the tasks not started yet: records that say ``queued`` (on a worker's topic,
    waiting for a retry, or just submitted), and the tasks in TASKS the scheduler has not read."""
    try:
        queued = [t for t, _ in client.store.records_by_status(frozenset({Status.QUEUED.value}))]
    except redis.RedisError as e:
        raise client.redis_down(e) from None
    return list(dict.fromkeys(queued + _unread_task_ids(client)))  # each once, in order


def purge(client: Client, by: str | None = None, task_ids: Sequence[str] | None = None) -> list[Outcome]:
    """Cancel every task not started yet (``task_ids``, default ``unstarted_tasks(client)``,
    e.g. the list an operator confirmed); a task that started meanwhile is left to run (``started``)."""
    ids = unstarted_tasks(client) if task_ids is None else list(task_ids)
    return _cancel(client, ids, by or operator_name(), unstarted=True)


def _unread_task_ids(client: Client) -> list[str]:
    """The task ids in TASKS past the scheduler's committed offsets (a message with no readable id
    is not a task: the scheduler dead-letters it)."""
    cfg = client.config
    consumer = _reader(client, kafka_io.scheduler_group(cfg.topics.tasks))
    try:
        tps = kafka_io.assign_all(consumer, [cfg.topics.tasks])
        start = {tp: consumer.committed(tp) or 0 for tp in tps}
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        aliases = cfg.tasks.accept_aliases
        ids = (sniff_task_id(rec.value or b"", aliases) for _, rec in _read(consumer, start))
        return [t for t in ids if t is not None]
    except KafkaError as e:
        raise ServiceUnavailable(f"could not read {cfg.topics.tasks}: {e}") from None
    finally:
        consumer.close(autocommit=False)


# --- dead letters ---
def dead_letters(client: Client) -> list[DeadLetter]:
    """Every message in the dead-letter topic (as long as Kafka keeps them:
    ``topics.dead_letter_retention``), oldest first per partition."""
    cfg = client.config
    consumer = _reader(client, None)
    try:
        tps = kafka_io.assign_all(consumer, [cfg.topics.dead_letter])
        start = consumer.beginning_offsets(tps)
        consumer.seek_to_beginning(*tps)
        return [_dead_letter(tp, rec) for tp, rec in _read(consumer, start)]
    except KafkaError as e:
        raise ServiceUnavailable(f"could not read {cfg.topics.dead_letter}: {e}") from None
    finally:
        consumer.close(autocommit=False)


def replay(client: Client, ids: Sequence[str] | None = None) -> list[Outcome]:
    """Produce dead letters (``partition:offset``; None: all of them) to TASKS again, as they are.

    For when what made them fail is fixed (a task module deployed, a producer
    corrected). A dead letter that names a task that has ended is not replayed
    (the scheduler would drop it): ``retry`` that task instead. Replaying one
    twice is harmless for a task with an id: a known id is never run twice.
    """
    letters = {d.id: d for d in dead_letters(client)}
    chosen = list(letters) if ids is None else list(ids)
    statuses = _statuses(client, [letters[i].task_id or "" for i in chosen if i in letters])
    out, sends = [], []
    producer = client.producer()
    for i in chosen:
        d = letters.get(i)
        if d is None:
            out.append(Outcome(i, "not_found", "no such dead letter (partition:offset)"))
            continue
        st = statuses.get(d.task_id or "")
        if st in TERMINAL:
            out.append(Outcome(i, "ended", f"task {d.task_id} has ended ({st}): use `retry {d.task_id}`"))
            continue
        sends.append(producer.send(client.config.topics.tasks, d.value, headers=[
            ("replayed-from", f"{client.config.topics.dead_letter}:{d.id}".encode())]))
        out.append(Outcome(i, "replayed", f"task {d.task_id}" if d.task_id else "no task id"))
    try:
        producer.flush(timeout=30)
        kafka_io.check_sent(sends, "a replayed dead letter")
    except KafkaError as e:
        raise ServiceUnavailable(f"Kafka did not take the replayed messages ({e}); replay them again") from None
    return out


def _dead_letter(tp: TopicPartition, rec: ConsumerRecord) -> DeadLetter:
    headers = dict(rec.headers or [])
    value: bytes = rec.value or b""
    error = (headers.get("error") or b"").decode("utf-8", "replace")
    return DeadLetter(f"{tp.partition}:{rec.offset}", rec.timestamp / 1000, error, sniff_task_id(value), value)


def _statuses(client: Client, task_ids: list[str]) -> dict[str, str | None]:
    ids = sorted({t for t in task_ids if t})
    try:
        return dict(zip(ids, client.store.statuses(ids), strict=True)) if ids else {}
    except redis.RedisError as e:
        raise client.redis_down(e) from None


# --- reading a topic to its end ---
def _reader(client: Client, group: str | None) -> KafkaConsumer:
    """A consumer that reads and never commits (``group`` only to read that group's offsets)."""
    return kafka_io.consumer(client.config.kafka, group)


def _read(consumer: KafkaConsumer, start: dict[TopicPartition, int]) -> Iterable[tuple[TopicPartition, ConsumerRecord]]:
    """(partition, record) of every record from ``start`` to the end offsets of now."""
    end = consumer.end_offsets(list(start))
    left = {tp for tp in start if start[tp] < end[tp]}
    deadline = time.monotonic() + READ_TIMEOUT
    while left:
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"reading {sorted(tp.topic for tp in left)[0]} took over {READ_TIMEOUT:g}s")
        for tp, recs in consumer.poll(timeout_ms=500).items():
            for rec in recs:
                if rec.offset < end[tp]:
                    yield tp, rec
            if consumer.position(tp) >= end[tp]:
                left.discard(tp)


# --- helpers ---
def _checked_ids(task_ids: list[str]) -> tuple[list[str], dict[str, Outcome]]:
    """The valid ids (each once), and an ``invalid`` outcome for each other."""
    valid, out = [], {}
    for t in task_ids:
        try:
            check_task_id(t)
        except InvalidMessage as e:
            out[t] = Outcome(t, "invalid", e.reason)
            continue
        if t not in valid:
            valid.append(t)
    return valid, out


def _run(client: Client, batch: Batch) -> None:
    try:
        client.store.execute(batch)
    except redis.RedisError as e:
        raise client.redis_down(e) from None


def _float(text: str | None) -> float:
    try:
        return float(text or "")
    except ValueError:
        return 0.0


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '10m', '2h', '1d', '1w' or '1h30m'; YadtqError if it is not one."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise YadtqError(f"not a duration: {text!r} (expected e.g. 90, 30s, 10m, 2h, 1d or 1h30m)")
    return sum(float(n) * _UNITS[u or "s"] for n, u in parts)


__all__ = ["DeadLetter", "Outcome", "cancel", "dead_letters", "failed_tasks", "parse_duration", "purge",
           "replay", "retry", "retry_failed", "unstarted_tasks"]
