"""Issue 8, item 3: fuzzing at the process boundary, on the real services.

Hypothesis generates bad messages (raw bytes, JSON of every shape, every task
field and every status-event field with every wrong type, lone surrogates as
JSON escapes, NaN and Infinity literals, huge integers, deep nesting,
oversized messages, ids that collide with existing Redis keys). They are all
sent with a plain KafkaProducer to the TASKS and status topics of one running
cluster, each followed by a good task. Then:

- every good task succeeds;
- no process exited or was restarted (no "is dead", no second "started X",
  the same child pids as before);
- every bad message ended with a clear error: the record of its id is
  terminal (``failed`` with an ``error``; ``success`` only if the message
  happened to be a valid task), or it is on the dead-letter topic with an
  ``error`` header; a bad status event is logged by the scheduler as invalid;
- the Redis keys the colliding ids name are byte-identical afterwards.

Hypothesis only generates here (one ``@given`` collects the messages): a
cluster per example would be far too slow. ``YADTQ_FUZZ_EXAMPLES`` sets how
many bad messages of each kind are made (``make fuzz`` sets a large number).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer

from client.errors import InvalidMessage, YadtqError
from client.protocol import ALIASES, TaskLimits, check_task_id, parse_task
from client.store import Keys
from tests.integration.conftest import KAFKA

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("YADTQ_FUZZ_EXAMPLES", "150"))  # per kind: tasks and status events
LIMIT = 20_000  # tasks.max_message_bytes of the fuzzed cluster
# Kafka's own limit (the broker's message.max.bytes, the producer's
# max_request_size): nothing larger can reach a topic, so it is no input.
KAFKA_LIMIT = 1_000_000
ID = "@@ID@@"  # where the generated task id goes in a message
W1 = "@@W1@@"  # where the id of the cluster's first worker goes in a status event
WAIT = float(os.environ.get("YADTQ_FUZZ_WAIT", "60"))  # seconds for every message to end


@dataclass(frozen=True)
class Literal:
    """JSON text put into a message as is (what json.dumps would refuse or change)."""

    text: str


def dump(value: Any) -> str:
    """JSON text of ``value``; Literals verbatim, lone surrogates as \\ud800 escapes."""
    if isinstance(value, Literal):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)  # NaN and Infinity come out as those literals


# --- strategies -------------------------------------------------------------

SPECIALS = st.sampled_from([
    Literal("NaN"), Literal("Infinity"), Literal("-Infinity"), Literal("1e999"),
    Literal("9" * 5000),  # past Python's int digit limit
    Literal(str(2 ** 64)), Literal(str(-(2 ** 63) - 1)),
    Literal("[" * 1000 + "]" * 1000), Literal("[" * 100_000 + "]" * 100_000),
    Literal('{"a":' * 3000 + "1" + "}" * 3000),
    "\ud800", "\udfff", "a\udc80b", "\x00", "\u2028", "é" * 50,
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30), SPECIALS)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                    max_leaves=12)
# JSON that the parser reads (no NaN, no Infinity, no special): half the values below are drawn from
# it. Drawn from JSON alone, almost every value held a special somewhere in its leaves, and almost
# every message was refused as "not valid JSON" before the checks of its fields.
PLAIN = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2 ** 63, 2 ** 63),
                               st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30)),
                     lambda inner: st.one_of(st.lists(inner, max_size=4),
                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                     max_leaves=8)
ANY = st.one_of(PLAIN, JSON)


def wrong(*good: type) -> st.SearchStrategy[Any]:
    """A JSON value that is not of the types ``good`` (bools count as no number; NaN,
    Infinity and deep nesting count as nothing; None is wrong too)."""
    def bad(v: Any) -> bool:
        if isinstance(v, Literal):  # a huge integer is still an integer, if out of range
            return not (int in good and re.fullmatch(r"-?[0-9]+", v.text))
        return isinstance(v, bool) or v is None or not isinstance(v, good)
    return ANY.filter(bad)


def field(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, bad, st.just(_ABSENT))


_ABSENT = Literal("")  # the field is left out
TASK_NAMES = st.sampled_from(["add", "echo", "mul", "div", "fail", "no_such_task", "", "Add", "echo\x00"])
TASK = st.fixed_dictionaries({
    "task-id": st.just(ID),
    "task": field(TASK_NAMES, wrong(str)),
    "args": field(st.lists(ANY, max_size=3), wrong(list)),
    "kwargs": field(st.dictionaries(st.sampled_from(["a", "b", "x", ""]), ANY, max_size=2), wrong(dict)),
    "options": field(st.fixed_dictionaries({}, optional={
        "timeout": st.one_of(st.floats(), st.integers(), ANY),
        "max_retries": st.one_of(st.integers(), ANY)}), wrong(dict)),
    "v": field(st.just(1), ANY),
}).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})
WRONG_FIELD = {"task": wrong(str), "args": wrong(list), "kwargs": wrong(dict), "options": wrong(dict), "v": ANY}
OPTIONS = st.fixed_dictionaries({}, optional={
    "timeout": st.one_of(st.floats(0.01, 100), st.floats(), st.integers(), SPECIALS),
    "max_retries": st.one_of(st.integers(0, 10), st.integers(), SPECIALS)})


@st.composite
def almost_valid_task(draw: Callable[..., Any], wrong: tuple[str, ...] | None) -> dict[str, Any]:
    """A task that runs as it is, or with the fields ``wrong`` (None: two of them) made wrong or
    left out: it reaches deeper code."""
    name = draw(st.sampled_from(["echo", "add", "mul"]))
    if name == "echo":  # any arguments: what the worker must then store
        args, kwargs = draw(st.lists(ANY, max_size=3)), draw(st.dictionaries(st.sampled_from(["a", "x"]), ANY,
                                                                                max_size=2))
    else:
        args, kwargs = draw(st.lists(st.one_of(st.integers(), st.floats(), ANY), min_size=2, max_size=2)), {}
    body = {"task-id": ID, "task": name, "args": args, "kwargs": kwargs, "options": draw(OPTIONS), "v": 1}
    for f in draw(st.permutations(sorted(WRONG_FIELD)))[:2] if wrong is None else wrong:
        if draw(st.booleans()):
            del body[f]
        else:
            body[f] = draw(WRONG_FIELD[f])
    return body


@st.composite
def near_miss(draw: Callable[..., Any]) -> dict[str, Any]:
    """A task with some of the seed's keys named as other YADTQ clients name them (issue 13), one
    alias each, and maybe named arguments in an object where 'args' belongs. 'task-id' or 'task' is
    always among the renamed, so it is always a near miss, and its id (under its alias) readable."""
    body = dict(draw(TASK))
    renamed = [k for k in draw(st.permutations(sorted(ALIASES))) if k in body and draw(st.booleans())]
    if not {"task-id", "task"} & set(renamed):
        renamed.append("task-id")
    for key in renamed:
        body[draw(st.sampled_from(ALIASES[key]))] = body.pop(key)
    if draw(st.booleans()):
        body["args"] = draw(st.dictionaries(st.sampled_from(["a", "b"]), PLAIN, max_size=2))
        body.pop("kwargs", None)
    return body


def readable_json(body: bytes) -> bool:
    """Whether ``body`` is a JSON object within the fuzzed cluster's size limit, by the json module
    alone (not YADTQ's parser): a near miss that is one must be refused in its record."""
    def no_constant(name: str) -> Any:
        raise ValueError(name)

    def finite(text: str) -> float:  # JSON has no infinite numbers: 1e999 is none
        if not math.isfinite(value := float(text)):
            raise ValueError(text)
        return value
    try:
        return len(body) <= LIMIT and isinstance(json.loads(body, parse_constant=no_constant,
                                                            parse_float=finite), dict)
    except (ValueError, RecursionError):
        return False


# No readable id: every other shape of bytes and JSON.
def readable_id(value: Any) -> bool:
    try:
        check_task_id(value)
        return True
    except InvalidMessage:
        return False


BAD_IDS = st.one_of(wrong(str), st.text(max_size=250).filter(lambda t: not readable_id(t)), st.sampled_from(
    ["", "-x", "a b", "yadtq:assignments", "yadtq:epoch", "yadtq:owner", "x" * 201, "\ud800", "a/b", "ключ"]))


def labelled(label: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, Any]]:
    """``strategy``'s values with the kind of message they are (for ``event()`` and the table)."""
    return strategy.map(lambda v: (label, v))


