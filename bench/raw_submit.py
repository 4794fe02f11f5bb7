"""Submitting as a foreign program would: a plain kafka-python producer writing
the seed's format to TASKS, and results read from Redis with plain redis-py.

No YADTQ code runs on this side: only the names a user finds in the README
(the TASKS topic, the record at ``<prefix><task-id>`` and the pub/sub channel
``<prefix>yadtq:done:<task-id>`` told when a task ends). ``python -m bench
--submit raw`` measures a cluster this way, side by side with the YADTQ client.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis
from kafka import KafkaProducer

from bench.common import BenchError, Deadline, check_sum
from bench.raw_kafka import PRODUCER


def seed_message(task_id: str, i: int) -> bytes:
    """add(i, i) in the seed's format, as any producer may write it."""
    return json.dumps({"task-id": task_id, "task": "add", "args": [i, i]}).encode()


class RawSubmitter:
    """One producer and one Redis connection (plus one for pub/sub), as a foreign client holds them."""

    def __init__(self, kafka: str, redis_url: str, topic: str, prefix: str) -> None:
        self.topic = topic
        self.prefix = prefix
        self.producer = KafkaProducer(bootstrap_servers=kafka, **PRODUCER)
        self.redis: redis.Redis = redis.Redis.from_url(redis_url, decode_responses=True, socket_timeout=30)
        self.pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.producer.close(timeout=5)
        self.pubsub.close()
        self.redis.close()

    def _channel(self, task_id: str) -> str:
        return f"{self.prefix}yadtq:done:{task_id}"

    def submit_all(self, n: int) -> list[str]:
        """Subscribe to every task's end (a pattern, before anything is sent), then produce
        ``n`` tasks and flush: each acknowledged by the broker."""
        self.pubsub.psubscribe(self._channel("*"))
        self._confirmed(Deadline(30, "the pattern subscription"), "psubscribe")
        ids = [str(uuid.uuid4()) for _ in range(n)]
        sent = [self.producer.send(self.topic, seed_message(t, i)) for i, t in enumerate(ids)]
        self.producer.flush(timeout=60)
        for f in sent:
            f.get(timeout=0)  # raises if the broker refused one
        return ids

    def wait_all(self, ids: list[str], deadline: Deadline) -> list[str]:
        """Block until every task of ``ids`` was announced on its channel (``check_all`` reads the records)."""
        left = set(ids)
        while left:
            msg = self.pubsub.get_message(timeout=min(1.0, deadline.left()))
            if msg is not None and msg["type"] == "pmessage":
                left.discard(msg["channel"][len(self._channel("")):])
        self.pubsub.punsubscribe()
        return ids

    def check_all(self, ids: list[str]) -> None:
        """Every task ended ``success`` with add(i, i)'s result; read as a plain Redis client would."""
        for start in range(0, len(ids), 1000):
            pipe = self.redis.pipeline(transaction=False)
            for t in ids[start:start + 1000]:
                pipe.hmget(self.prefix + t, "status", "result")
            for k, (status, result) in enumerate(pipe.execute()):
                i = start + k
                if status != "success":
                    raise BenchError(f"task {ids[i]} ended {status!r}: {self.redis.hgetall(self.prefix + ids[i])}")
                check_sum(i, json.loads(result))

    def one(self, i: int, timeout: float = 10.0) -> None:
        """One round trip: subscribe to the task's channel, produce it, wait to be told, read the record."""
        task_id = str(uuid.uuid4())
        self.pubsub.subscribe(self._channel(task_id))
        deadline = Deadline(timeout, f"round trip {i}")
        self._confirmed(deadline, "subscribe")  # the previous round trip's unsubscribe is skipped here
        self.producer.send(self.topic, seed_message(task_id, i))
        self.producer.flush(timeout=deadline.left())
        while self.pubsub.get_message(timeout=min(1.0, deadline.left())) is None:
            pass
        self.pubsub.unsubscribe()
        record: dict[str, Any] = self.redis.hgetall(self.prefix + task_id)  # type: ignore[assignment]
        if record.get("status") != "success":
            raise BenchError(f"task {task_id} ended {record}")
        check_sum(i, json.loads(record["result"]))

    def _confirmed(self, deadline: Deadline, kind: str) -> None:
        """Wait for the server's confirmation of the last ``kind`` ('subscribe' or
        'psubscribe'), so that no announcement sent after it can be missed."""
        self.pubsub.ignore_subscribe_messages = False
        try:
            while True:
                msg = self.pubsub.get_message(timeout=min(1.0, deadline.left()))
                if msg is not None and msg["type"] == kind:
                    return
        finally:
            self.pubsub.ignore_subscribe_messages = True
