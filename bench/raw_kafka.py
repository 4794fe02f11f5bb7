"""The limit: raw kafka-python on the same broker, no YADTQ code.

One producer (this process) sends N small task-like JSON messages to a fresh
one-partition topic and flushes; one consumer (a separate process, as every
YADTQ hop is) reads them all back. Then a single message is produced and
consumed again and again: the round trip of one hop. Settings as YADTQ's own
producers and consumers use them: acks='all', linger_ms=2; consumer without a
group, fetch_max_wait_ms=50, each value parsed as JSON.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from bench.common import BenchError, Deadline, Metrics, Options, latency_metrics

PRODUCER = {"acks": "all", "linger_ms": 2}
CONSUMER = {"group_id": None, "enable_auto_commit": False, "auto_offset_reset": "earliest", "fetch_max_wait_ms": 50}


def task_message(i: int) -> bytes:
    """A message shaped like a YADTQ task."""
    return json.dumps({"task-id": str(uuid.uuid4()), "task": "add", "args": [i, i]}).encode()


def _consume(servers: str, topic: str, count: int, timeout: float, conn: Connection) -> None:
    """The consumer process: read ``count`` messages after a warm-up one; report the times."""
    c = KafkaConsumer(bootstrap_servers=servers, **CONSUMER)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        c.poll(timeout_ms=100)
        conn.send(("ready", time.monotonic()))
        seen, deadline = 0, time.monotonic() + timeout
        while seen < count + 1 and time.monotonic() < deadline:
            for records in c.poll(timeout_ms=100).values():
                for r in records:
                    json.loads(r.value)
                    seen += 1
                    if seen == 1:
                        conn.send(("warm", time.monotonic()))
        conn.send(("done" if seen == count + 1 else "short", time.monotonic(), seen - 1))
    finally:
        c.close()


def _expect(conn: Connection, what: str, deadline: Deadline) -> tuple[Any, ...]:
    while not conn.poll(min(0.5, deadline.left())):
        pass
    msg: tuple[Any, ...] = conn.recv()
    if msg[0] != what:
        raise BenchError(f"raw consumer said {msg!r}, expected {what!r}")
    return msg


def _throughput(opts: Options, topic: str, producer: KafkaProducer) -> Metrics:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_consume, args=(opts.kafka, topic, opts.n, opts.timeout, theirs),
                       name="bench-raw-consumer", daemon=True)
    proc.start()
    try:
        _expect(ours, "ready", Deadline(opts.startup_timeout, "raw consumer start"))
        producer.send(topic, task_message(-1))
        producer.flush(timeout=30)
        _expect(ours, "warm", Deadline(30, "raw warm-up message"))
        t0 = time.monotonic()
        for i in range(opts.n):
            producer.send(topic, task_message(i))
        producer.flush(timeout=opts.timeout)
        t_sent = time.monotonic()
        _, t_last, _seen = _expect(ours, "done", Deadline(opts.timeout, "raw consumer"))
        return {"enqueue_rate": opts.n / (t_sent - t0), "throughput": opts.n / (t_last - t0),
                "batch_s": t_last - t0}
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
        ours.close()


def _round_trips(opts: Options, topic: str, producer: KafkaProducer) -> Metrics:
    c = KafkaConsumer(bootstrap_servers=opts.kafka, **CONSUMER)
    try:
        tp = TopicPartition(topic, 0)
        c.assign([tp])
        c.seek_to_end(tp)
        c.position(tp)  # resolves the end offset now, before the first message is sent
        deadline = Deadline(opts.timeout, "raw round trips")
        samples = []
        for i in range(opts.round_trips):
            deadline.left()
            t = time.perf_counter()
            producer.send(topic, task_message(i))
            producer.flush(timeout=10)
            _read_one(c, Deadline(10, "one raw round trip"))
            samples.append(time.perf_counter() - t)
        return latency_metrics(samples)
    finally:
        c.close()


def _read_one(c: KafkaConsumer, deadline: Deadline) -> None:
    while True:
        for records in c.poll(timeout_ms=max(1, int(min(deadline.left(), 1.0) * 1000))).values():
            for r in records:
                json.loads(r.value)
            if records:
                return


def measure(opts: Options, log: Path) -> Metrics:
    """Producer rate, one-hop rate and one-hop round trips on a fresh topic (deleted after)."""
    topic = f"bench-{uuid.uuid4().hex[:10]}.raw"
    admin = KafkaAdminClient(bootstrap_servers=opts.kafka)
    producer = None
    try:
        admin.create_topics([NewTopic(topic, 1, 1)], timeout_ms=30_000)
        producer = KafkaProducer(bootstrap_servers=opts.kafka, **PRODUCER)
        m = _throughput(opts, topic, producer)
        m |= _round_trips(opts, topic, producer)
        return m
    finally:
        if producer is not None:
            producer.close(timeout=10)
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])
        admin.close()
