"""The floor of the trace: the same two Kafka hops with no YADTQ code, traced the same way.

As /work/shared/tools/two_hops.py: a client produces a small JSON task to topic
A; a relay process consumes it and produces it to topic B (linger 0, acks
'all', flush after each poll that returned records); a sink process consumes
B and HSETs the result in Redis; the client polls Redis every 0.5 ms. Consumers
as YADTQ's (fetch_max_wait_ms 500), but without a group (partitions assigned),
which YADTQ also does. Each process marks its steps through client/trace.py,
so the relay and sink must start with YADTQ_TRACE set (bench/trace.py re-runs
itself with it).

Mode ``yadtq`` (``--floor yadtq``) builds the relay as the scheduler is built,
still with no YADTQ code: consumers with a group id (assigned, not
subscribed), the relay's poll of A with a 50 ms timeout followed by a
0 ms poll of an idle third topic (the scheduler's ``status``), its producer
with linger_ms 1, the sink's poll 200 ms. If the floor's hops grow to
YADTQ's in this mode, the cost is in how kafka-python is driven, not in YADTQ.
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


MODES = ("two_hops", "yadtq")


def _consumer(servers: str, topic: str, group: str | None) -> Any:
    c = KafkaConsumer(bootstrap_servers=servers, **{**CONSUMER, "group_id": group})
    c.assign([TopicPartition(topic, 0)])
    return c


def relay(servers: str, src: str, dst: str, mode: str = "two_hops", idle: str = "") -> None:
    """The relay process: every record of ``src`` to ``dst``, flushed after each poll
    (mode ``yadtq``: polled as the scheduler polls TASKS, ``idle`` as its ``status``)."""
    like = mode == "yadtq"
    c = _consumer(servers, src, f"{src}.relay" if like else None)
    other = _consumer(servers, idle, f"{src}.relay") if like else None
    p = KafkaProducer(bootstrap_servers=servers, **{**PRODUCER, "linger_ms": 1 if like else 0})
    while True:
        entered = time.time()
        got = c.poll(timeout_ms=50 if like else POLL_MS)
        trace.polled(got, "floor.relay.polled", entered)
        for records in got.values():
            for rec in records:
                task_id = sniff_task_id(rec.value) or "?"
                trace.mark(task_id, "floor.relay.send")
                trace.on_ack([p.send(dst, rec.value)], [task_id], "floor.relay.ack")
        if got:
            p.flush()
        if other is not None:
            other.poll(timeout_ms=0)


def sink(servers: str, src: str, redis_url: str, prefix: str, mode: str = "two_hops") -> None:
    """The sink process: HSET the sum of each task of ``src`` (one pipeline per poll)."""
    like = mode == "yadtq"
    c = _consumer(servers, src, f"{src}.sink" if like else None)
    r = redis.Redis.from_url(redis_url)
    while True:
        entered = time.time()
        got = c.poll(timeout_ms=200 if like else POLL_MS)
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

    def __init__(self, opts: Options, mode: str = "two_hops") -> None:
        self.opts = opts
        tag = uuid.uuid4().hex[:10]
        self.a, self.b, self.prefix = f"bench-floor-{tag}.A", f"bench-floor-{tag}.B", f"bench-floor-{tag}:"
        self.idle = f"bench-floor-{tag}.idle"
        self.redis = redis.Redis.from_url(opts.redis_url(DB), decode_responses=True)
        self.admin = KafkaAdminClient(bootstrap_servers=opts.kafka)
        self.admin.create_topics([NewTopic(t, 1, 1) for t in (self.a, self.b, self.idle)], timeout_ms=30_000)
        ctx = multiprocessing.get_context("spawn")
        self.procs = [ctx.Process(target=relay, args=(opts.kafka, self.a, self.b, mode, self.idle), name="floor-relay",
                                  daemon=True),
                      ctx.Process(target=sink, args=(opts.kafka, self.b, opts.redis_url(DB), self.prefix, mode),
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
            self.admin.delete_topics([self.a, self.b, self.idle])
        self.admin.close()
        for k in range(0, len(self.written), 1000):
            self.redis.delete(*self.written[k:k + 1000])
        self.redis.close()


def measure(opts: Options, n: int, warm_up: int, mode: str = "two_hops") -> list[float]:
    """``n`` traced floor round trips (ids ``floor-...``) after ``warm_up`` untimed ones; their times in ms."""
    floor = Floor(opts, mode)
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
