"""The result backend: every Redis key YADTQ uses, and the scripts that change them.

A task's record is the hash at ``{prefix}{task_id}`` (DESIGN §3). The state
changes that must be atomic (assign, start, finish) are Lua scripts, so a
terminal status can never be overwritten and a fenced attempt can never write.
"""

from __future__ import annotations

import json
import traceback as tb
from dataclasses import dataclass
from typing import Any

import redis

from client.errors import ServiceUnavailable

TERMINAL = ("success", "failed")
STATUSES = ("queued", "processing", *TERMINAL)


@dataclass(frozen=True)
class Keys:
    """One home for every Redis key name; ``prefix`` isolates clusters and tests."""

    prefix: str = ""

    def task(self, task_id: str) -> str:
        return f"{self.prefix}{task_id}"

    def done_channel(self, task_id: str) -> str:
        """Pub/sub channel told when the task reaches a terminal status."""
        return f"{self.prefix}yadtq:done:{task_id}"

    @property
    def assignments(self) -> str:
        """Hash task_id -> 'worker|attempt|task json': the scheduler's table."""
        return f"{self.prefix}yadtq:assignments"

    @property
    def load(self) -> str:
        """Hash worker -> number of unfinished tasks, written by the scheduler."""
        return f"{self.prefix}yadtq:load"

    @property
    def stats(self) -> str:
        """Hash status -> count of tasks that ended so (success, failed)."""
        return f"{self.prefix}yadtq:stats"


# Assign (or reassign) a task: bump its attempt, which fences older copies.
# A task found 'processing' was running on a worker that died: that counts
# towards its retry limit. Returns the new attempt, -1 if the task already
# ended, -2 if it just failed for good.
_ASSIGN = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return -1
end
if st == 'processing' then
  local lost = redis.call('HINCRBY', KEYS[1], 'worker_deaths', 1)
  if lost > tonumber(ARGV[5]) then
    redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[4], 'error',
      'WorkerLost: the worker died while running this task ' .. lost ..
      ' times; the retry limit is ' .. ARGV[5])
    redis.call('EXPIRE', KEYS[1], ARGV[6])
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('HINCRBY', KEYS[3], 'failed', 1)
    redis.call('PUBLISH', KEYS[4], 'failed')
    return -2
  end
end
local a = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', ARGV[2], 'task', ARGV[7])
redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. a .. '|' .. ARGV[3])
return a
"""

# A worker starts (task, attempt): 1 to run it, 0 if it already ended, -1 if fenced.
_START = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'status', 'processing', 'worker', ARGV[2], 'started_at', ARGV[3])
return 1
"""

# Write a terminal record: 1 written, 0 already terminal, -1 fenced.
# ARGV[1] '*' skips the attempt check (the scheduler failing an invalid task).
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if ARGV[1] ~= '*' and redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
"""


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url`` that returns str, with bounded timeouts."""
    return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                                socket_timeout=30, health_check_interval=30)


def ping(client: redis.Redis, url: str) -> None:
    """Raise ServiceUnavailable, naming ``url``, unless Redis answers."""
    try:
        client.ping()
    except redis.RedisError as e:
        raise ServiceUnavailable(f"Redis at {safe_url(url)} does not answer: {e}") from None


def safe_url(url: str) -> str:
    """The URL without its password, fit for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def failure_fields(exc: BaseException) -> dict[str, str]:
    """The record fields for a task that raised: type, message and traceback."""
    return {"error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(tb.format_exception(type(exc), exc, exc.__traceback__))}


class ResultStore:
    """Reads and atomically changes task records. Cheap to create; wraps one client."""

    def __init__(self, client: redis.Redis, keys: Keys, result_ttl: int) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = result_ttl
        self._assign = client.register_script(_ASSIGN)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)

    # --- reads ---
    def record(self, task_id: str) -> dict[str, str]:
        """The task's record as stored (empty if unknown or expired)."""
        return self.redis.hgetall(self.keys.task(task_id))  # type: ignore[return-value]

    def statuses(self, task_ids: list[str]) -> list[str | None]:
        pipe = self.redis.pipeline(transaction=False)
        for t in task_ids:
            pipe.hget(self.keys.task(t), "status")
        return pipe.execute()

    # --- writes (each takes an optional pipeline to batch round trips) ---
    def mark_queued(self, pipe: Any, task_id: str, name: str, at: float) -> None:
        """Create the record of a newly submitted task, leaving an existing one alone."""
        key = self.keys.task(task_id)
        pipe.hsetnx(key, "status", "queued")
        pipe.hsetnx(key, "task", name)
        pipe.hsetnx(key, "submitted_at", repr(at))

    def assign(self, pipe: Any, task_id: str, name: str, worker: str, payload: str,
               at: float, max_retries: int) -> None:
        k = self.keys
        self._assign(keys=[k.task(task_id), k.assignments, k.stats, k.done_channel(task_id)],
                     args=[task_id, worker, payload, repr(at), max_retries, self.ttl, name], client=pipe)

    def start(self, pipe: Any, task_id: str, attempt: int, worker: str, at: float) -> None:
        self._start(keys=[self.keys.task(task_id)], args=[attempt, worker, repr(at)], client=pipe)

    def finish(self, pipe: Any, task_id: str, attempt: int | str, status: str, at: float,
               fields: dict[str, str]) -> None:
        """Write a terminal record unless it is already terminal or the attempt is fenced."""
        k = self.keys
        flat = [x for kv in fields.items() for x in kv]
        self._finish(keys=[k.task(task_id), k.stats, k.done_channel(task_id)],
                     args=[attempt, status, repr(at), self.ttl, *flat],
                     client=pipe)


def result_fields(value: Any) -> dict[str, str]:
    """The record fields of a successful task: its return value as JSON text."""
    return {"result": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}
