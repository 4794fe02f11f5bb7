"""The wire format: what is accepted, what is refused and why."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.errors import InvalidMessage, InvalidResult
from client.protocol import (
    MAX_DEPTH,
    REPORT_STATUSES,
    Assignment,
    Heartbeat,
    Task,
    TaskLimits,
    TaskOptions,
    TasksFinished,
    WorkerDown,
    assignment_bytes,
    check_task,
    encode,
    encode_assignment,
    encode_event,
    encode_result,
    encode_task,
    parse_assignment,
    parse_event,
    parse_pid,
    parse_task,
    safe_text,
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
    (b'\xef\xbb\xbf{"task-id": "t1", "task": "add"}', "not valid JSON: Unexpected UTF-8 BOM", None),
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
        event(f"refused: {refusal(e.reason)}")  # raw bytes: nearly all "not UTF-8" or "not valid JSON"
    else:
        event("parsed")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                           max_leaves=6)


# A task object built field by field: each field valid by the grammar or any JSON value (most often
# of a wrong type), the id valid most of the time. Drawn from whole random objects instead, 0 of
# 5,000 parsed (issue 12): every one was refused at its id, and no check after it was explored.
_valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,30}", fullmatch=True).filter(lambda t: "yadtq:" not in t)
_VALID: dict[str, st.SearchStrategy[object]] = {
    "task": st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    "args": st.lists(json_values, max_size=3),
    "kwargs": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "options": st.fixed_dictionaries({}, optional={"timeout": st.floats(0.001, 600),
                                                   "max_retries": st.integers(0, 10)}),
    "v": st.just(1),
}
_WRONG = [None, "task-id", "no task-id", "task", "args", "kwargs", "options", "options.timeout",
          "options.max_retries", "v"]


@st.composite
def task_objects(draw: st.DrawFn, wrong: str | None) -> dict[str, object]:
    """A valid task object (its id, its task, each optional field or not), then the field ``wrong``
    (if any) set to any JSON value (most often of a wrong type), and maybe an unknown field."""
    obj: dict[str, object] = {"task-id": draw(_valid_ids), "task": draw(_VALID["task"])}
    obj.update({k: draw(v) for k, v in _VALID.items() if k != "task" and draw(st.booleans())})
    if wrong == "no task-id":
        del obj["task-id"]
    elif wrong and wrong.startswith("options."):
        obj["options"] = {**(obj.get("options") or {}), wrong.split(".")[1]: draw(json_values)}  # type: ignore[dict-item]
    elif wrong:
        obj[wrong] = draw(json_values)
    if draw(st.booleans()):
        obj["x"] = draw(json_values)
    return obj


# What each example of the property below reached (see the test after it).
OUTCOMES: Counter[str] = Counter()


def outcome(label: str) -> None:
    event(label)
    OUTCOMES[label] += 1


def refusal(reason: str) -> str:
    """The check that refused: the field it names ("'args'"), or the message check ("message is not
    valid JSON", "unsupported message version"), without the value."""
    if m := re.match(r"'[^']+'", reason):
        return m[0]
    if reason.startswith("unsupported message version"):
        return "unsupported message version"
    if m := re.match(r"(options\.\w+) \S+ is over", reason):
        return f"'{m[1]}' over the cluster's limit"
    return reason.split(":", 1)[0]


# Generating nested JSON is slow on a busy 2-core machine; that is not what is under test. One run
# per field made wrong: drawn by hypothesis (sampled_from), the first fields took nearly all examples.
@pytest.mark.parametrize("wrong", _WRONG)
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=25)
@given(data=st.data())
def test_any_json_object_parses_or_raises_invalid_message(wrong: str | None, data: st.DataObject) -> None:
    obj = data.draw(task_objects(wrong))
    try:
        t = parse(obj)
    except InvalidMessage as e:
        assert e.reason
        outcome(f"refused: {refusal(e.reason)}")
    else:
        assert parse_task(encode_task(t), max_bytes=LIMIT) == t
        outcome("parsed and round-tripped")


