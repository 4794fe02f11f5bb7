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
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer

from client.errors import InvalidMessage, YadtqError
from client.protocol import check_task_id
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


def wrong(*good: type) -> st.SearchStrategy[Any]:
    """A JSON value that is not of the types ``good`` (bools count as no number; NaN,
    Infinity and deep nesting count as nothing; None is wrong too)."""
    def bad(v: Any) -> bool:
        if isinstance(v, Literal):  # a huge integer is still an integer, if out of range
            return not (int in good and re.fullmatch(r"-?[0-9]+", v.text))
        return isinstance(v, bool) or v is None or not isinstance(v, good)
    return JSON.filter(bad)


def field(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, bad, st.just(_ABSENT))


_ABSENT = Literal("")  # the field is left out
TASK_NAMES = st.sampled_from(["add", "echo", "mul", "div", "fail", "no_such_task", "", "Add", "echo\x00"])
TASK = st.fixed_dictionaries({
    "task-id": st.just(ID),
    "task": field(TASK_NAMES, wrong(str)),
    "args": field(st.lists(JSON, max_size=3), wrong(list)),
    "kwargs": field(st.dictionaries(st.sampled_from(["a", "b", "x", ""]), JSON, max_size=2), wrong(dict)),
    "options": field(st.fixed_dictionaries({}, optional={
        "timeout": st.one_of(st.floats(), st.integers(), JSON),
        "max_retries": st.one_of(st.integers(), JSON)}), wrong(dict)),
    "v": field(st.just(1), JSON),
}).map(lambda d: {k: v for k, v in d.items() if v is not _ABSENT})
WRONG_FIELD = {"task": wrong(str), "args": wrong(list), "kwargs": wrong(dict), "options": wrong(dict), "v": JSON}
OPTIONS = st.fixed_dictionaries({}, optional={"timeout": st.one_of(st.floats(), st.integers(), SPECIALS),
                                              "max_retries": st.one_of(st.integers(), SPECIALS)})


@st.composite
def almost_valid_task(draw: Callable[..., Any]) -> dict[str, Any]:
    """A task that runs as it is, or with one or two fields made wrong: it reaches deeper code."""
    name = draw(st.sampled_from(["echo", "add", "mul"]))
    if name == "echo":  # any arguments: what the worker must then store
        args, kwargs = draw(st.lists(JSON, max_size=3)), draw(st.dictionaries(st.sampled_from(["a", "x"]), JSON,
                                                                                 max_size=2))
    else:
        args, kwargs = draw(st.lists(st.one_of(st.integers(), st.floats(), JSON), min_size=2, max_size=2)), {}
    body = {"task-id": ID, "task": name, "args": args, "kwargs": kwargs, "options": draw(OPTIONS), "v": 1}
    for f in draw(st.sets(st.sampled_from(sorted(WRONG_FIELD)), max_size=2)):
        if draw(st.booleans()):
            body[f] = draw(WRONG_FIELD[f])
        else:
            del body[f]
    return body


# No readable id: every other shape of bytes and JSON.
def readable_id(value: Any) -> bool:
    try:
        check_task_id(value)
        return True
    except InvalidMessage:
        return False


BAD_IDS = st.one_of(wrong(str), st.text(max_size=250).filter(lambda t: not readable_id(t)), st.sampled_from(
    ["", "-x", "a b", "yadtq:assignments", "yadtq:epoch", "yadtq:owner", "x" * 201, "\ud800", "a/b", "ключ"]))
NO_ID = st.one_of(
    st.binary(max_size=200),
    JSON.filter(lambda v: not isinstance(v, dict)),
    st.dictionaries(st.text(max_size=10).filter(lambda k: k != "task-id"), JSON, max_size=4),
    st.builds(lambda t, i: {**t, "task-id": i}, TASK, BAD_IDS),
)
OVERSIZED = st.integers(LIMIT + 1, 4 * LIMIT)

