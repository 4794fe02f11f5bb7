"""The supervisor's HTTP actions against the real services: POST /api/cancel, /api/retry,
/api/dead-letters/replay and /api/purge call client/ops.py, and only with the token."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from client import TaskFailed, TaskSpec
from client import kafka as kafka_io
from tests.integration.test_insight import get, http_port
from tests.support.harness import wait_until

pytestmark = pytest.mark.integration

TOKEN = {"Authorization": "Bearer s3cret"}


def post(port: int, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST ``body`` as JSON; (status, the answer's JSON, or its text if it is not JSON)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def test_actions_need_the_token_and_call_the_operations(start_cluster: Any) -> None:
    cluster = start_cluster(count=1, http={"listen": "127.0.0.1:0", "token": "s3cret"},
                            tasks={"modules": ["worker_pool.builtin_tasks", "tests.tasks"], "retry_backoff": 60})
    port, c = http_port(cluster), cluster.client
    flaky = c.submit_many([TaskSpec("flaky", (1,), max_retries=0), TaskSpec("flaky", (1,), max_retries=0)])
    for h in flaky:
        with pytest.raises(TaskFailed):
            h.result(timeout=30)

    # Refused: no token, a wrong one; nothing changed.
    status, text = post(port, "/api/retry", {"ids": [flaky[0].id]})
    assert status == 401 and "needs the token" in text
    assert post(port, "/api/retry", {"ids": [flaky[0].id]}, {"Authorization": "Bearer nope"})[0] == 401
    assert flaky[0].record()["status"] == "failed"
    # Bad bodies are 400 with the reason.
    assert post(port, "/api/retry", {"ids": "x"}, TOKEN) == (400, "ids: expected a list of up to 100000 strings\n")
    assert post(port, "/api/retry", {}, TOKEN)[0] == 400
    assert post(port, "/api/retry", {"failed": True, "since": "soon"}, TOKEN)[0] == 400
    assert post(port, "/api/nothing", {}, TOKEN)[0] == 404

    # Retry by id: it runs again and succeeds (flaky(1) raises only on its first run).
    status, answer = post(port, "/api/retry", {"ids": [flaky[0].id, "no-such-task"]}, TOKEN)
    assert status == 200 and answer["done"] == 1
    assert [(o["id"], o["result"]) for o in answer["outcomes"]] == [(flaky[0].id, "reopened"),
                                                                   ("no-such-task", "unknown")]
    assert flaky[0].result(timeout=30) == 2
    assert flaky[0].record()["reopened_by"].startswith("http from 127.0.0.1")
    # Retry of the failed ones, by name: only the other is left.
    status, answer = post(port, "/api/retry", {"failed": True, "task": "flaky", "since": "1h"}, TOKEN)
    assert status == 200 and [o["id"] for o in answer["outcomes"]] == [flaky[1].id]
    assert flaky[1].result(timeout=30) == 2

    # Cancel: a task waiting for its retry (60 s away) ends cancelled; one that ended is left.
    waiting = c.submit("fail", "boom")
    wait_until(lambda: c.redis.zscore(c.keys.retries, waiting.id), "the failed task waits for its retry")
    status, answer = post(port, "/api/cancel", {"ids": [waiting.id, flaky[0].id]}, TOKEN)
    assert [o["result"] for o in answer["outcomes"]] == ["cancelled", "ended"]
    assert waiting.record()["status"] == "cancelled"

    # Dead letters: one is replayed by its partition:offset as the API lists it.
    producer = kafka_io.producer(cluster.config.kafka)
    try:
        producer.send(cluster.config.topics.tasks, b"not json").get(timeout=30)
    finally:
        kafka_io.close_producer(producer)
    [letter] = wait_until(lambda: json.loads(get(port, "/api/dead-letters")[1]), "the dead letter is listed")
    status, answer = post(port, "/api/dead-letters/replay", {"ids": [letter["letter"], "0:999"]}, TOKEN)
    assert status == 200 and [o["result"] for o in answer["outcomes"]] == ["replayed", "not_found"]
    wait_until(lambda: len(json.loads(get(port, "/api/dead-letters")[1])) == 2, "the replayed message died again")

    # Purge: names nothing unless asked for all (or ids); here nothing waits.
    assert post(port, "/api/purge", {}, TOKEN)[0] == 400
    status, answer = post(port, "/api/purge", {"all": True}, TOKEN)
    assert status == 200 and answer["count"] == 0


def test_no_token_configured_refuses_every_action(start_cluster: Any) -> None:
    cluster = start_cluster(count=1)
    port = http_port(cluster)
    for path in ("/api/retry", "/api/cancel", "/api/purge", "/api/dead-letters/replay"):
        status, text = post(port, path, {"ids": ["x"]}, TOKEN)
        assert status == 403 and "no http.token" in text