def test_the_json_object_property_reaches_every_field_check() -> None:
    """The property above reached each check of parse_task's fields and parsed some objects (it is
    run here first if this test runs alone, e.g. with -k)."""
    expected = {"parsed and round-tripped", "refused: unsupported message version",
                *(f"refused: '{f}'" for f in ("task-id", "task", "args", "kwargs", "options", "options.timeout",
                                                "options.max_retries"))}
    if not set(OUTCOMES) >= expected:
        for wrong in _WRONG:
            test_any_json_object_parses_or_raises_invalid_message(wrong)
    assert expected - set(OUTCOMES) == set(), sorted(OUTCOMES.items())
    assert OUTCOMES["parsed and round-tripped"] >= sum(OUTCOMES.values()) // 20, sorted(OUTCOMES.items())



# --- Total parsing: nothing a parsed task holds can make a later step raise ---

@pytest.mark.parametrize("obj", [
    {"task-id": "p", "task": "echo", "args": ["\ud800"]},          # defect 1, as reported
    {"task-id": "p", "task": "echo", "args": [["x", {"k": "a\udfffb"}]]},
    {"task-id": "p", "task": "echo", "kwargs": {"\udc80": 1}},     # in a key
    {"task-id": "p", "task": "echo\ud800"},
    {"task-id": "p", "task": "echo", "options": {"x": "\ud800"}},   # even an ignored field
])
def test_a_lone_surrogate_anywhere_is_refused(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
    with pytest.raises(InvalidMessage, match="not valid Unicode") as e:
        parse_task(raw, max_bytes=LIMIT)
    assert e.value.task_id == "p"
    e.value.reason.encode("utf-8")  # the reason itself can be stored


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999"])
@pytest.mark.parametrize("where", ["args", "timeout"])
def test_nan_and_infinity_are_not_json(number: bytes, where: str) -> None:
    raw = (b'{"task-id": "t1", "task": "add", "args": [' + number + b"]}" if where == "args" else
           b'{"task-id": "t1", "task": "add", "options": {"timeout": ' + number + b"}}")
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        parse_task(raw, max_bytes=LIMIT)


def test_a_huge_integer_is_refused_not_a_crash() -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        parse_task(b'{"task-id": "t1", "task": "add", "args": [' + b"9" * 5000 + b"]}", max_bytes=LIMIT)


@pytest.mark.parametrize("task_id", ["b:yadtq:assignments", "x.yadtq:orphans", "yadtq:load", "ayadtq:"])
def test_a_task_id_holding_yadtqs_key_marker_anywhere_is_refused(task_id: str) -> None:
    with pytest.raises(InvalidMessage, match="'yadtq:'"):
        parse({"task-id": task_id, "task": "add"})


LIMITS = TaskLimits(max_bytes=LIMIT, max_timeout=600.0, max_retries=10)


@pytest.mark.parametrize(("options", "reason"), [
    ({"timeout": 1e9}, "options.timeout 1e+09 is over this cluster's limit (tasks.max_timeout = 600)"),
    ({"timeout": 601}, "options.timeout 601 is over this cluster's limit (tasks.max_timeout = 600)"),
    ({"timeout": True}, "'options.timeout' must be a finite number of seconds > 0, got True"),
    ({"timeout": "5"}, "'options.timeout' must be a finite number"),
    ({"timeout": -1}, "'options.timeout' must be a finite number"),
    ({"max_retries": 11}, "options.max_retries 11 is over this cluster's limit (tasks.max_retries_cap = 10)"),
    ({"max_retries": 1_000_000_000}, "over this cluster's limit (tasks.max_retries_cap = 10)"),
    ({"max_retries": 1.5}, "'options.max_retries' must be an integer >= 0"),
    ({"max_retries": False}, "'options.max_retries' must be an integer >= 0"),
])
def test_options_are_bounded_by_the_clusters_limits(options: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_task(json.dumps({"task-id": "t1", "task": "add", "options": options}).encode(), LIMITS)
    assert reason in e.value.reason and e.value.task_id == "t1"


def test_options_at_the_limits_are_accepted() -> None:
    t = parse_task(encode({"task-id": "t1", "task": "add", "options": {"timeout": 600, "max_retries": 10}}), LIMITS)
    assert t.options == TaskOptions(600.0, 10)


def test_the_default_limits_refuse_an_unbounded_timeout() -> None:
    with pytest.raises(InvalidMessage, match=re.escape("tasks.max_timeout = 86400")):
        parse({"task-id": "t1", "task": "add", "options": {"timeout": 1e9}})


@pytest.mark.parametrize(("task", "reason"), [
    (Task("t1", "echo", [float("nan")]), "cannot be sent as JSON"),
    (Task("t1", "echo", [float("inf")]), "cannot be sent as JSON"),
    (Task("t1", "echo", [{1, 2}]), "cannot be sent as JSON"),
    (Task("t1", "echo", ["\ud800"]), "cannot be sent as JSON"),
    (Task("t1", "echo", [], {"k": object()}), "cannot be sent as JSON"),
    (Task("t1", "echo", [], options=TaskOptions(timeout=float("nan"))), "cannot be sent as JSON"),
    (Task("t1", "echo", [], options=TaskOptions(timeout=1e9)), "tasks.max_timeout"),
    (Task("t1", "echo", ["x" * LIMIT]), "over the limit"),
])
def test_check_task_refuses_what_the_scheduler_would(task: Task, reason: str) -> None:
    with pytest.raises(InvalidMessage, match=re.escape(reason)) as e:
        check_task(task, LIMITS)
    assert e.value.task_id == "t1"


def test_check_task_returns_the_bytes_to_send() -> None:
    t = Task("t1", "add", [1, 2], {"k": "ü"}, TaskOptions(5.0, 1))
    assert parse_task(check_task(t, LIMITS), LIMITS) == t


# --- Status events: every field checked ---

@pytest.mark.parametrize(("event", "reason"), [
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 1, "ts": "soon"}, "'ts' must be a finite number"),
    ({"type": "heartbeat", "sender": ["W1"], "role": "worker", "pid": 1, "ts": 1.0}, "'sender' must be a topic-like"),
    ({"type": "heartbeat", "sender": "", "role": "worker", "pid": 1, "ts": 1.0}, "'sender' must be a topic-like"),
    ({"type": "heartbeat", "sender": "W\ud800", "role": "worker", "pid": 1, "ts": 1.0}, "not valid Unicode"),
    ({"type": "heartbeat", "sender": "W1", "role": "boss", "pid": 1, "ts": 1.0}, "'role' must be one of"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": "abc", "ts": 1.0}, "'pid' must be an integer"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": True, "ts": 1.0}, "'pid' must be an integer"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 0, "ts": 1.0}, "'pid' must be an integer >= 1"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "ts": 1.0}, "'pid' must be an integer"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 1, "ts": True}, "'ts' must be a finite number"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 1, "ts": 1.0, "running": 5}, "'running'"),
    ({"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 1, "ts": 1.0, "running": "yadtq:x"}, "'running'"),
    ({"type": "worker-down", "worker": "W1", "reason": "x", "ts": 1.0, "pid": "abc"}, "'pid' must be an integer"),
    ({"type": "worker-down", "worker": "W1", "reason": "x", "ts": 1.0, "pid": -1}, "'pid' must be an integer >= 0"),
    ({"type": "worker-down", "worker": "W1", "reason": ["x"], "ts": 1.0}, "'reason': expected a string"),
    ({"type": "worker-down", "worker": {"a": 1}, "reason": "x", "ts": 1.0}, "'worker' must be a topic-like"),
    ({"type": "worker-down", "worker": "W1", "reason": "x"}, "'ts' must be a finite number"),
    ({"type": "tasks-finished", "worker": "W1", "tasks": [["t", 0, "success"]]}, "each of 'tasks'"),
    ({"type": "tasks-finished", "worker": "W1", "tasks": [["t", 1, "exploded"]]}, "each of 'tasks'"),
    ({"type": "tasks-finished", "worker": "W1", "tasks": [["a b", 1, "success"]]}, "each of 'tasks'"),
    ({"type": "tasks-finished", "worker": "W1", "tasks": [["t", 1, "success", 4]]}, "each of 'tasks'"),
    ({"type": "tasks-finished", "worker": 7, "tasks": []}, "'worker' must be a topic-like"),
    ({"type": ["heartbeat"]}, "unknown status event type"),
])
def test_a_status_event_with_a_wrong_field_says_why(event: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_event(json.dumps(event).encode())
    assert reason in e.value.reason, e.value.reason


def test_a_worker_down_event_without_pid_means_unknown() -> None:
    ev = parse_event(b'{"type": "worker-down", "worker": "W1", "reason": "gone", "ts": 2}')
    assert ev == WorkerDown("W1", "gone", 2.0, 0)


names = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
task_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,30}", fullmatch=True).filter(lambda t: "yadtq:" not in t)
finite = st.floats(allow_nan=False, allow_infinity=False)
events = st.one_of(
    st.builds(Heartbeat, names, st.sampled_from(["worker", "scheduler"]), st.integers(1, 2**31), finite,
              st.none() | task_ids),
    st.builds(TasksFinished, names, st.lists(st.tuples(task_ids, st.integers(1, 10**6), st.sampled_from(
        REPORT_STATUSES)).map(list), max_size=5)),
    st.builds(WorkerDown, names, st.text(), finite, st.integers(0, 2**31)),
)
wrong = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(),
                                                                                                 max_size=2)


