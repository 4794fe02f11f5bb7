"""Property tests built from the message grammar: valid messages, and messages
with exactly one field made wrong.

The strategies of test_protocol.py draw whole objects at random, and almost all
of them fail at the first check (the task id), so the checks after it were never
explored. Here a valid message is drawn first and then one field is made wrong,
so every check of the parser is reached; each example records which branch it
took (``hypothesis.event``, shown by ``--hypothesis-show-statistics``), and the
last test asserts that every branch was reached at least once.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from client.errors import InvalidMessage
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
    encode_task,
    parse_assignment,
    parse_event,
    parse_task,
)

LIMITS = TaskLimits(max_bytes=10_000, max_timeout=600.0, max_retries=10)
# Which branch each example reached, over the whole run (see the last test).
REACHED: Counter[str] = Counter()
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_FIELD = settings(FAST, max_examples=40)


def reached(label: str) -> None:
    event(label)
    REACHED[label] += 1


# --- The grammar of a valid task ------------------------------------------

_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,40}"
task_ids = st.from_regex(_ID_PATTERN, fullmatch=True).filter(lambda t: "yadtq:" not in t)
names = st.from_regex(r"[a-z][a-z0-9_.]{0,40}", fullmatch=True)  # a registered task's name
topic_names = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
leaves = st.none() | st.booleans() | st.integers(-2**63, 2**63) | finite | st.text(max_size=8)
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)
options = st.fixed_dictionaries({}, optional={
    "timeout": st.floats(0, LIMITS.max_timeout, exclude_min=True) | st.integers(1, int(LIMITS.max_timeout)),
    "max_retries": st.integers(0, LIMITS.max_retries)})


@st.composite
def valid_tasks(draw: st.DrawFn) -> tuple[dict[str, Any], Task]:
    """A task message as a JSON object (the id first, as sniffing expects) and the Task it means."""
    obj: dict[str, Any] = {"task-id": draw(task_ids)}
    if draw(st.booleans()):
        obj["v"] = 1
    obj["task"] = draw(names)
    args = draw(st.lists(json_values, max_size=4))
    kwargs = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    opts = draw(options)
    for key, value in (("args", args), ("kwargs", kwargs), ("options", opts)):
        if value or draw(st.booleans()):  # an empty field may be left out
            obj[key] = value
    timeout, retries = opts.get("timeout"), opts.get("max_retries")
    task = Task(obj["task-id"], obj["task"], args, kwargs,
                TaskOptions(None if timeout is None else float(timeout), None if retries is None else int(retries)))
    return obj, task


# --- One field made wrong ------------------------------------------------------

def _not(pattern: str) -> Callable[[str], bool]:
    return lambda s: re.fullmatch(pattern, s) is None


junk = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
bad_ids = st.one_of(  # None is no id, but also "not running" in a heartbeat: drawn where it is wrong
    st.integers(), st.lists(st.integers(), max_size=2), st.just(""), st.just("a" * 201),
    st.text(min_size=1, max_size=10).filter(_not(_ID_PATTERN)))
# In the alphabet, but holding the marker of YADTQ's own keys.
reserved_ids = st.tuples(task_ids, st.just("") | task_ids).map(lambda p: f"{p[0]}yadtq:{p[1]}")
bad_names = st.none() | st.integers() | st.just("") | st.just("f" * 201) | st.lists(names, max_size=2)
bad_timeouts = st.one_of(
    st.floats(max_value=0, allow_nan=False, allow_infinity=False), st.integers(max_value=0), st.booleans(),
    st.text(max_size=4), st.lists(st.integers(1, 5), max_size=2))
over_timeouts = (st.floats(min_value=LIMITS.max_timeout, exclude_min=True, allow_infinity=False)
                 | st.integers(min_value=int(LIMITS.max_timeout) + 1))
bad_retries = st.one_of(st.integers(max_value=-1), st.booleans(), st.text(max_size=4), finite)
over_retries = st.integers(min_value=LIMITS.max_retries + 1)
bad_versions = junk.filter(lambda v: v != 1)  # True == 1 == 1.0 in Python, and in the parser
surrogates = st.characters(categories=["Cs"])


def _deep(n: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(n):
        value = [value]
    return value


def _replace(key: str, values: st.SearchStrategy[Any]) -> Callable[[st.DrawFn, dict[str, Any]], None]:
    """A mutation: set ``key`` to a drawn wrong value, or (if the strategy draws ...) remove it."""
    def mutate(draw: st.DrawFn, obj: dict[str, Any]) -> None:
        value = draw(values)
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return mutate


def _option(key: str, values: st.SearchStrategy[Any]) -> Callable[[st.DrawFn, dict[str, Any]], None]:
    def mutate(draw: st.DrawFn, obj: dict[str, Any]) -> None:
        obj["options"] = {**obj.get("options", {}), key: draw(values)}
    return mutate


def _oversize(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    obj["args"] = [*obj.get("args", []), "x" * draw(st.integers(LIMITS.max_bytes, LIMITS.max_bytes + 100))]


def _nest(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    # The message object and args are two levels; _deep(n) is n + 1 more.
    obj["args"] = [*obj.get("args", []), _deep(draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 50)))]


def _surrogate(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    s = draw(surrogates)
    where = draw(st.sampled_from(["task", "args", "kwargs key", "kwargs value", "options key"]))
    if where == "task":
        obj["task"] += s
    elif where == "args":
        obj["args"] = [*obj.get("args", []), [f"a{s}b"]]
    elif where == "options key":
        obj["options"] = {**obj.get("options", {}), s: 1}
    else:
        kwargs = obj.setdefault("kwargs", {})
        kwargs.update({s: 1} if where == "kwargs key" else {"k": {"x": s}})


TASK_MUTATIONS: dict[str, Callable[[st.DrawFn, dict[str, Any]], None]] = {
    "task-id": _replace("task-id", bad_ids | st.none() | st.just(...)),
    "task-id (reserved marker)": _replace("task-id", reserved_ids),
    "task": _replace("task", bad_names | st.just(...)),
    "args": _replace("args", st.none() | st.booleans() | st.integers() | st.text(max_size=4)
                     | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)),
    "kwargs": _replace("kwargs", st.none() | st.booleans() | st.integers() | st.text(max_size=4)
                       | st.lists(st.integers(), max_size=2)),
    "options": _replace("options", st.none() | st.booleans() | st.integers() | st.text(max_size=4)
                        | st.lists(st.integers(), max_size=2)),
    "options.timeout": _option("timeout", bad_timeouts),
    "options.timeout (over the limit)": _option("timeout", over_timeouts),
    "options.max_retries": _option("max_retries", bad_retries),
    "options.max_retries (over the limit)": _option("max_retries", over_retries),
    "v": _replace("v", bad_versions),
    "size": _oversize,
    "nesting": _nest,
    "surrogate": _surrogate,
}


@st.composite
def tasks_with_wrong(draw: st.DrawFn, field: str) -> tuple[bytes, str | None]:
    """A valid task with ``field`` made wrong, and the task id its refusal must carry."""
    obj, task = draw(valid_tasks())
    TASK_MUTATIONS[field](draw, obj)
    # ensure_ascii: a lone surrogate travels as the escape \udXXX, the only way it can.
    return json.dumps(obj).encode(), None if field.startswith("task-id") else task.task_id


# A refusal's reason starts by naming what is wrong: the branch it came from.
TASK_REASONS = [
    ("task-id", r"'task-id' must be"), ("task-id (reserved marker)", r"'task-id' may not"),
    ("task", r"'task' must"), ("args", r"'args' must"), ("kwargs", r"'kwargs' must"),
    ("options", r"'options' must"), ("options.timeout", r"'options\.timeout' must"),
    ("options.timeout (over the limit)", r"options\.timeout \S+ is over"),
    ("options.max_retries", r"'options\.max_retries' must"),
    ("options.max_retries (over the limit)", r"options\.max_retries \S+ is over"),
    ("v", r"unsupported message version"), ("size", r"message is \d+ bytes, over the limit"),
    ("nesting", r"message is nested too deeply"), ("surrogate", r"message holds text that is not valid Unicode"),
]


def branch(reason: str, table: list[tuple[str, str]]) -> str:
    """Which check refused: the first entry whose pattern the reason starts with."""
    for label, pattern in table:
        if re.match(pattern, reason):
            return label
    return f"unclassified: {reason[:40]}"


# --- Tasks ---------------------------------------------------------------------

@FAST
@given(valid_tasks(), st.integers(1, 2**53), topic_names)
def test_a_valid_task_parses_and_round_trips(case: tuple[dict[str, Any], Task], attempt: int, worker: str) -> None:
    obj, task = case
    assert parse_task(encode(obj), LIMITS) == task
    assert parse_task(encode_task(task), LIMITS) == task
    assert parse_task(check_task(task, LIMITS), LIMITS) == task
    a = Assignment(task, attempt, worker)
    assert parse_assignment(encode_assignment(a), LIMITS) == a
    reached("task: parsed")


# One run per field, so that each check is reached however hypothesis draws.
@pytest.mark.parametrize("field", sorted(TASK_MUTATIONS))
@PER_FIELD
@given(data=st.data())
def test_a_task_with_one_wrong_field_is_refused_naming_that_field(field: str, data: st.DataObject) -> None:
    raw, task_id = data.draw(tasks_with_wrong(field))
    try:
        parse_task(raw, LIMITS)
    except InvalidMessage as e:
        label = branch(e.reason, TASK_REASONS)
        assert label == field, e.reason
        assert e.task_id == task_id
        reached(f"task refused: {label}")
    else:
        raise AssertionError(f"accepted with a wrong {field}: {raw[:200]!r}")
    if field == "size":
        return  # an assignment is not size-checked: its task was, before it was assigned
    with_attempt = assignment_bytes(raw.decode(), 1, "W1")
    try:
        parse_assignment(with_attempt, LIMITS)
    except InvalidMessage as e:  # the worker refuses it for the same reason, naming the same task
        assert branch(e.reason, TASK_REASONS) == field and e.task_id == task_id, e.reason
    else:
        raise AssertionError(f"assignment accepted with a wrong {field}: {with_attempt[:200]!r}")


# --- Status events -------------------------------------------------------------

EVENTS: dict[str, st.SearchStrategy[Heartbeat | TasksFinished | WorkerDown]] = {
    "heartbeat": st.builds(Heartbeat, topic_names, st.sampled_from(["worker", "scheduler"]),
                           st.integers(1, 2**32 - 1), finite, st.none() | task_ids),
    "tasks-finished": st.builds(TasksFinished, topic_names, st.lists(st.tuples(
        task_ids, st.integers(1, 2**53), st.sampled_from(REPORT_STATUSES)).map(list), max_size=4)),
    "worker-down": st.builds(WorkerDown, topic_names, st.text(max_size=20), finite, st.integers(0, 2**32 - 1)),
}
events = st.one_of(*EVENTS.values())
bad_topic_names = st.one_of(st.none(), st.integers(), st.just(""), st.just("W" * 250),
                            st.lists(topic_names, max_size=2),
                            st.text(min_size=1, max_size=8).filter(_not(r"[A-Za-z0-9._-]+")))
bad_ts = st.none() | st.booleans() | st.text(max_size=4) | st.lists(finite, max_size=2)


def _bad_pids(minimum: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(max_value=minimum - 1), st.integers(min_value=2**32), st.booleans(),
                     st.text(max_size=4), finite, st.none())


bad_items = st.one_of(
    st.tuples(bad_ids.filter(lambda i: isinstance(i, str) and "yadtq:" not in i), st.just(1), st.just("success")),
    st.tuples(task_ids, st.integers(max_value=0) | st.booleans() | st.text(max_size=3), st.just("success")),
    st.tuples(task_ids, st.just(1), st.text(max_size=8).filter(lambda s: s not in REPORT_STATUSES)),
    st.lists(task_ids, max_size=2), st.integers(), st.none())


def _bad_item(draw: st.DrawFn, obj: dict[str, Any]) -> None:
    item = draw(bad_items)
    obj["tasks"] = [*obj["tasks"], list(item) if isinstance(item, tuple) else item]


def _event_surrogate(key: str) -> Callable[[st.DrawFn, dict[str, Any]], None]:
    def mutate(draw: st.DrawFn, obj: dict[str, Any]) -> None:
        obj[key] = str(obj[key]) + draw(surrogates)
    return mutate


_COMMON = {"v": _replace("v", bad_versions),
           "type": _replace("type", junk.filter(lambda t: t not in ("heartbeat", "tasks-finished", "worker-down")))}
EVENT_MUTATIONS: dict[str, dict[str, Callable[[st.DrawFn, dict[str, Any]], None]]] = {
    "heartbeat": {**_COMMON, "sender": _replace("sender", bad_topic_names), "surrogate": _event_surrogate("sender"),
                  "role": _replace("role", junk.filter(lambda r: r not in ("worker", "scheduler"))),
                  "pid": _replace("pid", _bad_pids(1) | st.just(...)), "ts": _replace("ts", bad_ts | st.just(...)),
                  "running": _replace("running", bad_ids | reserved_ids)},
    "tasks-finished": {**_COMMON, "worker": _replace("worker", bad_topic_names | st.just(...)),
                       "tasks": _replace("tasks", st.none() | st.integers() | st.text(max_size=4) | st.just(...)),
                       "tasks item": _bad_item, "surrogate": _event_surrogate("worker")},
    "worker-down": {**_COMMON, "worker": _replace("worker", bad_topic_names), "surrogate": _event_surrogate("reason"),
                    "reason": _replace("reason", st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=2)),
                    "ts": _replace("ts", bad_ts), "pid": _replace("pid", _bad_pids(0))},
}
EVENT_REASONS = [
    ("v", r"unsupported message version"), ("type", r"unknown status event type"),
    ("surrogate", r"message holds text that is not valid Unicode"),
    ("sender", r"bad \S+ event: 'sender'"), ("role", r"bad \S+ event: 'role'"), ("pid", r"bad \S+ event: 'pid'"),
    ("ts", r"bad \S+ event: 'ts'"), ("running", r"bad \S+ event: 'running'"),
    ("tasks", r"bad \S+ event: 'tasks'"), ("tasks item", r"bad \S+ event: each of 'tasks'"),
    ("worker", r"bad \S+ event: 'worker'"), ("reason", r"bad \S+ event: 'reason'"),
]


@st.composite
def events_with_wrong(draw: st.DrawFn, kind: str, field: str) -> bytes:
    """A valid event of type ``kind`` with ``field`` made wrong."""
    obj = json.loads(encode_event(draw(EVENTS[kind])))
    EVENT_MUTATIONS[kind][field](draw, obj)
    return json.dumps(obj).encode()


EVENT_FIELDS = [(kind, field) for kind, fields in sorted(EVENT_MUTATIONS.items()) for field in sorted(fields)]


@FAST
@given(events)
def test_a_valid_event_parses_and_round_trips(ev: Heartbeat | TasksFinished | WorkerDown) -> None:
    raw = encode_event(ev)
    assert parse_event(raw) == ev
    reached(f"{json.loads(raw)['type']}: parsed")


@pytest.mark.parametrize(("kind", "field"), EVENT_FIELDS)
@PER_FIELD
@given(data=st.data())
def test_an_event_with_one_wrong_field_is_refused_naming_that_field(kind: str, field: str,
                                                                     data: st.DataObject) -> None:
    raw = data.draw(events_with_wrong(kind, field))
    try:
        parse_event(raw)
    except InvalidMessage as e:
        label = branch(e.reason, EVENT_REASONS)
        assert label == field, e.reason
        reached(f"{kind} refused: {label}")
    else:
        raise AssertionError(f"accepted with a wrong {field}: {raw[:200]!r}")


# --- Every branch reached ------------------------------------------------------

EXPECTED = ({"task: parsed"} | {f"task refused: {label}" for label, _ in TASK_REASONS}
            | {f"{kind}: parsed" for kind in EVENT_MUTATIONS}
            | {f"{kind} refused: {field}" for kind, fields in EVENT_MUTATIONS.items() for field in fields})


def test_every_branch_of_the_parsers_was_reached() -> None:
    """Each check of parse_task and parse_event refused at least one example, and
    each kind of message parsed at least once (run the properties here if this
    test runs alone, e.g. with -k)."""
    if not set(REACHED) >= EXPECTED:
        test_a_valid_task_parses_and_round_trips()
        test_a_valid_event_parses_and_round_trips()
        for field in TASK_MUTATIONS:
            test_a_task_with_one_wrong_field_is_refused_naming_that_field(field)
        for kind, field in EVENT_FIELDS:
            test_an_event_with_one_wrong_field_is_refused_naming_that_field(kind, field)
    assert EXPECTED - set(REACHED) == set(), sorted(REACHED.items())
    assert not [label for label in REACHED if "unclassified" in label]
