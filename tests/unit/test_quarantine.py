"""The quarantine's pure logic: decisions, marks, and careful mode's ranges."""

from __future__ import annotations

import signal

import pytest
import redis
from kafka.errors import KafkaError
from kafka.structs import TopicPartition

from client.errors import ServiceUnavailable
from client.protocol import sniff_task_id
from worker_pool import quarantine
from worker_pool.process import EXIT_HARD_LIMIT, EXIT_SERVICE_LOST, exit_on_service_loss, service_lost
from worker_pool.quarantine import TRIES, Guard, Mark, decide


class Marks:
    """An in-memory stand-in for the store's three quarantine methods."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}

    def quarantine_mark(self, field: str) -> str | None:
        return self.marks.get(field)

    def set_quarantine_mark(self, field: str, mark: str) -> None:
        self.marks[field] = mark

    def clear_quarantine_marks(self, fields: list[str]) -> None:
        for f in fields:
            self.marks.pop(f, None)


TP = TopicPartition("T", 0)


def test_a_new_offset_gets_its_first_try() -> None:
    assert decide(None, 7) == Mark(7, 1)
    assert decide(Mark(6, TRIES), 7) == Mark(7, 1)  # the previous one was passed: it did not kill


def test_the_same_offset_counts_tries_until_the_limit_then_quarantines() -> None:
    assert decide(Mark(7, 1), 7) == Mark(7, 2)
    assert decide(Mark(7, TRIES - 1), 7) == Mark(7, TRIES)
    assert decide(Mark(7, TRIES), 7) is None
    assert decide(Mark(7, 5), 7, limit=5) is None


def test_marks_round_trip_and_junk_counts_as_absent() -> None:
    assert quarantine.decode(Mark(12, 2).encode()) == Mark(12, 2)
    for junk in (None, "", "x", "1:y", ":"):
        assert quarantine.decode(junk) is None


def test_only_crashes_make_the_next_process_careful() -> None:
    for code in (1, 2, 120, -signal.SIGSEGV, -signal.SIGABRT):
        assert quarantine.abnormal(code), code
    for ordinary in (None, 0, EXIT_SERVICE_LOST, EXIT_HARD_LIMIT, 4, -signal.SIGKILL, -signal.SIGTERM):
        assert not quarantine.abnormal(ordinary), ordinary


def test_a_message_that_kills_every_careful_reader_is_quarantined_after_the_limit() -> None:
    marks = Marks()
    for attempt in range(1, TRIES + 1):  # each process records, then dies handling offset 5
        g = Guard(marks, "g", {TP: (5, 9)})
        assert g.check(TP, 5) == attempt
    g = Guard(marks, "g", {TP: (5, 9)})
    assert g.check(TP, 5) == -TRIES
    g.passed(TP, 6)  # committed past it
    assert g.check(TP, 6) == 1 and g.careful()
    g.passed(TP, 9)  # past the range it started with: careful mode ends, and its mark goes
    assert not g.careful() and marks.marks == {}
    assert g.check(TP, 9) == 0


def test_the_first_offset_past_the_range_ends_careful_mode_and_records_nothing() -> None:
    marks = Marks()
    g = Guard(marks, "g", {TP: (5, 7)})
    assert g.check(TP, 6) == 1 and marks.marks == {"g|T|0": "6:1"}  # recorded under this group's field
    assert g.check(TP, 7) == 0  # the end offset is past the range: handled normally
    assert not g.careful() and marks.marks == {}


def test_careful_is_per_partition() -> None:
    g = Guard(Marks(), "g", {TP: (5, 6)})
    assert g.careful() and g.careful(TP) and not g.careful(TopicPartition("T", 1))


def test_a_guard_with_nothing_uncommitted_is_not_careful() -> None:
    marks = Marks()
    g = Guard(marks, "g", {TP: (4, 4), TopicPartition("T", 1): (0, 0)})
    assert not g.careful() and not g.careful(TP)
    assert g.check(TP, 4) == 0 and marks.marks == {}


def test_fields_name_group_topic_and_partition() -> None:
    assert quarantine.field("yadtq-worker.W1", TopicPartition("W1", 0)) == "yadtq-worker.W1|W1|0"


def test_task_ids_are_found_without_parsing() -> None:
    assert sniff_task_id(b'{"task": {"x": [1], "task-id": "a1"}') == "a1"
    assert sniff_task_id(b'\xff{"task-id" : "t-2", "args": [') == "t-2"
    for raw in (b"", b'{"task-id": 3}', b'{"task-id": "-bad"}', b'{"task-id": "a\\u0000"}', b'{"task-id": "\xff"}'):
        assert sniff_task_id(raw) is None, raw


def test_after_a_quarantine_the_range_can_grow_to_cover_copies_of_its_task() -> None:
    g = Guard(Marks(), "g", {TP: (5, 6)})
    g.extend({TP: 9, TopicPartition("T", 1): 4})
    assert g.ranges == {TP: (5, 9)}  # a partition no longer careful stays so


def test_careful_per_topic() -> None:
    g = Guard(Marks(), "g", {TP: (5, 6), TopicPartition("S", 0): (0, 0)})
    assert g.careful_topic("T") and not g.careful_topic("S")


@pytest.mark.parametrize("error", [
    redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout reading from socket"),
    redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's unable to persist"),
    ServiceUnavailable("Kafka at localhost:9092 does not answer"), KafkaError("broker away"),
])
def test_only_a_service_that_is_away_ends_a_process_with_service_lost(error: Exception) -> None:
    with pytest.raises(SystemExit) as ended, exit_on_service_loss("worker W1"):
        raise error
    assert ended.value.code == EXIT_SERVICE_LOST


@pytest.mark.parametrize("error", [
    redis.ResponseError("ERR value is not an integer or out of range"),
    redis.ResponseError("ERR user_script:12: Script attempted to access nonexistent global variable 'x'"),
    redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis.exceptions.NoPermissionError("this user has no permissions to access one of the keys"),
    redis.DataError("Invalid input of type: 'NoneType'"),
])
def test_a_command_redis_refused_is_a_crash_that_makes_the_next_process_careful(error: Exception) -> None:
    # DESIGN 4.6: these meant exit 3, which the quarantine takes as "nothing to do with the message": a
    # record whose value made a script fail restarted its reader onto the same message for ever.
    assert not service_lost(error)
    with pytest.raises(type(error)), exit_on_service_loss("scheduler"):
        raise error
    assert quarantine.abnormal(1)  # what an uncaught exception ends a multiprocessing child with
