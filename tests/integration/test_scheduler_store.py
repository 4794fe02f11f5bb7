"""The scheduler's use of the store, on a real Redis with a stand-in producer.

Cheaper than a cluster, and the scheduler's code is the real one: its
messages go in as a consumer would hand them over, and what it produces is
read back from the stand-in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import TopicPartition

from client.config import Config
from client.protocol import WorkerDown, encode_event, parse_assignment
from client.store import Keys, TaskStore, connect
from supervisor.scheduler import Scheduler, _Pending
from tests.integration.conftest import REDIS

pytestmark = pytest.mark.integration

AT = 1000.0


class _Sent:
    exception = None

    def succeeded(self) -> bool:
        return True


class FakeProducer:
    """Keeps what is sent, per topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []

    def send(self, topic: str, value: bytes, headers: Any = None) -> _Sent:
        self.sent.append((topic, value, headers))
        return _Sent()

    def flush(self, timeout: float | None = None) -> None:
        pass


@pytest.fixture
def scheduler(services: None) -> Iterator[Scheduler]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    config = Config.from_dict({"redis": {"url": REDIS, "key_prefix": prefix}, "workers": {"count": 2},
                               "tasks": {"modules": ["worker_pool.builtin_tasks", "tests.tasks"]}})
    s = Scheduler(config)
    s.registry.load_modules(config.tasks.modules)
    s.redis = connect(REDIS)
    s.keys = Keys(prefix)
    s.store = TaskStore(s.redis, s.keys, 60)
    s._producer = FakeProducer()  # type: ignore[assignment]
    for w in ("W1", "W2"):
        s.state.heartbeat(w, AT)
    yield s
    keys = list(s.redis.scan_iter(match=f"{prefix}*"))
    if keys:
        s.redis.delete(*keys)
    s.redis.close()


def take(s: Scheduler, *messages: bytes) -> list[tuple[str, bytes, Any]]:
    """Hand the messages to the scheduler as read from TASKS; what it sends."""
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    mark = len(producer.sent)
    tp = TopicPartition(s.topics.tasks, 0)
    s.waiting.extend(_Pending(m, tp, i) for i, m in enumerate(messages))
    s._dispatch(AT)
    return producer.sent[mark:]


def task(task_id: str, name: str, *args: Any) -> bytes:
    return json.dumps({"task-id": task_id, "task": name, "args": list(args)}).encode()


def test_a_duplicate_never_replaces_the_payload_of_a_placed_task(scheduler: Scheduler) -> None:
    s = scheduler
    [(worker, _, _)] = take(s, task("t1", "add", 1, 2))
    assert take(s, task("t1", "mul", 6, 7)) == []  # placed already: nothing sent
    assert json.loads(s.state.tasks["t1"].payload)["task"] == "add"
    # Its worker dies: the move runs the first message's task, not the duplicate's.
    s._on_event(encode_event(WorkerDown(worker, "test", AT, 0)), AT)
    producer: FakeProducer = s._producer  # type: ignore[assignment]
    mark = len(producer.sent)
    s._dispatch(AT)
    [(_, moved, _)] = [m for m in producer.sent[mark:] if m[0] != worker]
    a = parse_assignment(moved)
    assert (a.task.name, a.task.args, a.attempt) == ("add", [1, 2], 2)


def test_a_duplicate_in_the_same_batch_is_placed_with_the_first_payload(scheduler: Scheduler) -> None:
    s = scheduler
    sent = take(s, task("t1", "add", 1, 2), task("t1", "mul", 6, 7))
    assert [parse_assignment(m).task.name for _, m, _ in sent] == ["add"]
    assert json.loads(s.state.tasks["t1"].payload)["task"] == "add"


def test_an_id_naming_a_foreign_key_is_dead_lettered_and_the_next_task_placed(scheduler: Scheduler) -> None:
    s = scheduler
    raw = connect(REDIS)
    raw.set(s.keys.task("cache:1"), "another app's value")
    sent = take(s, task("cache:1", "add", 1, 2), task("t2", "add", 3, 4))
    [(_, body, headers)] = [m for m in sent if m[0] == s.topics.dead_letter]
    assert body == task("cache:1", "add", 1, 2)
    assert dict(headers)["error"].decode() == (
        "task id 'cache:1' names an existing Redis key that YADTQ does not own (a string); refused, the key is "
        "left as it was; set redis.key_prefix when sharing a database")
    assert [parse_assignment(m).task.task_id for t, m, _ in sent if t != s.topics.dead_letter] == ["t2"]
    assert raw.get(s.keys.task("cache:1")) == "another app's value" and raw.ttl(s.keys.task("cache:1")) == -1
    assert "cache:1" not in s.state.tasks
    raw.close()