# The kinds of message, each with how many of every 10 (or 14) messages of its group are of it.
# Hypothesis makes the values, and each kind gets its share: left to choose the kind itself, it
# favours the first ones so much (sampled_from, an integer range, permutations alike) that a
# heartbeat's last field, 'ts', was never the one made wrong, and few tasks had a wrong field.
def task_kinds() -> list[tuple[int, st.SearchStrategy[tuple[str, Any]]]]:
    """Task messages with the placeholder id: each field good, wrong or absent; valid but naming no
    registered task; or valid with no field, each field, or two fields wrong."""
    wrongs: list[tuple[str, tuple[str, ...] | None]] = [
        ("none", ()), *((f"'{f}'", (f,)) for f in sorted(WRONG_FIELD)), ("two", None)]
    unknown = st.builds(lambda name, args: {"task-id": ID, "task": name, "args": args},
                        st.one_of(st.sampled_from(["no_such_task", "Add", "echo\x00", "ádd"]), st.text(min_size=1)),
                        st.lists(PLAIN, max_size=2))
    return [(3, labelled("task: each field good, wrong or absent", TASK)),
            (1, labelled("task: valid but naming no registered task", unknown)),
            *((1, labelled(f"task: valid but {what} wrong or absent", almost_valid_task(fields)))
              for what, fields in wrongs)]


