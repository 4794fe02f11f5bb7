"""The floor of the trace: the same two Kafka hops with no YADTQ code, traced the same way.

As /work/shared/tools/two_hops.py: a client produces a small JSON task to topic
A; a relay process consumes it and produces it to topic B (linger 0, acks
'all', flush after each poll that returned records); a sink process consumes
B and HSETs the result in Redis; the client polls Redis every 0.5 ms. Consumers
as YADTQ's (fetch_max_wait_ms 500), but without a group (partitions assigned),
which YADTQ also does. Each process marks its steps through client/trace.py,
so the relay and sink must start with YADTQ_TRACE set (bench/trace.py re-runs
itself with it).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
import uuid
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from bench.common import BenchError, Deadline, Options
from client import trace
from client.protocol import sniff_task_id

DB = 14
PRODUCER = {"acks": "all", "linger_ms": 0}
CONSUMER = {"group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 500}
POLL_MS = 1000


def _consumer(servers: str, topic: str) -> Any:
    c = KafkaConsumer(bootstrap_servers=servers, **CONSUMER)
    c.assign([TopicPartition(topic, 0)])
    return c


def relay(servers: str, src: str, dst: str) -> None:
    """The relay process: every record of ``src`` to ``dst``, flushed after each poll."""
    c = _consumer(servers, src)
    p = KafkaProducer(bootstrap_servers=servers, **PRODUCER)
    while True:
        entered = time.time()
        got = c.poll(timeout_ms=POLL_MS)
        trace.polled(got, "floor.relay.polled", entered)
        for records in got.values():
            for rec in records:
                task_id = sniff_task_id(rec.value) or "?"
                trace.mark(task_id, "floor.relay.send")
                trace.on_ack([p.send(dst, rec.value)], [task_id], "floor.relay.ack")
        if got:
            p.flush()


def sink(servers: str, src: str, redis_url: str, prefix: str) -> None:
    """The sink process: HSET the sum of each task of ``src`` (one pipeline per poll)."""
    c = _consumer(servers, src)
    r = redis.Redis.from_url(redis_url)
    while True:
        entered = time.time()
        got = c.poll(timeout_ms=POLL_MS)
        trace.polled(got, "floor.sink.polled", entered)
        pipe = r.pipeline(transaction=False)
        ids = []
        for records in got.values():
            for rec in records:
                t = json.loads(rec.value)
                pipe.hset(prefix + t["task-id"], mapping={"status": "success", "result": json.dumps(sum(t["args"]))})
                ids.append(t["task-id"])
        if ids:
            pipe.execute()
            trace.mark_all(ids, "floor.sink.written")


class Floor:
    """The two topics, the relay and the sink; ``one(task_id, i)`` is one traced round trip."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        tag = uuid.uuid4().hex[:10]
        self.a, self.b, self.prefix = f"bench-floor-{tag}.A", f"bench-floor-{tag}.B", f"bench-floor-{tag}:"
        self.redis = redis.Redis.from_url(opts.redis_url(DB), decode_responses=True)
        self.admin = KafkaAdminClient(bootstrap_servers=opts.kafka)
        self.admin.create_topics([NewTopic(self.a, 1, 1), NewTopic(self.b, 1, 1)], timeout_ms=30_000)
        ctx = multiprocessing.get_context("spawn")
        self.procs = [ctx.Process(target=relay, args=(opts.kafka, self.a, self.b), name="floor-relay", daemon=True),
                      ctx.Process(target=sink, args=(opts.kafka, self.b, opts.redis_url(DB), self.prefix),
                                  name="floor-sink", daemon=True)]
        for p in self.procs:
            p.start()
        self.producer = KafkaProducer(bootstrap_servers=opts.kafka, **PRODUCER)
        self.written: list[str] = []

    def one(self, task_id: str, i: int, deadline: Deadline) -> None:
        trace.mark(task_id, "floor.start")
        body = json.dumps({"task-id": task_id, "task": "add", "args": [i, i]}).encode()
        trace.mark(task_id, "floor.send")
        trace.on_ack([self.producer.send(self.a, body)], [task_id], "floor.ack")
        self.producer.flush(timeout=10)
        self.written.append(self.prefix + task_id)
        while self.redis.hget(self.prefix + task_id, "status") != "success":
            if any(not p.is_alive() for p in self.procs):
                raise BenchError("a floor process died")
            deadline.left()
            time.sleep(0.0005)
        trace.mark(task_id, "floor.end")

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
            p.join(5)
        with contextlib.suppress(Exception):
            self.producer.close(timeout=5)
        with contextlib.suppress(Exception):
            self.admin.delete_topics([self.a, self.b])
        self.admin.close()
        for k in range(0, len(self.written), 1000):
            self.redis.delete(*self.written[k:k + 1000])
        self.redis.close()


def measure(opts: Options, n: int, warm_up: int) -> list[float]:
    """``n`` traced floor round trips (ids ``floor-...``) after ``warm_up`` untimed ones; their times in ms."""
    floor = Floor(opts)
    try:
        start = Deadline(opts.startup_timeout, "floor start")
        floor.one(f"warm-floor-{uuid.uuid4().hex[:6]}", 0, start)  # the consumers find their position first
        for i in range(warm_up):
            floor.one(f"warm-floor-{uuid.uuid4().hex[:6]}-{i}", i, Deadline(10, "floor warm-up"))
        time.sleep(1.0)
        samples = []
        tag = uuid.uuid4().hex[:6]
        for i in range(n):
            t = time.perf_counter()
            floor.one(f"floor-{tag}-{i}", i, Deadline(10, "one floor round trip"))
            samples.append((time.perf_counter() - t) * 1000)
        return samples
    finally:
        floor.close()
