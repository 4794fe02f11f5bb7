"""The result backend: every Redis key YADTQ uses, and the scripts that change them.

A task's record is the hash at ``{prefix}{task_id}`` (DESIGN §3). The state
changes that must be atomic (assign, start, finish) are Lua scripts, so a
terminal status can never be overwritten and a fenced attempt can never write.
"""

from __future__ import annotations

import hashlib
import json
import traceback as tb
from dataclasses import dataclass
from typing import Any

import redis

from client.config import RedisConfig
from client.config import safe_url as safe_url  # re-exported: it lived here first
from client.errors import ServiceUnavailable

TERMINAL = ("success", "failed")


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
    def orphans(self) -> str:
        """Hash task_id -> pid of the dead process it must be moved away from."""
        return f"{self.prefix}yadtq:orphans"

    @property
    def retries(self) -> str:
        """Sorted set task_id -> when (epoch seconds) a task that raised runs again."""
        return f"{self.prefix}yadtq:retries"

    @property
    def retry_payloads(self) -> str:
        """Hash task_id -> task json, for the tasks in ``retries``."""
        return f"{self.prefix}yadtq:retry-payloads"

    @property
    def load(self) -> str:
        """Hash worker -> number of unfinished tasks, written by the scheduler."""
        return f"{self.prefix}yadtq:load"

    @property
    def stats(self) -> str:
        """Hash status -> count of tasks that ended so (success, failed)."""
        return f"{self.prefix}yadtq:stats"

    @property
    def quarantine(self) -> str:
        """Hash 'group|topic|partition' -> 'offset:tries' of careful processes (worker_pool/quarantine.py)."""
        return f"{self.prefix}yadtq:quarantine"


# Shared by ASSIGN and START, whose KEYS[1..3] are (record, stats, done channel):
# the last start of this task never finished, so its worker died mid-task.
# Count it; past the retry limit (deaths and raises together) the task fails
# for good (returns true).
_DIED = """
local function died(limit, at, ttl)
  local n = redis.call('HINCRBY', KEYS[1], 'worker_deaths', 1)
  local raised = tonumber(redis.call('HGET', KEYS[1], 'retries') or '0')
  if n + raised <= tonumber(limit) then return false end
  local also = ''
  if raised > 0 then also = ' (and it raised ' .. raised .. ' time(s))' end
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', at, 'error',
    'WorkerLost: the worker died while running this task ' .. n ..
    ' time(s)' .. also .. '; the retry limit is ' .. limit)
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('HINCRBY', KEYS[2], 'failed', 1)
  redis.call('PUBLISH', KEYS[3], 'failed')
  return true
end
"""

# Assign a task, bumping its attempt (the fencing token) so older copies are
# skipped. Mode 'new' (a message read from TASKS) is idempotent: a task that
# already has a placement keeps it, so a redelivered or duplicate message does
# not run it twice. Mode 'move' (its worker died, pid ARGV[9]) counts the death
# if that process was running it, and leaves it alone if a newer process of the
# same worker already runs it. Mode 'retry' takes a task that raised off the
# retry schedule (KEYS[6], KEYS[7]). Returns {1, attempt} assigned, {0, attempt,
# worker} already placed or running (send nothing), {-1} already ended, {-2}
# failed now, {-3} not to be placed now: a 'retry' taken already, or a 'new' or
# 'move' of a task that waits on the retry schedule.
# A move, whatever its outcome, clears the task's mark in the orphans hash (KEYS[5]).
_ASSIGN = _DIED + """
if ARGV[8] == 'move' then redis.call('HDEL', KEYS[5], ARGV[1]) end
if ARGV[8] == 'retry' then
  redis.call('HDEL', KEYS[7], ARGV[1])
  if redis.call('ZREM', KEYS[6], ARGV[1]) == 0 then return {-3} end
elseif redis.call('ZSCORE', KEYS[6], ARGV[1]) then
  -- It waits for its retry (its table entry is gone): a duplicate message or
  -- a move must not place it before then; the schedule will.
  return {-3}
end
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then
  redis.call('HDEL', KEYS[4], ARGV[1])
  return {-1}
end
if ARGV[8] == 'new' then
  local entry = redis.call('HGET', KEYS[4], ARGV[1])
  if entry then
    local w, a = string.match(entry, '^([^|]*)|(%d+)|')
    return {0, tonumber(a), w}
  end
elseif st == 'processing' then
  if ARGV[8] == 'retry' or (ARGV[9] ~= '0' and redis.call('HGET', KEYS[1], 'pid') ~= ARGV[9]) then
    return {0, tonumber(redis.call('HGET', KEYS[1], 'attempt')), redis.call('HGET', KEYS[1], 'worker')}
  end
  if died(ARGV[5], ARGV[4], ARGV[6]) then
    redis.call('HDEL', KEYS[4], ARGV[1])
    return {-2}
  end
end
local a = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', ARGV[2], 'task', ARGV[7])
redis.call('HDEL', KEYS[1], 'retry_at')
redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2] .. '|' .. a .. '|' .. ARGV[3])
return {1, a}
"""

