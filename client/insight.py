"""The read model of a cluster: what its operator sees, from any process.

Everything here is derived from state that outlives every YADTQ process, so
two readers (the supervisor's HTTP endpoint, ``python -m client info``) agree
and a restart changes nothing:

- Redis: the counters in the stats hash (``Keys.stats``: totals per status,
  and 'what|name' fields written by the Lua scripts and the supervisor, see
  ``parse_stats``), the timing histograms (``Keys.timings``, written by CLAIM
  and FINISH), the records, the scheduler's table and the retry schedule, the
  index of recent tasks (``Keys.recent``), each worker's load (``Keys.load``)
  and the supervisor's snapshot of its processes (``Keys.snapshot``);
- Kafka: end offsets against the consumer groups' committed offsets (the
  backlog), the first message not yet read from TASKS (the oldest waiting
  task), and the dead-letter topic.

``Insight`` holds the connections; the functions beside it are pure and
unit-tested.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from client import kafka as kafka_io
from client.config import Config
from client.errors import InvalidMessage, ServiceUnavailable
from client.protocol import now, parse_task, safe_text, sniff_task_id
from client.store import Keys, Status, TaskStore, connect, parse_history, parse_placement

# Upper bounds (seconds) of the queue-wait and run-time histograms' buckets;
# the same list as BUCKETS in client/lua/common.lua (a unit test checks it).
TIMING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                  600.0, 1800.0, 3600.0)
RECENT_MAX = 10000  # tasks kept in the index of recent tasks (the supervisor trims it every second)
SNAPSHOT_TTL = 5.0  # seconds the supervisor's snapshot outlives its last write: then no supervisor runs
KAFKA_TIMEOUT_MS = 5000  # a scrape must not hang on a broker that went away
_SCAN_CHUNK = 500  # records read per round trip when listing tasks


# --- counters (the stats hash) ---

@dataclass
class Counters:
    """The stats hash, read: totals per status and per-name counts."""

    totals: dict[str, int] = field(default_factory=dict)                   # status -> tasks ended so
    submitted: dict[str, int] = field(default_factory=dict)                # task name -> first placements
    finished: dict[tuple[str, str], int] = field(default_factory=dict)     # (task, status) -> tasks
    retries: dict[str, int] = field(default_factory=dict)                  # task -> runs that raised and were retried
    lost: dict[str, int] = field(default_factory=dict)                     # task -> runs whose worker died
    deaths: dict[str, int] = field(default_factory=dict)                   # process -> declared dead
    restarts: dict[str, int] = field(default_factory=dict)                 # process -> started again
    aliased: dict[str, int] = field(default_factory=dict)                  # 'task_id->task-id' -> messages mapped


def _count(text: object) -> int:
    try:
        n = int(str(text), 10)
    except ValueError:
        return 0
    return n if n >= 0 else 0


def parse_stats(raw: dict[str, str]) -> Counters:
    """Decode the stats hash: 'success' and the like are totals; 'submitted|NAME',
    'finished|STATUS|NAME', 'retries|NAME', 'lost|NAME', 'deaths|PROCESS',
    'restarts|PROCESS' and 'aliased|KIND' (tasks.accept_aliases) are counts per
    name (a name may hold '|': only the first separators count). Fields of any
    other shape are ignored."""
    c = Counters()
    simple = {"submitted": c.submitted, "retries": c.retries, "lost": c.lost, "deaths": c.deaths,
              "restarts": c.restarts, "aliased": c.aliased}
    for key, value in raw.items():
        n = _count(value)
        what, sep, rest = key.partition("|")
        if not sep:
            c.totals[key] = n
        elif what in simple:
            simple[what][rest] = n
        elif what == "finished":
            status, sep, name = rest.partition("|")
            if sep:
                c.finished[(name, status)] = n
    return c


# --- timings (the histograms) ---

@dataclass
class Histogram:
    """One task's observations: a count per bucket of TIMING_BUCKETS (the last one
    past the largest bound), and their sum in seconds."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(TIMING_BUCKETS) + 1))
    total: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus's buckets: (upper bound as text, observations at or below it), '+Inf' last."""
        out, running = [], 0
        for bound, n in zip([*map(repr, TIMING_BUCKETS), "+Inf"], self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


def parse_timings(raw: dict[str, str]) -> dict[str, dict[str, Histogram]]:
    """Decode the timings hash: 'KIND|I|NAME' (bucket I, from 1) and 'KIND_sum|NAME'
    into {kind: {task name: Histogram}}; kind is 'wait' or 'run'."""
    out: dict[str, dict[str, Histogram]] = {"wait": {}, "run": {}}
    for key, value in raw.items():
        what, sep, rest = key.partition("|")
        if not sep:
            continue
        if what.endswith("_sum") and what[:-4] in out:
            h = out[what[:-4]].setdefault(rest, Histogram())
            h.total = _seconds(value)
            continue
        index, sep, name = rest.partition("|")
        if what in out and sep and index.isdigit() and 1 <= int(index) <= len(TIMING_BUCKETS) + 1:
            out[what].setdefault(name, Histogram()).counts[int(index) - 1] = _count(value)
    return out


def _seconds(text: object) -> float:
    try:
        v = float(str(text))
    except ValueError:
        return 0.0
    return v if math.isfinite(v) and v >= 0 else 0.0


# --- the supervisor's snapshot of its processes ---

@dataclass
class ProcessView:
    """One process the supervisor runs, as it saw it at the snapshot."""

    name: str
    pid: int | None
    alive: bool                  # the process exists
    up: bool                     # alive, and its last heartbeat arrived within the timeout
    heartbeat_age: float | None  # seconds since its last heartbeat arrived (None: none yet)
    rss: int | None = None       # resident memory, bytes (sampled every second; None: not yet)
    cpu: float | None = None     # % of one core since the previous sample


@dataclass
class Snapshot:
    """The supervisor's view: when (wall clock), who it is, and its processes."""

    at: float
    supervisor_pid: int
    epoch: int
    processes: list[ProcessView]

    def get(self, name: str) -> ProcessView | None:
        return next((p for p in self.processes if p.name == name), None)

    def workers(self) -> list[ProcessView]:
        return [p for p in self.processes if p.name != "scheduler"]


def encode_snapshot(s: Snapshot) -> str:
    return json.dumps(asdict(s), separators=(",", ":"))


def parse_snapshot(text: object) -> Snapshot | None:
    """A snapshot read back from Redis; None if absent or not one (never raises)."""
    if not isinstance(text, str):
        return None
    try:
        d = json.loads(text)
        procs = [ProcessView(str(p["name"]), _whole(p["pid"]), bool(p["alive"]), bool(p["up"]),
                             _age(p.get("heartbeat_age")), _whole(p.get("rss")), _age(p.get("cpu")))
                 for p in d["processes"]]
        return Snapshot(float(d["at"]), int(d["supervisor_pid"]), int(d["epoch"]), procs)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _whole(v: object) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _age(v: object) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def health(snapshot: Snapshot | None, kafka_up: bool, redis_up: bool) -> list[str]:
    """Why the cluster is not healthy (empty: it is): the scheduler up, at least
    one worker live, Kafka and Redis answering (``/healthz``)."""
    reasons = []
    if not kafka_up:
        reasons.append("kafka does not answer")
    if not redis_up:
        reasons.append("redis does not answer")
    if snapshot is None:
        reasons.append("no supervisor is running (no snapshot of its processes)")
        return reasons
    sched = snapshot.get("scheduler")
    if sched is None or not sched.up:
        reasons.append("the scheduler is down" if sched is None or not sched.alive
                       else "the scheduler has not sent a heartbeat within the timeout")
    workers = snapshot.workers()
    if not any(w.up for w in workers):
        reasons.append(f"no worker is live (0 of {len(workers)})")
    return reasons


# --- tasks ---

_SUMMARY_FIELDS = ("status", "task", "worker", "attempt", "submitted_at", "started_at", "finished_at", "error",
                   "retries", "worker_deaths", "retry_at", "yadtq")


def task_summary(task_id: str, values: list[str | None]) -> dict[str, Any] | None:
    """A listing's line for one task from its _SUMMARY_FIELDS; None if it is not a YADTQ record."""
    d = dict(zip(_SUMMARY_FIELDS, values, strict=True))
    if d.pop("yadtq") is None:
        return None
    out: dict[str, Any] = {"id": task_id}
    for k, v in d.items():
        if v is not None:
            out[k] = _number(v) if k.endswith("_at") or k in ("attempt", "retries", "worker_deaths") else v
    if "error" in out:
        out["error"] = out["error"].split("\n", 1)[0][:300]
    return out


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            v = kind(text)
        except ValueError:
            continue
        return v if math.isfinite(v) else text
    return text


def attempts(record: dict[str, str]) -> dict[str, Any]:
    """What the record says of its runs: attempts made, raises retried, deaths of its
    workers, the first and the last start, the last failure and when it runs again."""
    def num(k: str) -> float | int | None:
        v = _number(record[k]) if k in record else None
        return v if isinstance(v, (int, float)) else None
    return {"attempt": num("attempt") or 0, "retries": num("retries") or 0,
            "worker_deaths": num("worker_deaths") or 0, "worker": record.get("worker"),
            "submitted_at": num("submitted_at"), "first_started_at": num("first_started_at"),
            "started_at": num("started_at"), "failed_at": num("failed_at"), "retry_at": num("retry_at"),
            "finished_at": num("finished_at"), "last_error": record.get("error")}


def error_type(error: str) -> str:
    """The exception type a record's ``error`` names ('ValueError: ...' gives 'ValueError')."""
    head, sep, _ = error.partition(":")
    return head.strip() if sep and head.strip() and " " not in head.strip() else "(other)"


def backlog_of(ends: dict[TopicPartition, int], committed: dict[TopicPartition, int],
               begins: dict[TopicPartition, int]) -> dict[str, int]:
    """Messages per topic not yet read by its consumer group: end offset minus the
    committed one (the first kept offset when the group never committed)."""
    out: dict[str, int] = {}
    for tp, end in ends.items():
        start = committed.get(tp, begins.get(tp, 0))
        out[tp.topic] = out.get(tp.topic, 0) + max(0, end - start)
    return out


# --- the reader ---

class Insight:
    """Reads a cluster's state for its operator. Thread-safe (the HTTP server's
    threads share one); Kafka is connected on first use and again after a failure.

    ``snapshot`` gives the supervisor's view of its processes: the supervisor
    passes its own (fresh) one; elsewhere it is read from Redis.
    """

    def __init__(self, config: Config, snapshot: Callable[[], Snapshot | None] | None = None) -> None:
        self.config = config
        self.keys = Keys(config.redis.key_prefix, config.node)
        self.redis = connect(config.redis, timeout=5.0)
        self.store = TaskStore(self.redis, self.keys, config.tasks.result_ttl)
        self._snapshot = snapshot or self.stored_snapshot
        self._kafka_lock = threading.Lock()  # kafka-python's clients are not thread-safe
        self._consumer: KafkaConsumer | None = None
        self._admin: KafkaAdminClient | None = None

    def close(self) -> None:
        with self._kafka_lock:
            self._drop_kafka()
        self.redis.close()

    def __enter__(self) -> Insight:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- services ---
    def redis_up(self) -> bool:
        try:
            self.redis.ping()
            return True
        except redis.RedisError:
            return False

    def kafka_up(self) -> bool:
        """Does Kafka answer a metadata request?"""
        try:
            with self._kafka_lock:
                self._kafka()[0].topics()
            return True
        except (KafkaError, ServiceUnavailable, OSError):
            with self._kafka_lock:
                self._drop_kafka()
            return False

    def _kafka(self) -> tuple[KafkaConsumer, KafkaAdminClient]:
        """The consumer (offsets, peeks; no group) and admin client, built on first use."""
        if self._consumer is None or self._admin is None:
            self._drop_kafka()
            cfg = self.config.kafka
            self._consumer = kafka_io.consumer(cfg, None, request_timeout_ms=KAFKA_TIMEOUT_MS,
                                               fetch_max_wait_ms=100, enable_auto_commit=False)
            self._admin = kafka_io.admin(cfg, request_timeout_ms=KAFKA_TIMEOUT_MS)
        return self._consumer, self._admin

    def _drop_kafka(self) -> None:
        for c in (self._consumer, self._admin):
            if c is not None:
                with contextlib.suppress(Exception):  # a client of a broker that went away: nothing more to do
                    c.close()
        self._consumer = self._admin = None

    def _with_kafka(self, use: Callable[[KafkaConsumer, KafkaAdminClient], Any]) -> Any:
        """Run ``use`` on the Kafka clients; on a Kafka failure drop them (rebuilt next time) and raise
        ServiceUnavailable."""
        with self._kafka_lock:
            try:
                return use(*self._kafka())
            except (KafkaError, OSError, AssertionError) as e:
                self._drop_kafka()
                raise ServiceUnavailable(f"Kafka at {','.join(self.config.kafka.bootstrap_servers)}: {e}") from None

    # --- the supervisor's view ---
    def stored_snapshot(self) -> Snapshot | None:
        """The snapshot the running supervisor last wrote; None if none runs (or Redis does not answer)."""
        try:
            return parse_snapshot(self.redis.get(self.keys.snapshot))
        except redis.RedisError:
            return None

    def snapshot(self) -> Snapshot | None:
        return self._snapshot()

    # --- Redis counters ---
    def counters(self) -> Counters:
        return parse_stats(self.redis.hgetall(self.keys.stats))  # type: ignore[arg-type]

    def timings(self) -> dict[str, dict[str, Histogram]]:
        return parse_timings(self.redis.hgetall(self.keys.timings))  # type: ignore[arg-type]

    def loads(self) -> dict[str, int]:
        return self.store.counters()[0]

    def retries_waiting(self) -> int:
        return int(self.redis.zcard(self.keys.retries))  # type: ignore[arg-type]

    def workers(self) -> list[dict[str, Any]]:
        """Each worker (and the scheduler): pid, up, load, heartbeat age, restarts, deaths, RSS, CPU."""
        snap = self.snapshot()
        counts = self.counters()
        load = self.loads()
        age = max(0.0, now() - snap.at) if snap else 0.0
        out = []
        for name in ["scheduler", *self.config.worker_ids()]:
            p = snap.get(name) if snap else None
            hb = p.heartbeat_age + age if p is not None and p.heartbeat_age is not None else None
            out.append({"id": name, "pid": p.pid if p else None, "alive": bool(p and p.alive), "up": bool(p and p.up),
                        "load": load.get(name, 0) if name != "scheduler" else None, "heartbeat_age": hb,
                        "restarts": counts.restarts.get(name, 0), "deaths": counts.deaths.get(name, 0),
                        "rss": p.rss if p else None, "cpu": p.cpu if p else None})
        return out

    # --- Kafka offsets ---
    def groups(self) -> dict[str, str]:
        """Each topic YADTQ consumes, with the consumer group whose offsets count."""
        t = self.config.topics
        sched = f"yadtq-scheduler.{t.tasks}"
        return {t.tasks: sched, t.status: sched, **{w: f"yadtq-worker.{w}" for w in self.config.worker_ids()}}

    def backlog(self) -> dict[str, int]:
        """Per topic: messages its consumer group has not committed yet (KafkaError: ServiceUnavailable)."""
        groups = self.groups()

        def read(c: KafkaConsumer, a: KafkaAdminClient) -> dict[str, int]:
            tps = self._partitions(c, list(groups))
            found = a.list_group_offsets({g: None for g in set(groups.values())})
            committed = {}
            for tp in tps:
                om = found.get(groups[tp.topic], {}).get(tp)
                if om is not None and om.offset >= 0:
                    committed[tp] = om.offset
            return backlog_of(c.end_offsets(tps), committed, c.beginning_offsets(tps))
        result: dict[str, int] = self._with_kafka(read)
        return result

    @staticmethod
    def _partitions(c: KafkaConsumer, topics: list[str]) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]

    def dead_letters_total(self) -> tuple[int, int]:
        """(dead letters ever written, dead letters still kept): the topic's end offsets, and end minus begin."""
        def read(c: KafkaConsumer, a: KafkaAdminClient) -> tuple[int, int]:
            tps = self._partitions(c, [self.config.topics.dead_letter])
            ends, begins = c.end_offsets(tps), c.beginning_offsets(tps)
            return sum(ends.values()), sum(ends[tp] - begins[tp] for tp in tps)
        result: tuple[int, int] = self._with_kafka(read)
        return result

    def _peek(self, topic: str, starts: Callable[[KafkaConsumer, list[TopicPartition]], dict[TopicPartition, int]],
              limit: int, timeout: float = 3.0) -> list[Any]:
        """Up to ``limit`` records of ``topic`` from the offsets ``starts`` gives, without a group."""
        def read(c: KafkaConsumer, a: KafkaAdminClient) -> list[Any]:
            tps = self._partitions(c, [topic])
            ends = c.end_offsets(tps)
            begin = {tp: o for tp, o in starts(c, tps).items() if o < ends[tp]}
            if not begin or limit <= 0:
                return []
            c.assign(list(begin))
            for tp, o in begin.items():
                c.seek(tp, o)
            got: list[Any] = []
            deadline = time.monotonic() + timeout
            while len(got) < limit and time.monotonic() < deadline and any(c.position(tp) < ends[tp] for tp in begin):
                for records in c.poll(timeout_ms=200, max_records=limit - len(got)).values():
                    got.extend(records)
            c.unsubscribe()
            return got[:limit]
        result: list[Any] = self._with_kafka(read)
        return result

    def _committed_tasks(self, c: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        group = f"yadtq-scheduler.{self.config.topics.tasks}"
        assert self._admin is not None
        found = self._admin.list_group_offsets({group: None}).get(group, {})
        begins = c.beginning_offsets(tps)
        return {tp: found[tp].offset if tp in found and found[tp].offset >= 0 else begins[tp] for tp in tps}

    def waiting_in_tasks(self, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` tasks in TASKS the scheduler has not taken yet, oldest first."""
        out = []
        for r in self._peek(self.config.topics.tasks, self._committed_tasks, limit):
            line: dict[str, Any] = {"id": sniff_task_id(r.value, self.config.tasks.accept_aliases), "offset": r.offset,
                                    "submitted_at": r.timestamp / 1000.0 if r.timestamp and r.timestamp > 0 else None}
            try:
                line["task"] = parse_task(r.value, self.config.tasks.limits()).name
            except InvalidMessage as e:
                line["invalid"] = e.reason
            out.append(line)
        return out

    # --- tasks placed, retried, dead ---
    def placed(self) -> list[dict[str, Any]]:
        """The tasks of the scheduler's table with their record: placed on a worker, queued or running."""
        table: dict[str, str] = self.redis.hgetall(self.keys.assignments)  # type: ignore[assignment]
        ids = sorted(table)
        out = self._summaries(ids)
        for line in out:
            p = parse_placement(table.get(line["id"]))
            if p is not None:
                line["placed_on"] = p.worker
        return out

    def running(self) -> list[dict[str, Any]]:
        return [t for t in self.placed() if t.get("status") == Status.PROCESSING]

    def queued(self, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks not started: placed but not claimed yet, then those still in TASKS (``where`` says which)."""
        placed = [dict(t, where="placed") for t in self.placed() if t.get("status") == Status.QUEUED]
        placed.sort(key=lambda t: t.get("submitted_at") or 0)
        rest = limit - len(placed)
        return placed[:limit] + [dict(t, where="tasks topic") for t in self.waiting_in_tasks(rest)]

    def oldest_unstarted_age(self) -> float:
        """Seconds since the oldest task that was accepted and never started was submitted
        (0 if none): the first unread message of TASKS, or a placed task not claimed yet."""
        times = [t["submitted_at"] for t in self.placed() if t.get("status") == Status.QUEUED
                 and "started_at" not in t and isinstance(t.get("submitted_at"), (int, float))]
        with_kafka = self.waiting_in_tasks(1)
        times += [t["submitted_at"] for t in with_kafka if t.get("submitted_at")]
        return max(0.0, now() - min(times)) if times else 0.0

    def retries(self, limit: int = 100) -> list[dict[str, Any]]:
        """Tasks on the retry schedule, soonest first, with ``due`` (epoch seconds)."""
        due: list[tuple[str, float]] = self.redis.zrange(self.keys.retries, 0, limit - 1,  # type: ignore[assignment]
                                                          withscores=True)
        lines = {t["id"]: t for t in self._summaries([i for i, _ in due])}
        return [dict(lines.get(i, {"id": i}), due=score) for i, score in due]

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The last ``limit`` dead letters: where from, why, and the start of the message."""
        def last(c: KafkaConsumer, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
            ends, begins = c.end_offsets(tps), c.beginning_offsets(tps)
            return {tp: max(begins[tp], ends[tp] - limit) for tp in tps}
        out = []
        for r in self._peek(self.config.topics.dead_letter, last, limit):
            headers = {k: safe_text(v.decode("utf-8", "replace")) for k, v in (r.headers or [])}
            out.append({"offset": r.offset, "partition": r.partition, "letter": f"{r.partition}:{r.offset}",
                        "at": r.timestamp / 1000.0 if r.timestamp else None,
                        "error": headers.get("error", ""), "from": headers.get("from"),
                        "id": sniff_task_id(r.value), "message": safe_text(r.value[:300].decode("utf-8", "replace"))})
        return out

    # --- listing tasks ---
    def _summaries(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        ids = list(ids)
        pipe = self.redis.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.keys.task(i), list(_SUMMARY_FIELDS))
        out = []
        for i, values in zip(ids, pipe.execute(raise_on_error=False), strict=True):
            line = task_summary(i, values) if isinstance(values, list) else None
            if line is not None:
                out.append(line)
        return out

    def tasks(self, status: str | None = None, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The newest tasks (first placed last), optionally of one status and task name; at most
        ``limit``, from the newest RECENT_MAX (records that expired are left out)."""
        out: list[dict[str, Any]] = []
        start = 0
        while len(out) < limit and start < RECENT_MAX:
            ids: list[str] = self.redis.zrevrange(self.keys.recent, start, start + _SCAN_CHUNK - 1)  # type: ignore[assignment]
            if not ids:
                break
            start += _SCAN_CHUNK
            out += [t for t in self._summaries(ids) if (status is None or t.get("status") == status)
                    and (name is None or t.get("task") == name)]
        return out[:limit]

    def failed_groups(self, name: str | None = None) -> list[dict[str, Any]]:
        """The failed tasks among the newest RECENT_MAX, grouped by error type (``error_type``),
        the largest group first, each with its count and task ids (newest first)."""
        groups: dict[str, list[str]] = {}
        for t in self.tasks(Status.FAILED, name, RECENT_MAX):
            groups.setdefault(error_type(t.get("error", "")), []).append(t["id"])
        return [{"error_type": k, "count": len(v), "ids": v}
                for k, v in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]

    def task(self, task_id: str) -> dict[str, Any] | None:
        """One task: its record, what it says of its attempts, its placement and retry time; None if unknown."""
        record = self.store.record(task_id)
        if not record:
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.hget(self.keys.assignments, task_id)
        pipe.zscore(self.keys.retries, task_id)
        pipe.lrange(self.keys.history(task_id), 0, -1)
        entry, due, lines = pipe.execute(raise_on_error=False)
        p = parse_placement(entry)
        return {"id": task_id, "record": record, "attempts": attempts(record), "history": parse_history(lines),
                "placement": {"worker": p.worker, "attempt": p.attempt} if p else None,
                "retry_due": due if isinstance(due, float) else None}

    # --- the whole picture ---
    def overview(self) -> dict[str, Any]:
        """What ``info`` and the dashboard's first page show; a part that cannot be read is None,
        with the reason under ``errors``."""
        errors: dict[str, str] = {}
        out: dict[str, Any] = {"at": now(), "redis_up": self.redis_up(), "kafka_up": self.kafka_up()}
        for key, read in (("workers", self.workers), ("backlog", self.backlog),
                          ("oldest_unstarted_age", self.oldest_unstarted_age),
                          ("retries_waiting", self.retries_waiting), ("totals", lambda: self.counters().totals),
                          ("dead_letters", lambda: dict(zip(("total", "kept"), self.dead_letters_total(),
                                                            strict=True)))):
            try:
                out[key] = read()
            except (redis.RedisError, ServiceUnavailable) as e:
                out[key] = None
                errors[key] = str(e)
        snap = self.snapshot()
        out["health"] = health(snap, out["kafka_up"], out["redis_up"])
        out["supervisor"] = {"pid": snap.supervisor_pid, "epoch": snap.epoch} if snap else None
        out["errors"] = errors
        return out