@given(events)
def test_every_valid_event_round_trips(event: Heartbeat | TasksFinished | WorkerDown) -> None:
    assert parse_event(encode_event(event)) == event


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(events, st.data())
def test_any_field_of_an_event_set_to_any_value_parses_to_valid_values_or_says_why(
        event: Heartbeat | TasksFinished | WorkerDown, data: st.DataObject) -> None:
    obj = json.loads(encode_event(event))
    key = data.draw(st.sampled_from(sorted(obj)))
    obj[key] = data.draw(wrong)
    try:
        parsed = parse_event(json.dumps(obj).encode())
    except InvalidMessage as e:
        assert e.reason
        return
    # What the scheduler and the supervisor do with an event must not raise.
    encode_event(parsed)
    for name in ("ts", "pid"):
        if hasattr(parsed, name):
            assert float(getattr(parsed, name)) == getattr(parsed, name)


# Text with lone surrogates among ordinary letters: st.text() leaves them out by default.
nasty_text = st.text(st.characters(categories=["Cs", "Ll", "Nd"]), max_size=4)
nasty_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty_text, inner, max_size=3),
                          max_leaves=6)


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(task_ids, nasty_text | st.just("add"), nasty_json, nasty_json, nasty_json)
def test_a_task_that_parses_can_be_encoded_stored_and_assigned(
        task_id: str, name: str, args: object, kwargs: object, options: object) -> None:
    obj = {"task-id": task_id, "task": name, "args": [args], "kwargs": {"k": kwargs}, "options": options}
    try:
        t = parse_task(json.dumps(obj).encode(), LIMITS)  # NaN and Infinity go out as the bare words
    except InvalidMessage as e:
        # Not JSON at all (a bare NaN) names no task; anything else names it.
        assert e.task_id == (None if "not valid JSON" in e.reason else task_id)
        assert e.reason.encode("utf-8")
        return
    payload = encode_task(t).decode()  # what the scheduler stores and forwards: must not raise
    assert parse_assignment(assignment_bytes(payload, 1, "W1"), LIMITS).task == t


