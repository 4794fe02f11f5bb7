"""The quarantine: the last line of defence against a message that kills its reader (DESIGN §4.6).

Parsing is total, but a message can still kill the process that reads it in
ways no parse step foresees (a bug, a C extension, a task module's import
side effect). Without this, the process restarts, reads the same uncommitted
offset and dies again, for ever.

When a child died abnormally the supervisor starts its replacement in
*careful* mode. For the messages that were uncommitted when it started (the
only ones that can have killed its predecessor), a careful process handles
one at a time: before each it records (offset, tries) in Redis, and it commits
after each. If the offset it is about to handle is the recorded one and its
tries reached ``TRIES``, the message goes to the dead-letter topic instead,
with the reason, and the process goes on. Past that range it leaves careful
mode and costs nothing more: the hot path never touches Redis for this.

This module is the pure part: the decision and the bookkeeping of the range.
The reads and writes are the store's (``ResultStore.quarantine_*``).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Protocol

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from worker_pool.process import EXIT_DEPOSED, EXIT_FENCED, EXIT_HARD_LIMIT, EXIT_ORPHANED, EXIT_SERVICE_LOST

TRIES = 3  # careful tries of one offset before it is dead-lettered
# Exits that say nothing about the message in hand: asked to stop, a service
# lost, the hard time limit (its task is failed already), fenced or orphaned
# (an older generation), or killed from outside (an operator, a chaos run).
_EXPECTED_EXITS = {0, EXIT_SERVICE_LOST, EXIT_FENCED, EXIT_ORPHANED, EXIT_HARD_LIMIT, EXIT_DEPOSED,
                   -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT}


def abnormal(exitcode: int | None) -> bool:
    """Did a child die in a way a message it read may have caused? Then its replacement is careful."""
    return exitcode is not None and exitcode not in _EXPECTED_EXITS


@dataclass(frozen=True)
class Mark:
    """The offset a careful process was about to handle, and how many tried it."""

    offset: int
    tries: int

    def encode(self) -> str:
        return f"{self.offset}:{self.tries}"


def decode(text: str | None) -> Mark | None:
    """A stored mark, or None if absent or unreadable (then it counts as absent)."""
    if not text:
        return None
    offset, _, tries = text.partition(":")
    try:
        return Mark(int(offset), int(tries))
    except ValueError:
        return None


def field(group: str, tp: TopicPartition) -> str:
    """The field of ``Keys.quarantine`` for one consumer group's partition."""
    return f"{group}|{tp.topic}|{tp.partition}"


def decide(recorded: Mark | None, offset: int, limit: int = TRIES) -> Mark | None:
    """Before handling ``offset``: the mark to record, or None to quarantine it.

    The same offset as recorded means the process that recorded it died while
    handling it: one more try, until ``limit`` tries died.
    """
    if recorded is None or recorded.offset != offset:
        return Mark(offset, 1)
    if recorded.tries >= limit:
        return None
    return Mark(offset, recorded.tries + 1)


def reason(tries: int, what: str) -> str:
    """The ``error`` of a quarantined message."""
    return (f"quarantined: the process reading it ({what}) died {tries} times in a row while handling it "
            f"(and it was replaced each time); dead-lettered so that the next messages are handled")


class MarkStore(Protocol):
    """What the guard needs from the store."""

    def quarantine_mark(self, field: str) -> str | None: ...

    def set_quarantine_mark(self, field: str, mark: str) -> None: ...

    def clear_quarantine_marks(self, fields: list[str]) -> None: ...


class Guard:
    """Careful mode for one process: the uncommitted ranges it started with.

    ``ranges`` maps each partition to [first uncommitted offset, end offset)
    at the start. ``check`` before handling a message says whether to handle
    it; ``careful(tp)`` says whether that partition is still read one by one.
    """

    def __init__(self, store: MarkStore, group: str, ranges: dict[TopicPartition, tuple[int, int]]) -> None:
        self.store = store
        self.group = group
        self.ranges = {tp: r for tp, r in ranges.items() if r[0] < r[1]}

    def careful(self, tp: TopicPartition | None = None) -> bool:
        return bool(self.ranges) if tp is None else tp in self.ranges

    def careful_topic(self, topic: str) -> bool:
        """Is some partition of ``topic`` still read one by one?"""
        return any(tp.topic == topic for tp in self.ranges)

    def check(self, tp: TopicPartition, offset: int) -> int:
        """0: handle it normally; N > 0: handle it, try N; -N: quarantine it after N tries."""
        r = self.ranges.get(tp)
        if r is None:
            return 0
        if offset >= r[1]:
            self.leave(tp)
            return 0
        key = field(self.group, tp)
        mark = decide(decode(self.store.quarantine_mark(key)), offset)
        if mark is None:  # the caller commits past it, then calls ``passed``
            return -TRIES
        self.store.set_quarantine_mark(key, mark.encode())
        return mark.tries

    def passed(self, tp: TopicPartition, position: int) -> None:
        """The process committed up to ``position``: leave careful mode there once past the range."""
        r = self.ranges.get(tp)
        if r is not None and position >= r[1]:
            self.leave(tp)

    def extend(self, ends: dict[TopicPartition, int]) -> None:
        """Stay careful up to ``ends``: after a quarantine, copies of its task may follow it
        (the scheduler moves the task of a dead worker), and they would kill the same way."""
        for tp, end in ends.items():
            r = self.ranges.get(tp)
            if r is not None:
                self.ranges[tp] = (r[0], max(r[1], end))

    def leave(self, tp: TopicPartition) -> None:
        del self.ranges[tp]
        self.store.clear_quarantine_marks([field(self.group, tp)])


def uncommitted(consumer: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, tuple[int, int]]:
    """[next offset to read, end offset) of each partition: what a careful process must read one by one."""
    ends = consumer.end_offsets(tps)
    return {tp: (consumer.position(tp), ends[tp]) for tp in tps}
