"""The status topic as readable lines, for ``yadtq events``.

Each message on ``topics.status`` is parsed with ``parse_event`` (the checks
the scheduler and supervisor apply) and shown as one line; a message that is
not a valid event is shown as such, with the reason, and the reading goes on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from client import kafka as kafka_io
from client.config import Config
from client.errors import InvalidMessage
from client.protocol import Heartbeat, TasksFinished, WorkerDown, parse_event, safe_text

TASKS_SHOWN = 5  # of a tasks-finished batch, the first ones named; the rest counted


def describe(raw: bytes, at_ms: int, where: str) -> str:
    """One message of the status topic as a line: its time (Kafka's timestamp), its kind, what it says.
    ``where`` (``topic:partition@offset``) is named for an invalid message. Never raises."""
    stamp = datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    try:
        ev = parse_event(raw)
    except InvalidMessage as e:
        return f"{stamp} invalid event at {where}: {safe_text(e.reason)}"
    if isinstance(ev, Heartbeat):
        doing = f"running {ev.running}" if ev.running else "idle"
        return f"{stamp} heartbeat {ev.sender} ({ev.role}, pid {ev.pid}) {doing}"
    if isinstance(ev, TasksFinished):
        return f"{stamp} tasks-finished {ev.worker}: {_finished(ev.tasks)}"
    assert isinstance(ev, WorkerDown)
    return f"{stamp} worker-down {ev.worker} (pid {ev.pid}): {safe_text(ev.reason)}"


def _finished(tasks: list[list[Any]]) -> str:
    shown = [f"{t} {status}" + (f" (attempt {attempt})" if attempt > 1 else "")
             for t, attempt, status in tasks[:TASKS_SHOWN]]
    more = f" and {len(tasks) - TASKS_SHOWN} more" if len(tasks) > TASKS_SHOWN else ""
    return ", ".join(shown) + more


def read_status(config: Config, *, follow: bool, from_beginning: bool, last: int,
                poll_ms: int = 500) -> Iterator[tuple[bytes, int, str]]:
    """``(raw message, Kafka timestamp in ms, where)`` of the status topic, oldest first per partition.

    It starts ``last`` messages before the end of each partition, or at the
    oldest one Kafka still keeps (``from_beginning``). Without ``follow`` it
    stops at the end the topic had when it started; with it, it waits for new
    messages until the caller stops iterating. Reads with no consumer group:
    nothing is committed, no other reader is disturbed.
    """
    c = kafka_io.consumer(config.kafka, None, fetch_max_wait_ms=poll_ms)
    try:
        parts = kafka_io.assign_all(c, [config.topics.status])
        begins, ends = c.beginning_offsets(parts), c.end_offsets(parts)
        for tp in parts:
            c.seek(tp, begins[tp] if from_beginning else max(begins[tp], ends[tp] - last))
        while follow or any(c.position(tp) < ends[tp] for tp in parts):
            for tp, records in c.poll(timeout_ms=poll_ms).items():
                for r in records:
                    if follow or r.offset < ends[tp]:
                        yield r.value, r.timestamp, f"{tp.topic}:{tp.partition}@{r.offset}"
    finally:
        c.close()
