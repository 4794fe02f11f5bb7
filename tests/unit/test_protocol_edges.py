"""The wire format at its exact bounds, and the bytes it writes (issue 12, protocol.py's mutants).

Each bound is tested on both sides: the largest message, name, result and nesting taken, one more
refused; and the window of each best-effort sniff. No services.
"""

from __future__ import annotations

import json

import pytest

from client.errors import InvalidMessage, InvalidResult
from client.protocol import (
    MAX_DEPTH,
    MAX_NAME_CHARS,
    Heartbeat,
    Task,
    TaskLimits,
    WorkerDown,
    _short,
    check_task,
    encode_event,
    encode_result,
    parse_pid,
    parse_task,
    sniff_attempt,
    sniff_task_id,
)


def message_of(size: int) -> bytes:
    """A valid task message of exactly ``size`` bytes."""
    head, tail = b'{"task-id":"t1","task":"echo","args":["', b'"]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_message_of_exactly_the_size_limit_is_taken_one_byte_more_is_not() -> None:
    limits = TaskLimits(max_bytes=200)
    assert parse_task(message_of(200), limits).task_id == "t1"
    with pytest.raises(InvalidMessage, match="message is 201 bytes, over the limit of 200") as e:
        parse_task(message_of(201), limits)
    assert e.value.task_id == "t1"


def test_a_task_name_of_exactly_the_limit_is_taken() -> None:
    name = "n" * MAX_NAME_CHARS
    assert parse_task(json.dumps({"task-id": "t1", "task": name}).encode()).name == name
    with pytest.raises(InvalidMessage, match="'task' must be a non-empty string"):
        parse_task(json.dumps({"task-id": "t1", "task": name + "n"}).encode())


def nested(depth: int) -> bytes:
    """A task whose message nests lists and objects ``depth`` deep (the message's own object counts),
    with more brackets than MAX_DEPTH side by side, so that the depth is measured, not only counted."""
    side_by_side = b",[]" * (MAX_DEPTH + 10)
    return (b'{"task-id":"t1","task":"echo","args":' + b"[" * (depth - 1) + b"]" * (depth - 1)
            + b',"kwargs":{"k":[0' + side_by_side + b"]}}")


def test_nesting_of_exactly_max_depth_is_taken_when_measured_one_more_is_not() -> None:
    assert parse_task(nested(MAX_DEPTH)).task_id == "t1"
    with pytest.raises(InvalidMessage, match="nested too deeply") as e:
        parse_task(nested(MAX_DEPTH + 1))
    assert e.value.task_id == "t1"


def test_a_task_too_deep_to_encode_is_refused_with_its_id() -> None:
    args: list[object] = []
    for _ in range(100_000):
        args = [args]
    with pytest.raises(InvalidMessage) as e:
        check_task(Task("t1", "echo", args))
    assert (e.value.reason, e.value.task_id) == ("the task's arguments are nested too deeply", "t1")


def test_a_result_of_exactly_max_bytes_is_stored() -> None:
    assert encode_result("x" * 8, max_bytes=10) == '"xxxxxxxx"'
    with pytest.raises(InvalidResult, match="is 11 bytes as JSON, over the limit of 10"):
        encode_result("x" * 9, max_bytes=10)


def test_events_are_written_with_the_protocol_version() -> None:
    """A reader of a later release tells the format by ``v``: it must be on the wire, not defaulted."""
    assert encode_event(Heartbeat("W1", "worker", 42, 1.5)) == \
        b'{"v":1,"type":"heartbeat","sender":"W1","role":"worker","pid":42,"ts":1.5,"running":null}'
    assert encode_event(WorkerDown("W1", "gone", 2.0, 7)) == \
        b'{"v":1,"type":"worker-down","worker":"W1","reason":"gone","ts":2.0,"pid":7}'


@pytest.mark.parametrize(("text", "pid"), [("999999999", 999999999), ("1234567890", 0)])
def test_a_pid_read_back_has_at_most_nine_digits(text: str, pid: int) -> None:
    assert parse_pid(text) == pid


def test_the_task_id_is_sniffed_in_the_first_4_kib_only() -> None:
    def with_id_ending_at(end: int) -> bytes:  # the id's closing quote is byte number ``end``
        tail = b'"task-id":"abc"'
        return b'{"pad":"' + b"x" * (end - len(tail) - 10) + b'",' + tail + b"}"

    assert with_id_ending_at(4096)[4095:4096] == b'"'
    assert sniff_task_id(with_id_ending_at(4096)) == "abc"
    assert sniff_task_id(with_id_ending_at(4097)) is None


def test_the_attempt_is_sniffed_in_the_last_512_bytes_only() -> None:
    def with_tail_of(size: int) -> bytes:  # '"attempt":...}' is the last ``size`` bytes
        tail = b'"attempt":7,"worker":"' + b"w" * (size - 24) + b'"}'
        assert len(tail) == size
        return b'{"task-id":"t1",' + tail

    assert sniff_attempt(with_tail_of(512)) == 7
    assert sniff_attempt(with_tail_of(513)) is None


@pytest.mark.parametrize(("value", "shown"), [
    ("x", "'x'"),
    ("x" * 58, "'" + "x" * 58 + "'"),  # 60 characters: whole
    ("x" * 59, "'" + "x" * 56 + "..."),  # 61: cut to 57 and the dots
])
def test_a_value_in_an_error_is_shown_whole_up_to_60_characters(value: str, shown: str) -> None:
    assert _short(value) == shown
