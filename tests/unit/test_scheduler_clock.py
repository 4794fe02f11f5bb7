"""The scheduler's intervals and liveness run on the monotonic clock (defect 11).

A step of the wall clock (NTP, a resumed VM) larger than heartbeat_timeout
used to stop the scheduler's heartbeats until the clock caught up, so the
supervisor killed it. Pure: fake consumers, producer and store, time passed in.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.future import Future

from client.config import Config
from client.protocol import Heartbeat, encode_event, parse_event
from supervisor.scheduler import Scheduler

STATUS = TopicPartition("status", 0)


class Consumer:
    """Hands out the records queued on it, one poll at a time."""

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.queue: list[list[Any]] = []

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        return {self.tp: self.queue.pop(0)} if self.queue else {}

    @property
    def _cluster(self) -> Any:  # kafka_io.known_partitions reads the metadata cache
        return self

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {self.tp.partition} if topic == self.tp.topic else set()

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def commit(self, offsets: Any) -> None:
        pass

    def commit_async(self, offsets: Any) -> Future:
        """As a broker that answers at once: the commit is done when it returns."""
        self.commit(offsets)
        return Future().success(None)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes, headers: Any = None) -> Any:
        self.sent.append((topic, value))
        return None

    def flush(self, timeout: float | None = None) -> None:
        pass


class Store:
    """What an idle scheduler's loop asks of the store: nothing to assign or retry."""

    def pipeline(self) -> list[Any]:
        return []

    def drop_placements(self, pipe: Any, ids: list[str]) -> None:
        pass

    def mark_orphans(self, pipe: Any, orphans: list[Any]) -> None:
        pass

    def due_retries(self, at: float, limit: int, limits: Any = None) -> list[Any]:
        return []

    def write_load(self, load: dict[str, int]) -> None:
        pass

    def registered_workers(self) -> dict[str, str]:
        return {}


def scheduler() -> tuple[Scheduler, Consumer, Producer]:
    s = Scheduler(Config.from_dict({"workers": {"count": 1, "heartbeat_interval": 1.0, "heartbeat_timeout": 6.0}}))
    status = Consumer(STATUS)
    s._tasks_in, s._status_in = Consumer(TopicPartition("TASKS", 0)), status  # type: ignore[assignment]
    s._producer = Producer()  # type: ignore[assignment]
    s.store = Store()  # type: ignore[assignment]
    return s, status, s._producer  # type: ignore[return-value]


def beats(sent: list[tuple[str, bytes]]) -> int:
    return sum(1 for _, v in sent if isinstance(parse_event(v), Heartbeat))


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(topic=STATUS.topic, partition=STATUS.partition, leader_epoch=-1, offset=offset,
                          timestamp=0, timestamp_type=0, key=None, value=value, headers=[], checksum=None,
                          serialized_key_size=-1, serialized_value_size=len(value), serialized_header_size=-1)


def test_a_wall_clock_step_back_does_not_stop_the_schedulers_heartbeats() -> None:
    s, _, producer = scheduler()
    wall = 1_000_000.0
    for tick in range(10):
        s.loop(wall + tick, 500.0 + tick)
    assert beats(producer.sent) == 10
    for tick in range(10, 20):  # the wall clock steps back an hour; the monotonic one goes on
        s.loop(wall - 3600 + tick, 500.0 + tick)
    assert beats(producer.sent) == 20


def test_a_wall_clock_step_changes_no_workers_liveness() -> None:
    s, status, _ = scheduler()
    beat = encode_event(Heartbeat("W1", "worker", 42, ts=1.0))  # the sender's clock is far off: ignored
    status.queue.append([record(0, beat)])
    s.loop(5_000_000.0, 100.0)
    assert s.state.choose(100.0) == "W1"
    s.loop(1.0, 105.0)  # the wall clock steps back by weeks: W1 is live until 6 s after its beat arrived
    assert s.state.choose(105.0) == "W1"
    assert s.state.choose(106.5) is None