NO_ID = [
    (1, labelled("no id: raw bytes", st.binary(max_size=200))),
    (1, labelled("no id: JSON but no object", JSON.filter(lambda v: not isinstance(v, dict)))),
    (1, labelled("no id: object without task-id", st.dictionaries(
        st.text(max_size=10).filter(lambda k: k != "task-id"), JSON, max_size=4))),
    (1, labelled("no id: task with a bad task-id", st.builds(lambda t, i: {**t, "task-id": i}, TASK, BAD_IDS))),
]
OVERSIZED = st.integers(LIMIT + 1, 4 * LIMIT)

# Good ids for the fields that hold one ('running', 'tasks'): drawn as any text, most were no id, and
# the event was refused for them, not for the field made wrong.
TASK_IDS = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,5}", fullmatch=True)
EVENT_FIELDS: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "heartbeat": {"sender": (st.sampled_from([W1, "W2", "scheduler", "X"]), wrong(str)),
                  "role": (st.sampled_from(["worker", "scheduler"]), wrong(str)),
                  "pid": (st.integers(1, 2 ** 22), wrong(int)),
                  "ts": (st.floats(1e9, 2e9), wrong(int, float)),
                  "running": (st.one_of(st.none(), TASK_IDS), wrong(str).filter(lambda v: v is not None))},
    "tasks-finished": {"worker": (st.sampled_from([W1, "W2"]), wrong(str)),
                       "tasks": (st.lists(st.tuples(TASK_IDS, st.integers(1, 3),
                                                    st.sampled_from(["success", "failed", "retry"])).map(list),
                                          max_size=3), wrong(list))},
    "worker-down": {"worker": (st.sampled_from([W1, "W2", "W9"]), wrong(str)),
                    "reason": (st.text(max_size=10), wrong(str)),
                    "ts": (st.floats(1e9, 2e9), wrong(int, float)),
                    "pid": (st.integers(1, 2 ** 22), wrong(int))},
}


def event_kinds(types: tuple[str, ...]) -> list[tuple[int, st.SearchStrategy[tuple[str, bytes]]]]:
    """Bad status events of ``types``: each field of each type made wrong, and junk (as often as
    three fields)."""
    return [(3, bad_event("junk", "")) if k == "junk" else (1, bad_event(k, f))
            for k in types for f in (sorted(EVENT_FIELDS[k]) if k != "junk" else [""])]


@st.composite
def bad_event(draw: Callable[..., Any], kind: str, broken: str) -> tuple[str, bytes]:
    """A status event of type ``kind`` whose field ``broken`` (and maybe others) has a wrong type,
    or raw junk; with its kind."""
    if kind == "junk":
        junk = draw(st.one_of(st.binary(max_size=100), JSON.filter(lambda v: not isinstance(v, dict)),
                              st.dictionaries(st.sampled_from(["type", "v", "x"]), JSON, max_size=3)))
        return "status: junk", junk if isinstance(junk, bytes) else dump(junk).encode()
    fields = EVENT_FIELDS[kind]
    body: dict[str, Any] = {"v": 1, "type": kind}
    for name, (good, bad) in fields.items():  # the others mostly good: the checks after them are reached
        body[name] = draw(bad) if name == broken or draw(st.integers(0, 9)) == 9 else draw(good)
    return f"status: {kind}, '{broken}' wrong", dump(body).encode()