# A worker starts (task, attempt): 1 run it, 0 it already ended, -1 fenced
# (reassigned, or no record), -2 it just failed for good. Finding it already
# 'processing' under the same attempt means the process that started it died.
_START = _DIED + """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return -1 end
if st == 'processing' and died(ARGV[5], ARGV[3], ARGV[6]) then return -2 end
redis.call('HSET', KEYS[1], 'status', 'processing', 'worker', ARGV[2], 'started_at', ARGV[3], 'pid', ARGV[4])
return 1
"""

# Write a terminal record: 1 written, 0 already terminal, -1 fenced.
_FINISH = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', ARGV[3], unpack(ARGV, 5))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('PUBLISH', KEYS[3], ARGV[2])
return 1
"""


# A task raised and may run again: back to 'queued' with the error, off the
# scheduler's table (KEYS[4]) and onto the retry schedule (KEYS[2], KEYS[3]),
# due after an exponential backoff: ARGV[4] seconds doubled per earlier retry,
# at most ARGV[9]. Returns {1, due} scheduled, {0, failures so far} no retry
# left (the caller fails it), {-1} fenced, {-2} already terminal.
_RETRY = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return {-2} end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[2] then return {-1} end
local used = tonumber(redis.call('HGET', KEYS[1], 'worker_deaths') or '0')
  + tonumber(redis.call('HGET', KEYS[1], 'retries') or '0')
if used >= tonumber(ARGV[5]) then return {0, used} end
local n = redis.call('HINCRBY', KEYS[1], 'retries', 1)
local due = tostring(tonumber(ARGV[3]) + math.min(tonumber(ARGV[9]), tonumber(ARGV[4]) * 2 ^ (n - 1)))
redis.call('HSET', KEYS[1], 'status', 'queued', 'retry_at', due, 'failed_at', ARGV[3],
  'error', ARGV[6], 'traceback', ARGV[7])
redis.call('HDEL', KEYS[1], 'pid', 'started_at')
redis.call('ZADD', KEYS[2], due, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[8])
redis.call('HDEL', KEYS[4], ARGV[1])
return {1, due}
"""

# A client submitted the task: its record says 'queued', unless the scheduler
# (or an earlier submit of the same id) wrote it first. One command per task
# instead of three HSETNX: the client's share of the work is mostly packing.
_QUEUED = """
if redis.call('HSETNX', KEYS[1], 'status', 'queued') == 1 then
  redis.call('HSET', KEYS[1], 'task', ARGV[1], 'submitted_at', ARGV[2])
else  -- fill in what the scheduler's write left out, never replacing a field
  redis.call('HSETNX', KEYS[1], 'task', ARGV[1])
  redis.call('HSETNX', KEYS[1], 'submitted_at', ARGV[2])
end
return 0
"""

# Fail a task the scheduler refused (invalid message): 1 written, 0 already
# terminal, -1 the id belongs to a placed task (a bad duplicate must not touch it).
_REJECT = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'success' or st == 'failed' then return 0 end
if redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'finished_at', ARGV[2], 'error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], 'failed', 1)
redis.call('PUBLISH', KEYS[3], 'failed')
return 1
"""

# A worker stopping gracefully hands back the task it could not finish in the
# grace period: 'queued' again, so its next run is not counted as a death.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'processing' then return 0 end
if redis.call('HGET', KEYS[1], 'attempt') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'pid') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('HDEL', KEYS[1], 'pid', 'started_at')
return 1
"""


def connect(cfg: RedisConfig | str) -> redis.Redis:
    """A Redis client for the configured server that returns str, with bounded timeouts.

    The one place that turns ``redis.*`` keys into a connection, password and
    TLS included. A plain URL (tests, tools) means those keys' defaults.
    """
    if isinstance(cfg, str):
        cfg = RedisConfig(url=cfg)
    opts: dict[str, Any] = {}
    if cfg.username:
        opts["username"] = cfg.username
    if cfg.password:
        opts["password"] = cfg.password.reveal()
    # Only a rediss:// URL takes TLS options (the config refuses them otherwise).
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if getattr(cfg, key):
            opts[key] = getattr(cfg, key)
    return redis.Redis.from_url(cfg.url, decode_responses=True, socket_connect_timeout=5,
                                socket_timeout=30, health_check_interval=30, **opts)


