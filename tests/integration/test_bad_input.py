"""DESIGN §2: every kind of bad message, from a plain producer, between good ones.

Each bad message gets its own clear error: in the task's record when a task id
can be read, else in the dead-letter topic (reason in the 'error' header) and
the scheduler's log. The good tasks around them all succeed, and nothing the
cluster had accepted is touched.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer

from client import TaskSpec
from client.errors import InvalidMessage
from tests.integration.conftest import KAFKA
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration

LIMIT = 2000  # tasks.max_message_bytes for this cluster


def task_json(task_id: str, **fields: Any) -> bytes:
    return json.dumps({"task-id": task_id, **fields}).encode()


def test_bad_messages_fail_clearly_and_the_good_ones_around_them_succeed(start_cluster: Any) -> None:
    cluster = start_cluster(count=2, tasks={"max_message_bytes": LIMIT})
    c = cluster.client
    done = c.submit("add", 40, 2)
    assert done.result(timeout=60) == 42
    ended = done.record()
    tag = uuid.uuid4().hex[:8]

    # task id -> (message, the error its record must end with)
    with_id: dict[str, tuple[bytes, str]] = {
        f"{tag}-no-task": (task_json(f"{tag}-no-task", args=[1]),
                           "InvalidMessage: 'task' must be a non-empty string naming a registered task, got None"),
        f"{tag}-unknown": (task_json(f"{tag}-unknown", task="launch_missiles", args=[]),
                           "InvalidMessage: unknown task 'launch_missiles': no module in tasks.modules registers it"),
        f"{tag}-args": (task_json(f"{tag}-args", task="add", args={"a": 1}),
                        "InvalidMessage: 'args' must be a list; this one is an object of named arguments: "
                        "rename 'args' to 'kwargs' (or set tasks.accept_aliases: true to map it)"),
        f"{tag}-arity": (task_json(f"{tag}-arity", task="add", args=[1, 2, 3]),
                         "InvalidMessage: wrong arguments for task 'add': too many positional arguments "
                         "(it takes (a, b))"),
        f"{tag}-big": (task_json(f"{tag}-big", task="echo", args=["x" * LIMIT]),
                       f"over the limit of {LIMIT}"),
    }
    # no readable task id: dead-lettered, with this reason
    no_id: list[tuple[bytes, str]] = [
        (b"\xff\xfe not even text", "message is not UTF-8 text"),
        (b"this is {not json", "message is not valid JSON"),
        (b"[1, 2, 3]", "message must be a JSON object, got list"),
        (b'{"task": "add", "args": [1, 2]}', "'task-id' must be 1-200 characters"),
        (b'{"task-id": "", "task": "add"}', "'task-id' must be 1-200 characters"),
        (json.dumps({"task": "echo", "args": ["x" * LIMIT]}).encode(), f"over the limit of {LIMIT}"),
    ]
    duplicate = task_json(done.id, task="add", args=[1, 1])  # the id of a task that already ended

    good: list[tuple[str, int]] = []
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        bad = [m for m, _ in with_id.values()] + [m for m, _ in no_id] + [duplicate]
        for i, message in enumerate(bad):
            producer.send(cluster.config.topics.tasks, message)
            good_id = f"{tag}-good-{i}"
            producer.send(cluster.config.topics.tasks, task_json(good_id, task="add", args=[i, 1000]))
            good.append((good_id, i + 1000))
        producer.flush(10)
    finally:
        producer.close()

    c.wait([t for t, _ in good] + list(with_id), timeout=60)
    assert [c.result(t) for t, _ in good] == [v for _, v in good]
    for task_id, (_, error) in with_id.items():
        record = c.record(task_id)
        assert record["status"] == "failed", task_id
        assert error in record["error"], (task_id, record["error"])
    assert c.record(done.id) == ended  # the duplicate neither ran again nor changed the record

    consumer = KafkaConsumer(cluster.config.topics.dead_letter, bootstrap_servers=KAFKA,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        letters = [next(consumer) for _ in no_id]
    finally:
        consumer.close()
    for letter, (message, reason) in zip(letters, no_id, strict=True):
        headers = dict(letter.headers)
        assert reason in headers["error"].decode(), headers["error"]
        if len(message) > LIMIT:
            assert letter.value == message[:LIMIT] and headers["truncated-from"] == str(len(message)).encode()
        else:
            assert letter.value == message
    for _, reason in no_id:
        cluster.wait_line(rf"dead-lettered to \S+: .*{re.escape(reason)}", timeout=10)

    # And the cluster still takes work as usual.
    assert c.submit_many([TaskSpec("mul", (6, 7))])[0].result(timeout=30) == 42


def test_poison_tasks_events_and_results_neither_stop_nor_restart_any_process(start_cluster: Any) -> None:
    """Defects 1, 2 and 8, each of which crashed the scheduler, the supervisor or a worker."""
    cluster = start_cluster(count=2)
    c = cluster.client
    assert c.submit("add", 1, 1).result(timeout=60) == 2
    start = cluster.mark()
    tag = uuid.uuid4().hex[:8]
    topics = cluster.config.topics
    # task id -> (message to TASKS, the error its record must hold)
    tasks: dict[str, tuple[bytes, str]] = {
        f"{tag}-sur": (task_json(f"{tag}-sur", task="echo", args=["\ud800"]),   # defect 1, as reported
                       "InvalidMessage: message holds text that is not valid Unicode"),
        f"{tag}-sur-key": (task_json(f"{tag}-sur-key", task="echo", kwargs={"\udc80": 1}), "not valid Unicode"),
        f"{tag}-timeout": (task_json(f"{tag}-timeout", task="add", args=[1, 2], options={"timeout": 1e9}),
                           "options.timeout 1e+09 is over this cluster's limit (tasks.max_timeout = 86400)"),
        f"{tag}-retries": (task_json(f"{tag}-retries", task="add", args=[1, 2], options={"max_retries": 10**9}),
                           "(tasks.max_retries_cap = 100)"),
        f"{tag}-deep": (f'{{"task-id": "{tag}-deep", "task": "echo", "args": {"[" * 900}{"]" * 900}}}'.encode(),
                        "InvalidMessage: message is nested too deeply"),
    }
    # no task id can be read: dead-lettered (NaN is not JSON, so the message is not either)
    no_id = [(f'{{"task-id": "{tag}-nan", "task": "add", "args": [NaN, 1]}}'.encode(),
              "message is not valid JSON: NaN is not a JSON number"),
             (f'{{"task-id": "{tag}-inf", "task": "add", "args": [1], "options": {{"timeout": Infinity}}}}'.encode(),
              "message is not valid JSON: Infinity is not a JSON number"),
             (task_json(f"{tag}.b:yadtq:assignments", task="add", args=[1, 2]),  # another cluster's internal key
              "'task-id' may not start with or contain 'yadtq:'")]
    beat = {"type": "heartbeat", "sender": "W1", "role": "worker", "pid": 1, "ts": 1.0}
    events = [  # defect 2: each crashed the scheduler on every restart, or the supervisor
        {**beat, "ts": "soon"}, {**beat, "sender": ["W1"]}, {**beat, "pid": "abc"}, {**beat, "ts": 1e308 * 10},
        {"type": "worker-down", "worker": "W1", "reason": "x", "ts": 1.0, "pid": "abc"},
        {"type": "worker-down", "worker": ["W1"], "reason": "x", "ts": 1.0},
        {"type": "tasks-finished", "worker": "W1", "tasks": [[["t"], 1, "success"]]},
        {**beat, "sender": "W\ud800"},
    ]
    good: list[tuple[str, int]] = []
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        bad = [m for m, _ in tasks.values()] + [m for m, _ in no_id]
        for i, message in enumerate(bad + [json.dumps(e).encode() for e in events]):
            if i < len(bad):
                producer.send(topics.tasks, message)
            else:  # json.dumps writes 1e309 as Infinity: not JSON, as some producers do
                producer.send(topics.status, message)
            good_id = f"{tag}-good-{i}"
            producer.send(topics.tasks, task_json(good_id, task="add", args=[i, 1000]))
            good.append((good_id, i + 1000))
        producer.flush(10)
    finally:
        producer.close()
    # Defect 8: return values that no record can hold fail their task once, without killing the worker.
    results = c.submit_many([TaskSpec("unstorable", ("deep",), max_retries=3),
                             TaskSpec("unstorable", ("file-name",), max_retries=3)])

    c.wait([t for t, _ in good] + list(tasks) + [h.id for h in results], timeout=60)
    assert [c.result(t) for t, _ in good] == [v for _, v in good]
    for task_id, (_, error) in tasks.items():
        record = c.record(task_id)
        assert record["status"] == "failed" and error in record["error"], (task_id, record)
    deep, name = (h.record() for h in results)
    assert deep["status"] == "failed" and deep["error"] == (
        "InvalidResult: the task's return value is nested too deeply to store as JSON")
    assert name["status"] == "failed" and "InvalidResult: the task's return value cannot be stored as JSON: " \
        "'utf-8' codec can't encode character '\\udce9'" in name["error"]
    assert deep["attempt"] == name["attempt"] == "1"  # failed once, no retry, not a death
    for _, reason in no_id:
        cluster.wait_line(rf"dead-lettered to \S+: {re.escape(reason)}", timeout=10, start=start)
    for _ in events:
        cluster.wait_line(r"ignoring invalid status event: bad (heartbeat|worker-down|tasks-finished) event",
                          timeout=10, start=start)
    # Nothing died, crashed or restarted.
    trouble = [line for line in cluster.lines[start:] if re.search(r"is dead|crashing|exit code|Traceback", line)]
    assert trouble == []
    assert c.submit("mul", 6, 7).result(timeout=30) == 42


def test_ids_naming_keys_yadtq_does_not_own_are_refused_and_the_keys_left_alone(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    c, prefix = cluster.client, cluster.config.redis.key_prefix
    raw = redis.Redis.from_url(cluster.config.redis.url)  # bytes, for DUMP
    # Another application's string and hash, and another cluster's internal
    # key in the same database (its prefix 'p2:' inside this one's).
    raw.set(f"{prefix}foreign-string", b"another app's value")
    raw.hset(f"{prefix}foreign-hash", mapping={"name": "ann", "status": "queued"})
    raw.expire(f"{prefix}foreign-hash", 1000)
    raw.zadd(f"{prefix}p2:yadtq:retries", {"x": 1.0})
    foreign = {"foreign-string": "string", "foreign-hash": "hash", "p2:yadtq:retries": "zset"}

    def snapshot() -> list[Any]:
        return [(raw.type(prefix + t), raw.dump(prefix + t), raw.ttl(prefix + t) > 900) for t in foreign]

    # The ownership check refuses the first two; the parse step refuses any id
    # holding 'yadtq:' before Redis is asked (another cluster's internal key).
    reasons = {"foreign-string": "names an existing Redis key that YADTQ does not own",
               "foreign-hash": "names an existing Redis key that YADTQ does not own",
               "p2:yadtq:retries": "'task-id' may not start with or contain 'yadtq:'"}
    before = snapshot()
    for task_id in foreign:  # the client refuses them before producing anything
        with pytest.raises(InvalidMessage, match=re.escape(reasons[task_id])):
            c.submit_many([TaskSpec("add", (1, 2), task_id=f"{task_id}")])

    good: list[str] = []
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        for i, task_id in enumerate(foreign):  # a plain producer is not stopped: the scheduler refuses them
            producer.send(cluster.config.topics.tasks, task_json(task_id, task="add", args=[1, 2]))
            good.append(f"{uuid.uuid4().hex[:8]}-good-{i}")
            producer.send(cluster.config.topics.tasks, task_json(good[-1], task="add", args=[i, 1000]))
        producer.flush(10)
    finally:
        producer.close()
    c.wait(good, timeout=60)
    assert [c.result(t) for t in good] == [i + 1000 for i in range(len(foreign))]
    assert not [line for line in cluster.lines if " is dead " in line or "exiting" in line]
    assert snapshot() == before

    consumer = KafkaConsumer(cluster.config.topics.dead_letter, bootstrap_servers=KAFKA,
                             auto_offset_reset="earliest", consumer_timeout_ms=20000)
    try:
        letters = [next(consumer) for _ in foreign]
    finally:
        consumer.close()
    errors = {json.loads(m.value)["task-id"]: dict(m.headers)["error"].decode() for m in letters}
    assert set(errors) == set(foreign)
    for task_id in ("foreign-string", "foreign-hash"):
        assert f"task id {task_id!r} names an existing Redis key that YADTQ does not own" in errors[task_id]
        assert "set redis.key_prefix when sharing a database" in errors[task_id]
    assert reasons["p2:yadtq:retries"] in errors["p2:yadtq:retries"]
    for task_id in ("foreign-string", "foreign-hash"):
        assert f"does not own (a {foreign[task_id]}); refused, the key is left as it was" in errors[task_id]
    raw.close()


def test_an_unreadable_assignment_of_a_task_placed_on_its_worker_fails_it_and_frees_the_worker(
        start_cluster: Any) -> None:
    """The only copy of a placement that a worker cannot parse: its record says why, its worker reports it
    (the scheduler's slot is freed), and the next tasks run; a stray copy with another attempt is left alone."""
    import time

    from client.protocol import TasksFinished, parse_event
    from client.store import Keys, TaskStore, connect

    cluster = start_cluster(count=1, workers={"heartbeat_interval": 0.5})
    c, cfg = cluster.client, cluster.config
    [w1] = cfg.worker_ids()
    assert c.submit("add", 1, 2).result(timeout=60) == 3
    tag = uuid.uuid4().hex[:8]
    lost, stray = f"{tag}-lost", f"{tag}-stray"
    keys = Keys(cfg.redis.key_prefix)
    store = TaskStore(connect(cfg.redis), keys, 60)
    store.epoch = int(store.redis.get(keys.epoch) or 0)  # the cluster's generation: its writes are refused otherwise
    for t in (lost, stray):  # placed on W1 (attempt 1) as the scheduler's ASSIGN does
        pipe = store.pipeline()
        placed = store.assign(pipe, t, "add", w1, task_json(t, task="add", args=[1, 2]).decode(), time.time(), 1)
        store.execute(pipe)
        assert placed.value.attempt == 1
    # Damaged copies: 'task' is not a string; their ids and attempts can still be read.
    junk = {lost: 1, stray: 7}
    producer = KafkaProducer(bootstrap_servers=KAFKA)
    try:
        for t, attempt in junk.items():
            tail = f',"attempt":{attempt},"worker":"{w1}"}}'.encode()
            producer.send(w1, task_json(t, task=42, args=[1, 2])[:-1] + tail)
        producer.flush(10)
    finally:
        producer.close()

    c.wait([lost], timeout=60)
    record = c.record(lost)
    assert record["status"] == "failed"
    assert record["error"].startswith(f"InvalidMessage: its assignment on {w1} cannot be read: 'task' must be"), \
        record["error"]
    assert not store.redis.hexists(store.keys.assignments, lost)
    consumer = KafkaConsumer(cfg.topics.status, bootstrap_servers=KAFKA, auto_offset_reset="earliest",
                             consumer_timeout_ms=20000)
    try:
        reports = (parse_event(m.value) for m in consumer)
        assert any(isinstance(ev, TasksFinished) and [lost, 1, "failed"] in [list(x) for x in ev.tasks]
                   for ev in reports)
    finally:
        consumer.close()
    assert c.record(stray)["status"] == "queued"  # attempt 7 is not its placement: left alone
    assert c.submit("mul", 6, 7).result(timeout=30) == 42  # good tasks keep running
    wait_until(lambda: store.counters()[0].get(w1) == 0, f"no slot of {w1} to stay taken", timeout=20, every=0.2)
    store.redis.close()