def collect(strategy: st.SearchStrategy[Any], n: int) -> list[Any]:
    """``n`` values of ``strategy`` (hypothesis as a generator: nothing fails inside)."""
    out: list[Any] = []

    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gen(value: Any) -> None:
        out.append(value)

    gen()
    return out


def collect_kinds(kinds: list[tuple[int, st.SearchStrategy[tuple[str, Any]]]], n: int,
                  labels: Counter[str]) -> list[Any]:
    """About ``n`` messages of ``kinds`` (``(share, strategy of (label, message))``), each kind its
    share. Each message's label, and what the parser says of a task message, is an ``event()`` of
    hypothesis, and is counted in ``labels``."""
    out: list[Any] = []
    total = sum(share for share, _ in kinds)

    def note(pair: tuple[str, Any]) -> Any:
        label, value = pair
        for name in (label, *([] if label.startswith("status") else [f"parser: {expected_refusal(body_of(value))}"])):
            event(name)
            labels[name] += 1
        return value

    for share, strategy in kinds:
        out += collect(strategy.map(note), max(1, round(n * share / total)))
    return out


# --- what the messages reach -------------------------------------------------

# Refusal reasons by group: the first pattern that a reason matches names it (a task's error in its
# record starts with "InvalidMessage: "; a status event's reason is the scheduler's log line).
REASONS = [(name, re.compile(rx)) for name, rx in [
    ("near miss", r"as another YADTQ client does|object of named arguments: rename"),
    ("not UTF-8", r"^message is not UTF-8"), ("not JSON", r"^message is not valid JSON"),
    ("nested too deeply", r"nested too deeply"), ("not an object", r"^message must be a JSON object"),
    ("lone surrogate", r"not valid Unicode"), ("oversized", r"over the limit of"),
    ("bad task-id", r"^'task-id'"), ("bad v", r"^unsupported message version"), ("bad task", r"^'task' must"),
    ("bad args", r"^'args' must"), ("bad kwargs", r"^'kwargs' must"), ("bad options", r"^'options' must"),
    ("bad options.timeout", r"options\.timeout"), ("bad options.max_retries", r"options\.max_retries"),
    ("unknown task", r"^unknown task"), ("wrong arguments", r"^wrong arguments for task"),
    ("id names a foreign key", r"names an existing Redis key"), ("unknown event type", r"^unknown status event type"),
]]
# What a fuzz run must reach on the cluster's side: every check of the task parser, the scheduler's
# and the worker's refusals, and each field of each status event (150 messages of each group reach
# each of these several times; a strategy that degenerates, e.g. every task refused at its id or
# as "not valid JSON" as before, misses some and fails the test).
REQUIRED = {
    "not UTF-8", "not JSON", "not an object", "nested too deeply", "lone surrogate", "oversized", "bad task-id",
    "bad v", "bad task", "bad args", "bad kwargs", "bad options", "bad options.timeout", "bad options.max_retries",
    "unknown task", "wrong arguments", "id names a foreign key", "task raised TypeError", "unknown event type",
    "near miss",
    *(f"{kind}: '{field}'" for kind, fields in EVENT_FIELDS.items() for field in fields),
}
# The task parser's checks among them: one is reached only if hypothesis generated a message it
# refuses (the "parser: ..." events), which a run of 150 may miss for a rare one by chance.
PARSER_CHECKS = {
    "not UTF-8", "not JSON", "not an object", "nested too deeply", "lone surrogate", "oversized", "bad task-id",
    "bad v", "bad task", "bad args", "bad kwargs", "bad options", "bad options.timeout", "bad options.max_retries",
    "near miss",
}