def ping(client: redis.Redis, cfg: RedisConfig) -> None:
    """Raise ServiceUnavailable, naming the server (never the password), unless Redis answers."""
    try:
        client.ping()
    except redis.AuthenticationError as e:
        # redis-py's message says which (WRONGPASS, NOAUTH) and never holds the password.
        raise ServiceUnavailable(f"Redis at {safe_url(cfg.url)} refused the login (user "
                                 f"{cfg.username or 'default'}): {str(e).rstrip('.')}; check redis.password or "
                                 "redis.password_env") from None
    except redis.RedisError as e:
        raise ServiceUnavailable(f"Redis at {safe_url(cfg.url)} does not answer: {e}") from None


def failure_fields(exc: BaseException) -> dict[str, str]:
    """The record fields for a task that raised: type, message and traceback."""
    return {"error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(tb.format_exception(type(exc), exc, exc.__traceback__))}


class _Script:
    """A Lua script run by its SHA1 (EVALSHA), directly or queued on a pipeline.

    redis-py's own Script makes every pipeline that holds one first ask
    SCRIPT EXISTS: a round trip per task on the hot path. Here the scripts are
    loaded only when Redis says it lacks them (NOSCRIPT, after a restart);
    ``ResultStore.execute`` does that and runs the pipeline again.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, keys: list[Any], args: list[Any], client: Any) -> Any:
        return client.evalsha(self.sha, len(keys), *keys, *args)


_SCRIPTS = {name: _Script(text) for name, text in
            (("assign", _ASSIGN), ("start", _START), ("finish", _FINISH), ("reject", _REJECT),
             ("release", _RELEASE), ("retry", _RETRY), ("queued", _QUEUED))}


class ResultStore:
    """Reads and atomically changes task records. Cheap to create; wraps one client."""

    def __init__(self, client: redis.Redis, keys: Keys, result_ttl: int) -> None:
        self.redis = client
        self.keys = keys
        self.ttl = result_ttl
        s = _SCRIPTS
        self._assign, self._start, self._finish = s["assign"], s["start"], s["finish"]
        self._reject, self._release, self._retry, self._queued = s["reject"], s["release"], s["retry"], s["queued"]

    def pipeline(self) -> Any:
        """A pipeline (no MULTI) to queue the write methods below on; run it with ``execute``."""
        return self.redis.pipeline(transaction=False)

    def execute(self, pipe: Any) -> list[Any]:
        """Run ``pipe``; re-run the scripts Redis did not know (NOSCRIPT, after a restart).

        Only those commands run again, once the scripts are loaded: without
        MULTI, others in the same pipeline may have run (Redis serves other
        clients between chunks of a long pipeline, and any of them may load
        the scripts meanwhile), and running those twice is not harmless.
        """
        stack = list(pipe.command_stack)
        answers: list[Any] = pipe.execute(raise_on_error=False)
        missing = [i for i, a in enumerate(answers) if isinstance(a, redis.exceptions.NoScriptError)]
        if missing:
            for script in _SCRIPTS.values():
                self.redis.script_load(script.text)
            again = self.pipeline()
            for i in missing:
                args, options = stack[i]
                again.execute_command(*args, **options)
            for i, answer in zip(missing, again.execute(raise_on_error=False), strict=True):
                answers[i] = answer
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _call(self, script: _Script, keys: list[Any], args: list[Any]) -> Any:
        """Run one script now (one round trip)."""
        pipe = self.pipeline()
        script(keys, args, pipe)
        return self.execute(pipe)[0]

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
        self._queued(keys=[self.keys.task(task_id)], args=[name, repr(at)], client=pipe)

    def assign(self, pipe: Any, task_id: str, name: str, worker: str, payload: str, at: float,
               max_retries: int, mode: str = "new", dead_pid: int = 0) -> None:
        """Queue ASSIGN: mode 'new' (from TASKS), 'move' (away from the dead
        process ``dead_pid``; 0 unknown) or 'retry' (from the retry schedule)."""
        k = self.keys
        self._assign(keys=[k.task(task_id), k.stats, k.done_channel(task_id), k.assignments, k.orphans,
                           k.retries, k.retry_payloads],
                     args=[task_id, worker, payload, repr(at), max_retries, self.ttl, name, mode, dead_pid],
                     client=pipe)

    def start(self, pipe: Any, task_id: str, attempt: int, worker: str, at: float, pid: int,
              max_retries: int) -> None:
        k = self.keys
        self._start(keys=[k.task(task_id), k.stats, k.done_channel(task_id)],
                    args=[attempt, worker, repr(at), pid, max_retries, self.ttl], client=pipe)

    def reject(self, pipe: Any, task_id: str, at: float, error: str) -> None:
        """Fail a task the scheduler refused, unless it ended or is placed already."""
        k = self.keys
        self._reject(keys=[k.task(task_id), k.stats, k.done_channel(task_id), k.assignments],
                     args=[task_id, repr(at), self.ttl, error], client=pipe)

    def release(self, task_id: str, attempt: int, pid: int) -> int:
        """Hand back a task this process started but will not finish (graceful stop)."""
        return int(self._call(self._release, [self.keys.task(task_id)], [attempt, pid]))

    def retry(self, task_id: str, attempt: int, at: float, backoff: tuple[float, float], max_retries: int,
              fields: dict[str, str], payload: str) -> tuple[int, float]:
        """Schedule a task that raised to run again, if it has retries left.

        ``backoff`` is (first delay, longest delay) in seconds. Returns (1, when
        it runs again), (0, failures so far: none left, fail it), (-1, 0)
        fenced or (-2, 0) already ended.
        """
        k = self.keys
        answer = self._call(self._retry, [k.task(task_id), k.retries, k.retry_payloads, k.assignments],
                            [task_id, attempt, repr(at), repr(backoff[0]), max_retries,
                             fields.get("error", ""), fields.get("traceback", ""), payload, repr(backoff[1])])
        return int(answer[0]), float(answer[1]) if len(answer) > 1 else 0.0

    def due_retries(self, at: float, limit: int) -> list[tuple[str, str | None]]:
        """Up to ``limit`` (task id, task json) whose retry time has come."""
        ids: list[str] = self.redis.zrangebyscore(self.keys.retries, "-inf", at, start=0, num=limit)  # type: ignore[assignment]
        if not ids:
            return []
        payloads: list[str | None] = self.redis.hmget(self.keys.retry_payloads, ids)  # type: ignore[assignment]
        return list(zip(ids, payloads, strict=True))

    def finish(self, pipe: Any, task_id: str, attempt: int, status: str, at: float,
               fields: dict[str, str]) -> None:
        """Write a terminal record unless it is already terminal or the attempt is fenced."""
        k = self.keys
        flat = [x for kv in fields.items() for x in kv]
        self._finish(keys=[k.task(task_id), k.stats, k.done_channel(task_id)],
                     args=[attempt, status, repr(at), self.ttl, *flat],
                     client=pipe)

    # --- the quarantine (worker_pool/quarantine.py): a careful process's marks ---
    def quarantine_mark(self, field: str) -> str | None:
        """The 'offset:tries' a careful process recorded for ``field``, if any."""
        return self.redis.hget(self.keys.quarantine, field)  # type: ignore[return-value]

    def set_quarantine_mark(self, field: str, mark: str) -> None:
        self.redis.hset(self.keys.quarantine, field, mark)

    def clear_quarantine_marks(self, fields: list[str]) -> None:
        self.redis.hdel(self.keys.quarantine, *fields)

    def fail_quarantined(self, task_id: str, at: float, error: str) -> bool:
        """Fail the record of a quarantined task unless it ended; False if it had (or is no record).

        Whatever its state (queued, placed, running): the message that carries
        it kills its reader, so no attempt of it can end otherwise.
        """
        key = self.keys.task(task_id)
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                if pipe.type(key) not in ("hash", "none") or pipe.hget(key, "status") in TERMINAL:
                    return False
                pipe.multi()
                pipe.hset(key, mapping={"status": "failed", "finished_at": repr(at), "error": error})
                pipe.expire(key, self.ttl)
                pipe.hincrby(self.keys.stats, "failed", 1)
                pipe.hdel(self.keys.assignments, task_id)
                pipe.publish(self.keys.done_channel(task_id), "failed")
                pipe.execute()
            except redis.WatchError:  # it changed meanwhile: ended, most likely
                return False
        return True


def result_fields(value: Any) -> dict[str, str]:
    """The record fields of a successful task: its return value as JSON text."""
    return {"result": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}
