"""The wire format: what is accepted, what is refused and why."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.errors import InvalidMessage
from client.protocol import (
    Assignment,
    Heartbeat,
    Task,
    TaskOptions,
    TasksFinished,
    WorkerDown,
    encode,
    encode_assignment,
    encode_event,
    encode_task,
    parse_assignment,
    parse_event,
    parse_task,
)

LIMIT = 10_000


def parse(obj: object) -> Task:
    return parse_task(json.dumps(obj).encode(), max_bytes=LIMIT)


def test_the_seed_format_is_accepted_as_is() -> None:
    t = parse({"task-id": "d5750c0e-ed82", "task": "add", "args": [1, 2]})
    assert t == Task("d5750c0e-ed82", "add", [1, 2], {}, TaskOptions())


def test_optional_fields_and_unknown_fields() -> None:
    t = parse({"task-id": "x1", "task": "f", "kwargs": {"a": 1}, "options": {"timeout": 2, "max_retries": 0},
               "something-new": True})
    assert (t.args, t.kwargs, t.options) == ([], {"a": 1}, TaskOptions(2.0, 0))


def test_task_round_trip() -> None:
    t = Task("id-1", "add", [1, {"x": "ü"}], {"k": [1]}, TaskOptions(1.5, 2))
    assert parse_task(encode_task(t), max_bytes=LIMIT) == t


def test_assignment_round_trip() -> None:
    a = Assignment(Task("id-1", "add", [1, 2]), 3, "W2")
    assert parse_assignment(encode_assignment(a)) == a


@pytest.mark.parametrize("event", [
    Heartbeat("W1", "worker", 42, 1.5, None), Heartbeat("W1", "worker", 42, 1.5, "task-9"),
    TasksFinished("W1", [["t", 2, "success"], ["u", 1, "retry"]]), WorkerDown("W3", "exit code -9", 3.0),
])
def test_event_round_trip(event: object) -> None:
    assert parse_event(encode_event(event)) == event  # type: ignore[arg-type]


@pytest.mark.parametrize(("raw", "reason", "task_id"), [
    (b"not json", "not valid JSON", None),
    (b"\xff\xfe", "not UTF-8", None),
    (b"[1, 2]", "must be a JSON object, got list", None),
    (b'{"task": "add"}', "'task-id' must be", None),
    (b'{"task-id": "", "task": "add"}', "'task-id' must be", None),
    (b'{"task-id": "a b", "task": "add"}', "'task-id' must be", None),
    (b'{"task-id": "yadtq:assignments", "task": "add"}', "may not start with", None),
    (b'{"task-id": "t1"}', "'task' must be a non-empty string", "t1"),
    (b'{"task-id": "t1", "task": "add", "args": 5}', "'args' must be a list", "t1"),
    (b'{"task-id": "t1", "task": "add", "kwargs": []}', "'kwargs' must be an object", "t1"),
    (b'{"task-id": "t1", "task": "add", "options": {"timeout": 0}}', "'options.timeout'", "t1"),
    (b'{"task-id": "t1", "task": "add", "options": {"max_retries": -1}}', "'options.max_retries'", "t1"),
    (b'{"v": 99, "task-id": "t1", "task": "add"}', "unsupported message version 99", "t1"),
])
def test_invalid_messages_say_why(raw: bytes, reason: str, task_id: str | None) -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_task(raw, max_bytes=LIMIT)
    assert reason in e.value.reason
    assert e.value.task_id == task_id


def test_deep_nesting_is_invalid_not_a_crash() -> None:
    # Under the size limit, but deep enough to exhaust the JSON parser's stack:
    # a RecursionError escaping here would crash-loop the scheduler.
    raw = b'{"task-id": "a", "task": "add", "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        parse_task(raw, max_bytes=1_000_000)
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        parse_event(b'{"type": "heartbeat", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_an_oversized_message_still_names_its_task() -> None:
    raw = encode({"task-id": "big-1", "task": "echo", "args": ["x" * LIMIT]})
    with pytest.raises(InvalidMessage, match=f"over the limit of {LIMIT}") as e:
        parse_task(raw, max_bytes=LIMIT)
    assert e.value.task_id == "big-1"


def test_unknown_event_type() -> None:
    with pytest.raises(InvalidMessage, match="unknown status event type"):
        parse_event(b'{"type": "gossip"}')


@pytest.mark.parametrize(("raw", "reason"), [
    (b'{"type": "tasks-finished", "worker": "W1", "tasks": 5}', "'tasks' must be a list, got 5"),
    (b'{"type": "tasks-finished", "worker": "W1", "tasks": [["t", "1", "success"]]}',
     "each of 'tasks' must be [task id, attempt, status], got ['t', '1', 'success']"),
    (b'{"type": "tasks-finished", "worker": "W1"}', "bad tasks-finished event"),
])
def test_a_bad_tasks_finished_event_says_why(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=re.escape(reason)):
        parse_event(raw)


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_raise_invalid_message(raw: bytes) -> None:
    try:
        parse_task(raw, max_bytes=LIMIT)
    except InvalidMessage as e:
        assert e.reason


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=6)


# Generating nested JSON is slow on a busy 2-core machine; that is not what is under test.
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["task-id", "task", "args", "kwargs", "options", "v", "x"]), json_values))
def test_any_json_object_parses_or_raises_invalid_message(obj: dict[str, object]) -> None:
    try:
        t = parse(obj)
    except InvalidMessage as e:
        assert e.reason
    else:
        assert parse_task(encode_task(t), max_bytes=LIMIT) == t