def reason_group(reason: str) -> str:
    """The group of a refusal reason: a parser check, a task that raised, or an event's bad field."""
    reason = reason.removeprefix("InvalidMessage: ")
    if m := re.match(r"bad (\S+) event: [^']*'([^']+)'", reason):
        return f"{m[1]}: '{m[2]}'"
    for name, rx in REASONS:
        if rx.search(reason):
            return name
    if m := re.match(r"([A-Z]\w+): ", reason):
        return f"task raised {m[1]}"
    return "other: " + reason[:60]


def expected_refusal(body: bytes) -> str:
    """What the parser (in this process) says of a task message: the group of its refusal, or 'parses'."""
    try:
        parse_task(body, TaskLimits(max_bytes=LIMIT))  # the fuzzed cluster sets only this limit
    except InvalidMessage as e:
        return reason_group(e.reason)
    return "parses"


# --- the test ---------------------------------------------------------------

@dataclass
class Bad:
    """One bad message and how to tell it ended with a clear error."""

    topic: str
    body: bytes
    task_id: str | None = None  # a readable id: its record may carry the error
    renamed: bool = False  # a near miss of a JSON object: its record must say the rename


def refused_id(body: bytes) -> str | None:
    """The task id the parser reads in a message (under 'task-id', or its one alias): the record
    that may carry its error."""
    try:
        return parse_task(body, TaskLimits(max_bytes=LIMIT)).task_id
    except InvalidMessage as e:
        return e.task_id


def body_of(value: Any, task_id: str = "f0") -> bytes:
    """A generated message's bytes, with ``task_id`` where it has the placeholder ``ID``."""
    return value if isinstance(value, bytes) else dump(value).encode().replace(ID.encode(), task_id.encode())