EVENT_FIELDS: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "heartbeat": {"sender": (st.sampled_from([W1, "W2", "scheduler", "X"]), wrong(str)),
                  "role": (st.sampled_from(["worker", "scheduler"]), wrong(str)),
                  "pid": (st.integers(1, 2 ** 22), wrong(int)),
                  "ts": (st.floats(1e9, 2e9), wrong(int, float)),
                  "running": (st.one_of(st.none(), st.text(max_size=5)), wrong(str).filter(lambda v: v is not None))},
    "tasks-finished": {"worker": (st.sampled_from([W1, "W2"]), wrong(str)),
                       "tasks": (st.lists(st.tuples(st.text(max_size=5), st.integers(1, 3),
                                                    st.sampled_from(["success", "failed", "retry"])).map(list),
                                          max_size=3), wrong(list))},
    "worker-down": {"worker": (st.sampled_from([W1, "W2", "W9"]), wrong(str)),
                    "reason": (st.text(max_size=10), wrong(str)),
                    "ts": (st.floats(1e9, 2e9), wrong(int, float)),
                    "pid": (st.integers(1, 2 ** 22), wrong(int))},
}


@st.composite
def bad_event(draw: Callable[..., Any], types: tuple[str, ...] = (*EVENT_FIELDS, "junk")) -> bytes:
    """A status event of one of ``types`` with at least one field of a wrong type, or raw junk."""
    kind = draw(st.sampled_from(types))
    if kind == "junk":
        junk = draw(st.one_of(st.binary(max_size=100), JSON.filter(lambda v: not isinstance(v, dict)),
                              st.dictionaries(st.sampled_from(["type", "v", "x"]), JSON, max_size=3)))
        return junk if isinstance(junk, bytes) else dump(junk).encode()
    fields = EVENT_FIELDS[kind]
    broken = draw(st.sampled_from(sorted(fields)))
    body: dict[str, Any] = {"v": 1, "type": kind}
    for name, (good, bad) in fields.items():
        body[name] = draw(bad) if name == broken else draw(st.one_of(good, bad))
    return dump(body).encode()


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


# --- the test ---------------------------------------------------------------

@dataclass
class Bad:
    """One bad message and how to tell it ended with a clear error."""

    topic: str
    body: bytes
    task_id: str | None = None  # a readable id: its record may carry the error


def task_messages(tag: str, n: int) -> list[Bad]:
    out = [Bad("tasks", dump(t).encode().replace(ID.encode(), f"{tag}-f{i}".encode()), f"{tag}-f{i}")
           for i, t in enumerate(collect(st.one_of(TASK, almost_valid_task()), n))]
    for v in collect(NO_ID, n):
        out.append(Bad("tasks", v if isinstance(v, bytes) else dump(v).encode()))
    for i, size in enumerate(collect(OVERSIZED, max(3, n // 20))):
        task_id = f"{tag}-o{i}"
        body = json.dumps({"task-id": task_id, "task": "echo", "args": ["x" * size]}).encode()
        out += [Bad("tasks", body, task_id), Bad("tasks", json.dumps({"task": "echo", "args": ["y" * size]}).encode())]
    return [b for b in out if len(b.body) <= KAFKA_LIMIT]


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
    if b.task_id and record.get("status") == "success":
        return True
    if b.task_id and record.get("status") == "failed" and record.get("error"):
        return True
    return letters.has(b.body)


def test_fuzzed_messages_never_stop_the_cluster(start_cluster: Any) -> None:
    started = time.monotonic()
    cluster = start_cluster(count=2, tasks={"max_message_bytes": LIMIT, "retry_backoff": 0.01,
                                            "retry_backoff_max": 0.05})
    tag = uuid.uuid4().hex[:8]
    bad_tasks = task_messages(tag, EXAMPLES)
    collide, dumps = colliding(cluster, tag)
    kinds = os.environ.get("YADTQ_FUZZ_KINDS", "tasks,collide,status").split(",")  # to look at one kind alone
    # 'no-heartbeats': the scheduler's events only (bad heartbeats are the supervisor's business too).
    types = ("tasks-finished", "worker-down", "junk") if "no-heartbeats" in kinds else (*EVENT_FIELDS, "junk")
    events = [Bad("status", e) for e in collect(bad_event(types), EXAMPLES) if len(e) <= KAFKA_LIMIT]
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
    for b in pending:
        problems.append(f"no clear error for {b.body[:150]!r} (record {record(c, b)})")
    print(f"fuzz: {len(bad)} bad messages ({len(events)} status events, {logged} logged invalid), {len(good)} good "
          f"tasks, {len(letters.letters)} dead letters, {len(problems)} problems, {time.monotonic() - started:.0f}s")
    assert not problems, "\n".join(problems[:60]) + f"\n({len(problems)} problems; {len(bad)} bad messages, " \
                                                    f"{time.monotonic() - started:.0f}s)"
