"""The client's waits against the real Redis (no cluster: the tasks' records are written here)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from client import Client
from client.config import Config
from client.store import Finish
from tests.integration.conftest import KAFKA, REDIS
from tests.support.scripts import run

pytestmark = pytest.mark.integration


@pytest.fixture
def client(services: None) -> Iterator[Client]:
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    c = Client(Config.from_dict({"kafka": {"bootstrap_servers": KAFKA},
                                 "redis": {"url": REDIS, "key_prefix": prefix}}))
    yield c
    c.store.delete_all()
    c.close()


def ended(c: Client, task_id: str, value: int) -> None:
    """A record of ``task_id`` that succeeded with ``value``, as the scheduler and a worker leave it."""
    payload = f'{{"v":1,"task-id":"{task_id}","task":"add","args":[]}}'
    run(c.store, "assign", task_id, "add", "W1", payload, 1.0, 1)
    run(c.store, "claim", task_id, 1, "W1", 2.0, 111, 1)
    assert run(c.store, "finish", task_id, 1, "success", 3.0, {"result": str(value)}) is Finish.WRITTEN


def test_a_wait_never_costs_the_clients_own_connection_a_reconnect(client: Client) -> None:
    """redis-py disconnects a pub/sub connection when it is closed and puts it back in its pool: from
    the client's own pool, the next read took it and connected again (1 ms of every result())."""
    ended(client, "t1", 2)
    ended(client, "t2", 3)
    own = client.redis.client_id()
    assert client.result("t1", timeout=5) == 2
    assert client.result("t2", timeout=5) == 3
    client.wait(["t1", "t2"], timeout=5)
    assert client.redis.client_id() == own  # the same connection all along