def messages(tag: str, n: int, types: tuple[str, ...]) -> tuple[list[Bad], list[Bad], Counter[str]]:
    """About ``n`` bad task messages of each group (with an id, without one) and ``n`` bad status
    events of ``types``, a few oversized tasks, and how many of each kind were made."""
    out: list[Bad] = []
    for i, size in enumerate(collect(OVERSIZED, max(3, n // 20))):
        task_id = f"{tag}-o{i}"
        body = json.dumps({"task-id": task_id, "task": "echo", "args": ["x" * size]}).encode()
        out += [Bad("tasks", body, task_id), Bad("tasks", json.dumps({"task": "echo", "args": ["y" * size]}).encode())]
    labels: Counter[str] = Counter()
    out += [Bad("tasks", body_of(t, f"{tag}-f{i}"), f"{tag}-f{i}")
            for i, t in enumerate(collect_kinds(task_kinds(), n, labels))]
    near = collect_kinds([(1, labelled("task: keys named as other clients name them", near_miss()))],
                         max(3, n // 5), labels)
    out += [Bad("tasks", body := body_of(t, f"{tag}-n{i}"), f"{tag}-n{i}", readable_json(body))
            for i, t in enumerate(near)]
    out += [Bad("tasks", body := body_of(v), refused_id(body)) for v in collect_kinds(NO_ID, n, labels)]
    events = [Bad("status", e) for e in collect_kinds(event_kinds(types), n, labels) if len(e) <= KAFKA_LIMIT]
    return [b for b in out if len(b.body) <= KAFKA_LIMIT], events, labels


def colliding(cluster: Any, tag: str) -> tuple[list[Bad], dict[str, bytes]]:
    """Tasks whose ids name another application's keys: a string and a hash."""
    r, keys = cluster.client.redis, Keys(cluster.config.redis.key_prefix)
    r.set(keys.task(f"{tag}-str"), "another application's value")
    r.hset(keys.task(f"{tag}-hash"), mapping={"owner": "another application", "status": "mine"})
    dumps = {keys.task(t): r.dump(keys.task(t)) for t in (f"{tag}-str", f"{tag}-hash")}
    # No record can be theirs: such a task must be refused, with its reason in a dead letter.
    bad = [Bad("tasks", json.dumps({"task-id": t, "task": "add", "args": [1, 2]}).encode())
           for t in (f"{tag}-str", f"{tag}-hash")]
    return bad, dumps


def send(cluster: Any, bad: list[Bad], tag: str) -> list[str]:
    """Each bad message, then a good task; return the good tasks' ids."""
    topics = {"tasks": cluster.config.topics.tasks, "status": cluster.config.topics.status}
    good = []
    producer = KafkaProducer(bootstrap_servers=KAFKA, max_request_size=1_048_576)
    try:
        w1 = cluster.config.worker_ids()[0].encode()
        for i, b in enumerate(bad):
            b.body = b.body.replace(W1.encode(), w1)
            producer.send(topics[b.topic], b.body)
            good.append(f"{tag}-g{i}")
            producer.send(topics["tasks"], json.dumps({"task-id": good[-1], "task": "add", "args": [i, 1000]}).encode())
        producer.flush(60)
    finally:
        producer.close()
    return good


class DeadLetters:
    """The dead-letter topic, read as it fills."""

    def __init__(self, topic: str) -> None:
        self.consumer = KafkaConsumer(topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                                      consumer_timeout_ms=500)
        self.letters: list[tuple[bytes, dict[str, bytes]]] = []

    def read(self) -> None:
        self.letters += [(m.value, dict(m.headers)) for m in self.consumer]

    def has(self, body: bytes) -> bool:
        for value, headers in self.letters:
            if not headers.get("error"):
                continue
            if value == body or ("truncated-from" in headers and body.startswith(value)):
                return True
        return False


def record(client: Any, b: Bad) -> dict[str, str]:
    try:
        return client.record(b.task_id) if b.task_id else {}  # type: ignore[no-any-return]
    except YadtqError as e:  # e.g. WRONGTYPE: the id names a key that is no record
        return {"unreadable": str(e)}


def ended_clearly(b: Bad, record: dict[str, str], letters: DeadLetters) -> bool:
    if b.renamed:
        return record.get("status") == "failed" and "rename " in record.get("error", "")
    if b.task_id and record.get("status") == "success":
        return True
    if b.task_id and record.get("status") == "failed" and record.get("error"):
        return True
    return letters.has(b.body)


def test_fuzzed_messages_never_stop_the_cluster(start_cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    cluster = start_cluster(count=2, tasks={"max_message_bytes": LIMIT, "retry_backoff": 0.01,
                                            "retry_backoff_max": 0.05})
    tag = uuid.uuid4().hex[:8]
    collide, dumps = colliding(cluster, tag)
    kinds = os.environ.get("YADTQ_FUZZ_KINDS", "tasks,collide,status").split(",")  # to look at one kind alone
    # 'no-heartbeats': the scheduler's events only (bad heartbeats are the supervisor's business too).
    types = ("tasks-finished", "worker-down", "junk") if "no-heartbeats" in kinds else (*EVENT_FIELDS, "junk")
    bad_tasks, events, made = messages(tag, EXAMPLES, types)
    bad = bad_tasks * ("tasks" in kinds) + collide * ("collide" in kinds) + events * ("status" in kinds)
    random.Random(tag).shuffle(bad)  # every kind between good tasks, in a mixed order
    pids = sorted(cluster.child_pids())
    mark = cluster.mark()
    good = send(cluster, bad, tag)

    c = cluster.client
    letters = DeadLetters(cluster.config.topics.dead_letter)
    pending = [b for b in bad if b.topic == "tasks"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        letters.read()
        pending = [b for b in pending if not ended_clearly(b, record(c, b), letters)]
        if not pending and all(s == "success" for s in c.store.statuses(good)):
            break
    failed_good = [t for t, s in zip(good, c.store.statuses(good), strict=True) if s != "success"]
    letters.consumer.close()
    output = cluster.lines[mark:]
    # What killed a process comes first: the rest is mostly its consequence.
    problems = [f"process died: {line}" for line in output if " is dead " in line or "crashing" in line]
    problems += [f"process restarted: {line}" for line in output if re.search(r"started \S+ \(pid", line)]
    problems += [f"its last words: {output[i - 2].strip()} | {line}" for i, line in enumerate(output)
                 if i >= 2 and re.search(r"^\w*(Error|Exception)\b", line)]
    if sorted(cluster.child_pids()) != pids:
        problems.append(f"child pids changed: {pids} -> {sorted(cluster.child_pids())}")
    if failed_good:
        problems.append(f"{len(failed_good)} of {len(good)} good tasks did not succeed, e.g. {failed_good[:3]}")
    problems += [f"key {k!r} changed" for k, v in dumps.items() if c.redis.dump(k) != v]
    logged = sum(1 for line in output if "invalid status event" in line)
    if "status" in kinds and logged < len(events):
        problems.append(f"only {logged} of {len(events)} bad status events were logged as invalid")
    problems += [f"no clear error for {b.body[:150]!r} (record {record(c, b)})" for b in pending]
    problems += incomplete_records(c, bad)
    reached = refusals(c, bad, letters, output)
    with capsys.disabled():  # shown by make test too: what the fuzzing reached
        print("\n" + table(made, reached))
    # Every parser verdict that was generated must come back from the cluster (deterministic, given
    # the messages); how many verdicts were generated at all is the strategy's own check (random at
    # 150 messages: one rare verdict may be missed in a run, a degenerate strategy misses many).
    generated = {r for r in PARSER_CHECKS if made[f"parser: {r}"]}
    if "tasks" in kinds and len(generated) < len(PARSER_CHECKS) - 3:
        problems.append(f"the task strategy degenerated: parser verdicts never generated: "
                        f"{sorted(PARSER_CHECKS - generated)}")
    missing = sorted(required(kinds) - (PARSER_CHECKS - generated) - set(reached))
    if missing:
        problems.append(f"refusal reasons never reached across the boundary: {missing}")
    print(f"fuzz: {len(bad)} bad messages ({len(events)} status events, {logged} logged invalid), {len(good)} good "
          f"tasks, {len(letters.letters)} dead letters, {len(problems)} problems, {time.monotonic() - started:.0f}s")
    assert not problems, "\n".join(problems[:60]) + f"\n({len(problems)} problems; {len(bad)} bad messages, " \
                                                    f"{time.monotonic() - started:.0f}s)"


def incomplete_records(client: Any, bad: list[Bad]) -> list[str]:
    """The records of bad messages that lack what any reader may count on (README: reading results
    from another language), refused or not: status, task, submitted_at."""
    return [f"record of {b.body[:100]!r} lacks status, task or submitted_at: {rec}" for b in bad
            if b.task_id and (rec := record(client, b)).get("yadtq")
            and not {"status", "task", "submitted_at"} <= set(rec)]


def refusals(client: Any, bad: list[Bad], letters: DeadLetters, output: list[str]) -> Counter[str]:
    """What came back from the cluster, by reason group: the dead letters' ``error`` headers, the
    errors in the failed records of the bad tasks, and the scheduler's 'invalid status event' lines."""
    reached: Counter[str] = Counter()
    for _, headers in letters.letters:
        if headers.get("error"):
            reached[reason_group(headers["error"].decode("utf-8", "replace"))] += 1
    for b in bad:
        rec = record(client, b) if b.task_id else {}
        if rec.get("status") == "failed" and rec.get("error"):
            reached[reason_group(rec["error"])] += 1
        elif rec.get("status") == "success":
            reached["ran: success"] += 1
    for line in output:
        if m := re.search(r"invalid status event: (.*)$", line):
            reached[reason_group(m[1])] += 1
    return reached


def required(kinds: list[str]) -> set[str]:
    """The reasons a run of these kinds of messages must reach."""
    status = {r for r in REQUIRED if ": '" in r or r == "unknown event type"}
    if "no-heartbeats" in kinds:
        status = {r for r in status if not r.startswith("heartbeat")}
    foreign = {"id names a foreign key"}
    parts = {"tasks": REQUIRED - status - foreign, "status": status, "collide": foreign}
    return set().union(*(part for kind, part in parts.items() if kind in kinds))


def table(made: Counter[str], reached: Counter[str]) -> str:
    """What was generated (by kind, and by the parser's verdict) and what came back, as a table."""
    rows = ["fuzz: messages generated, by kind (hypothesis events)"]
    rows += [f"  {n:6d}  {label}" for label, n in sorted(made.items()) if not label.startswith("parser")]
    rows.append("fuzz: task messages generated, by what the parser says of them (hypothesis events)")
    rows += [f"  {n:6d}  {label}" for label, n in sorted(made.items()) if label.startswith("parser")]
    rows.append("fuzz: refusals that came back from the cluster (dead letters, failed records, logged events)")
    rows += [f"  {n:6d}  {label}{'' if label not in REQUIRED else '  (required)'}"
             for label, n in sorted(reached.items())]
    return "\n".join(rows)