# --- A task's return value ---

def deep(n: int) -> list[object]:
    value: list[object] = []
    for _ in range(n):
        value = [value]
    return value


@pytest.mark.parametrize(("value", "reason"), [
    (deep(100_000), "nested too deeply"),
    ("name-\udcff.txt", "cannot be stored as JSON"),   # os.listdir's surrogate escape of a non-UTF-8 byte
    ({"k": ["\ud800"]}, "cannot be stored as JSON"),
    (float("nan"), "cannot be stored as JSON"),
    ({1, 2}, "cannot be stored as JSON"),
    ("x" * 100, "102 bytes as JSON, over the limit of 50"),
])
def test_a_return_value_that_cannot_be_stored_raises_invalid_result(value: object, reason: str) -> None:
    with pytest.raises(InvalidResult, match=re.escape(reason)) as e:
        encode_result(value, max_bytes=50)
    str(e.value).encode("utf-8")  # the error can go into the record


def test_a_result_is_capped_by_default_far_below_what_redis_takes() -> None:
    with pytest.raises(InvalidResult, match="over the limit of 67108864"):
        encode_result("x" * (64 * 1024 * 1024))


def test_encode_result_is_json_text() -> None:
    assert encode_result(3) == "3"
    assert encode_result({"a": ["ü", 1.5, None]}) == '{"a":["ü",1.5,null]}'


def test_safe_text_escapes_only_what_utf8_cannot_hold() -> None:
    assert safe_text("ok ü") == "ok ü"
    assert safe_text("bad \udcff") == "bad \\udcff"


@pytest.mark.parametrize(("text", "pid"), [("123", 123), ("0", 0), (None, 0), ("abc", 0), ("-5", 0), ("1.5", 0),
                                          ("\u0663", 0), ("9" * 40, 0)])
def test_a_pid_read_back_from_redis_is_an_int_or_unknown(text: str | None, pid: int) -> None:
    # Defect 2: a bad pid from an event went into the orphans hash, and int() of it crashed every restart.
    assert parse_pid(text) == pid


@pytest.mark.parametrize("depth", [MAX_DEPTH, 900])  # 900: json.loads takes it, a later encode may not
def test_nesting_is_bounded_so_that_a_parsed_task_can_be_encoded_from_any_depth(depth: int) -> None:
    raw = b'{"task-id": "a", "task": "echo", "args": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    if depth > MAX_DEPTH:
        with pytest.raises(InvalidMessage, match="nested too deeply") as e:
            parse_task(raw, max_bytes=LIMIT)
        assert e.value.task_id == "a"  # its record can say why
        return
    task = parse_task(raw, max_bytes=LIMIT)

    def encode_from(frames: int) -> bytes:  # the scheduler encodes from deep in its own calls
        return encode_task(task) if frames == 0 else encode_from(frames - 1)
    assert encode_from(500) == encode(task.to_wire())


def test_many_lists_side_by_side_are_not_deep() -> None:
    assert parse({"task-id": "a", "task": "echo", "args": [[1]] * 500}).args == [[1]] * 500


# --- what can be read of a message that cannot be parsed ---

def test_an_invalid_assignment_names_its_task_once_the_id_is_read() -> None:
    with pytest.raises(InvalidMessage) as e:
        parse_assignment(b'{"task-id":"t1","task":42,"attempt":1,"worker":"W1"}')
    assert e.value.task_id == "t1" and "'task' must be" in e.value.reason


@pytest.mark.parametrize(("attempt", "worker"), [(0, "W1"), (-1, "W1"), ("1", "W1"), (1.5, "W1"), (True, "W1"),
                                                  (1, ""), (1, "bad/name"), (1, 7), (0, "")])
def test_an_assignment_needs_an_integer_attempt_of_1_or_more_and_a_worker_name(attempt: Any, worker: Any) -> None:
    """Each wrong alone is refused, and the error names the task (the worker fails its record)."""
    raw = json.dumps({"task-id": "t1", "task": "add", "args": [], "attempt": attempt, "worker": worker}).encode()
    with pytest.raises(InvalidMessage, match="assignment needs an integer 'attempt'") as e:
        parse_assignment(raw)
    assert e.value.task_id == "t1"


def test_the_attempt_of_an_unparsable_assignment_is_read_from_where_the_scheduler_writes_it() -> None:
    from client.protocol import sniff_attempt, sniff_task_id

    raw = assignment_bytes('{"task-id":"t1","task":"add","args":["' + "x" * 5000 + '"]}', 12, "W1")
    assert sniff_attempt(raw) == 12 and sniff_attempt(b'{"task-id":"t1",' + raw[-40:]) == 12
    assert sniff_task_id(b'{"task-id": "t1", oops') == "t1"
    for junk in (b"", b"not json", b'{"attempt":0,"worker":"W1"}', b'{"attempt":1,"worker":"W1"} trailing',
                 b'{"attempt":"1","worker":"W1"}', b'{"attempt":1}'):
        assert sniff_attempt(junk) is None, junk
